"""Worker reports in, worker states out."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from atelier_platform.config import get_config
from atelier_platform.fleet.models import LOST, WorkerProcess, WorkerState

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
