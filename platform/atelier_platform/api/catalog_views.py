"""A project's plugin settings and the model versions it may pin (the project's administration: ``admin``).

Reading them needs ``admin`` too, although ``GET /api/v1/plugins/`` tells every member whether a plugin is enabled:
the defaults hold a brand's own voice and banned words, and the versions the project's private fine-tunes."""

from __future__ import annotations

import django_filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.keys_views import actor_of
from atelier_platform.api.pagination import NewestFirstCursorPagination
from atelier_platform.api.schema import error_responses
from atelier_platform.api.serializers import (
    ModelVersionSerializer,
    PluginSettingsSerializer,
    PluginSettingsUpdateSerializer,
)
from atelier_platform.catalog import configuration
from atelier_platform.catalog.models import ModelVersion
from atelier_platform.jobs.errors import UnknownPlugin


def _shown(settings: configuration.PluginConfiguration) -> dict:
    version = settings.model_version
    return PluginSettingsSerializer({
        "plugin": settings.plugin_id, "enabled": settings.enabled, "model_version": version.pk if version else None,
        "model_version_name": version.version if version else None, "defaults": settings.defaults,
        "updated_at": settings.updated_at}).data


class PluginSettingsView(APIView):
    required_capabilities = {"get": Capability.ADMIN, "patch": Capability.ADMIN}

    @extend_schema(responses={200: PluginSettingsSerializer, **error_responses(403, 404)},
                   summary="The project's settings of a plugin: enabled, pinned model version, default params")
    def get(self, request, plugin_id: str):
        try:
            return Response(_shown(configuration.plugin_configuration(request.access.project, plugin_id)))
        except UnknownPlugin as error:
            raise NotFound(error.message) from None

    @extend_schema(request=PluginSettingsUpdateSerializer,
                   responses={200: PluginSettingsSerializer, **error_responses(400, 403, 404, 409)},
                   summary="Change the project's settings of a plugin (switch, model pin: promote or roll back, "
                           "default params); audited. A pin may require an evaluation (require_evaluation): 409 "
                           "when its run is missing or fell further than allowed")
    def patch(self, request, plugin_id: str):
        project = request.access.project
        try:
            configuration.plugin_configuration(project, plugin_id)  # an unknown plugin is a 404 before the body's 400
        except UnknownPlugin as error:
            raise NotFound(error.message) from None
        incoming = PluginSettingsUpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        configured = configuration.configure_plugin(project, plugin_id, actor_of(request), **incoming.validated_data)
        return Response(_shown(configured.after))


class ModelVersionFilter(django_filters.FilterSet):
    plugin = django_filters.CharFilter(field_name="plugin_id", help_text="a plugin's id: its versions only")

    class Meta:
        model = ModelVersion
        fields = ["plugin"]


class ModelVersionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The model versions the project may pin: the shared ones and its own (never another project's)."""

    required_capabilities = {"list": Capability.ADMIN}
    serializer_class = ModelVersionSerializer
    pagination_class = NewestFirstCursorPagination
    filterset_class = ModelVersionFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ModelVersion.objects.none()
        return configuration.pinnable_versions(self.request.access.project)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False):
            context["pins"] = configuration.pins(self.request.access.project)
        return context

    @extend_schema(responses={200: ModelVersionSerializer(many=True), **error_responses(400, 403)},
                   summary="Model versions the project may pin, newest first (cursor pages), each saying whether "
                           "it is pinned")
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)
