"""Reference sets, evaluation runs and watches (scheduled runs) over the API. Thin: parse, scope to the caller's
project, call a service.

Every member reads (jobs:read); creating, changing and deleting sets and watches and starting and cancelling runs is
the project's administration (admin: owners, admin keys; a watch starts runs, so creating or changing one needs
jobs:write too, as a start does)."""

from __future__ import annotations

from django.http import FileResponse
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from drf_spectacular.utils import OpenApiResponse, extend_schema

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.filters import EvaluationRunFilter
from atelier_platform.api.idempotency import REPLAYED_HEADER, idempotency_key
from atelier_platform.api.keys_views import actor_of
from atelier_platform.api.knowledge_views import FILE_CONTENT_SECURITY_POLICY
from atelier_platform.api.pagination import NewestFirstCursorPagination
from atelier_platform.api.schema import IDEMPOTENCY_PARAMETER, ErrorSerializer, error_responses
from atelier_platform.evaluation import comparison, services, uploads, watch
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule, ReferenceImage, ReferenceSet
from atelier_platform.evaluation.serializers import (
    CompareQuerySerializer,
    RunComparisonSerializer,
    ReferenceSetCreateSerializer,
    ReferenceSetSerializer,
    ReferenceSetSummarySerializer,
    ReferenceSetUpdateSerializer,
    ReferenceSetUploadSerializer,
    RunCreateSerializer,
    comparison_data,
    RunSerializer,
    RunSummarySerializer,
    ScheduleCreateSerializer,
    ScheduleSerializer,
    ScheduleUpdateSerializer,
)
from atelier_platform.evaluation.uploads import MAX_UPLOAD_BYTES, MAX_ZIP_BYTES, UploadRefused

READ, ADMIN = Capability.JOBS_READ, Capability.ADMIN
#: what a multipart body holds beside its file (the other fields, the parts' headers and boundaries)
UPLOAD_FORM_BYTES = 64 * 1024


def _user_of(request):
    return request.access.user if request.access.api_key is None else None


class ReferenceSetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A project's reference sets: questions (plugin inputs) with the answers the project expects."""

    required_capabilities = {"list": READ, "retrieve": READ, "image": READ, "create": ADMIN, "upload": ADMIN,
                             "partial_update": ADMIN,
                             "destroy": ADMIN}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    #: a body larger than ATELIER_MAX_REQUEST_BYTES that an action takes (``upload``; api.errors' guard reads it)
    max_body_bytes = 0
    serializer_class = ReferenceSetSerializer
    pagination_class = NewestFirstCursorPagination
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ReferenceSet.objects.none()
        return ReferenceSet.objects.filter(project=self.request.access.project)

    @extend_schema(responses={200: ReferenceSetSummarySerializer(many=True), **error_responses(400, 403)},
                   summary="Reference sets, newest first (cursor pages; without their cases)")
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset().with_case_count())
        return self.get_paginated_response(ReferenceSetSummarySerializer(page, many=True).data)

    @extend_schema(responses={200: ReferenceSetSerializer, **error_responses(403, 404)})
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=ReferenceSetCreateSerializer, responses={201: ReferenceSetSerializer, **error_responses(400, 403)},
                   summary="Create a reference set (each case's input is checked against the plugin's schema)")
    def create(self, request):
        incoming = ReferenceSetCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        reference_set = services.create_reference_set(
            request.access.project, plugin_id=data["plugin"], name=data["name"], description=data["description"],
            cases=data["cases"], actor=actor_of(request), user=_user_of(request))
        return Response(ReferenceSetSerializer(reference_set).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/v1/evaluation/reference-sets/{reference_set.pk}/"})

    @extend_schema(request={"multipart/form-data": ReferenceSetUploadSerializer},
                   responses={201: ReferenceSetSerializer, **error_responses(400, 403, 413),
                              415: OpenApiResponse(ErrorSerializer, description="The body is not multipart/form-data.")},
                   summary="Create a reference set from a CSV or JSON Lines file, or an image set's ZIP (multipart/form-data)",
                   description="The file as the dashboard's upload reads it (an image set's: a .zip of its cases.csv or "
                               "cases.jsonl beside the images, at most 32 MiB). Refused, nothing is saved: a file that "
                               "cannot be read is a 400 invalid_upload; lines that cannot be read, or cases that do not "
                               "match the plugin's schema, a 400 naming each in details.file by the file's line and, in a "
                               "CSV, its column (\"Line 4, reference: The expected answer, a non-empty text.\").")
    @action(detail=False, methods=["post"], parser_classes=[MultiPartParser],
            max_body_bytes=max(MAX_UPLOAD_BYTES, MAX_ZIP_BYTES) + UPLOAD_FORM_BYTES)
    def upload(self, request):
        incoming = ReferenceSetUploadSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        file = data["file"]
        limit = MAX_ZIP_BYTES if data["plugin"] in services.IMAGE_PLUGINS else MAX_UPLOAD_BYTES  # an image set's ZIP
        if file.size > limit:  # said before it is read
            raise UploadRefused(f"The file has {file.size} bytes; at most {limit} are taken.",
                                reason="too_large", params={"limit_mib": limit // 2**20})
        reference_set = uploads.upload_reference_set(
            request.access.project, plugin_id=data["plugin"], name=data["name"], description=data["description"],
            filename=file.name or "", data=file.read(), actor=actor_of(request), user=_user_of(request))
        return Response(ReferenceSetSerializer(reference_set).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/v1/evaluation/reference-sets/{reference_set.pk}/"})

    @extend_schema(request=ReferenceSetUpdateSerializer, responses={200: ReferenceSetSerializer, **error_responses(400, 403, 404)},
                   summary="Change a reference set's name, description or cases")
    def partial_update(self, request, pk=None):
        reference_set = self.get_object()
        incoming = ReferenceSetUpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        updated = services.update_reference_set(reference_set, actor=actor_of(request), **incoming.validated_data)
        return Response(ReferenceSetSerializer(updated).data)

    @extend_schema(responses={(200, "image/png"): bytes, (200, "image/jpeg"): bytes, **error_responses(403, 404)},
                   summary="A reference image of an image set (by its sha256, as the set's cases name it)")
    @action(detail=True, methods=["get"], url_path=r"images/(?P<sha256>[0-9a-f]{64})")
    def image(self, request, pk=None, sha256=None):
        stored = ReferenceImage.objects.filter(reference_set=self.get_object(), sha256=sha256).first()
        if stored is None:
            raise NotFound("No such image in this reference set.")
        try:
            handle = stored.file.open("rb")
        except FileNotFoundError:
            raise NotFound("The image is missing from storage.") from None
        response = FileResponse(handle, content_type=stored.media_type, filename=stored.file.name.rsplit("/", 1)[-1])
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = FILE_CONTENT_SECURITY_POLICY
        return response

    @extend_schema(responses={204: None, **error_responses(403, 404, 409)},
                   summary="Delete a reference set and its runs (refused while one of its runs is going)")
    def destroy(self, request, pk=None):
        services.delete_reference_set(self.get_object(), actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class EvaluationRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of a model version on a reference set: progress while its jobs run, metrics once they have finished."""

    # a run submits a job per case: an 'admin' key without 'jobs:write' would run inputs it may not submit
    required_capabilities = {"list": READ, "retrieve": READ, "compare": READ, "create": (ADMIN, Capability.JOBS_WRITE),
                             "cancel": ADMIN}
    serializer_class = RunSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = EvaluationRunFilter
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return EvaluationRun.objects.none()
        # the set's name, not its cases (a megabyte of them, read again for each run of a page)
        return (EvaluationRun.objects.filter(project=self.request.access.project)
                .select_related("reference_set", "model_version").defer("reference_set__cases"))

    @extend_schema(responses={200: RunSummarySerializer(many=True), **error_responses(400, 403)},
                   summary="Evaluation runs, newest first (cursor pages; without per-case results)")
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()).defer("results"))
        return self.get_paginated_response(RunSummarySerializer(page, many=True).data)

    @extend_schema(responses={200: RunSerializer, **error_responses(403, 404)},
                   summary="An evaluation run with its progress, metrics and per-case results")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=RunCreateSerializer, parameters=[IDEMPOTENCY_PARAMETER],
                   responses={201: RunSerializer,
                              200: OpenApiResponse(RunSerializer, description="Replay of an earlier Idempotency-Key: "
                                                                              "the run it started, as it is now"),
                              **error_responses(400, 403, 404, 409, 422, 429)},
                   summary="Start an evaluation run: one job per case, with the model version named (or the current one)")
    def create(self, request):
        key = idempotency_key(request)
        incoming = RunCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        project = request.access.project
        reference_set = ReferenceSet.objects.filter(project=project, pk=incoming.validated_data["reference_set"]).first()
        if reference_set is None:
            raise NotFound("No such reference set in this project.")
        run, created = services.start_run_once(
            project, reference_set, idempotency_key=key, model_version_id=incoming.validated_data["model_version"],
            actor=actor_of(request), user=_user_of(request), api_key=request.access.api_key)
        run = self.get_queryset().filter(pk=run.pk).first()
        if run is None:  # its set deleted meanwhile, and the run with it
            raise NotFound("No such evaluation run in this project: it was deleted with its reference set.")
        headers = {"Location": f"/api/v1/evaluation/runs/{run.pk}/"}
        if not created:
            headers[REPLAYED_HEADER] = "true"
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
                        headers=headers)

    @extend_schema(request=None, responses={200: RunSerializer, **error_responses(403, 404, 409)},
                   summary="Cancel a run going: its unfinished jobs are cancelled, the cases answered so far scored "
                           "(409 once it has finished, or was cancelled already)")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = services.cancel_run(self.get_object(), actor=actor_of(request))
        return Response(RunSerializer(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(parameters=[CompareQuerySerializer], responses={200: RunComparisonSerializer,
                                                                   **error_responses(400, 403, 404, 409)},
                   summary="Compare an ended run with another of its reference set: each metric's delta (and which way "
                           "is better), then the cases, worst regression first",
                   description="Deltas are this run minus the run given in `to` (the baseline). 400: `to` missing, not "
                               "an id, this run, or a run of another set (evaluation_runs_not_comparable); 404: no such "
                               "run in this project; 409: either run still going, or its images still being scored "
                               "(evaluation_run_not_finished).")
    @action(detail=True, methods=["get"])
    def compare(self, request, pk=None):
        run = self.get_object()
        query = CompareQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        to = self.get_queryset().filter(pk=query.validated_data["to"]).first()
        if to is None:
            raise NotFound("No run with the id given in to in this project.")
        offset, limit = query.validated_data["offset"], query.validated_data["limit"]
        next_url = replace_query_param(request.build_absolute_uri(), "offset", offset + limit)
        return Response(comparison_data(comparison.compare(run, to), offset=offset, limit=limit, next_url=next_url))


class EvaluationScheduleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Watches: a reference set evaluated every few hours with the version named (or the one pinned at each run), each
    run gated against the watch's previous one (``evaluation.watch``)."""

    # a watch starts runs (a job per case each): creating or changing one needs what a start needs
    required_capabilities = {"list": READ, "retrieve": READ, "create": (ADMIN, Capability.JOBS_WRITE),
                             "partial_update": (ADMIN, Capability.JOBS_WRITE), "destroy": ADMIN}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    serializer_class = ScheduleSerializer
    pagination_class = NewestFirstCursorPagination
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return EvaluationSchedule.objects.none()
        return (EvaluationSchedule.objects.filter(project=self.request.access.project)
                .select_related("reference_set", "model_version", "last_run")
                .defer("reference_set__cases", "last_run__results"))

    def _shown(self, schedule) -> dict:
        return ScheduleSerializer(self.get_queryset().get(pk=schedule.pk)).data

    @extend_schema(responses={200: ScheduleSerializer(many=True), **error_responses(400, 403)},
                   summary="Watches (scheduled evaluation runs), newest first (cursor pages)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: ScheduleSerializer, **error_responses(403, 404)},
                   summary="A watch: its schedule, limits, next run and last run's verdict")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(request=ScheduleCreateSerializer,
                   responses={201: ScheduleSerializer, **error_responses(400, 403, 404, 409)},
                   summary="Watch a reference set: evaluate it every interval_hours, each run gated against the previous",
                   description="400: a bad field, named in details (max_drop.<metric> for an unknown metric or a limit "
                               "below 0, interval_hours out of 1-720, a model version the project may not evaluate); "
                               "404: no such reference set in this project; 409 evaluation_schedule_exists: the set has "
                               "a watch already (one per set).")
    def create(self, request):
        incoming = ScheduleCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        project = request.access.project
        reference_set = ReferenceSet.objects.filter(project=project, pk=data["reference_set"]).defer("cases").first()
        if reference_set is None:
            raise NotFound("No such reference set in this project.")
        schedule = watch.create_schedule(
            project, reference_set, interval_hours=data["interval_hours"], max_drop=data["max_drop"],
            model_version_id=data["model_version"], enabled=data["enabled"], next_run_at=data.get("next_run_at"),
            actor=actor_of(request), user=_user_of(request))
        return Response(self._shown(schedule), status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/v1/evaluation/schedules/{schedule.pk}/"})

    @extend_schema(request=ScheduleUpdateSerializer, responses={200: ScheduleSerializer, **error_responses(400, 403, 404)},
                   summary="Change a watch: its interval, limits, version, next run, or switch it off and on")
    def partial_update(self, request, pk=None):
        schedule = self.get_object()
        incoming = ScheduleUpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        updated = watch.update_schedule(schedule, actor=actor_of(request), **incoming.validated_data)
        return Response(self._shown(updated))

    @extend_schema(responses={204: None, **error_responses(403, 404)},
                   summary="Delete a watch (its runs stay in the set's history; a run going goes on)")
    def destroy(self, request, pk=None):
        watch.delete_schedule(self.get_object(), actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
