#!/usr/bin/env bash
# Runs the whole suite. pytest's exit code 5 ("no tests collected") is a failure here: a
# suite that silently runs nothing must not pass.
#
# The whole suite (no arguments) runs in one test process per CPU, 2 to 4, handed out as
# tests/support/parallel_runs.py says. ATELIER_TEST_PROCESSES=N asks for N (1: this process alone), with
# arguments too; with arguments (a file, a -k) and no ATELIER_TEST_PROCESSES, pytest runs as asked, in one.
set -uo pipefail
cd "$(dirname "$0")/.."
processes="${ATELIER_TEST_PROCESSES:-}"
if [ -z "$processes" ] && [ "$#" -eq 0 ]; then
  processes="$(nproc 2>/dev/null || echo 2)"
  [ "$processes" -lt 2 ] && processes=2  # even one CPU is mostly idle while tests wait on their stacks
  [ "$processes" -gt 4 ] && processes=4  # each process may run a stack: web, worker, beat and a database of their own
fi
parallel=()
[ "${processes:-1}" -gt 1 ] && parallel=(-n "$processes" --dist loadgroup)
.venv/bin/python -m pytest "${parallel[@]}" "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "run-tests: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$code"
