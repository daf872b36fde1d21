"""A running Atelier (web, worker, beat in subprocesses) for the benchmarks, on a throw-away data dir.

It is the end-to-end tests' stack (``tests/e2e/stack.py``), so the benchmarks measure exactly the
processes the tests check. Embedded mode by default; PostgreSQL and Redis when DATABASE_URL and
REDIS_URL name them.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.stack import Stack, postgres_and_redis_from_env  # noqa: E402


#: Gunicorn processes of a bench stack's web server (each with the Stack's 4 threads), as the Procfile runs them.
WEB_WORKERS = 2


class BenchStack(Stack):
    """A stack on a data folder of its own making, removed with it (a test's stack lives in pytest's
    tmp_path instead, which pytest removes)."""

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_stack(models_root: Path, **env: str) -> Stack:
    backend = "postgres_redis" if postgres_and_redis_from_env() else "embedded"
    stack = BenchStack(backend, Path(tempfile.mkdtemp(prefix=f"atelier-bench-{backend}-")))
    # Benchmark timings: the defaults an operator runs with, not the tests' fast sweeps.
    # (The tests' worker state report every 0.5 s put a database transaction in the worker's process, beside
    # the job it ran, on about every other benchmark job; an operator's worker reports every 5 s.)
    for name in ("ATELIER_JOB_STALE_AFTER_S", "ATELIER_JOB_REQUEUE_AFTER_S", "ATELIER_SWEEP_INTERVAL_S",
                 "ATELIER_WORKER_REPORT_S", "ATELIER_WORKER_LOST_AFTER_S"):
        stack.env.pop(name, None)
    stack.env.update({"ATELIER_MODELS_ROOT": str(models_root), "ATELIER_JOB_HEARTBEAT_S": "5", **env})
    # One worker process, as on a GPU host: batching, not process concurrency, fills the device. Two web
    # processes, as the Procfile runs them.
    return stack.start(worker_concurrency=1, web_workers=WEB_WORKERS)


class ApiClient:
    def __init__(self, stack: Stack, project: str = "bench") -> None:
        self.url = stack.url
        key = stack.manage("create_api_key", "--project", project, "--create-project").stdout.strip()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def submit(self, plugin: str, input: dict, params: dict | None = None) -> str:  # noqa: A002 (the API's name)
        response = self.session.post(f"{self.url}/api/v1/jobs/", json={"plugin": plugin, "input": input,
                                                                      "params": params or {}}, timeout=30)
        response.raise_for_status()
        return response.json()["id"]

    def submit_batch(self, jobs: list[dict]) -> list[str]:
        """Many jobs in one ``POST /jobs/batch/``: all are queued at once."""
        response = self.session.post(f"{self.url}/api/v1/jobs/batch/", json={"jobs": jobs}, timeout=60)
        response.raise_for_status()
        return [job["id"] for job in response.json()["jobs"]]

    def submit_and_wait(self, plugin: str, input: dict, params: dict | None = None, wait_s: int = 60) -> dict:  # noqa: A002
        """One request: submit with ``Prefer: wait`` and get the finished job in the answer."""
        response = self.session.post(f"{self.url}/api/v1/jobs/", json={"plugin": plugin, "input": input,
                                                                      "params": params or {}},
                                     headers={"Prefer": f"wait={wait_s}"}, timeout=wait_s + 30)
        response.raise_for_status()
        job = response.json()
        if job["status"] != "succeeded":
            raise RuntimeError(f"job {job['id']} {job['status']} after waiting {wait_s} s: {job.get('error')}")
        return job

    def job(self, job_id: str, wait_s: int | None = None) -> dict:
        """The job now, or with ``wait_s`` once it has finished (``Prefer: wait``; at most ``wait_s`` seconds)."""
        headers = {"Prefer": f"wait={wait_s}"} if wait_s else {}
        response = self.session.get(f"{self.url}/api/v1/jobs/{job_id}/", headers=headers, timeout=(wait_s or 0) + 30)
        response.raise_for_status()
        return response.json()

    def wait(self, job_id: str, poll_s: float = 0.005, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled", "blocked"):
                if job["status"] != "succeeded":
                    raise RuntimeError(f"job {job_id} {job['status']}: {job.get('error')}")
                return job
            time.sleep(poll_s)
        raise TimeoutError(f"job {job_id} not done after {timeout} s")
