"""OpenAPI: the API-key scheme (drf-spectacular finds it by import in apps.ready), and the error
envelope and headers the views' ``extend_schema`` share."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "atelier_platform.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project API key: `Authorization: Bearer atl_<prefix>_<secret>`. The key implies its project. "
                           "A key may have an expiry (expires_at), after which it is refused with 401 expired_api_key.",
        }


# --- pieces the views' extend_schema share ------------------------------------------------------------

class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="machine-readable, e.g. validation_error, not_found, rate_limited, quota_exceeded")
    message = serializers.CharField(help_text="what went wrong and what to do, for people")
    details = serializers.JSONField(allow_null=True, help_text="field errors ({\"input.prompt\": [...]}) or facts (limit, used, resets_at)")


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


ERROR_DESCRIPTIONS = {
    400: "Invalid request: validation_error (details name each field, e.g. input.prompt or jobs.3.input.prompt, "
         "or the query parameter, e.g. a cursor that this list did not give), limit_exceeded (a cap of this server), "
         "malformed_json, field_not_editable (a review edit changed fields the plugin records about the run; details "
         "name each, e.g. content.usage.prompt_tokens).",
    401: "No credentials (not_authenticated), an unknown or revoked API key (invalid_api_key), or one past its "
         "expiry (expired_api_key; details.expired_at says when).",
    403: "The API key lacks the scope, or the member's role does not allow it (permission_denied); or the caller "
         "would give or take a role whose capabilities it does not all hold (role_not_grantable: members, "
         "invitations).",
    404: "No such object in the caller's project (another project's ids are not found either).",
    409: "Conflict with the object's state, or idempotency_in_flight: the first request with this Idempotency-Key "
         "is still running (retry after Retry-After).",
    410: "Gone: export_expired (an export's file was kept until its expires_at), export_withdrawn (an erasure took "
         "back an export that held content erased since). Ask for a new export.",
    413: "The body is larger than ATELIER_MAX_REQUEST_BYTES.",
    422: "idempotency_key_reused (the key came with another body), or input_blocked by the safety policy.",
    429: "rate_limited (requests per minute per key) or quota_exceeded (details: quota, limit, used, resets_at); "
         "see the Retry-After header.",
    503: "dns_lookup_timeout: the webhook URL's host got no answer from the resolver in time; nothing was saved "
         "(retry after Retry-After).",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error envelope for each status; 401 and 429 go with every authenticated endpoint."""
    wanted = sorted({401, 429, *statuses})
    return {status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status]) for status in wanted}


IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
    description="1-255 printable ASCII characters. Retrying with the same key and body returns the first answer "
                "(header Idempotent-Replayed: true); another body with the key: 422; while the first request "
                "runs: 409 idempotency_in_flight with Retry-After. Keys are per project and per endpoint.",
)

PREFER_WAIT_PARAMETER = OpenApiParameter(
    "Prefer", OpenApiTypes.STR, OpenApiParameter.HEADER,
    description="wait=N (1-60 seconds; bare wait means 60): answer once the job has finished, or after N seconds "
                "with the job as it is then (header Preference-Applied: wait=N). Saves polling.",
)


_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ERROR_COMPONENTS = {
    "Error": {"type": "object", "properties": {"error": {"$ref": "#/components/schemas/ErrorBody"}}, "required": ["error"]},
    "ErrorBody": {
        "type": "object",
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {"nullable": True}},
        "required": ["code", "message", "details"],
    },
}


def add_error_responses(result, generator, request, public):
    """Postprocessing hook: every ``/api/v1/`` operation documents the errors any of them can answer.

    Views list their specific errors with ``error_responses``; this fills in the ones that follow
    from the operation's shape, for endpoints that do not (webhooks, workers): 401, 403, 406 and 429
    always, 404 with a path parameter, 400 with query parameters (a forged ``cursor`` among them) or a
    body, 413 and 415 with a body.
    """
    components = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _ERROR_COMPONENTS.items():
        components.setdefault(name, schema)
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue  # /v1/ (OpenAI-compatible) documents its own error shape
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            wanted = {401, 403, 406, 429}
            if "{" in path:
                wanted.add(404)
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                wanted.add(400)
            if "requestBody" in operation:
                wanted |= {400, 413, 415}
            for status in sorted(wanted):
                responses.setdefault(str(status), {
                    "description": ERROR_DESCRIPTIONS.get(status, "Error."),
                    "content": {"application/json": {"schema": _ERROR_REF}},
                })
    return result


ERROR_DESCRIPTIONS.setdefault(415, "The body is not JSON (send Content-Type: application/json).")
ERROR_DESCRIPTIONS.setdefault(406, "not_acceptable: the Accept header, or a ?format= parameter or a .format suffix, "
                                   "asks for a media type this endpoint does not answer in (details: what it offers).")


#: ``?export=csv|jsonl`` of the lists that export (the audit log, the outputs): the whole filtered list, streamed.
EXPORT_PARAMETER = OpenApiParameter(
    "export", OpenApiTypes.STR, enum=["csv", "jsonl"],
    description="the whole list as the other parameters filter it, streamed as a file instead of a JSON page: CSV "
                "(a header line; a cell starting with = + - @, a tab or a carriage return is written with a leading "
                "apostrophe, so that a spreadsheet shows it as text) or JSON Lines (one object a line); cursor and "
                "page_size do not apply")
EXPORT_RESPONSES = {
    (200, "text/csv"): OpenApiTypes.STR,  # ?export=csv
    (200, "application/x-ndjson"): OpenApiTypes.STR,  # ?export=jsonl
}


def export_format(params) -> str | None:
    """``?export=`` of a list: None for a JSON page, else ``csv`` or ``jsonl``; anything else is a 400 naming it."""
    from rest_framework.exceptions import ValidationError

    from atelier_platform.exports import EXPORT_FORMATS

    export = params.get("export")
    if export is not None and export not in EXPORT_FORMATS:
        raise ValidationError({"export": ["csv or jsonl."]})
    return export
