"""What the platform adds to a job: the time from HTTP submit to the result visible through the API,
minus the model's own time, against a bare Celery task round trip on the same broker, same run.

    .venv/bin/python bench/overhead.py [--runs 20]

Both paths run on one machine, one at a time, at idle: Atelier's web, worker and beat (embedded
broker and SQLite, or PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set), and a
bare Celery worker with a no-op task and a result backend on the same broker. The job is the
chatbot plugin on the small benchmark model (8 new tokens); the model's own time is the
``generate_seconds`` the worker records in each output's provenance. A client gets the result
two ways, both measured: one request with ``Prefer: wait`` (answered when the job finishes), and
submit then poll ``GET /jobs/{id}/`` every 5 ms. Prints a table, then as its last line one JSON
object with ``overhead_ratio`` (median overhead with ``Prefer: wait`` / median round trip) and
``overhead_ratio_polling``.
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


def platform_overheads(client: ApiClient, runs: int, *, polling: bool) -> tuple[list[float], list[float]]:
    """Submit-to-result times and the model's own times. ``polling``: submit, then poll GET /jobs/{id}/ every
    5 ms; else one request with ``Prefer: wait`` that answers with the finished job."""
    data = {"messages": [{"role": "user", "content": "Where is my parcel?"}], "use_knowledge": False}
    params = {"max_new_tokens": 8, "seed": 0}
    client.wait(client.submit("chatbot", data, params), timeout=600)  # model loaded, connections warm
    totals, model = [], []
    for _ in range(runs):
        started = time.perf_counter()
        if polling:
            job = client.wait(client.submit("chatbot", data, params))
        else:
            job = client.submit_and_wait("chatbot", data, params)
        totals.append(time.perf_counter() - started)
        model.append(job["outputs"][0]["provenance"]["generate_seconds"])
        time.sleep(0.2)
    return totals, model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    models_root = Path(tempfile.mkdtemp(prefix="atelier-bench-models-"))
    build_bench_model(models_root / "demo" / "chat-lm", "tiny")  # the model's own time is subtracted anyway
    stack = start_stack(models_root, ATELIER_DEVICE="cpu")
    try:
        client = ApiClient(stack)
        waited_totals, waited_model = platform_overheads(client, args.runs, polling=False)
        polled_totals, polled_model = platform_overheads(client, args.runs, polling=True)
        pings = bare_celery_round_trips(stack, args.runs)
    finally:
        stack.stop()
        shutil.rmtree(models_root, ignore_errors=True)
    ms = lambda values: round(statistics.median(values) * 1000, 1)  # noqa: E731
    p90 = lambda values: round(sorted(values)[int(len(values) * 0.9) - 1] * 1000, 1)  # noqa: E731
    waited = [total - own for total, own in zip(waited_totals, waited_model)]
    polled = [total - own for total, own in zip(polled_totals, polled_model)]
    ping = statistics.median(pings)
    figures = {
        "backend": stack.backend, "runs": args.runs,
        "submit_to_result_ms": ms(waited_totals), "model_ms": ms(waited_model), "overhead_ms": ms(waited),
        "overhead_p90_ms": p90(waited),
        "polling_submit_to_result_ms": ms(polled_totals), "polling_overhead_ms": ms(polled),
        "bare_celery_round_trip_ms": ms(pings),
        "overhead_ratio": round(statistics.median(waited) / ping, 2),
        "overhead_ratio_polling": round(statistics.median(polled) / ping, 2),
    }
    print(f"one chatbot job at idle, {stack.backend} broker and database, medians of {args.runs} runs")
    print(f"{'':44}{'Prefer: wait':>14}{'polling 5 ms':>14}")
    print(f"{'HTTP submit -> result visible (ms)':44}{figures['submit_to_result_ms']:>14}{figures['polling_submit_to_result_ms']:>14}")
    print(f"{'  of which the model, generate (ms)':44}{figures['model_ms']:>14}{ms(polled_model):>14}")
    print(f"{'  platform overhead (ms)':44}{figures['overhead_ms']:>14}{figures['polling_overhead_ms']:>14}")
    print(f"{'  p90 overhead (ms)':44}{figures['overhead_p90_ms']:>14}{p90(polled):>14}")
    print(f"{'bare Celery task round trip, baseline (ms)':44}{figures['bare_celery_round_trip_ms']:>14}")
    print(f"{'overhead / baseline':44}{'x' + str(figures['overhead_ratio']):>14}{'x' + str(figures['overhead_ratio_polling']):>14}"
          "   (needs <= 3)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
