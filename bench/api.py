"""Job submission through the REST API under concurrent clients, against a bare Django view that
inserts the same Job row, on the same server in the same run.

    .venv/bin/python bench/api.py [--threads 8] [--requests 100] [--rounds 2]

One Atelier stack (``bench/platform_stack.py``: gunicorn with 2 processes × 4 threads, embedded SQLite
and file broker, or PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set) whose web process
also serves ``/bench/plain-jobs/`` (``bench/api_plain.py``: parse JSON, insert the Job row, nothing
else). The worker is stopped once the stack is up, so that only the web process and the clients use
the CPUs: Atelier's jobs stay queued (their broker messages are still published). The rate limit is
the Stack's 1,000,000 a minute, so it counts without refusing anything.

Each round runs the plain view, then Atelier's ``POST /api/v1/jobs/`` (the ``reverse_text`` test
plugin, an API key, input validation, the safety screening installed, quotas), each with ``--threads``
clients sending ``--requests`` requests one after another. Prints a table, then as its last line one
JSON object with ``throughput_ratio`` (Atelier / plain) and ``p99_ms`` (Atelier's) among the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from platform_stack import WEB_WORKERS, start_stack  # noqa: E402

PROJECT = "bench-api"
BODY = {"plugin": "reverse_text", "input": {"text": "a short product blurb to reverse"}, "params": {}}


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value that ``q`` % of the values do not exceed (``round`` rounds halves
    to even, so ``round(x + 0.5)`` took the next value up whenever ``q`` % of them was an odd count)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def load(url: str, headers: dict, body: dict, threads: int, per_thread: int) -> dict:
    """``threads`` clients, each sending ``per_thread`` requests back to back; latencies in seconds."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def client() -> None:
        session = requests.Session()
        session.headers.update(headers)
        mine, bad = [], []
        start.wait()
        for _ in range(per_thread):
            began = time.perf_counter()
            response = session.post(url, json=body, timeout=60)
            mine.append(time.perf_counter() - began)
            if response.status_code != 201:
                bad.append(f"{response.status_code} {response.text[:200]}")
        with lock:
            latencies.extend(mine)
            errors.extend(bad)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} requests to {url} failed, e.g. {errors[0]}")
    return {"requests": len(latencies), "seconds": elapsed, "latencies": latencies}


def summary(runs: list[dict]) -> dict:
    latencies = [value for run in runs for value in run["latencies"]]
    seconds = sum(run["seconds"] for run in runs)
    return {
        "requests": len(latencies),
        "throughput_rps": round(len(latencies) / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, default=100, help="requests per client thread per round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    models_root = Path(tempfile.mkdtemp(prefix="atelier-bench-api-models-"))  # empty: reverse_text needs no model
    try:
        stack = start_stack(models_root, DJANGO_SETTINGS_MODULE="api_plain", PYTHONPATH=f"{REPO}:{REPO / 'bench'}")
        try:
            stack.stop_worker()
            key = stack.manage("create_api_key", "--project", PROJECT, "--create-project").stdout.strip()
            atelier = (f"{stack.url}/api/v1/jobs/", {"Authorization": f"Bearer {key}"}, BODY)
            plain = (f"{stack.url}/bench/plain-jobs/", {}, {**BODY, "project": PROJECT})
            for url, headers, body in (plain, atelier):  # warm up: imports, connections, caches
                load(url, headers, body, threads=2, per_thread=10)
            runs: dict[str, list[dict]] = {"plain": [], "atelier": []}
            for _ in range(args.rounds):
                runs["plain"].append(load(*plain, threads=args.threads, per_thread=args.requests))
                runs["atelier"].append(load(*atelier, threads=args.threads, per_thread=args.requests))
        finally:
            stack.stop()
    finally:
        shutil.rmtree(models_root, ignore_errors=True)

    figures = {name: summary(found) for name, found in runs.items()}
    print(f"{args.threads} clients x {args.requests} requests x {args.rounds} rounds, backend {stack.backend}, "
          f"gunicorn {WEB_WORKERS} processes x 4 threads, worker stopped")
    print(f"{'':10} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, row in figures.items():
        print(f"{name:10} {row['requests']:>9} {row['throughput_rps']:>8} {row['p50_ms']:>8} {row['p95_ms']:>8} "
              f"{row['p99_ms']:>8} {row['max_ms']:>8}")
    result = {
        "throughput_ratio": round(figures["atelier"]["throughput_rps"] / figures["plain"]["throughput_rps"], 3),
        "p99_ms": figures["atelier"]["p99_ms"],
        "atelier": figures["atelier"], "plain": figures["plain"],
        "threads": args.threads, "requests_per_thread": args.requests, "rounds": args.rounds, "backend": stack.backend,
        "web_processes": WEB_WORKERS,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
