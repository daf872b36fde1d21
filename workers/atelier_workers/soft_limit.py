"""Knowing that Celery's soft time limit fired in this process, even where a plugin swallowed it.

In the prefork pool the soft limit is ``SIGUSR1``, sent by the pool's parent, whose handler (installed by
billiard in each child, after ``worker_process_init``) raises ``SoftTimeLimitExceeded`` wherever the task
is. A plugin's own ``except Exception`` may catch it and hand back a retryable error. The runtime then
asks whether the time is up; comparing the clock with the task's start is not enough, because the
parent starts its timer on its own clock a few milliseconds before the child's task begins: a swallowed
limit could read as "still in time" and the job would be retried. The signal itself is the answer.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Callable

#: billiard's ``SIG_SOFT_TIMEOUT``; absent on platforms without it (there is no soft limit there either).
SOFT_LIMIT_SIGNAL = getattr(signal, "SIGUSR1", None)


class SoftLimitWatch:
    """Wraps the pool's soft-limit handler so that this process remembers the limit fired.

    ``arm`` is called as each task starts: it forgets an earlier task's limit and, the first time, puts
    itself in front of the handler billiard installed (which it keeps calling, so the exception is
    raised exactly as before). Outside a pool child (tests, the solo pool) there is no Python handler to
    wrap, and nothing is changed.
    """

    def __init__(self) -> None:
        self.fired = False
        self._delegate: Callable[[int, FrameType | None], object] | None = None

    def arm(self) -> None:
        self.fired = False
        if SOFT_LIMIT_SIGNAL is None or threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread; the pools that run tasks elsewhere have no soft limit
        current = signal.getsignal(SOFT_LIMIT_SIGNAL)
        if current == self._handle or not callable(current):
            return
        self._delegate = current
        signal.signal(SOFT_LIMIT_SIGNAL, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.fired = True
        if self._delegate is not None:
            self._delegate(signum, frame)
