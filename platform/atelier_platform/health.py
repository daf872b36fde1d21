"""Liveness and readiness probes for load balancers and orchestrators."""

from __future__ import annotations

import logging
import os

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from atelier_platform.celery_app import app
from atelier_platform.config import get_config

logger = logging.getLogger("atelier.health")


@never_cache
@require_GET
def healthz(request):
    """The process answers: nothing else is checked."""
    return JsonResponse({"status": "ok"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("readiness: database unreachable: %s", exc)
        return f"database unreachable: {type(exc).__name__}"
    return None


def _check_broker() -> str | None:
    config = get_config()
    if config.uses_embedded_broker:
        # the file-system transport "connects" to anything; what matters is that its folder is writable
        folder = config.broker_folder / "messages"
        return None if os.access(folder, os.W_OK) else f"broker folder {folder} is not writable"
    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        logger.warning("readiness: broker unreachable: %s", exc)
        return f"broker unreachable: {type(exc).__name__}"
    return None


@never_cache
@require_GET
def readyz(request):
    from atelier_platform.moderation.checks import unavailable_safety_check_warnings

    checks = {"database": _check_database(), "broker": _check_broker()}
    ready = all(problem is None for problem in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": {k: v or "ok" for k, v in checks.items()}}
    # A safety check that is not running does not make the process unready (it serves, screening with the
    # others), but an operator must see it.
    warnings = unavailable_safety_check_warnings()
    if warnings:
        body["warnings"] = warnings
    return JsonResponse(body, status=200 if ready else 503)
