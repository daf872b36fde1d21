"""The task that runs jobs, and the worker process's start and stop. Thin: the work is in ``runtime``."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_process_init, worker_process_shutdown

from atelier_platform.catalog.registry import get_registry
from atelier_platform.celery_app import RUN_JOB_TASK
from atelier_platform.config import get_config
from atelier_platform.fleet.models import WorkerState
from atelier_platform.tasking import atelier_task
from atelier_workers.model_cache import ModelCache
from atelier_workers.reporting import WorkerReporter
from atelier_workers.runtime import JobRunner, resolve_device

logger = logging.getLogger("atelier.worker")

_runner: JobRunner | None = None
_reporter: WorkerReporter | None = None
_runner_lock = threading.Lock()


def get_runner() -> JobRunner:
    """One runner per worker process: its model cache keeps models warm between batches."""
    global _runner, _reporter
    with _runner_lock:
        if _runner is None:
            config = get_config()
            _runner = JobRunner(get_registry(), ModelCache(resolve_device(config.device), config.model_memory_budget_bytes))
            _reporter = WorkerReporter(_runner).start()
        return _runner


@worker_process_init.connect
def _start_worker_process(**_kwargs) -> None:
    """A pool process starts: report it, load the safety checks (every output is screened: not in the first
    job) and the models named in ATELIER_PRELOAD_PLUGINS."""
    from atelier_platform.moderation.checks import get_safety_checks

    runner = get_runner()
    names = [n.strip() for n in get_config().preload_plugins.split(",") if n.strip()]
    runner.state = WorkerState.STARTING
    failures = []
    try:
        get_safety_checks()
    except Exception as error:
        logger.exception("loading the safety checks failed")
        failures.append(f"safety checks: {type(error).__name__}: {error}")
    # Each model on its own: one that fails to load must not leave the others to the first job that needs them.
    for name in names:
        try:
            _preload(runner, name)
        except Exception as error:  # the worker still serves what it can; the state says what went wrong
            logger.exception("preloading %s failed", name)
            failures.append(f"{name}: {type(error).__name__}: {error}")
    if failures:
        runner.state, runner.detail = WorkerState.UNHEALTHY, f"preloading failed: {'; '.join(failures)}"
    else:
        runner.state = WorkerState.READY


def _preload(runner: JobRunner, name: str) -> None:
    plugin_class = get_registry().get(name)
    if plugin_class is None:
        logger.warning("ATELIER_PRELOAD_PLUGINS names %r, which is not installed", name)
        return
    default_dir = None
    if plugin_class.manifest.default_model_dir:
        from atelier_platform.catalog.models_dir import resolve_model_dir

        default_dir = resolve_model_dir(plugin_class.manifest.default_model_dir)
    runner.cache.get(plugin_class, default_dir)


@worker_process_shutdown.connect
def _stop_worker_process(**_kwargs) -> None:
    if _reporter is not None:
        _reporter.stop()


@atelier_task(RUN_JOB_TASK)
def run_job(task, job_id: str) -> str:
    return get_runner().run(job_id)
