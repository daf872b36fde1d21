"""A file-system message transport for the embedded mode (``atelierfs://``): no broker server.

kombu's own file-system transport opens the message file under its final name and then
writes it, so a worker that lists the folder in between reads a half-written file and dies
with ``Unrecoverable error: JSONDecodeError``, losing the message. This transport writes each
message to a temporary file in a sibling folder and renames it into place: ``os.replace`` on
one file system is atomic, so a reader sees either no file or the whole message.

File names start with the message priority digit (0 first, the Redis convention that Atelier
uses on every broker), then a wall-clock timestamp in nanoseconds, so that a sorted listing is
priority order, then arrival order.

A message a consumer takes is renamed into ``processed/`` under a name that says which process
holds it (pid, start time, host) and stays there until that process acks it (Celery acks a job's
message when its task ends). A consumer that dies first, killed or out of memory, leaves it there:
``requeue_orphaned`` (at every process's first connection, and in the sweeper) puts the messages of
processes that no longer run back into ``messages/``, as Redis redelivers unacked messages. A
message rejected with requeue, or restored by kombu (a consumer closing with messages it took but
did not start), goes back at once. Either way the file moves back whole, under its own name: it
keeps its place in the queue.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from queue import Empty

import psutil

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger("atelier.broker")

#: Between the holder's name and the message's own in a held file's name; neither contains it.
HELD_SEPARATOR = "~"


def _started(pid: int) -> str | None:
    """When process ``pid`` started, None when there is none: in clock ticks since boot on Linux (field 22
    of /proc/<pid>/stat), which a step of the wall clock (NTP, a resumed VM) does not move, where psutil's
    start time, boot time plus ticks, would: a live holder would then look ended, and its messages would
    be delivered twice."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            line = stat.read()
        return line[line.rindex(b")") + 2:].split()[19].decode()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # Linux: no such process
    except (OSError, ValueError, IndexError):
        pass
    try:  # no /proc (macOS...): psutil, in whole seconds
        return str(int(psutil.Process(pid).create_time()))
    except psutil.Error:
        return None


def _holder_of(pid: int) -> str | None:
    """A process as it names the messages it holds: pid, start (a pid can be reused), host."""
    started = _started(pid)
    return None if started is None else f"{pid}.{started}@{socket.gethostname()}"


_this_process: tuple[int, str] | None = None


def this_holder() -> str:
    global _this_process
    pid = os.getpid()
    if _this_process is None or _this_process[0] != pid:  # computed again in a forked child
        _this_process = (pid, _holder_of(pid) or f"{pid}.0@{socket.gethostname()}")
    return _this_process[1]


def _holder_is_gone(holder: str) -> bool:
    """Whether the process that took a message has ended. Only for processes of this host: another host's
    are left alone (one data folder per machine is the embedded set-up; one shared would need its own check)."""
    process, _, host = holder.partition("@")
    pid, _, _ = process.partition(".")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _holder_of(int(pid)) != holder


def requeue_orphaned(processed_folder: str | os.PathLike, messages_folder: str | os.PathLike) -> int:
    """Put the messages held by processes that no longer run back where consumers take them; how many."""
    requeued = 0
    try:
        names = os.listdir(processed_folder)
    except FileNotFoundError:
        return 0
    for name in names:
        holder, separator, original = name.partition(HELD_SEPARATOR)
        if not separator or not original or not _holder_is_gone(holder):
            continue
        try:
            os.replace(os.path.join(processed_folder, name), os.path.join(messages_folder, original))
        except FileNotFoundError:
            continue  # another process put it back first
        requeued += 1
        logger.warning("message %s was taken by process %s, which ended before acking it: delivered again",
                       original, holder)
    return requeued


class QoS(virtual.QoS):
    """Removes the held file of a message once it is acked or rejected, and wakes the poll."""

    def ack(self, delivery_tag):
        super().ack(delivery_tag)
        self.channel.release(delivery_tag)
        self._wake()

    def reject(self, delivery_tag, requeue=False):
        super().reject(delivery_tag, requeue=requeue)
        if not requeue:  # with requeue the held file has moved back, and may be held again under this tag
            self.channel.release(delivery_tag)
        self._wake()

    def _wake(self):
        # A worker that holds as many messages as its prefetch allows takes no more until it acks one;
        # wake its poll now rather than at the end of the polling interval. None once the channel closed.
        connection = self.channel.connection
        if connection is not None:
            connection.wake()


class Channel(filesystem.Channel):
    QoS = QoS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._held: dict[str, str] = {}  # delivery tag -> the file of a message taken and not yet acked
        # Queues consumed without acks (Celery's remote control and its replies): nothing will ack their
        # messages, so they are not held; held, they came back after a restart (a `shutdown` again).
        self._unacked_queues: set[str] = set()

    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        if no_ack:
            self._unacked_queues.add(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):
        if not no_ack:
            return super().basic_get(queue, no_ack=False, **kwargs)
        try:
            return self.Message(self._take(queue, hold=False), channel=self)
        except Empty:
            return None

    def release(self, delivery_tag) -> None:
        """The message is acked or rejected: its held file goes."""
        path = self._held.pop(delivery_tag, None)
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def _restore(self, message):
        """Deliver a message taken and not acked again: its held file moves back, keeping its place."""
        held = self._held.pop(message.delivery_tag, None)
        if held is None:
            return super()._restore(message)
        original = os.path.basename(held).partition(HELD_SEPARATOR)[2]
        os.replace(held, os.path.join(self.data_folder_in, original))

    def _put(self, queue, payload, **kwargs):
        priority = self._get_message_priority(payload, reverse=False)
        name = f"{priority}_{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        staging = Path(self.data_folder_out).parent / "staging"
        temporary = staging / name
        try:
            staging.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, os.path.join(self.data_folder_out, name))
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to {self.data_folder_out!r}: {exc}") from exc

    def _get(self, queue):
        return self._take(queue, hold=queue not in self._unacked_queues)

    def _take(self, queue, *, hold: bool):
        # Claim a message by renaming it into the processed folder, under this process's name: on one
        # file system the rename succeeds for exactly one of several competing workers (kombu's own
        # version may copy across file systems into /tmp, where two workers can both win).
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if not name.endswith(suffix) or name.partition(".")[2] != suffix[1:]:
                continue
            held = os.path.join(self.processed_folder, f"{this_holder()}{HELD_SEPARATOR}{name}")
            try:
                os.rename(os.path.join(self.data_folder_in, name), held)
            except FileNotFoundError:
                if not os.path.isdir(self.processed_folder):
                    raise ChannelError(f"The embedded broker's folder {self.processed_folder!r} is missing.") from None
                continue  # another worker took it first
            except OSError as exc:
                raise ChannelError(f"Cannot take message {name!r}: {exc}") from exc
            with open(held, "rb") as handle:
                message = loads(bytes_to_str(handle.read()))
            tag = message.get("properties", {}).get("delivery_tag")
            if not hold or tag is None:  # no ack will come, or none will name it
                os.unlink(held)
            else:
                self._held[tag] = held
            return message
        raise Empty()


class Transport(filesystem.Transport):
    """kombu's polling loop, woken early by an ack of this process.

    A worker (prefetch 1, late acks) holds one message while its task runs and takes the next only
    after the ack; polling, it took it up to a polling interval later. That gap was paid for every
    message in turn, among them the messages of the jobs a batch already ran as company, which are
    only dropped: about 20 ms each, 0.2-0.3 s between two batches of 32 concurrent clients'
    jobs (bench/gpu/probe.py)."""

    Channel = Channel
    # Latency of the embedded broker is its polling interval; Celery settings may lower it.
    polling_interval = 0.05
    driver_type = "filesystem"
    driver_name = "atelierfs"

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        self._woken = threading.Event()
        _requeue_orphaned_once(client.transport_options)

    def wake(self) -> None:
        self._woken.set()

    def drain_events(self, connection, timeout=None):
        # kombu's virtual Transport.drain_events, with the sleep between polls cut short by wake().
        started = time.monotonic()
        polling_interval = self.polling_interval
        if timeout and polling_interval and polling_interval > timeout:
            polling_interval = timeout
        while True:
            self._woken.clear()
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise socket.timeout()
                if _worker_asked_to_stop():
                    # A worker's loop over this transport (Celery's synloop, which asks for 2 s at a time) sees its
                    # SIGTERM only between two calls: each stop, Ctrl-C of `make run` included, waited out the rest.
                    raise socket.timeout()
                if polling_interval is not None:
                    self._woken.wait(polling_interval)


def _worker_asked_to_stop() -> bool:
    """A Celery worker in this process received its warm or cold shutdown signal (``celery.worker.state``)."""
    from celery.worker import state

    # as ``state.maybe_shutdown`` reads them: by identity, since a warm shutdown's flag is its exit code, 0
    return any(flag is not None and flag is not False for flag in (state.should_stop, state.should_terminate))


_looked_in_process: int | None = None  # the pid that has looked (a forked child looks again)


def _requeue_orphaned_once(options: dict) -> None:
    """At a process's first connection: a worker started again delivers what its predecessor held."""
    global _looked_in_process
    if _looked_in_process == os.getpid() or "processed_folder" not in options:
        return
    _looked_in_process = os.getpid()
    try:
        requeue_orphaned(options["processed_folder"], options["data_folder_in"])
    except OSError:
        logger.warning("could not look for messages of ended processes", exc_info=True)


def requeue_orphaned_in(folder: Path) -> int:
    """``requeue_orphaned`` for the embedded broker in ``folder`` (the sweeper's call)."""
    options = transport_options(folder)
    return requeue_orphaned(options["processed_folder"], options["data_folder_in"])


#: Queues of the replies to one remote-control call (``celery inspect``, ``celery control``): only the
#: client that asked reads them, and one that stopped waiting (its timeout) never does.
REPLY_QUEUE_SUFFIX = ".reply.celery.pidbox"
#: A reply older than this has no reader left: remote-control calls wait seconds, not minutes.
UNREAD_REPLY_KEPT_S = 600


def forget_unread_replies_in(folder: Path, older_than_s: float = UNREAD_REPLY_KEPT_S) -> int:
    """Remove the replies no client read within ``older_than_s`` (the sweeper's call): on Redis they
    expire with their key; here they would pile up, one file per late answer. How many were removed."""
    messages = transport_options(folder)["data_folder_in"]
    suffix = f"{REPLY_QUEUE_SUFFIX}.msg"
    oldest_kept = time.time() - older_than_s
    forgotten = 0
    for entry in os.scandir(messages):
        if not entry.name.endswith(suffix):
            continue
        try:
            if entry.stat().st_mtime < oldest_kept:
                os.unlink(entry.path)
                forgotten += 1
        except FileNotFoundError:
            continue  # read meanwhile, or removed by another sweeper
    return forgotten


def register() -> None:
    """Make ``atelierfs://`` a broker URL kombu understands."""
    TRANSPORT_ALIASES.setdefault("atelierfs", f"{__name__}:Transport")


def transport_options(folder: Path) -> dict:
    """Folders of one embedded broker; every process of one installation must share them."""
    messages = folder / "messages"
    control = folder / "control"
    processed = folder / "processed"
    for path in (messages, control, processed, folder / "staging"):
        path.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(messages),
        "data_folder_out": str(messages),
        "control_folder": str(control),
        "processed_folder": str(processed),
        "store_processed": False,
    }
