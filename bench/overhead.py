"""What the platform adds to a job: the time from HTTP submit to the result visible through the API,
minus the model's own time, against a bare Celery task round trip on the same broker, same run.

    .venv/bin/python bench/overhead.py [--runs 20]

Both paths run on one machine, one at a time, at idle: Atelier's web, worker and beat (embedded
broker and SQLite, or PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set), and a
bare Celery worker with a no-op task and a result backend on the same broker. The job is the
chatbot plugin on the small benchmark model (8 new tokens); the model's own time is the
``generate_seconds`` the worker records in each output's provenance. Prints a table, then as
its last line one JSON object with ``overhead_ratio`` (median overhead / median round trip).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from batching import build_bench_model  # noqa: E402
from platform_stack import ApiClient, start_stack  # noqa: E402


def bare_celery_round_trips(stack, runs: int) -> list[float]:
    env = {**stack.env, "PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_ping", "worker", "--pool", "solo", "-Q", "bench_ping",
         "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        env=env, cwd=REPO / "bench", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        code = (
            "import json, time\n"
            "from celery_ping import ping\n"
            "ping.delay().get(timeout=60, interval=0.005)  # worker up, connections warm\n"
            "times = []\n"
            f"for _ in range({runs}):\n"
            "    started = time.perf_counter()\n"
            "    ping.delay().get(timeout=60, interval=0.005)\n"
            "    times.append(time.perf_counter() - started)\n"
            "    time.sleep(0.2)\n"
            "print(json.dumps(times))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO / "bench", capture_output=True,
                                text=True, timeout=300, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def platform_overheads(client: ApiClient, runs: int) -> tuple[list[float], list[float]]:
    data = {"messages": [{"role": "user", "content": "Where is my parcel?"}], "use_knowledge": False}
    params = {"max_new_tokens": 8, "seed": 0}
    client.wait(client.submit("chatbot", data, params), timeout=600)  # model loaded, connections warm
    totals, model = [], []
    for _ in range(runs):
        started = time.perf_counter()
        job = client.wait(client.submit("chatbot", data, params))
        totals.append(time.perf_counter() - started)
        model.append(job["outputs"][0]["provenance"]["generate_seconds"])
        time.sleep(0.2)
    return totals, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    models_root = Path(tempfile.mkdtemp(prefix="atelier-bench-models-"))
    build_bench_model(models_root / "demo" / "chat-lm")
    stack = start_stack(models_root, ATELIER_DEVICE="cpu")
    try:
        totals, model = platform_overheads(ApiClient(stack), args.runs)
        pings = bare_celery_round_trips(stack, args.runs)
    finally:
        stack.stop()
        shutil.rmtree(models_root, ignore_errors=True)
    overheads = [total - own for total, own in zip(totals, model)]
    ms = lambda values: round(statistics.median(values) * 1000, 1)  # noqa: E731
    figures = {
        "backend": stack.backend, "runs": args.runs,
        "submit_to_result_ms": ms(totals), "model_ms": ms(model), "overhead_ms": ms(overheads),
        "overhead_p90_ms": round(sorted(overheads)[int(len(overheads) * 0.9) - 1] * 1000, 1),
        "bare_celery_round_trip_ms": ms(pings),
        "overhead_ratio": round(statistics.median(overheads) / statistics.median(pings), 2),
    }
    print(f"one chatbot job at idle, {stack.backend} broker and database, medians of {args.runs} runs")
    print(f"{'HTTP submit -> result visible':40}{figures['submit_to_result_ms']:>10} ms")
    print(f"{'  of which the model (generate)':40}{figures['model_ms']:>10} ms")
    print(f"{'  platform overhead':40}{figures['overhead_ms']:>10} ms   (p90 {figures['overhead_p90_ms']} ms)")
    print(f"{'bare Celery task round trip (baseline)':40}{figures['bare_celery_round_trip_ms']:>10} ms")
    print(f"overhead ratio x{figures['overhead_ratio']} (needs <= 3)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
