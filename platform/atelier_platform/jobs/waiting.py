"""Waiting for a job to finish inside a request (``Prefer: wait``, the OpenAI-compatible endpoints).

The job row is the truth; a notice says "it has finished", sent once the finishing transaction
has committed. With Redis (REDIS_URL) the notice is a message on the job's channel. Each process
listens on one connection for every job's notice (a pattern subscription, ``_FinishListener``) and
wakes the requests waiting for that job: no connection and no subscription per waiting request. A
waiter registers *before* it reads the row, so a job that finishes between the read and the wait
still wakes it; it also rereads the row every ``SAFETY_RECHECK_S`` in case a notice was lost (Redis
restarted, a publisher that failed), and at growing intervals while the listener is not subscribed.

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
from typing import Callable, Iterator

from django.db import transaction

from atelier_platform.config import get_config
from atelier_platform.jobs.models import FINISHED_STATUSES, Job
from atelier_platform.prepared_reads import PreparedRead
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


#: How long the listener waits for a message before it checks its connection with a PING when silent.
LISTEN_POLL_S, LISTENER_PING_AFTER_S = 1.0, 10.0


def channel_of(job_id) -> str:
    return f"{CHANNEL_PREFIX}{job_id}"


#: The listener's connection goes by this name, with its process id, in Redis's ``CLIENT LIST``.
LISTENER_CLIENT_NAME = "atelier-finish-listener"


def listener_client_name() -> str:
    return f"{LISTENER_CLIENT_NAME}-{os.getpid()}"


def _named_for_listening(client):
    """A client of its own for the listener, to ``client``'s server, whose connection says whose it is in
    ``CLIENT LIST``: an operator sees each process's listener, and a test finds this one among others."""
    import redis

    pool = client.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **{**pool.connection_kwargs, "client_name": listener_client_name()}))


class _FinishListener:
    """This process's one Redis connection for finish notices: subscribed to every job's channel, it
    wakes the waiters registered for a job when its notice comes, and subscribes again (with backoff)
    whenever the connection is lost."""

    def __init__(self, client) -> None:
        self._client = _named_for_listening(client)
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-finish-listener", daemon=True)
        self._thread.start()

    def register(self, job_id) -> threading.Event | None:
        """An event set when ``job_id``'s notice comes; None while not subscribed (read the row instead)."""
        if not self._subscribed.is_set():
            return None
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(str(job_id), set()).add(event)
        return event

    def unregister(self, job_id, event: threading.Event) -> None:
        with self._lock:
            events = self._waiters.get(str(job_id))
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[str(job_id)]

    def wait_until_subscribed(self, timeout_s: float) -> bool:
        return self._subscribed.wait(timeout_s)

    def _wake(self, channel) -> None:
        job_id = (channel.decode() if isinstance(channel, bytes) else channel)[len(CHANNEL_PREFIX):]
        with self._lock:
            events = list(self._waiters.get(job_id, ()))
        for event in events:
            event.set()

    def _run(self) -> None:
        backoff = 0.1
        while True:
            subscription = None
            try:
                subscription = self._client.pubsub()
                subscription.psubscribe(f"{CHANNEL_PREFIX}*")
                silent_since = time.monotonic()
                while True:
                    message = subscription.get_message(timeout=LISTEN_POLL_S)
                    if message is None:
                        if time.monotonic() - silent_since > LISTENER_PING_AFTER_S:
                            subscription.ping()  # a dead connection raises here, and is made again
                            silent_since = time.monotonic()
                        continue
                    silent_since = time.monotonic()
                    if message["type"] == "psubscribe":
                        self._subscribed.set()
                        backoff = 0.1
                    elif message["type"] == "pmessage":
                        self._wake(message["channel"])
            except Exception:
                if self._subscribed.is_set():
                    logger.warning("finish notices: Redis connection lost; waiters reread rows until it is back",
                                   exc_info=True)
                self._subscribed.clear()
            finally:
                if subscription is not None:
                    try:
                        subscription.close()
                    except Exception:
                        pass
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


_listeners: dict[int, tuple[int, _FinishListener]] = {}
_listeners_lock = threading.Lock()


#: How long the first waiter of a process waits for the listener to subscribe (a few ms when Redis is up).
FIRST_SUBSCRIBE_WAIT_S = 1.0


def finish_listener(client) -> _FinishListener:
    """The listener of this process for ``client``: started on first use (again in a forked child), and
    given a moment to subscribe then."""
    with _listeners_lock:
        known = _listeners.get(id(client))
        if known is not None and known[0] == os.getpid():
            return known[1]
        listener = _FinishListener(client)
        _listeners[id(client)] = (os.getpid(), listener)
    listener.wait_until_subscribed(FIRST_SUBSCRIBE_WAIT_S)
    return listener


def start_listening() -> None:
    """Subscribe for finish notices now (a web process as it starts), so that no request waits for it;
    without Redis, nothing to do."""
    client = shared_redis(get_config().redis_url)
    if client is not None:
        finish_listener(client)


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
        self.path = folder / f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
        for attempt in range(3):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                os.mkfifo(self.path, 0o600)
                break
            except FileNotFoundError:
                # The job's last other waiter (or the sweeper) took the empty folder away meanwhile.
                if attempt == 2:
                    raise
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
    """Remove notice files older than NOTICE_KEEP_S, and pipes as old whose waiter died (the sweeper calls
    this); returns how many notice files. A waiter may wait longer than that (an OpenAI-compatible request,
    up to an hour): its pipe, which it still listens on, stays."""
    cutoff = (time.time() if now is None else now) - NOTICE_KEEP_S
    removed = 0
    for entry in _entries(notice_folder()):
        if entry.name == "waiting" and entry.is_dir(follow_symlinks=False):
            for job_folder in _entries(entry.path):
                for pipe in _entries(job_folder.path):
                    _remove_if_older(pipe.path, cutoff, unless=_listened_on)
                try:
                    os.rmdir(job_folder.path)
                except OSError:  # a waiter still listens
                    pass
        elif _remove_if_older(entry.path, cutoff):
            removed += 1
    return removed


def _listened_on(pipe: str) -> bool:
    """Whether a waiter still listens on ``pipe``: opening it to write fails (ENXIO) when no one reads."""
    try:
        fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return False
    os.close(fd)
    return True


def _entries(folder) -> list[os.DirEntry]:
    try:
        return list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_if_older(path: str, cutoff: float, unless: Callable[[str], bool] = lambda path: False) -> bool:
    try:
        if os.stat(path).st_mtime < cutoff and not unless(path):
            os.unlink(path)
            return True
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        pass
    return False


#: A job's status alone, read before every wait and on each reread while waiting: its SQL built once per
#: connection (``PreparedRead``); the row is read on every call.
_status_read = PreparedRead(lambda pk: Job.objects.filter(pk=pk).only("status").order_by(), pk=Job._meta.pk)


def _status(job_id) -> str | None:
    """The job's status now; None when it no longer exists."""
    found = _status_read.first(pk=job_id)
    return None if found is None else found.status


def _is_done(status: str | None) -> bool:
    return status is None or status in FINISHED_STATUSES


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
    listener = notice = doorbell = None
    if client is None:
        doorbell = _open_doorbell(job_id)  # before the first read of the row: no ring can fall between
    else:
        listener = finish_listener(client)
        notice = listener.register(job_id)  # before the first read of the row, likewise
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
            if notice is not None:
                if notice.wait(min(SAFETY_RECHECK_S, remaining)):
                    # Published once the finishing transaction committed: the row says so already.
                    yield True
                    return
                continue
            window = min(delay, max(0.0, deadline - time.monotonic()))
            if listener is not None:
                time.sleep(window)  # not subscribed: the row is read at growing intervals
                notice = listener.register(job_id)
            elif doorbell is not None:
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
        if notice is not None:
            listener.unregister(job_id, notice)


def wait_until_finished(job_id, timeout_s: float) -> bool:
    """True once the job has finished, False if ``timeout_s`` ran out first."""
    looks = watch(job_id, timeout_s)
    try:
        return any(looks)
    finally:
        looks.close()
