"""Errors of the job services, each with the HTTP status and code the API answers with."""

from __future__ import annotations

from typing import Any


class JobServiceError(Exception):
    status_code = 400
    code = "invalid_request"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code


class UnknownPlugin(JobServiceError):
    code = "unknown_plugin"


class PluginNotEnabled(JobServiceError):
    status_code = 403
    code = "plugin_not_enabled"


class InvalidJobInput(JobServiceError):
    code = "validation_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None, field_errors=()) -> None:
        super().__init__(message, details=details, code=code)
        #: pydantic's errors behind ``details`` (type, context, message; ``loc`` from the root: ``("input", "text")``),
        #: for a caller that words them in another language (the dashboard); the API answers ``details`` only.
        self.field_errors = list(field_errors)


class ProjectDefaultsInvalid(JobServiceError):
    """The project's saved default params for the plugin are refused by it: the project's state, not the request."""

    status_code = 409
    code = "project_defaults_invalid"


class IdempotencyConflict(JobServiceError):
    status_code = 422
    code = "idempotency_key_reused"


class JobAlreadyFinished(JobServiceError):
    status_code = 409
    code = "job_finished"


class InputBlocked(JobServiceError):
    status_code = 422
    code = "input_blocked"
