"""bench/search.py on a tiny project, so that it cannot rot: it measures every search both ways, says which indexes
were read, ends with its JSON line and leaves no database behind; on SQLite it says why it measures nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ON_POSTGRESQL = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))


def run_bench(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/search.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=280)


@pytest.mark.skipif(not ON_POSTGRESQL, reason="the search bench measures PostgreSQL's indexes")
def test_the_search_bench_measures_each_search_with_and_without_the_indexes_and_drops_its_database():
    import psycopg

    done = run_bench(dict(os.environ), "--jobs", "150", "--repeat", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    # strict JSON, as any tool reads it: no Infinity where a search statement took no time to divide by
    figures = json.loads(done.stdout.strip().splitlines()[-1], parse_constant=lambda name: pytest.fail(name))
    assert figures["results"]["library"]["no search"]["search_sql_speedup"] is None
    assert figures["jobs"] == figures["outputs"] == 150
    assert set(figures["results"]) == {"library", "jobs page", "api"}
    for path, searches in figures["results"].items():
        assert set(searches) == {"no search", "rare word", "common word", "two letters", "chinese", "miss"}, path
        for search in searches.values():
            assert search["without_index_ms"] > 0 and search["with_index_ms"] > 0
            assert search["index_used"]["without index"] == []  # the baseline has none of them
    assert set(figures["index_mb"]) == {"job_search_text_trgm", "output_search_text_trgm", "job_plugin_id_trgm",
                                        "output_newest", "job_project_evaluations"}
    assert "Searches of one project's 150 jobs" in done.stdout
    [name] = re.findall(r"database (atelier_bench_search_\w+)", done.stderr)
    with psycopg.connect(os.environ["DATABASE_URL"]) as connection:
        assert connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None


def test_on_sqlite_the_search_bench_says_it_measures_nothing():
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    done = run_bench(env, "--jobs", "10")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "set DATABASE_URL to a PostgreSQL server" in done.stdout
    assert "skipped" in json.loads(done.stdout.strip().splitlines()[-1])
