"""The JSON error envelope: ``{"error": {"code": ..., "message": ..., "details": ...}}``.

Every error under /api/ takes this shape: DRF exceptions, the job services' errors, Django's 404
and 500, and bodies refused before a view runs (too large, no length). Under /v1/ (the
OpenAI-compatible routes) the same errors take OpenAI's shape instead (``openai_compat.errors``),
which the official client reads.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from atelier_platform.jobs.errors import JobServiceError

logger = logging.getLogger("atelier.api")

OPENAI_PREFIX = "/v1/"
API_PREFIXES = ("/api/", OPENAI_PREFIX)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status)


def is_api_path(path: str) -> bool:
    return path.startswith(API_PREFIXES)


def early_error(request, status: int, code: str, message: str, details: Any = None) -> JsonResponse:
    """An error answered outside the views (middleware, Django's 400/404/500 handlers), in the shape
    of the route's API. A 5xx under /v1/ tells the OpenAI client not to retry: a retry of a chat
    request would submit its job again."""
    if request.path.startswith(OPENAI_PREFIX):
        from atelier_platform.openai_compat.errors import OpenAIError  # it builds on this module

        error = OpenAIError(status, message, code=code, details=details, retry=False if status >= 500 else None)
        return JsonResponse(error.body(), status=status, headers=error.headers())
    return error_response(status, code, message, details)


_DRF_CODES: dict[type, tuple[str, str | None]] = {
    exceptions.ParseError: ("malformed_json", None),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", None),
    exceptions.NotAuthenticated: ("not_authenticated", None),
    exceptions.NotFound: ("not_found", None),
    exceptions.MethodNotAllowed: ("method_not_allowed", None),
    exceptions.NotAcceptable: ("not_acceptable", None),
    exceptions.Throttled: ("rate_limited", None),
    exceptions.PermissionDenied: ("permission_denied", None),
}


def _codes_word(exc: exceptions.APIException, fallback: str) -> str:
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else fallback


#: PostgreSQL's query_canceled: a statement stopped by ``statement_timeout`` (settings.py), or by an operator.
QUERY_CANCELED = "57014"


def _cancelled_by_the_database(exc: Exception) -> bool:
    cause = exc.__cause__
    return isinstance(exc, DatabaseError) and getattr(cause, "sqlstate", None) == QUERY_CANCELED


def _database_timeout(context: dict) -> Response:
    """A query the database stopped is the server's failure, not the caller's, and not a crash to hide behind
    "an unexpected error": it says what happened. Under /v1/ it tells the OpenAI client not to resend on its
    own, as early_error does: a chat request whose job was saved before the query was stopped would be
    submitted again."""
    limit_s = settings.ATELIER.database_statement_timeout_s or None  # 0: a limit set elsewhere (the database's own)
    message = ("The database stopped a query of this request before it finished: it ran past the statement time limit"
               f"{f' of {limit_s:g} s' if limit_s else ''}. Try again; if it keeps happening, ask for less (a narrower "
               "filter, a smaller page).")
    request = context.get("request")
    headers = {"x-should-retry": "false"} if request is not None and request.path.startswith(OPENAI_PREFIX) else None
    body = error_body("database_timeout", message, {"statement_timeout_s": limit_s})
    return Response(body, status=503, headers=headers)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if _cancelled_by_the_database(exc):
        set_rollback()
        request = context.get("request")
        logger.warning("%s %s: the database stopped a query: %s", getattr(request, "method", "?"),
                       getattr(request, "path", "?"), exc)
        return _database_timeout(context)
    if isinstance(exc, JobServiceError):
        set_rollback()
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after else None
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code, headers=headers)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    if isinstance(exc, exceptions.ValidationError):
        set_rollback()
        return Response(
            error_body("validation_error", "The request has invalid or missing fields.", exc.detail),
            status=exc.status_code,
        )
    if isinstance(exc, exceptions.APIException):
        set_rollback()
        code = next((word for cls, (word, _) in _DRF_CODES.items() if isinstance(exc, cls)), None)
        if isinstance(exc, exceptions.AuthenticationFailed):
            code = _codes_word(exc, "authentication_failed")
        if isinstance(exc, exceptions.ParseError):
            message = f"The body is not valid JSON: {exc.detail}"
        else:
            message = str(exc.detail)
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(max(1, math.ceil(exc.wait)))
        details = getattr(exc, "details", None)
        return Response(error_body(code or _codes_word(exc, "error"), message, details), status=exc.status_code, headers=headers)
    return None  # unexpected: Django answers 500 through handler500, in the envelope


def _own_body_limit(request) -> int:
    """The larger body an endpoint takes of its own (``@action(max_body_bytes=...)``: a file upload, whose own limit
    is above the JSON bodies' ATELIER_MAX_REQUEST_BYTES); 0 for the others."""
    from django.urls import Resolver404, resolve

    try:
        view = resolve(request.path_info).func
    except Resolver404:
        return 0
    return int((getattr(view, "initkwargs", None) or {}).get("max_body_bytes") or 0)


class ApiRequestGuardMiddleware:
    """Refuse API bodies that are too large (413) or of unknown length (411) before reading them;
    add the caller's rate-limit state to API answers (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if is_api_path(request.path) and request.method in ("POST", "PUT", "PATCH", "DELETE"):
            if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
                return early_error(request, 411, "length_required", "Send the body with a Content-Length header, not chunked.")
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return early_error(request, 400, "bad_content_length", "The Content-Length header is not a number.")
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if length > limit:  # only then the URL is resolved for a limit of its own: not on every job's path
                limit = max(limit, _own_body_limit(request))
            if length > limit:
                return early_error(
                    request, 413, "payload_too_large", f"The body is {length} bytes; the limit is {limit} bytes.",
                    {"limit_bytes": limit},
                )
        response = self.get_response(request)
        rate = getattr(request, "atelier_rate", None)  # set by the rate throttle (api/throttling.py)
        if rate is not None:
            response["X-RateLimit-Limit"] = str(rate.limit)
            response["X-RateLimit-Remaining"] = str(rate.remaining)
            response["X-RateLimit-Reset"] = str(rate.reset_s)
        return response


def json_not_found(request, exception=None):
    if is_api_path(request.path):
        return early_error(request, 404, "not_found", f"No API resource at {request.path}.")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def json_server_error(request):
    if is_api_path(request.path):
        return early_error(request, 500, "internal_error", "An unexpected error occurred; it has been logged.")
    from django.views.defaults import server_error

    return server_error(request)


def json_bad_request(request, exception=None):
    if is_api_path(request.path):
        return early_error(request, 400, "bad_request", "The request could not be understood.")
    from django.views.defaults import bad_request

    return bad_request(request, exception)
