"""The task that runs jobs. Thin: all the work is in ``runtime`` and the job lifecycle services."""

from __future__ import annotations

import threading

from atelier_platform.catalog.registry import get_registry
from atelier_platform.celery_app import QUEUE_CPU, RUN_JOB_TASK
from atelier_platform.config import get_config
from atelier_platform.tasking import atelier_task
from atelier_workers.runtime import JobRunner, ModelCache, resolve_device

_runner: JobRunner | None = None
_runner_lock = threading.Lock()


def get_runner() -> JobRunner:
    """One runner per worker process: its model cache keeps models warm between jobs."""
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = JobRunner(get_registry(), ModelCache(resolve_device(get_config().device)))
        return _runner


# The queue is chosen per message when it is published (gpu or cpu, by the plugin's resource
# class); QUEUE_CPU is only the default for a message sent without one.
@atelier_task(RUN_JOB_TASK, queue=QUEUE_CPU)
def run_job(task, job_id: str) -> str:
    return get_runner().run(job_id)
