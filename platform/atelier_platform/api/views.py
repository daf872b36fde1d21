"""REST API views. Thin: parse, check access, call a service, serialize."""

from __future__ import annotations

from atelier_sdk import editable_paths
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.filters import JobFilter, OutputFilter
from atelier_platform.api.idempotency import REPLAYED_HEADER, idempotency_key
from atelier_platform.api.keys_views import actor_of
from atelier_platform.api.negotiation import ExportNegotiation
from atelier_platform.api.pagination import NewestFirstCursorPagination
from atelier_platform.api.prefer import requested_wait, wait_if_asked
from atelier_platform.api.schema import (EXPORT_PARAMETER, EXPORT_RESPONSES, IDEMPOTENCY_PARAMETER, PREFER_WAIT_PARAMETER,
                                         error_responses, export_format)
from atelier_platform.api.serializers import (
    JobBatchCreateSerializer,
    JobBatchSerializer,
    JobCreateSerializer,
    JobSerializer,
    JobSummarySerializer,
    OutputDetailSerializer,
    PluginSerializer,
)
from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import enabled_plugin_ids
from atelier_platform.config import get_config
from atelier_platform.exports import trail
from atelier_platform.exports.models import ExportKind, ExportOrigin
from atelier_platform.jobs import erasure, library, lifecycle
from atelier_platform.jobs.models import (Job, Output, outputs_with_files, prefetch_no_outputs, prefetch_outputs_with_files,
                                         read_again)
from atelier_platform.jobs.submission import JobRequest, submit_job, submit_jobs


class PluginListView(APIView):
    required_capabilities = {"get": Capability.JOBS_READ}

    @extend_schema(responses={200: PluginSerializer(many=True), **error_responses(403)},
                   summary="Installed plugins with their JSON Schemas")
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
                "editable_output_fields": editable_paths(plugin.Output),
            }
            for plugin in get_registry().available()
        ]
        return Response(PluginSerializer(data, many=True).data)


def flatten_errors(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested errors as dotted field paths: ``{"jobs": [{}, {"input": [...]}]}`` -> ``{"jobs.1.input": [...]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for name, inner in detail.items():
            if name == "non_field_errors" and prefix:  # an error of the list or item itself: name it
                flat.update(flatten_errors(inner, prefix))
            else:
                flat.update(flatten_errors(inner, f"{prefix}.{name}" if prefix else str(name)))
    elif isinstance(detail, list) and all(isinstance(item, str) for item in detail):
        if detail:
            flat[prefix or "body"] = [str(item) for item in detail]
    elif isinstance(detail, list):
        for index, inner in enumerate(detail):
            if inner:
                flat.update(flatten_errors(inner, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "body"] = [str(detail)]
    return flat


def read_again_or_404(job: Job) -> Job:
    """The job after a wait; 404 when it was deleted meanwhile (its project removed)."""
    try:
        return read_again(job)
    except Job.DoesNotExist:
        raise NotFound(f"Job {job.pk} was deleted while the request waited for it.") from None


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    required_capabilities = {
        "list": Capability.JOBS_READ,
        "retrieve": Capability.JOBS_READ,
        "create": Capability.JOBS_WRITE,
        "batch": Capability.JOBS_WRITE,
        "cancel": Capability.JOBS_WRITE,
        # Erasure is for good and reaches past the caller's own jobs (reviewers' decisions, the audit log's content,
        # other members' submissions): a scope of its own, which owners hold and a key gets only when asked for, so
        # that neither an app's default key (jobs:read jobs:write) nor an editor can wipe the project's history, and
        # an app that erases its users' conversations needs no admin key (members, keys, policies) to do it.
        "destroy": Capability.CONTENT_ERASE,
    }
    pagination_class = NewestFirstCursorPagination
    filterset_class = JobFilter
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request, no project
            return Job.objects.none()
        # Every lookup is scoped to the caller's project: another project's job is "not found".
        jobs = Job.objects.filter(project=self.request.access.project).select_related("project")
        if self.action in ("list", "retrieve", "destroy"):  # retrieve reads the outputs once any wait is over
            return jobs
        return jobs.prefetch_related(outputs_with_files())

    def get_serializer_class(self):
        return JobSummarySerializer if self.action == "list" else JobSerializer

    @extend_schema(responses={200: JobSummarySerializer(many=True), **error_responses(400, 403)},
                   summary="Jobs, newest first (cursor pages)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: JobSerializer, **error_responses(400, 403, 404)}, parameters=[PREFER_WAIT_PARAMETER],
                   summary="A job with its outputs")
    def retrieve(self, request, *args, **kwargs):
        seconds = requested_wait(request)
        job = self.get_object()
        headers: dict[str, str] = {}
        if wait_if_asked(job, seconds, headers):
            job = read_again_or_404(job)
        else:
            prefetch_outputs_with_files(job)
        return Response(self.get_serializer(job).data, headers=headers)

    @extend_schema(
        request=JobCreateSerializer,
        responses={201: JobSerializer, 200: OpenApiResponse(JobSerializer, description="Replay of an earlier Idempotency-Key"),
                   **error_responses(400, 403, 409, 413, 422)},
        parameters=[IDEMPOTENCY_PARAMETER, PREFER_WAIT_PARAMETER],
        summary="Submit a job",
    )
    def create(self, request):
        key = idempotency_key(request)
        seconds = requested_wait(request)
        incoming = JobCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        access = request.access
        submission = submit_job(
            access.project,
            JobRequest(plugin_id=data["plugin"], input=data["input"], params=data["params"], priority=data["priority"],
                       webhook=data.get("webhook", "")),
            submitted_by=access.user,
            api_key=access.api_key,
            idempotency_key=key,
        )
        headers = {"Location": f"/api/v1/jobs/{submission.job.pk}/"}
        if wait_if_asked(submission.job, seconds, headers):
            job = read_again_or_404(submission.job)
        elif not submission.created:
            job = self.get_queryset().get(pk=submission.job.pk)
        else:
            # The job as this request created it: a worker may claim it before a read here would
            # run, and a 201 shows the resource created (queued), not a later state. It has no
            # outputs yet: an empty queryset fills them without a query.
            job = prefetch_no_outputs(submission.job)
        if not submission.created:
            headers[REPLAYED_HEADER] = "true"
        return Response(
            JobSerializer(job).data,
            status=status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK,
            headers=headers,
        )

    @extend_schema(
        request=JobBatchCreateSerializer,
        responses={201: JobBatchSerializer, 200: OpenApiResponse(JobBatchSerializer, description="Replay of an earlier Idempotency-Key"),
                   **error_responses(400, 403, 409, 413, 422)},
        parameters=[IDEMPOTENCY_PARAMETER],
        summary="Submit many jobs at once: all are created, or none",
        description="Every job is validated first; if any is invalid, none is created and the answer (400) names each "
                    "problem by index (`jobs.3.input.prompt`). The project's quotas must allow them all. Up to "
                    "ATELIER_MAX_JOBS_PER_REQUEST (100) jobs; the Idempotency-Key covers the whole request.",
    )
    @action(detail=False, methods=["post"])
    def batch(self, request):
        key = idempotency_key(request)
        if not isinstance(request.data, dict):
            raise ValidationError({"body": ['Send an object: {"jobs": [{"plugin": ..., "input": {...}}, ...]}.']})
        jobs, most = request.data.get("jobs"), get_config().max_jobs_per_request
        if isinstance(jobs, list) and len(jobs) > most:
            # Refused before validating thousands of items; the service checks the same limit.
            raise ValidationError({"jobs": [f"At most {most} jobs per request (ATELIER_MAX_JOBS_PER_REQUEST); this one has {len(jobs)}."]})
        incoming = JobBatchCreateSerializer(data=request.data)
        if not incoming.is_valid():
            raise ValidationError(flatten_errors(incoming.errors))
        access = request.access
        batch = submit_jobs(
            access.project,
            [JobRequest(plugin_id=d["plugin"], input=d["input"], params=d["params"], priority=d["priority"],
                        webhook=d.get("webhook", ""))
             for d in incoming.validated_data["jobs"]],
            submitted_by=access.user,
            api_key=access.api_key,
            idempotency_key=key,
        )
        ids = [job.pk for job in batch.jobs]
        found = {job.pk: job for job in self.get_queryset().filter(pk__in=ids)}
        body = {"jobs": JobSerializer([found[pk] for pk in ids if pk in found], many=True).data}
        headers = {} if batch.created else {REPLAYED_HEADER: "true"}
        return Response(body, status=status.HTTP_201_CREATED if batch.created else status.HTTP_200_OK, headers=headers)

    @extend_schema(
        request=None, responses={204: None, **error_responses(403, 404, 409)},
        summary="Erase a job's content for good (the job stays as a tombstone)",
        description="Erases the job's input, params, outputs' content and files, its review decisions' texts, its "
                    "conversation turns, and every copy of them (stored idempotent answers, webhook payloads, the audit "
                    "log's content), together with the regenerations a reviewer queued for it (same input). The job "
                    "row stays for quotas and usage: GET /jobs/{id}/ then shows erased_at, erased_by, an empty input "
                    "and params, and outputs without content or files; a retry of its Idempotency-Key replays that, "
                    "whatever the body (no hash of the request is kept to compare one with). A queued job is cancelled "
                    "first. 409 job_running: cancel it and erase it once it has stopped; 409 evaluation_job: a case of an "
                    "evaluation run (delete its reference set first). Erasing an erased job again answers 204.")
    def destroy(self, request, pk=None):
        erasure.erase_jobs(request.access.project, [self.get_object().pk], actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: JobSerializer, **error_responses(403, 404, 409)},
                   summary="Cancel a queued or running job")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = lifecycle.cancel_job(self.get_object())
        return Response(JobSerializer(self.get_queryset().get(pk=job.pk)).data)


class OutputViewSet(ExportNegotiation, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Outputs of the project's jobs, with their review state; ``final`` is true for approved or released ones.

    The same presentation as the outputs inside ``GET /jobs/{id}/``: the review rules are the job's.
    """

    required_capabilities = {"list": Capability.JOBS_READ, "retrieve": Capability.JOBS_READ}
    serializer_class = OutputDetailSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = OutputFilter
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Output.objects.none()
        return (Output.objects.filter(job__project=self.request.access.project)
                .select_related("job").prefetch_related("files"))

    @extend_schema(parameters=[EXPORT_PARAMETER],
                   responses={(200, "application/json"): OutputDetailSerializer(many=True), **EXPORT_RESPONSES,
                              **error_responses(400, 403)},
                   summary="Outputs, newest first (cursor pages), or all of them as CSV or JSON Lines (?export=)")
    def list(self, request, *args, **kwargs):
        export = export_format(request.query_params)
        if export is None:
            return super().list(request, *args, **kwargs)
        # the list's filters, as its pages apply them; the rows as the content library exports them
        outputs = self.filter_queryset(self.get_queryset()).order_by(*library.LIBRARY_ORDERING)
        trail.streamed(request.access.project, actor_of(request), kind=ExportKind.LIBRARY, format=export,
                       filters=trail.filters_in_query(ExportKind.LIBRARY, request.query_params), origin=ExportOrigin.API)
        # reviewers' names only to a caller who may read the review queue (where they are told): not to every jobs:read key
        return library.streamed_export(outputs, export, site=request.build_absolute_uri("/").rstrip("/"),
                                       filename=f"outputs-{request.access.project.slug}",
                                       with_approvers=Capability.REVIEWS_READ in request.access.capabilities)

    @extend_schema(responses={200: OutputDetailSerializer, **error_responses(403, 404)}, summary="One output")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)
