"""Worker reports in, worker states and queue counts out."""

from __future__ import annotations

import os
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


#: What only operators (Django staff or superusers) see of a worker. Workers serve every project: where a worker
#: runs (host, process id, its own name, which is host:pid unless ATELIER_WORKER_NAME says otherwise), its memory, its
#: job counters and its last batch's rate are the whole fleet's, and its ``detail`` or another loaded model may
#: name another tenant's model. A project's owner sees, in their place, what concerns their jobs (see
#: ``project_worker_summary``).
OPERATOR_ONLY_FIELDS = ("hostname", "pid", "detail", "memory", "jobs_succeeded", "jobs_failed", "batches",
                        "tokens_per_second", "images_per_second")


def is_operator(user) -> bool:
    """Whether a signed-in person runs the installation (Django staff or superuser): an API key never does."""
    return bool(getattr(user, "is_active", False) and (getattr(user, "is_staff", False)
                                                         or getattr(user, "is_superuser", False)))


def worker_label(name: str) -> str:
    """A stable name for a worker that says nothing of its host: the same worker keeps it from one report to the
    next (a page refreshing its rows), and no two workers are likely to share it."""
    from django.utils.crypto import salted_hmac

    return "worker-" + salted_hmac("atelier.fleet.worker_label", name).hexdigest()[:10]


def models_of_project(project) -> set[tuple[str, str | None]]:
    """``(plugin id, model directory relative to the models root)`` of every model the project's enabled plugins
    run with: the version it pinned, else the plugin's default directory (shared by every project without a pin)."""
    from atelier_platform.catalog.models import ProjectPlugin
    from atelier_platform.catalog.registry import get_registry

    models = set()
    for setting in ProjectPlugin.objects.filter(project=project, enabled=True).select_related("model_version"):
        plugin = get_registry().get(setting.plugin_id)
        pinned = setting.usable_model_version  # (a pin to another tenant's version, refused everywhere, reads as none)
        relative = (pinned.model_dir if pinned is not None
                    else plugin.manifest.default_model_dir if plugin is not None else None)
        models.add((setting.plugin_id, _normalised_dir(relative)))
    return models


def _normalised_dir(relative: str | None) -> str | None:
    return os.path.normpath(relative).strip("/") if relative else None


def project_worker_summary(worker: WorkerProcess, now: datetime, project_models: set[tuple[str, str | None]]) -> dict[str, Any]:
    """What a project's owner sees of one worker: whether it is up and how loaded (state, device, jobs now, last
    report), and which of the project's own models it keeps warm, under a label that does not name its host. The
    fields in ``OPERATOR_ONLY_FIELDS`` are None (``memory`` empty)."""
    summary = worker_summary(worker, now)
    summary.update({field: None for field in OPERATOR_ONLY_FIELDS}, memory={}, name=worker_label(worker.name))
    summary["loaded_models"] = [model for model in summary["loaded_models"]
                                if (model["plugin"], _normalised_dir(model["model_dir"])) in project_models]
    return summary


def worker_summaries(project, user, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every worker as ``user`` may see it while acting in ``project``: all of it for an operator, a project
    owner's share otherwise (``project_worker_summary``)."""
    now = now or timezone.now()
    workers = WorkerProcess.objects.order_by("name")
    if is_operator(user):
        return [worker_summary(worker, now) for worker in workers]
    project_models = models_of_project(project)
    return sorted((project_worker_summary(worker, now, project_models) for worker in workers), key=lambda w: w["name"])


def queue_counts(**job_filters: Any) -> dict[str, dict[str, int]]:
    """Jobs queued and running per queue (``gpu``, ``cpu``), of the jobs ``job_filters`` select (all without)."""

    counts = {(row["status"], row["resource_class"]): row["n"] for row in
              Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING], **job_filters)
              .values("status", "resource_class").annotate(n=Count("id"))}
    return {queue: {"queued": counts.get((JobStatus.QUEUED, queue), 0), "running": counts.get((JobStatus.RUNNING, queue), 0)}
            for queue in ("gpu", "cpu")}
