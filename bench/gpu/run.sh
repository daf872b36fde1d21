#!/usr/bin/env bash
# Run the worker runtime's two benchmarks on the lent GPU machine, unchanged, in one call:
#
#     here:   bash bench/gpu/fetch_wheels.sh
#     there:  bash bench/gpu/run.sh            (the device tool's `run`, carrying .whl)
#
# Installs the carried wheels and this checkout into that machine's Python (it is thrown away after
# the session), then runs bench/batching.py (CUDA, picked by --device auto) and bench/overhead.py,
# each printing its table and its JSON line. Everything printed is also written under $OUT.
# STEPS picks what runs after the install, in order (default: bench):
#   check  a start of the whole stack (web, worker, beat) and one job: the kit's own test, no GPU needed;
#   probe  bench/gpu/probe.py: where the time goes (decoding in process, the platform's timeline, disk);
#   cold   bench/gpu/probe.py --only cold: decoding on shapes not met before, cuDNN attention on and off;
#   bench  bench/batching.py and bench/overhead.py (OVERHEAD_RUNS, default 30).
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
export PYTHONUNBUFFERED=1

ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: run bench/gpu/fetch_wheels.sh here first, and carry .whl"; exit 2; }
{
    nvidia-smi -L 2>/dev/null || echo "nvidia-smi: none"
    "$PYTHON" -c "import sys, torch, transformers; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', '| transformers', transformers.__version__)" \
        || echo "torch or transformers missing"
} 2>&1 | tee "$OUT/machine.txt"

# setuptools first: the checkout's own build needs setuptools>=75 and nothing can be fetched there.
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-cache-dir .whl/setuptools-*.whl || exit 1
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-cache-dir .whl/*.whl || exit 1
# The checkout, with its plugin entry points; its Python pin (3.11, this machine's) does not hold there.
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-build-isolation --ignore-requires-python . || exit 1

failed=0
for step in ${STEPS:-bench}; do
    case "$step" in
    check)
        "$PYTHON" - <<'PY' 2>&1 | tee "$OUT/check.txt"
import sys, tempfile
from pathlib import Path
sys.path.insert(0, "bench")
from platform_stack import ApiClient, start_stack
stack = start_stack(Path(tempfile.mkdtemp()), ATELIER_DEVICE="cpu")
try:
    client = ApiClient(stack)
    job = client.submit_and_wait("reverse_text", {"text": "kit"})
    print("stack up:", stack.backend, "| a job through it:", job["status"], job["outputs"][0]["content"])
finally:
    stack.stop()
PY
        ;;
    probe) "$PYTHON" bench/gpu/probe.py --profile "$OUT" 2>&1 | tee "$OUT/probe.txt" ;;
    cold) "$PYTHON" bench/gpu/probe.py --only cold 2>&1 | tee "$OUT/cold.txt" ;;
    bench)
        "$PYTHON" bench/batching.py 2>&1 | tee "$OUT/batching.txt" || failed=1
        "$PYTHON" bench/overhead.py --runs "${OVERHEAD_RUNS:-30}" 2>&1 | tee "$OUT/overhead.txt"
        ;;
    *) echo "unknown step $step (check, probe, cold, bench)"; exit 2 ;;
    esac
    [ "${PIPESTATUS[0]}" = 0 ] || failed=1
done
exit "$failed"
