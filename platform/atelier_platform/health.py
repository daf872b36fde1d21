"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from atelier_platform.celery_app import app
from atelier_platform.config import get_config

logger = logging.getLogger("atelier.health")

#: Longest one readiness check may take. A probe that waits longer has given up already (Kubernetes waits
#: 1 s by default), and the web thread answering it serves nothing else meanwhile.
CHECK_TIMEOUT_S = 2.0

_database_check: Future | None = None
_database_check_lock = threading.Lock()


@never_cache
@require_GET
def healthz(request):
    """The process answers: nothing else is checked."""
    return JsonResponse({"status": "ok"})


def _select_one() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("readiness: database unreachable: %s", exc)
        return f"database unreachable: {type(exc).__name__}"
    finally:
        connection.close()  # this thread's own connection: it ends with the thread
    return None


def _start_database_check() -> Future:
    """The database is asked in a thread of its own: a server that takes the query and never answers (hung,
    or a connection the network dropped without a word) holds that thread, not the web thread, which answers
    after ``CHECK_TIMEOUT_S``. While a check hangs, later probes wait for it rather than start another one."""
    global _database_check
    with _database_check_lock:
        if _database_check is None or _database_check.done():
            check = _database_check = Future()

            def run() -> None:
                try:
                    check.set_result(_select_one())
                except BaseException as exc:  # noqa: BLE001 - the waiting probe reports it
                    check.set_result(f"database check failed: {type(exc).__name__}")

            threading.Thread(target=run, name="atelier-readyz-database", daemon=True).start()
        return _database_check


def _database_answer(check: Future) -> str | None:
    try:
        return check.result(timeout=CHECK_TIMEOUT_S)
    except FutureTimeout:
        logger.warning("readiness: the database did not answer within %g s", CHECK_TIMEOUT_S)
        return f"database not answering within {CHECK_TIMEOUT_S:g} s"


def _check_broker() -> str | None:
    config = get_config()
    if config.uses_embedded_broker:
        # the file-system transport "connects" to anything; what matters is that its folder is writable
        folder = config.broker_folder / "messages"
        return None if os.access(folder, os.W_OK) else f"broker folder {folder} is not writable"
    try:
        # One attempt, each socket operation bounded: a Redis that takes the connection and never answers
        # is "down" after CHECK_TIMEOUT_S (the app's own timeouts suit publishing, not a probe).
        timeouts = {"socket_connect_timeout": CHECK_TIMEOUT_S, "socket_timeout": CHECK_TIMEOUT_S}
        with app.connection_for_write(transport_options=timeouts, connect_timeout=CHECK_TIMEOUT_S) as broker:
            broker.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT_S)
    except Exception as exc:
        logger.warning("readiness: broker unreachable: %s", exc)
        return f"broker unreachable: {type(exc).__name__}"
    return None


@never_cache
@require_GET
def readyz(request):
    from atelier_platform.moderation.checks import unavailable_safety_check_warnings

    database = _start_database_check()  # asked while the broker is: the answer comes within CHECK_TIMEOUT_S
    broker = _check_broker()
    checks = {"database": _database_answer(database), "broker": broker}
    ready = all(problem is None for problem in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": {k: v or "ok" for k, v in checks.items()}}
    # A safety check that is not running does not make the process unready (it serves, screening with the
    # others), but an operator must see it.
    warnings = unavailable_safety_check_warnings()
    if warnings:
        body["warnings"] = warnings
    return JsonResponse(body, status=200 if ready else 503)
