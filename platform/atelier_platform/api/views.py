"""REST API views. Thin: parse, check access, call a service, serialize."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.filters import JobFilter
from atelier_platform.api.pagination import NewestFirstCursorPagination
from atelier_platform.api.serializers import (
    JobCreateSerializer,
    JobSerializer,
    JobSummarySerializer,
    PluginSerializer,
)
from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import enabled_plugin_ids
from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.models import Job, Output
from atelier_platform.jobs.submission import JobRequest, submit_job

IDEMPOTENCY_HEADER = "HTTP_IDEMPOTENCY_KEY"


class PluginListView(APIView):
    required_capabilities = {"get": Capability.JOBS_READ}

    @extend_schema(responses=PluginSerializer(many=True), summary="Installed plugins with their JSON Schemas")
    def get(self, request):
        enabled = enabled_plugin_ids(request.access.project)
        data = [
            {
                **plugin.manifest.model_dump(mode="json", include={
                    "id", "version", "name", "description", "modality", "resource_class", "max_batch_size", "time_limit_s",
                }),
                "enabled": plugin.manifest.id in enabled,
                "input_schema": plugin.input_schema(),
                "params_schema": plugin.params_schema(),
                "output_schema": plugin.output_schema(),
            }
            for plugin in get_registry().available()
        ]
        return Response(PluginSerializer(data, many=True).data)


def _idempotency_key(request) -> str | None:
    key = request.META.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not (1 <= len(key) <= 255) or not key.isascii() or not key.isprintable():
        raise ValidationError({"Idempotency-Key": ["Use 1-255 printable ASCII characters."]})
    return key


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    required_capabilities = {
        "list": Capability.JOBS_READ,
        "retrieve": Capability.JOBS_READ,
        "create": Capability.JOBS_WRITE,
        "cancel": Capability.JOBS_WRITE,
    }
    pagination_class = NewestFirstCursorPagination
    filterset_class = JobFilter
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no project
            return Job.objects.none()
        # Every lookup is scoped to the caller's project: another project's job is "not found".
        jobs = Job.objects.filter(project=self.request.access.project).select_related("project")
        if self.action == "list":
            return jobs
        return jobs.prefetch_related(Prefetch("outputs", queryset=Output.objects.prefetch_related("files")))

    def get_serializer_class(self):
        return JobSummarySerializer if self.action == "list" else JobSerializer

    @extend_schema(
        request=JobCreateSerializer,
        responses={201: JobSerializer, 200: OpenApiResponse(JobSerializer, description="Replay of an earlier Idempotency-Key")},
        parameters=[OpenApiParameter("Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER,
                                     description="Retrying with the same key and body returns the first job.")],
        summary="Submit a job",
    )
    def create(self, request):
        idempotency_key = _idempotency_key(request)
        incoming = JobCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        access = request.access
        submission = submit_job(
            access.project,
            JobRequest(plugin_id=data["plugin"], input=data["input"], params=data["params"], priority=data["priority"]),
            submitted_by=access.user,
            api_key=access.api_key,
            idempotency_key=idempotency_key,
        )
        job = self.get_queryset().get(pk=submission.job.pk)
        headers = {"Location": f"/api/v1/jobs/{job.pk}/"}
        if not submission.created:
            headers["Idempotent-Replayed"] = "true"
        return Response(
            JobSerializer(job).data,
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
            headers=headers,
        )

    @extend_schema(request=None, responses=JobSerializer, summary="Cancel a queued or running job")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = lifecycle.cancel_job(self.get_object())
        return Response(JobSerializer(self.get_queryset().get(pk=job.pk)).data)
