"""The Idempotency-Key header on the API's creating POSTs.

Jobs (``POST /jobs/``, ``/jobs/batch/``) handle the key in the submission service, where the job
rows carry it. Other creating endpoints wrap their handler with ``@idempotent``: the answer of the
first request is kept (``usage.IdempotencyRecord``) and replayed for the same key and body.
"""

from __future__ import annotations

from functools import wraps

from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from atelier_platform.usage import idempotency

IDEMPOTENCY_HEADER = "HTTP_IDEMPOTENCY_KEY"
REPLAYED_HEADER = "Idempotent-Replayed"


def idempotency_key(request) -> str | None:
    key = request.META.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not (1 <= len(key) <= 255) or not key.isascii() or not key.isprintable():
        raise ValidationError({"Idempotency-Key": ["Use 1-255 printable ASCII characters."]})
    return key


def idempotent(handler):
    """Replay the stored 2xx answer for a repeated key and body (errors are not kept: fix and resend)."""

    @wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        key = idempotency_key(request)
        if key is None:
            return handler(self, request, *args, **kwargs)
        fingerprint = idempotency.body_fingerprint(request.method, request.path, request.data)
        with idempotency.hold(request.access.project, request.path[:200], key, fingerprint) as held:
            if held.is_replay:
                return Response(held.replay, status=held.replay_status, headers={REPLAYED_HEADER: "true"})
            response = handler(self, request, *args, **kwargs)
            if 200 <= response.status_code < 300:
                held.complete(response.status_code, response.data)
            return response

    return wrapper
