"""A file-system cache whose counters are exact across processes: the embedded default's cache.

``make run`` serves the API from two gunicorn processes (four threads each), so a per-process
memory cache would give every process its own rate-limit counters. Django's file-based cache is
shared by every process of the machine, but its ``add`` and ``incr`` read and then write, so two
processes can both read 5 and both write 6. Here they run under an exclusive ``flock`` on one lock
file (held for the few microseconds of a read and a rename). Expired entries are swept at most
every few seconds instead of listing the folder on every write, and before any live entry is culled.
With ``REDIS_URL`` set the platform uses Redis instead, whose INCR is atomic by itself.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.files import locks

SWEEP_EVERY_S = 10.0


class LockingFileBasedCache(FileBasedCache):
    def __init__(self, dir, params):
        super().__init__(dir, params)
        self._lock_path = os.path.join(self._dir, "counters.lock")
        self._last_sweep = 0.0

    @contextmanager
    def _locked(self):
        self._createdir()
        with open(self._lock_path, "a+b") as handle:
            locks.lock(handle, locks.LOCK_EX)
            try:
                yield
            finally:
                locks.unlock(handle)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT, version=None):
        with self._locked():
            return super().add(key, value, timeout, version)

    def incr(self, key, delta=1, version=None):
        # (decr is incr with -delta in Django's base class, so it takes this lock too)
        with self._locked():
            return super().incr(key, delta, version)

    def _cull(self):
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = now
        for fname in self._list_cache_files():
            try:
                with open(fname, "rb") as handle:
                    self._is_expired(handle)  # deletes the file when it has expired
            except Exception:  # noqa: BLE001 - another process removed or is replacing it
                continue
        super()._cull()
