"""Errors of the usage services, in the job services' shape (status, code, details) plus Retry-After."""

from __future__ import annotations

from atelier_platform.jobs.errors import JobServiceError


class RetryableError(JobServiceError):
    """An error after which the same request may succeed later; the API sends ``Retry-After``."""

    def __init__(self, message: str, *, retry_after: int, details=None, code: str | None = None) -> None:
        super().__init__(message, details=details, code=code)
        self.retry_after = max(1, int(retry_after))


class QuotaExceeded(RetryableError):
    status_code = 429
    code = "quota_exceeded"


class IdempotencyInFlight(RetryableError):
    status_code = 409
    code = "idempotency_in_flight"


class LimitExceeded(JobServiceError):
    """A job asks for more than this server allows (``ATELIER_MAX_*``, ``ATELIER_PLUGIN_LIMITS``)."""

    code = "limit_exceeded"
