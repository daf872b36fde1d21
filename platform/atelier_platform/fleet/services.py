"""Worker reports in, worker states and queue counts out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from atelier_platform.catalog.models_dir import relative_model_dir
from atelier_platform.config import get_config
from atelier_platform.fleet.models import LOST, WorkerProcess, WorkerState
from atelier_platform.jobs.models import Job, JobStatus

#: Rows of workers gone (stopped or lost) longer than this are deleted by the sweeper.
FORGET_AFTER = timedelta(days=1)


def report_worker(name: str, **fields: Any) -> None:
    """Create or update a worker's row; ``heartbeat_at`` is now."""
    WorkerProcess.objects.update_or_create(name=name[:255], defaults={**fields, "heartbeat_at": timezone.now()})


def shown_state(worker: WorkerProcess, now: datetime | None = None) -> str:
    """The state to show: what the worker said, or ``lost`` when its reports stopped without a clean stop."""
    now = now or timezone.now()
    if worker.state != WorkerState.STOPPED and worker.heartbeat_at < now - timedelta(seconds=get_config().worker_lost_after_s):
        return LOST
    return worker.state


def forget_old_workers(now: datetime | None = None) -> int:
    now = now or timezone.now()
    deleted, _ = WorkerProcess.objects.filter(heartbeat_at__lt=now - FORGET_AFTER).delete()
    return deleted


def worker_summary(worker: WorkerProcess, now: datetime) -> dict[str, Any]:
    """What ``GET /api/v1/workers/`` and the dashboard's workers page show of one worker."""
    stats = worker.stats or {}
    counters, gauges = stats.get("counters") or {}, stats.get("gauges") or {}
    return {
        "name": worker.name, "hostname": worker.hostname, "pid": worker.pid, "device": worker.device,
        "state": shown_state(worker, now), "detail": worker.detail, "current_jobs": worker.current_jobs,
        "loaded_models": [
            {**{k: m.get(k) for k in ("plugin", "plugin_version", "bytes", "load_seconds")},
             "model_dir": relative_model_dir(m.get("model_dir"))}
            for m in worker.loaded_models or []
        ],
        "memory": {k: int(v) for k, v in (worker.memory or {}).items() if isinstance(v, (int, float))},
        "jobs_succeeded": int(counters.get("jobs_succeeded", 0)), "jobs_failed": int(counters.get("jobs_failed", 0)),
        "batches": int(counters.get("batches", 0)),
        "tokens_per_second": float(gauges.get("tokens_per_second", 0.0)),
        "images_per_second": float(gauges.get("images_per_second", 0.0)),
        "started_at": worker.started_at, "last_heartbeat_at": worker.heartbeat_at,
        "seconds_since_heartbeat": round(max(0.0, (now - worker.heartbeat_at).total_seconds()), 1),
    }


def queue_counts(**job_filters: Any) -> dict[str, dict[str, int]]:
    """Jobs queued and running per queue (``gpu``, ``cpu``), of the jobs ``job_filters`` select (all without)."""

    counts = {(row["status"], row["resource_class"]): row["n"] for row in
              Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING], **job_filters)
              .values("status", "resource_class").annotate(n=Count("id"))}
    return {queue: {"queued": counts.get((JobStatus.QUEUED, queue), 0), "running": counts.get((JobStatus.RUNNING, queue), 0)}
            for queue in ("gpu", "cpu")}
