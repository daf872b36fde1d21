"""Waiting for a job to finish inside a request (``Prefer: wait``, the OpenAI-compatible endpoints).

The job row is the truth; a notice says "it has finished", sent once the finishing transaction
has committed. With Redis (REDIS_URL) the notice is a message on the job's channel and a waiting
request wakes at once. A waiter subscribes *before* it reads the row, so a job that finishes
between the read and the wait still wakes it; it also rereads the row every
``SAFETY_RECHECK_S`` in case a notice was lost (Redis restarted, a publisher that failed).

Without Redis (the embedded set-up: one machine, one data directory) the notice is an empty file
named after the job under ``ATELIER_DATA_DIR/job-notices/``, and a doorbell: each waiter listens on
a named pipe of its own under ``job-notices/waiting/<job id>/``, made *before* it first reads the
row, and the finishing commit writes a byte to every pipe there, so the waiter wakes at once with
no polling. A waiter that could not make its pipe looks for the notice file every ``NOTICE_LOOK_S``
(a ``stat``) instead. Either way it also reads the row at growing intervals up to
``FILE_NOTICE_ROW_READ_MAX_S``. The sweeper removes notices (and pipes a waiter that died left
behind) older than ``NOTICE_KEEP_S``.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

from django.db import transaction

from atelier_platform.config import get_config
from atelier_platform.jobs.models import FINISHED_STATUSES, Job
from atelier_platform.redis_client import shared_redis

logger = logging.getLogger("atelier.jobs")

CHANNEL_PREFIX = "atelier:job-finished:"
#: How often a subscribed waiter rereads the row anyway.
SAFETY_RECHECK_S = 1.0
#: Row reads without Redis: first interval, growth, ceiling. Reading the row every 10 ms preempted the
#: model's threads on a small host (about +100 ms on a 450 ms job, bench/batching.py's idle latency):
#: the notice file, looked for every NOTICE_LOOK_S, is what wakes a waiter; the row is the safety net.
POLL_FIRST_S, POLL_GROWTH, FILE_NOTICE_ROW_READ_MAX_S = 0.005, 1.5, 0.25
NOTICE_LOOK_S = 0.004
#: How long notice files are kept (a waiter only needs one while the job it waits for finishes).
NOTICE_KEEP_S = 600


def channel_of(job_id) -> str:
    return f"{CHANNEL_PREFIX}{job_id}"


def notice_folder() -> Path:
    return get_config().data_dir.resolve() / "job-notices"


def _doorbells_of(job_id) -> Path:
    return notice_folder() / "waiting" / str(job_id)


class _Doorbell:
    """A named pipe one waiter listens on, woken by a byte the finishing commit writes (``_ring``).

    It holds the pipe open for writing too, so that the pipe never reads as hung up (which would
    look like a ring) while no notifier has it open."""

    def __init__(self, job_id) -> None:
        folder = _doorbells_of(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
        os.mkfifo(self.path, 0o600)
        self._fds: list[int] = []
        self._selector: selectors.BaseSelector | None = None
        try:
            self._fds.append(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
            self._fds.append(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self._selector = selectors.DefaultSelector()
            self._selector.register(self._fds[0], selectors.EVENT_READ)
        except BaseException:
            self.close()
            raise

    def rung_within(self, seconds: float) -> bool:
        return bool(self._selector.select(max(0.0, seconds)))

    def close(self) -> None:
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        try:
            os.unlink(self.path)
            self.path.parent.rmdir()  # the last waiter of the job takes the folder away
        except OSError:
            pass


def _open_doorbell(job_id) -> _Doorbell | None:
    try:
        return _Doorbell(job_id)
    except (OSError, AttributeError):  # no named pipes here (os.mkfifo missing), a full disk...: look for the file
        logger.warning("waiting for job %s by looking for its notice file: no doorbell", job_id, exc_info=True)
        return None


def _ring(job_id) -> None:
    """Wake every waiter listening for ``job_id``. A pipe whose waiter is gone refuses to open (ENXIO)."""
    try:
        doorbells = list(os.scandir(_doorbells_of(job_id)))
    except FileNotFoundError:
        return  # nobody waits
    for doorbell in doorbells:
        try:
            fd = os.open(doorbell.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, b"!")
        except OSError:  # a full pipe has been rung already
            pass
        finally:
            os.close(fd)


def announce_finished(job_id) -> None:
    """After the current transaction commits, wake whoever waits for this job: a message on its Redis
    channel, or without Redis its notice file and a ring of each waiter's doorbell."""
    redis_url = get_config().redis_url

    def publish() -> None:
        try:
            if redis_url:
                shared_redis(redis_url).publish(channel_of(job_id), "finished")
            else:
                folder = notice_folder()
                folder.mkdir(parents=True, exist_ok=True)
                os.close(os.open(folder / str(job_id), os.O_CREAT | os.O_WRONLY, 0o600))
                _ring(job_id)
        except Exception:  # a lost notice only delays a waiter until its next reread of the row
            logger.warning("could not announce that job %s finished", job_id, exc_info=True)

    transaction.on_commit(publish)


def forget_old_notices(now: float | None = None) -> int:
    """Remove notice files, and pipes of waiters that died, older than NOTICE_KEEP_S (the sweeper calls
    this); returns how many notice files."""
    cutoff = (time.time() if now is None else now) - NOTICE_KEEP_S
    removed = 0
    for entry in _entries(notice_folder()):
        if entry.name == "waiting" and entry.is_dir(follow_symlinks=False):
            for job_folder in _entries(entry.path):
                for pipe in _entries(job_folder.path):
                    _remove_if_older(pipe.path, cutoff)
                try:
                    os.rmdir(job_folder.path)
                except OSError:  # a waiter still listens
                    pass
        elif _remove_if_older(entry.path, cutoff):
            removed += 1
    return removed


def _entries(folder) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_if_older(path: str, cutoff: float) -> bool:
    try:
        if os.stat(path).st_mtime < cutoff:
            os.unlink(path)
            return True
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        pass
    return False


def _status(job_id) -> str | None:
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


def _is_done(status: str | None) -> bool:
    return status is None or status in FINISHED_STATUSES


def _notice_within(subscription, seconds: float) -> bool:
    """True when the job's notice arrives within ``seconds``. The subscription's own confirmation
    also ends a ``get_message`` (as None): keep listening until the time is up."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        if subscription.get_message(timeout=left) is not None:
            return True
    return False


def _notice_file_within(path: Path, seconds: float) -> bool:
    """True when the job's notice file appears within ``seconds``."""
    until = time.monotonic() + seconds
    while True:
        if path.exists():
            return True
        left = until - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(NOTICE_LOOK_S, left))


def watch(job_id, timeout_s: float) -> Iterator[bool]:
    """Yields False after each read of a running job's row (at least once a second with Redis, at
    growing intervals of 5-250 ms without), then True once it has finished (or no longer exists, or
    its finish notice came) and stops; stops after ``timeout_s`` without yielding True."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    client = shared_redis(get_config().redis_url)
    subscription = doorbell = None
    if client is None:
        doorbell = _open_doorbell(job_id)  # before the first read of the row: no ring can fall between
    else:
        try:
            subscription = client.pubsub(ignore_subscribe_messages=True)
            subscription.subscribe(channel_of(job_id))
        except Exception:
            logger.warning("waiting for job %s by reading its row: Redis subscribe failed", job_id, exc_info=True)
            subscription = None
    try:
        delay = POLL_FIRST_S
        while True:
            if _is_done(_status(job_id)):
                yield True
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            yield False
            if subscription is not None:
                try:
                    if _notice_within(subscription, min(SAFETY_RECHECK_S, remaining)):
                        # Published once the finishing transaction committed: the row says so already.
                        yield True
                        return
                    continue
                except Exception:
                    logger.warning("waiting for job %s by reading its row: Redis went away", job_id, exc_info=True)
                    subscription = None
            window = min(delay, max(0.0, deadline - time.monotonic()))
            if doorbell is not None:
                if doorbell.rung_within(window):
                    yield True  # rung once the finishing transaction committed: the row says so already
                    return
            elif _notice_file_within(notice_folder() / str(job_id), window):
                yield True
                return
            delay = min(delay * POLL_GROWTH, FILE_NOTICE_ROW_READ_MAX_S)
    finally:
        if doorbell is not None:
            doorbell.close()
        if subscription is not None:
            try:
                subscription.close()
            except Exception:
                pass


def wait_until_finished(job_id, timeout_s: float) -> bool:
    """True once the job has finished, False if ``timeout_s`` ran out first."""
    looks = watch(job_id, timeout_s)
    try:
        return any(looks)
    finally:
        looks.close()
