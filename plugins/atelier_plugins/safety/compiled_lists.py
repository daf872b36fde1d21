"""The compiled blocklists and allow lists one process keeps, within a budget in bytes.

Compiling a list costs time with its size (a 50,000-term blocklist takes about 2.5 s, a 100-term one a few
milliseconds), so each process keeps the lists it compiled and drops the least recently used first. The
budget is in bytes, not a count of lists: a count either thrashes (more active projects than places: every
batch of some project compiles its list again) or, with a few huge lists, holds far more memory than meant.
With the budget, hundreds of projects' small lists stay compiled, and a handful of huge ones stay within it.

An entry's size is an estimate made once, when it is stored (``estimate_bytes``): what ``tracemalloc`` sees
the cache keep for it, the compiled form and the terms it keeps alive, within about a quarter on lists from
10 to 50,000 terms (closer the larger the list). A list larger than the whole budget is still compiled and
used, and kept alone: refusing it would leave the project unscreened. What was used in the last second is not
dropped either (``RECENT_S``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Hashable, TypeVar

logger = logging.getLogger("atelier.safety.compiled_lists")

#: Bytes of compiled lists one process keeps unless told otherwise (``set_budget_bytes``).
DEFAULT_BUDGET_BYTES = 256 * 2**20

#: A compiled regular expression (two forms of each pattern, beyond its term) and the fixed part of a compiled
#: list with its cache entry (tracemalloc, through the cache: 1.1 KB to 2.1 KB empty; 3.4 KB a regex term).
BYTES_PER_REGEX = 2800
BYTES_PER_LIST = 1536

Compiled = TypeVar("Compiled")


#: Seconds during which an entry just used is not dropped, even past the budget. One screening uses a project's
#: list as read and its compiled form together; where the two outgrow the budget together, storing one would drop
#: the other, and every text would read and compile the list again (2.5 s for 50,000 terms). The budget is
#: overshot for at most this long, by what was used within it.
RECENT_S = 1.0


@dataclass
class _Entry:
    value: object
    nbytes: int
    used_at: float


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    budget_bytes: int
    compiles: int
    evictions: int


class CompiledListCache:
    """A least-recently-used map from a list's key to its compiled form, bounded by the entries' total bytes.

    Thread safe: worker threads and web threads screen at once. Two threads missing the same key compile it
    twice and keep one; a lock held across a multi-second compile would stall every other project's screening.
    """

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES, *, recent_s: float = RECENT_S) -> None:
        self.recent_s = recent_s
        self._entries: "OrderedDict[Hashable, _Entry]" = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0
        self._budget_bytes = budget_bytes
        self.compiles = 0
        self.evictions = 0

    @property
    def budget_bytes(self) -> int:
        return self._budget_bytes

    def set_budget_bytes(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"a cache budget is a number of bytes, 0 or more; got {budget_bytes}")
        with self._lock:
            self._budget_bytes = budget_bytes
            self._evict(keep=None)

    def get(self, key: Hashable):
        """The compiled value stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            entry.used_at = time.monotonic()
            return entry.value

    def get_or_compile(self, key: Hashable, compile: Callable[[], Compiled], estimate: Callable[[Compiled], int]) -> Compiled:
        """The value under ``key``; on a miss, ``compile()`` it and ``put`` it with ``estimate(value)`` bytes."""
        found = self.get(key)
        if found is not None:
            return found
        value = compile()
        with self._lock:
            self.compiles += 1
            existing = self._entries.get(key)
            if existing is not None:  # another thread compiled it meanwhile: keep one
                self._entries.move_to_end(key)
                existing.used_at = time.monotonic()
                return existing.value
        self.put(key, value, estimate(value))
        return value

    def put(self, key: Hashable, value: object, nbytes: int) -> None:
        """Store ``value`` under ``key`` (replacing what was there) as the most recently used entry, counted as
        ``nbytes``; drop the least recently used entries until the rest fits the budget."""
        nbytes = max(int(nbytes), 0)
        with self._lock:
            replaced = self._entries.pop(key, None)
            if replaced is not None:
                self._bytes -= replaced.nbytes
            self._entries[key] = _Entry(value, nbytes, time.monotonic())
            self._bytes += nbytes
            self._evict(keep=key)

    def _evict(self, keep: Hashable | None) -> None:
        now = time.monotonic()
        while self._bytes > self._budget_bytes and self._entries:
            oldest = next(iter(self._entries))
            entry = self._entries[oldest]
            if oldest == keep or now - entry.used_at < self.recent_s:
                # the newest entry alone is over the budget (kept: it is in use), or what is left was used just
                # now (``recent_s``): later entries are more recent still
                break
            del self._entries[oldest]
            self._bytes -= entry.nbytes
            self.evictions += 1
            logger.debug("dropped a compiled list of about %d KiB (budget %d MiB)", entry.nbytes // 1024,
                         self._budget_bytes // 2**20)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._entries), self._bytes, self._budget_bytes, self.compiles, self.evictions)


#: The one cache of this process: blocklists and allow lists share its budget (keys say which is which).
compiled_lists = CompiledListCache()


def set_budget_bytes(budget_bytes: int) -> None:
    """Set this process's budget for compiled lists (the platform passes ``ATELIER_SAFETY_LIST_CACHE_BYTES``)."""
    compiled_lists.set_budget_bytes(budget_bytes)


def estimate_bytes(*, automaton_bytes: int, terms: int, term_chars: int, bytes_per_term: int, regexes: int = 0) -> int:
    """What a compiled list holds: its automaton's own count of its bytes (pyahocorasick's ``total_size``), its
    ``terms`` terms of ``term_chars`` characters in all, each with ``bytes_per_term`` of objects around its
    characters (the caller's measured figure), and its regular expressions."""
    return BYTES_PER_LIST + automaton_bytes + terms * bytes_per_term + term_chars + regexes * BYTES_PER_REGEX


__all__ = ["CacheStats", "CompiledListCache", "DEFAULT_BUDGET_BYTES", "compiled_lists", "estimate_bytes",
           "set_budget_bytes"]
