"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code", "details"}}``.

The official client reads ``error.message`` (and ``code``/``param``) and raises by status:
400 ``BadRequestError``, 401 ``AuthenticationError``, 403 ``PermissionDeniedError``, 404
``NotFoundError``, 409 ``ConflictError``, 422 ``UnprocessableEntityError``, 5xx ``InternalServerError``.
It retries 408, 409, 429 and 5xx unless told otherwise: a retry of a job request would submit
the job again, so answers that must not be retried carry ``x-should-retry: false``.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from rest_framework.response import Response

from atelier_platform.api.errors import exception_handler as atelier_exception_handler
from atelier_platform.jobs.errors import JobServiceError

logger = logging.getLogger("atelier.openai")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    411: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 details: dict[str, Any] | None = None, retry: bool | None = None, retry_after: int | None = None,
                 expected: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.details = details
        #: None: leave it to the client; False/True: send ``x-should-retry``
        self.retry = retry
        self.retry_after = retry_after
        #: A 5xx that is the answer the client asked for, not a fault of the server (a wait that ran out):
        #: logged at WARNING, so that alerts on the server's errors do not fire on it.
        self.expected = expected

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, code=self.code, param=self.param, details=self.details)

    def headers(self) -> dict[str, str]:
        headers = {} if self.retry is None else {"x-should-retry": "true" if self.retry else "false"}
        if self.retry_after:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    def response(self) -> Response:
        return Response(self.body(), status=self.status, headers=self.headers())


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None,
               details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "type": error_type(status), "param": param, "code": code}
    if details:
        body["details"] = details
    return {"error": body}


# --- turning other errors into OpenAIError ------------------------------------------------------------
_UNION_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _loc_param(loc: tuple) -> str:
    """``("messages", 0, "content", "str")`` -> ``messages.0.content`` (pydantic names union members)."""
    parts = [str(p) for p in loc if not (isinstance(p, str) and (p.lower() in _UNION_TAGS or "[" in p or p.startswith("literal")))]
    return ".".join(parts)


def from_pydantic(exc: ValidationError) -> OpenAIError:
    details: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        param = _loc_param(error["loc"]) or "body"
        message = "Field required" if error["type"] == "missing" else error["msg"]
        if message not in details.setdefault(param, []):
            details[param].append(message)
    first = next(iter(details))
    summary = "; ".join(f"{param}: {' or '.join(messages)}" for param, messages in details.items())
    missing = any(e["type"] == "missing" for e in exc.errors())
    return OpenAIError(400, f"Invalid request: {summary}.", param=first,
                       code="missing_required_parameter" if missing else "invalid_value", details={"fields": details})


def translate_field(key: str, names: dict[str, str]) -> str:
    """A job-service field path (``params.max_new_tokens``, ``input.messages.0.content``) in the caller's terms.

    The longest known prefix wins: ``names`` may name a field (``input.messages``: ``messages``) and also
    single items of it (``input.messages.0``: ``instructions`` when the request's own items start later)."""
    parts = key.split(".")
    for length in range(len(parts), 1, -1):
        head = ".".join(parts[:length])
        if head in names:
            return ".".join([names[head], *parts[length:]])
    return ".".join(parts[1:]) or key


def from_job_service(exc: JobServiceError, names: dict[str, str]) -> OpenAIError:
    """Errors of ``submit_job`` (validation against the plugin, screening, idempotency, quotas) in OpenAI's shape.

    Nothing was submitted when these are raised, so the client may retry as it sees fit (a 409 or 429
    with Retry-After is meant to be retried). A 409 without one (the project's saved defaults no longer
    fit the plugin) stays a conflict until a person fixes it, yet the official client retries every
    409: it is told not to."""
    details = exc.details
    retry_after = getattr(exc, "retry_after", None)
    retry = False if exc.status_code == 409 and not retry_after else None
    if isinstance(details, dict) and details and all(isinstance(k, str) and "." in k for k in details):
        fields = {}
        for key, messages in details.items():
            messages = messages if isinstance(messages, list) else [messages]
            fields.setdefault(translate_field(key, names), []).extend(str(m).removeprefix("Value error, ") for m in messages)
        summary = "; ".join(f"{param}: {' '.join(map(str, messages))}" for param, messages in fields.items())
        # the messages mostly end with their own full stop ("...; got 100."): one, not two
        return OpenAIError(exc.status_code, f"Invalid request: {summary.rstrip('.')}.", code=exc.code, param=next(iter(fields)),
                           details={"fields": fields}, retry=retry, retry_after=retry_after)
    return OpenAIError(exc.status_code, exc.message, code=exc.code, details=details if isinstance(details, dict) else None,
                       retry=retry, retry_after=retry_after)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """DRF's handler for the /v1/ views: Atelier's handling, answered in OpenAI's error shape."""
    if isinstance(exc, OpenAIError):
        response = exc.response()
        if exc.expected:
            request = context.get("request")
            logger.warning("%s %s: %s %s", getattr(request, "method", "?"), getattr(request, "path", "?"),
                           exc.status, exc.message)
            response._has_been_logged = True  # django.request would log every 5xx at ERROR
        return response
    if isinstance(exc, ValidationError):
        return from_pydantic(exc).response()
    if isinstance(exc, JobServiceError):
        return from_job_service(exc, {}).response()
    response = atelier_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django logs it and answers 500 in the JSON envelope
    error = (response.data or {}).get("error", {}) if isinstance(response.data, dict) else {}
    details = error.get("details")
    # Field errors map each field to its messages; other details (a rate limit's window, a time limit)
    # name no field of the request, so they are no param.
    fields = isinstance(details, dict) and bool(details) and all(isinstance(v, list) for v in details.values())
    response.data = error_body(response.status_code, error.get("message") or "Request failed.", code=error.get("code"),
                               param=next(iter(details)) if fields else None,
                               details={"fields": details} if fields else details if isinstance(details, dict) else None)
    return response
