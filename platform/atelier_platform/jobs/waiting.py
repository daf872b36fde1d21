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

A waiting request holds one of its web process's threads for the whole wait, so a request waits only
with a *wait slot* (``take_wait_slot``): at most ``ATELIER_MAX_WAITING_REQUESTS`` per process (and,
when set, ``ATELIER_MAX_WAITING_REQUESTS_PER_PROJECT`` per project), so that the process always keeps
threads for everything else (``/healthz``, submissions, reads, the dashboard). A request that finds no
slot free does not wait: ``Prefer: wait`` is answered at once, the /v1/ endpoints refuse.
"""

from __future__ import annotations

import logging
import os
import selectors
import shlex
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Iterator

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
    without Redis, nothing to do. Says, too, how many requests of the process may wait at once."""
    check_waiting_limit()
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
    announce_all_finished([job_id])


def announce_all_finished(job_ids: Iterable) -> None:
    """``announce_finished`` for many jobs finished in one transaction (a bulk cancel): one callback on commit and,
    with Redis, one round trip for all their messages (a pipeline) instead of one each."""
    job_ids = list(job_ids)
    if not job_ids:
        return
    redis_url = get_config().redis_url

    def publish() -> None:
        try:
            if redis_url:
                pipeline = shared_redis(redis_url).pipeline(transaction=False)
                for job_id in job_ids:
                    pipeline.publish(channel_of(job_id), "finished")
                pipeline.execute()
                return
        except Exception:  # a lost notice only delays a waiter until its next reread of the row
            logger.warning("could not announce that job %s finished%s", job_ids[0],
                           f" (nor {len(job_ids) - 1} more)" if len(job_ids) > 1 else "", exc_info=True)
            return
        for job_id in job_ids:
            try:
                folder = notice_folder()
                folder.mkdir(parents=True, exist_ok=True)
                os.close(os.open(folder / str(job_id), os.O_CREAT | os.O_WRONLY, 0o600))
                _ring(job_id)
            except Exception:  # as above: the waiter rereads the row
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


# --- wait slots: how many requests of this process may wait at once ------------------------------------
#: Seconds a refused /v1/ call is told to wait before it tries again (``Retry-After``): a wait slot frees as
#: soon as one of the jobs waited for finishes, often within a second or two, at worst after its wait.
WAIT_SLOT_RETRY_AFTER_S = 2
LIMIT_SETTING = "ATELIER_MAX_WAITING_REQUESTS"
PROJECT_SHARE_SETTING = "ATELIER_MAX_WAITING_REQUESTS_PER_PROJECT"


class NoWaitSlot(Exception):
    """No request of this process may start waiting now. ``project_share``: the project's own share is
    taken (other projects may still wait), else every slot of the process is."""

    def __init__(self, *, limit: int, project_share: bool) -> None:
        self.limit = limit
        self.project_share = project_share
        self.setting = PROJECT_SHARE_SETTING if project_share else LIMIT_SETTING
        super().__init__(f"{self.setting}={limit} requests of this web process wait already")


class WaitSlot:
    """One waiting request's hold on a slot, given back by ``release`` (more calls do nothing), or by
    leaving it as a context manager, however the wait ended."""

    def __init__(self, slots: "WaitSlots", owner) -> None:
        self._slots = slots
        self._owner = owner
        self._held = True

    def release(self) -> None:
        self._slots._give_back(self)

    def __enter__(self) -> "WaitSlot":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class WaitSlots:
    """The wait slots of this process: a count (and a count per owner) under a lock. Taking one never
    blocks; the limits are read from the configuration at each take."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_use = 0
        self._by_owner: dict[object, int] = {}
        #: refusals since the process started, by (kind, reason): the metrics' counter
        self.refused: dict[tuple[str, str], int] = {}

    def take(self, owner, kind: str) -> WaitSlot:
        """A slot for a request of ``owner`` (a project's id); ``kind`` names the caller in the metrics
        (``prefer_wait``, ``openai``). Raises ``NoWaitSlot`` when none may be had."""
        config = get_config()
        limit, share = config.max_waiting_requests, config.max_waiting_requests_per_project
        with self._lock:
            refusal = None
            if self._in_use >= limit:
                refusal = NoWaitSlot(limit=limit, project_share=False)
            elif share and self._by_owner.get(owner, 0) >= share:
                refusal = NoWaitSlot(limit=share, project_share=True)
            if refusal is not None:
                reason = "project_share" if refusal.project_share else "process_limit"
                self.refused[(kind, reason)] = self.refused.get((kind, reason), 0) + 1
                raise refusal
            self._in_use += 1
            self._by_owner[owner] = self._by_owner.get(owner, 0) + 1
            return WaitSlot(self, owner)

    def _give_back(self, slot: WaitSlot) -> None:
        with self._lock:
            if not slot._held:
                return
            slot._held = False
            self._in_use -= 1
            left = self._by_owner[slot._owner] - 1
            if left:
                self._by_owner[slot._owner] = left
            else:
                del self._by_owner[slot._owner]

    @property
    def in_use(self) -> int:
        return self._in_use


#: This process's slots (a forked gunicorn worker starts with none in use: the master never waits).
wait_slots = WaitSlots()


def take_wait_slot(owner, kind: str) -> WaitSlot:
    """A wait slot of this process for a request of ``owner`` (a project's id); ``NoWaitSlot`` when none
    is free. Give it back when the wait ends (``with slot:``), whatever ends it."""
    return wait_slots.take(owner, kind)


def held_while(slot: WaitSlot, chunks: Iterable) -> "_HeldWhileIterated":
    """``chunks`` (a streamed answer) holding ``slot`` until they end or the server closes them (the
    client went away): for a ``StreamingHttpResponse``, which calls ``close`` once it is done with them."""
    return _HeldWhileIterated(slot, chunks)


class _HeldWhileIterated:
    def __init__(self, slot: WaitSlot, chunks: Iterable) -> None:
        self._slot = slot
        self._chunks = chunks

    def __iter__(self):
        try:
            yield from self._chunks
        finally:
            self.close()

    def close(self) -> None:
        # A WSGI server closes what it was given even when it never iterated it (the client gone first):
        # the slot goes back then too, not only when the stream runs to its end.
        try:
            close = getattr(self._chunks, "close", None)
            if close is not None:
                close()
        finally:
            self._slot.release()

    # A response dropped unclosed (no WSGI server does that; a test might) gives its slot back all the same.
    __del__ = close


def _gunicorn_threads() -> int | None:
    """The ``--threads`` this process's command line gives gunicorn (``GUNICORN_CMD_ARGS`` too, which the
    command line overrides); None when this is no gunicorn or its command line does not say (a config file)."""
    if "gunicorn" not in os.path.basename(sys.argv[0]) and "gunicorn" not in sys.argv[0].split(os.sep):
        return None
    try:
        words = shlex.split(os.environ.get("GUNICORN_CMD_ARGS", "")) + sys.argv[1:]
    except ValueError:
        words = sys.argv[1:]
    threads = None
    for index, word in enumerate(words):  # the last one counts, as for gunicorn
        if word == "--threads" and index + 1 < len(words):
            value = words[index + 1]
        elif word.startswith("--threads="):
            value = word.partition("=")[2]
        else:
            continue
        if value.isascii() and value.isdigit():
            threads = int(value)
    return threads


def check_waiting_limit() -> None:
    """Say at a web process's start how many of its requests may wait at once, and warn when that leaves
    it no thread for anything else (its gunicorn ``--threads`` no more than the limit)."""
    limit = get_config().max_waiting_requests
    threads = _gunicorn_threads()
    if threads is not None and limit >= threads:
        logger.warning("%s=%d is not below this web process's %d threads (gunicorn --threads): requests that "
                       "wait for their jobs can take every thread, and /healthz and every other request then "
                       "wait for them. Set it below --threads.", LIMIT_SETTING, limit, threads)
    else:
        logger.info("at most %d requests of this web process wait for their jobs at once (%s)%s", limit, LIMIT_SETTING,
                    f", of its {threads} threads" if threads is not None else "")


def wait_slot_metrics():
    """This web process's wait slots for ``/metrics``: in use, the limit, refusals by kind and reason."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    process = f"web {socket.gethostname()}:{os.getpid()}"
    in_use = GaugeMetricFamily("atelier_waiting_requests", "Requests of this web process waiting for their job now.",
                               labels=["process"])
    in_use.add_metric([process], wait_slots.in_use)
    limit = GaugeMetricFamily("atelier_waiting_requests_limit",
                              f"Requests this web process lets wait at once ({LIMIT_SETTING}).", labels=["process"])
    limit.add_metric([process], get_config().max_waiting_requests)
    refused = CounterMetricFamily(
        "atelier_waiting_requests_refused",
        "Requests that found no wait slot: Prefer: wait answered at once (kind prefer_wait), /v1/ calls refused "
        "(kind openai); reason process_limit or project_share.", labels=["process", "kind", "reason"])
    with wait_slots._lock:
        counts = dict(wait_slots.refused)
    for (kind, reason), count in sorted(counts.items()):
        refused.add_metric([process, kind, reason], count)
    return [in_use, limit, refused]
