"""A thread that writes this worker process's state to its ``fleet.WorkerProcess`` row.

State (starting, ready, busy, unhealthy, stopped), loaded models, device, memory and the
process's figures, every ``ATELIER_WORKER_REPORT_S``. The web shows a worker whose reports
stopped without a clean stop as ``lost``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.db import connection
from django.utils import timezone

from atelier_platform.config import get_config
from atelier_platform.fleet.models import WorkerState
from atelier_platform.fleet.services import report_worker
from atelier_platform.moderation.checks import unavailable_safety_check_warnings, unavailable_safety_checks
from atelier_workers.model_cache import memory_snapshot

logger = logging.getLogger("atelier.worker")


class WorkerReporter:
    def __init__(self, runner) -> None:
        self.runner = runner
        self.started_at = timezone.now()
        self.interval_s = get_config().worker_report_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-reporter", daemon=True)

    def start(self) -> "WorkerReporter":
        self._thread.start()
        return self

    def report(self, state: str | None = None) -> None:
        runner = self.runner
        cache = runner.cache
        not_running = unavailable_safety_checks()
        report_worker(
            runner.name,
            hostname=socket.gethostname()[:255],
            pid=os.getpid(),
            device=cache.device,
            state=state or runner.state,
            detail=(runner.detail or "; ".join(unavailable_safety_check_warnings(not_running)))[:2000],
            loaded_models=cache.describe(),
            memory=memory_snapshot(cache.device, cache.budget_bytes),
            stats={**runner.stats.snapshot(), "safety_checks_not_running": list(not_running)},
            current_jobs=runner.current_jobs,
            started_at=self.started_at,
        )

    def stop(self) -> None:
        """Say ``stopped`` once, so that a clean shutdown is not shown as a lost worker."""
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        try:
            self.report(WorkerState.STOPPED)
        except Exception:
            logger.exception("could not report this worker stopped")
        finally:
            connection.close()

    def _run(self) -> None:
        try:
            while True:
                try:
                    self.report()
                except Exception:
                    logger.exception("worker state report failed; will try again")
                if self._stop.wait(self.interval_s):
                    return
        finally:
            connection.close()
