"""``/api/v1/exports/``: exports of the content library or of the audit log written in the background, for exports
too large for the streaming ones (``?export=`` of the lists), which hold the request for as long as their rows take."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.knowledge_views import FILE_CONTENT_SECURITY_POLICY
from atelier_platform.api.pagination import NewestFirstCursorPagination
from atelier_platform.api.schema import error_responses
from atelier_platform.exports import kinds, services
from atelier_platform.exports import EXPORT_MEDIA_TYPES
from atelier_platform.exports.models import Export
from atelier_platform.exports.serializers import ExportCreateSerializer, ExportSerializer

#: Every action is open to a caller who may export one kind or the other; which kind is the export's to say
#: (``kinds.KIND_CAPABILITIES``): the library needs jobs:read, the audit log admin, as their streaming exports.
EITHER_KIND = [Capability.JOBS_READ, Capability.ADMIN]
#: The actions on one export an owner takes on anyone's (``services.oversees_all``); its download is the requester's.
OWNERS_REACH = ("retrieve", "cancel", "download")


class ExportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's exports in the background (an API key sees those it asked for, a member theirs), newest first;
    an owner (a key with admin) sees and cancels every export of the project, and downloads only their own."""

    required_capabilities = {"list": EITHER_KIND, "retrieve": EITHER_KIND, "create": EITHER_KIND,
                             "download": EITHER_KIND, "cancel": EITHER_KIND}
    serializer_class = ExportSerializer
    pagination_class = NewestFirstCursorPagination
    lookup_value_converter = "uuid"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Export.objects.none()
        access = self.request.access
        if services.oversees_all(access.capabilities) and (
                self.action in OWNERS_REACH or (self.action == "list" and self._all_asked())):
            return services.of_project(access.project).select_related("project")
        if self.action == "list" and self._all_asked():
            raise PermissionDenied("Listing every export of the project (?all=true) needs the scope 'admin' (an "
                                   "owner's role); without it, the list holds your own.")
        # a kind the caller may no longer export (a key's scopes, a member's role changed) is no longer theirs to see
        allowed = [kind for kind, capability in kinds.KIND_CAPABILITIES.items() if capability in access.capabilities]
        return (services.visible_to(access.project, user=access.user, api_key=access.api_key)
                .filter(kind__in=allowed).select_related("project"))

    def _all_asked(self) -> bool:
        value = self.request.query_params.get("all")
        if value not in (None, "true", "false"):
            raise ValidationError({"all": ["true or false."]})
        return value == "true"

    @extend_schema(request=ExportCreateSerializer,
                   responses={202: ExportSerializer, **error_responses(400, 403, 409)},
                   summary="Ask for an export in the background (202); follow it at its url, download it once ready",
                   description="The file holds what the list's streaming export (?export=) gives for the same filters, "
                               "byte for byte, written by a worker of the exports queue. 409 exports_busy: the "
                               "caller (this key, or this member) has 3 exports going (details.counted: requester), or the "
                               "project 10, all its members and keys together (details.counted: project); ask again "
                               "once one has finished. The export.finished webhook event says when it ended.")
    def create(self, request):
        incoming = ExportCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data, access = incoming.validated_data, request.access
        needed = kinds.KIND_CAPABILITIES[data["kind"]]
        if needed not in access.capabilities:
            who = "This API key lacks the scope" if access.api_key is not None else "Your role does not allow"
            raise PermissionDenied(f"{who} '{needed}', which exporting the {data['kind']} needs.")
        export = services.request_export(
            access.project, kind=data["kind"], format=data["format"], filters=data.get("filters"), user=access.user,
            api_key=access.api_key, site=request.build_absolute_uri("/").rstrip("/"),
            # reviewers' names only to a caller who may read the review queue, as the streaming export
            with_approvers=Capability.REVIEWS_READ in access.capabilities)
        body = ExportSerializer(export, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["url"]})

    @extend_schema(responses={200: ExportSerializer(many=True), **error_responses(400, 403)},
                   parameters=[OpenApiParameter("all", OpenApiTypes.BOOL, description=(
                       "true: every export of the project, whoever asked (requested_by says who); needs admin (an "
                       "owner). Default false: the caller's own."))],
                   summary="The caller's exports (an owner's ?all=true: the project's), newest first (cursor pages)")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: ExportSerializer, **error_responses(403, 404)},
                   summary="One export: its status and progress (rows_done of rows_total)")
    def retrieve(self, request, *args, **kwargs):
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, "application/x-ndjson"): OpenApiTypes.BINARY,
                              **error_responses(403, 404, 409, 410)},
                   summary="The export's file (Content-Disposition: attachment), once it succeeded",
                   description="Only to who asked for it: an owner who sees another's export gets 403 export_not_yours.")
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        export, access = self.get_object(), request.access
        allowed = kinds.KIND_CAPABILITIES[export.kind] in access.capabilities
        if not (allowed and services.is_requester(export, user=access.user, api_key=access.api_key)):
            raise services.ExportNotYours(f"Export {export.pk} was asked for by {export.requested_by or 'another'}: "
                                          f"only its requester downloads its file; ask for an export of your own.")
        handle = services.file_to_download(export, actor=services.requester_of(user=access.user, api_key=access.api_key))
        response = FileResponse(handle, as_attachment=True, filename=services.download_name(export),
                                content_type=EXPORT_MEDIA_TYPES[export.format])
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = FILE_CONTENT_SECURITY_POLICY
        return response

    @extend_schema(request=None, responses={200: ExportSerializer, **error_responses(403, 404, 409)},
                   summary="Cancel a queued or running export (a running one stops at its next progress); an "
                           "owner cancels anyone's (recorded in the audit log: export_cancelled)")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        access = request.access
        export = services.cancel_export(
            self.get_object(), actor=services.requester_of(user=access.user, api_key=access.api_key))
        return Response(ExportSerializer(export, context=self.get_serializer_context()).data)
