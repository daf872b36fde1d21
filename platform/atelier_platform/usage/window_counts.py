"""Request counts per caller in fixed one-minute windows, shared by every web process: what the rate
limiter (``usage.ratelimit``) reads and writes on each request, in one step.

``add(identity, window)`` counts one request in ``window`` and answers the counts of that window and
of the one before it.

- With ``REDIS_URL``: one key per caller and window, expiring after two windows; counting and
  reading the previous window is one round trip (a pipeline of INCRBY, EXPIRE and GET).
- Embedded: one small file per caller under ``ATELIER_DATA_DIR/ratelimit/`` holding
  ``window current previous``, rewritten in place under an exclusive ``flock``, so counts are exact
  across processes. One open, lock, read and write per request, where Django's file cache took a lock
  file, a pickle and a temporary file renamed into place for each of its three calls. A caller's file
  is reused for every window (so there is nothing to sweep; one file per API key or person).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.core.files import locks

from atelier_platform.config import get_config
from atelier_platform.redis_client import shared_redis

WINDOW_S = 60
#: A window's Redis key outlives the next window, which reads it as "previous".
REDIS_KEEP_S = WINDOW_S * 2 + 5
REDIS_PREFIX = "atelier:ratelimit:"
#: The embedded record is rewritten in place at this fixed width (no truncation, no partial record).
RECORD_BYTES = 64


class RedisWindowCounts:
    def __init__(self, client) -> None:
        self.client = client

    def add(self, identity: str, window: int, delta: int = 1) -> tuple[int, int]:
        pipe = self.client.pipeline(transaction=False)
        pipe.incrby(f"{REDIS_PREFIX}{identity}:{window}", delta)
        pipe.expire(f"{REDIS_PREFIX}{identity}:{window}", REDIS_KEEP_S)
        pipe.get(f"{REDIS_PREFIX}{identity}:{window - 1}")
        current, _, previous = pipe.execute()
        return int(current), int(previous or 0)


class FileWindowCounts:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, identity: str, window: int, delta: int = 1) -> tuple[int, int]:
        # Hashed: an identity may hold any character a username can; the name must be a plain file name.
        path = self.folder / hashlib.sha256(identity.encode()).hexdigest()[:40]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            locks.lock(fd, locks.LOCK_EX)  # released when the file is closed
            stored_window, current, previous = _parse(os.pread(fd, RECORD_BYTES, 0))
            if stored_window is not None and stored_window > window:
                window = stored_window  # another process's clock is ahead: count in its window, lose nothing
            elif stored_window != window:  # a new window: the stored one is its previous, or too old to count
                previous = current if stored_window == window - 1 else 0
                current = 0
            current = max(0, current + delta)
            os.pwrite(fd, f"{window} {current} {previous}".encode().ljust(RECORD_BYTES), 0)
            return current, previous
        finally:
            os.close(fd)


def _parse(record: bytes) -> tuple[int | None, int, int]:
    """(window, current, previous) of a stored record; an empty or unreadable one counts nothing."""
    try:
        window, current, previous = (int(part) for part in record.split())
    except ValueError:
        return None, 0, 0
    return window, current, previous


_file_stores: dict[Path, FileWindowCounts] = {}


def window_counts() -> RedisWindowCounts | FileWindowCounts:
    """The counts every web process of this installation shares."""
    config = get_config()
    client = shared_redis(config.redis_url)
    if client is not None:
        return RedisWindowCounts(client)
    folder = config.data_dir.resolve() / "ratelimit"
    store = _file_stores.get(folder)
    if store is None:
        store = _file_stores.setdefault(folder, FileWindowCounts(folder))
    return store
