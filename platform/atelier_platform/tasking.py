"""The one decorator every Atelier task is declared with.

It fixes the task's name, delivery guarantees, database connection handling and timing
log, so that no task forgets ``acks_late`` or logs its duration differently from the others.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable

from django.db import close_old_connections, connection

from atelier_platform.celery_app import app

logger = logging.getLogger("atelier.tasks")


def _recycle_connections() -> None:
    """As Django does around a request: drop a connection that is broken or in a failed state (or
    older than CONN_MAX_AGE, when set), keep a healthy one for the next task. Not inside a
    transaction (a task called from a test's atomic block keeps its connection)."""
    if not connection.in_atomic_block:
        close_old_connections()


def atelier_task(name: str, **options: Any) -> Callable:
    def decorate(function: Callable) -> Any:
        @app.task(
            name=name,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=True,
            ignore_result=True,
            **options,
        )
        @functools.wraps(function)
        def run(task, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            outcome = "error"
            _recycle_connections()
            try:
                result = function(task, *args, **kwargs)
                outcome = "ok"
                return result
            finally:
                _recycle_connections()
                logger.info(
                    "task %s id=%s outcome=%s seconds=%.3f",
                    name, task.request.id, outcome, time.perf_counter() - started,
                )

        return run

    return decorate
