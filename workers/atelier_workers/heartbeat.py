"""One thread per running batch: proves the claims alive, notices cancels, writes progress.

Heartbeats cost two queries per interval whatever the batch size (every job of a batch shares
the claim token). Progress reported by the plugin is kept in memory and written at most every
``ATELIER_PROGRESS_FLUSH_S`` per job, from this thread, so that the plugin's compute loop never
waits for the database.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from django.db import connection

from atelier_platform.config import get_config
from atelier_platform.jobs import lifecycle

logger = logging.getLogger("atelier.worker")


class BatchHeartbeat:
    def __init__(self, token: uuid.UUID, job_ids: list[str]) -> None:
        config = get_config()
        self.token = token
        self.heartbeat_s = config.job_heartbeat_s
        self.flush_s = min(config.progress_flush_s, config.job_heartbeat_s)
        self.job_ids = set(job_ids)
        self.cancelled: set[str] = set()
        self.lost: set[str] = set()
        self.latest: dict[str, tuple[float, dict[str, Any]]] = {}  # job id -> last progress (kept after flushing)
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{token}", daemon=True)

    def __enter__(self) -> "BatchHeartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=self.heartbeat_s * 2 + 5)

    # -- called from the plugin's thread ---------------------------------------------------
    def progress(self, job_id: str, fraction: float, detail: dict[str, Any]) -> None:
        with self._lock:
            self.latest[job_id] = (fraction, detail)
            self._dirty.add(job_id)

    def is_cancelled(self, job_id: str) -> bool:
        return job_id in self.cancelled or job_id in self.lost

    def finished(self, job_id: str) -> None:
        """The job's result is stored: it no longer needs heartbeats (and is not lost when none come)."""
        with self._lock:
            self.job_ids.discard(job_id)
            self._dirty.discard(job_id)

    def detail_of(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.latest.get(job_id, (0.0, {}))[1])

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        next_beat = time.monotonic() + self.heartbeat_s
        try:
            while not self._stop.wait(self.flush_s):
                self._flush_progress()
                if time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + self.heartbeat_s
                    self._beat()
                else:
                    self._notice_cancels()
        finally:
            connection.close()

    def _flush_progress(self) -> None:
        with self._lock:
            pending = {job_id: self.latest[job_id] for job_id in self._dirty}
            self._dirty.clear()
        try:
            lifecycle.record_progress(self.token, pending)
        except Exception:
            logger.exception("progress of batch %s not written; will write the next one", self.token)

    def _notice_cancels(self) -> None:
        """Between heartbeats too, every ``flush_s``: a cancel asked for a running job stopped it only at the next
        heartbeat (up to ``ATELIER_JOB_HEARTBEAT_S``, 5 s) though the plugin asks at every step. One indexed read."""
        with self._lock:
            running = self.job_ids - self.cancelled
        if not running:
            return
        try:
            self.cancelled |= lifecycle.cancels_asked(running)
        except Exception:
            logger.exception("could not look for cancels of batch %s; the next heartbeat will", self.token)

    def _beat(self) -> None:
        with self._lock:
            running = set(self.job_ids)
        if not running:
            return
        try:
            ours, cancel = lifecycle.heartbeat_claims(self.token, running)
        except Exception:
            logger.exception("heartbeat for batch %s failed; will try again", self.token)
            return
        self.cancelled |= cancel
        # A job no longer ours was taken back (the sweeper thought us dead): stop working on it.
        self.lost |= running - ours
