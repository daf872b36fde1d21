"""Requests per minute per caller: a sliding-window counter in the shared cache.

Two fixed one-minute windows per caller, the current and the previous; the estimate is
``previous * (share of the previous window still inside the last 60 s) + current``. This is
exact to within a few percent, needs two counters per caller whatever the rate (a log of
timestamps, as DRF's SimpleRateThrottle keeps, grows with the limit), and does not allow the
double burst of plain fixed windows at a window's edge.

The counters live in Django's default cache, which every web process shares (Redis with
``REDIS_URL``, else a locked file cache under ``ATELIER_DATA_DIR``). If the cache cannot be
reached the request is let through and a warning logged: a rate limiter must not take the API down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from django.core.cache import cache

logger = logging.getLogger("atelier.api")

WINDOW_S = 60


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    #: seconds until the current window ends (the estimate keeps falling after that)
    reset_s: int
    #: when refused: seconds after which a request will be allowed again
    retry_after_s: int = 0


def hit(identity: str, limit: int, *, now: float | None = None) -> RateDecision | None:
    """Count one request of ``identity``; None when the cache failed (the request goes through)."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    elapsed = now - window * WINDOW_S
    current_key, previous_key = f"ratelimit:{identity}:{window}", f"ratelimit:{identity}:{window - 1}"
    try:
        cache.add(current_key, 0, timeout=WINDOW_S * 2 + 5)
        try:
            current = cache.incr(current_key)
        except ValueError:  # expired between add and incr
            cache.set(current_key, 1, timeout=WINDOW_S * 2 + 5)
            current = 1
        previous = int(cache.get(previous_key) or 0)
        estimate = previous * (1 - elapsed / WINDOW_S) + current
        reset_s = max(1, math.ceil(WINDOW_S - elapsed))
        if estimate <= limit:
            return RateDecision(True, limit, max(0, math.floor(limit - estimate)), reset_s)
        cache.decr(current_key)  # a refused request does not count
    except Exception:  # noqa: BLE001 - Redis down, disk full: let it through rather than fail
        logger.warning("rate limit counter unavailable; request allowed", exc_info=True)
        return None
    current -= 1
    return RateDecision(False, limit, 0, reset_s, retry_after_s=_wait(previous, current, limit, elapsed))


def _wait(previous: int, current: int, limit: int, elapsed: float) -> int:
    """Seconds until ``previous * (1 - t/W) + current + 1 <= limit`` (t: time into the window)."""
    if current + 1 <= limit and previous > 0:
        t = WINDOW_S * (1 - (limit - current - 1) / previous)
        return max(1, math.ceil(t - elapsed))
    # This window alone is full: in the next one it becomes the previous window.
    into_next = WINDOW_S * (1 - (limit - 1) / current) if current > 0 and limit >= 1 else WINDOW_S
    return max(1, math.ceil(WINDOW_S - elapsed + max(0.0, into_next)))
