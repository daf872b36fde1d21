"""The /v1/ views: parse, check access, call the services, answer in OpenAI's shapes.

Auth and scopes are the API's (``Authorization: Bearer <api key>``): listing models needs
``jobs:read``; chat completions and image generations submit jobs and need ``jobs:write``.
"""

from __future__ import annotations

from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from pydantic import BaseModel, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.openai_compat import openapi  # noqa: F401 - registers the OpenAPI description of the pydantic shapes
from atelier_platform.jobs.submission import CHAT_COMPLETIONS_SCOPE, IMAGE_GENERATIONS_SCOPE
from atelier_platform.openai_compat import services
from atelier_platform.openai_compat.errors import OpenAIError, error_body, exception_handler, from_pydantic
from atelier_platform.openai_compat.schemas import (
    ChatCompletion,
    CreateChatCompletion,
    CreateImage,
    ImagesResponse,
    OpenAIErrorResponse,
    OpenAIModelList,
    OpenAIModelObject,
)
from atelier_platform.openai_compat.streaming import chat_events

IDEMPOTENCY_HEADER = "HTTP_IDEMPOTENCY_KEY"
TAGS = ["OpenAI-compatible"]
ERRORS = {
    status: OpenApiResponse(OpenAIErrorResponse, description=description)
    for status, description in {
        400: "Invalid request (bad types, unsupported values, input that does not match the plugin).",
        401: "No or bad API key.",
        403: "The key lacks the scope, or the plugin is not enabled for the project.",
        404: "Unknown model.",
        409: "The job was cancelled.",
        422: "Input blocked by the project's safety policy (code input_blocked), or an Idempotency-Key reused for another request.",
        502: "The job failed on the worker (code job_failed; the details name the job and its error).",
        504: "The job did not finish within ATELIER_OPENAI_WAIT_S (code job_still_running; it goes on: fetch it from the job URL).",
    }.items()
}
IDEMPOTENCY_PARAMETER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
    description="Retrying with the same key and body waits for the first job instead of submitting another.",
)


def parse(model: type[BaseModel], data) -> BaseModel:
    if not isinstance(data, dict):
        raise OpenAIError(400, "The body must be a JSON object.", code="invalid_value")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise from_pydantic(error) from None


def idempotency_key(request) -> str | None:
    key = request.META.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not (1 <= len(key) <= 255) or not key.isascii() or not key.isprintable():
        raise OpenAIError(400, "The Idempotency-Key header must be 1-255 printable ASCII characters.", code="invalid_value",
                          param="Idempotency-Key")
    return key


class OpenAIView(APIView):
    """Errors of these views take OpenAI's shape (the rest of the API keeps Atelier's)."""

    def get_exception_handler(self):
        return exception_handler

    def perform_content_negotiation(self, request, force=False):
        # Callers of OpenAI endpoints send Accept: text/event-stream (streams) or nothing useful:
        # never refuse one with 406; the answer's type is fixed by the endpoint.
        return super().perform_content_negotiation(request, force=True)

    def check_permissions(self, request):
        if not hasattr(self, request.method.lower()):
            return  # no handler for this method: 405 Method Not Allowed, not a scope error
        super().check_permissions(request)

    def note_job(self, submission) -> None:
        """Name the job in every answer about it, errors included (DRF applies ``self.headers`` to both)."""
        self.headers["X-Atelier-Job-Id"] = str(submission.job.pk)
        if not submission.created:
            self.headers["Idempotent-Replayed"] = "true"


class ModelListView(OpenAIView):
    required_capabilities = {"get": Capability.JOBS_READ}

    @extend_schema(operation_id="openai_models_list", tags=TAGS, summary="Models (OpenAI-compatible)",
                   description="The project's enabled plugins that an OpenAI endpoint serves: chatbot (chat completions) "
                               "and image (image generations).",
                   responses={200: OpenAIModelList, 401: ERRORS[401], 403: ERRORS[403]})
    def get(self, request):
        return Response(services.model_list(request.access.project).model_dump(mode="json"))


class ModelDetailView(OpenAIView):
    required_capabilities = {"get": Capability.JOBS_READ}

    @extend_schema(operation_id="openai_models_retrieve", tags=TAGS, summary="One model (OpenAI-compatible)",
                   responses={200: OpenAIModelObject, 401: ERRORS[401], 403: ERRORS[403], 404: ERRORS[404]})
    def get(self, request, model_id: str):
        return Response(services.find_model(request.access.project, model_id).model_dump(mode="json"))


class ChatCompletionsView(OpenAIView):
    required_capabilities = {"post": Capability.JOBS_WRITE}

    @extend_schema(
        operation_id="openai_chat_completions_create", tags=TAGS, summary="Chat completion (OpenAI-compatible)",
        description=(
            "Runs a chatbot job and waits for it. A reply that is not final (the default policy holds every output "
            "for human review) is never returned: the message then says the reply is pending review and names the "
            "job, `atelier.final` is false and `atelier.review_state` says why. With `stream: true` the answer is "
            "server-sent `chat.completion.chunk` events ending in `data: [DONE]`."
        ),
        request=CreateChatCompletion,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            (200, "application/json"): ChatCompletion,
            (200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, description="stream: true"),
            **{status: ERRORS[status] for status in (400, 401, 403, 404, 409, 422, 502, 504)},
        },
    )
    def post(self, request):
        body = parse(CreateChatCompletion, request.data)
        access = request.access
        services.require_model(access.project, body.model, services.CHAT_MODEL)
        prepared = services.prepare_chat(body)
        key = idempotency_key(request)
        submission = services.submit(access.project, prepared, access=access, idempotency_key=key,
                                     endpoint=CHAT_COMPLETIONS_SCOPE)
        self.note_job(submission)
        job = submission.job
        timeout_s = services.wait_seconds()
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            response = StreamingHttpResponse(
                chat_events(job.pk, services.unix(job.created_at), body.model, include_usage=include_usage,
                            timeout_s=timeout_s, replayable=key is not None),
                content_type="text/event-stream; charset=utf-8",
            )
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"  # nginx: pass events on as they come
            return response
        finished = services.wait_for_job(job.pk, timeout_s)
        if finished is None:
            raise services.still_running(job.pk, timeout_s, replayable=key is not None)
        return Response(services.chat_completion(finished, body.model).model_dump(mode="json"))


class ImageGenerationsView(OpenAIView):
    required_capabilities = {"post": Capability.JOBS_WRITE}

    @extend_schema(
        operation_id="openai_images_generate", tags=TAGS, summary="Image generation (OpenAI-compatible)",
        description=(
            "Runs an image job and waits for it. `data` holds only images that may be used (approved, or released "
            "after screening); under the default review-before-release policy it is empty and `atelier` names the "
            "job, its outputs' review states and where to fetch them once approved."
        ),
        request=CreateImage,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: ImagesResponse, **{status: ERRORS[status] for status in (400, 401, 403, 404, 409, 422, 502, 504)}},
    )
    def post(self, request):
        body = parse(CreateImage, request.data)
        access = request.access
        services.require_model(access.project, body.model or services.IMAGE_MODEL, services.IMAGE_MODEL)
        prepared = services.prepare_images(body)
        key = idempotency_key(request)
        submission = services.submit(access.project, prepared, access=access, idempotency_key=key,
                                     endpoint=IMAGE_GENERATIONS_SCOPE)
        self.note_job(submission)
        timeout_s = services.wait_seconds()
        finished = services.wait_for_job(submission.job.pk, timeout_s)
        if finished is None:
            raise services.still_running(submission.job.pk, timeout_s, replayable=key is not None)
        answer = services.images_response(finished, body.response_format or "b64_json", request.build_absolute_uri)
        return Response(answer.model_dump(mode="json"))


@csrf_exempt  # a POST changes nothing here, and must get the 404, not Django's HTML CSRF page
def not_found(request, *args, **kwargs):
    """Unknown /v1/ paths, in OpenAI's error shape (Django's handler would answer Atelier's)."""
    return JsonResponse(error_body(404, f"No OpenAI-compatible endpoint at {request.path}. Endpoints: GET /v1/models, "
                                        "POST /v1/chat/completions, POST /v1/images/generations.", code="unknown_url"),
                        status=404)
