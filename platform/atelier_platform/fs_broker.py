"""A file-system message transport for the embedded mode (``atelierfs://``): no broker server.

kombu's own file-system transport opens the message file under its final name and then
writes it, so a worker that lists the folder in between reads a half-written file and dies
with ``Unrecoverable error: JSONDecodeError``, losing the message. This transport writes each
message to a temporary file in a sibling folder and renames it into place: ``os.replace`` on
one file system is atomic, so a reader sees either no file or the whole message.

File names start with the message priority digit (0 first, the Redis convention that Atelier
uses on every broker), then a wall-clock timestamp in nanoseconds, so that a sorted listing is
priority order, then arrival order.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


class QoS(virtual.QoS):
    def ack(self, delivery_tag):
        super().ack(delivery_tag)
        # A worker that holds as many messages as its prefetch allows takes no more until it acks one;
        # wake its poll now rather than at the end of the polling interval.
        self.channel.connection.wake()


class Channel(filesystem.Channel):
    QoS = QoS

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
        # Claim a message by renaming it into the processed folder: on one file system the
        # rename succeeds for exactly one of several competing workers (kombu's own version
        # may copy across file systems into /tmp, where two workers can both win).
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if not name.endswith(suffix) or name.partition(".")[2] != suffix[1:]:
                continue
            claimed = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another worker took it first
            try:
                with open(claimed, "rb") as handle:
                    payload = handle.read()
            finally:
                if not self.store_processed:
                    os.unlink(claimed)
            return loads(bytes_to_str(payload))
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
                if polling_interval is not None:
                    self._woken.wait(polling_interval)


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
