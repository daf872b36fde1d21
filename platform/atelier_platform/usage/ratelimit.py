"""Requests per minute per caller: a sliding-window counter shared by every web process.

Two fixed one-minute windows per caller, the current and the previous; the estimate is
``previous * (share of the previous window still inside the last 60 s) + current``. This is
exact to within a few percent, needs two counters per caller whatever the rate (a log of
timestamps, as DRF's SimpleRateThrottle keeps, grows with the limit), and does not allow the
double burst of plain fixed windows at a window's edge.

The counts live in Redis with ``REDIS_URL``, else in small locked files under ``ATELIER_DATA_DIR``
(``usage.window_counts``); counting a request and reading the previous window is one step. If the
counts cannot be reached the request is let through and a warning logged: a rate limiter must not
take the API down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from atelier_platform.usage.window_counts import WINDOW_S, window_counts

logger = logging.getLogger("atelier.api")


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    #: seconds until the current window ends (the estimate keeps falling after that)
    reset_s: int
    #: when refused: seconds after which a request will be allowed again
    retry_after_s: int = 0


def _window(now: float | None) -> tuple[int, float]:
    """The current one-minute window, and the seconds into it."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    return window, now - window * WINDOW_S


def _decision(previous: int, before: int, limit: int, elapsed: float) -> RateDecision:
    """Whether one more event is allowed, ``before`` events having been counted in this window already."""
    estimate = previous * (1 - elapsed / WINDOW_S) + before + 1
    reset_s = max(1, math.ceil(WINDOW_S - elapsed))
    if estimate <= limit:
        return RateDecision(True, limit, max(0, math.floor(limit - estimate)), reset_s)
    return RateDecision(False, limit, 0, reset_s, retry_after_s=_wait(previous, before, limit, elapsed))


def hit(identity: str, limit: int, *, now: float | None = None) -> RateDecision | None:
    """Count one request of ``identity``; None when the counts could not be reached (the request goes through)."""
    window, elapsed = _window(now)
    try:
        counts = window_counts()
        current, previous = counts.add(identity, window)
        decision = _decision(previous, current - 1, limit, elapsed)
        if not decision.allowed:
            counts.add(identity, window, -1)  # a refused request does not count
    except Exception:  # noqa: BLE001 - Redis down, disk full: let it through rather than fail
        logger.warning("rate limit counter unavailable; request allowed", exc_info=True)
        return None
    return decision


def peek(identity: str, limit: int, *, now: float | None = None) -> RateDecision | None:
    """Whether one more event of ``identity`` would be allowed, without counting one (the sign-in limit
    counts failures after the fact, and refuses an attempt before it); None when the counts could not be reached."""
    window, elapsed = _window(now)
    try:
        current, previous = window_counts().add(identity, window, 0)
    except Exception:  # noqa: BLE001 - as in hit()
        logger.warning("rate limit counter unavailable; request allowed", exc_info=True)
        return None
    return _decision(previous, current, limit, elapsed)


def _wait(previous: int, current: int, limit: int, elapsed: float) -> int:
    """Seconds until ``previous * (1 - t/W) + current + 1 <= limit`` (t: time into the window)."""
    if current + 1 <= limit and previous > 0:
        t = WINDOW_S * (1 - (limit - current - 1) / previous)
        return max(1, math.ceil(t - elapsed))
    # This window alone is full: in the next one it becomes the previous window.
    into_next = WINDOW_S * (1 - (limit - 1) / current) if current > 0 and limit >= 1 else WINDOW_S
    return max(1, math.ceil(WINDOW_S - elapsed + max(0.0, into_next)))
