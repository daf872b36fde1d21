"""``GET /api/v1/workers/``: the worker processes, their state, models, device and memory."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.fleet.models import WorkerProcess
from atelier_platform.fleet.services import worker_summary


class LoadedModelSerializer(serializers.Serializer):
    plugin = serializers.CharField()
    plugin_version = serializers.CharField()
    model_dir = serializers.CharField(allow_null=True, help_text="relative to the models root")
    bytes = serializers.IntegerField()
    load_seconds = serializers.FloatField()


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    hostname = serializers.CharField()
    pid = serializers.IntegerField()
    device = serializers.CharField()
    state = serializers.ChoiceField(choices=["starting", "ready", "busy", "unhealthy", "stopped", "lost"])
    detail = serializers.CharField()
    current_jobs = serializers.IntegerField()
    loaded_models = LoadedModelSerializer(many=True)
    memory = serializers.DictField(child=serializers.IntegerField())
    jobs_succeeded = serializers.IntegerField()
    jobs_failed = serializers.IntegerField()
    batches = serializers.IntegerField()
    tokens_per_second = serializers.FloatField(help_text="of the last batch")
    images_per_second = serializers.FloatField(help_text="of the last batch")
    started_at = serializers.DateTimeField()
    last_heartbeat_at = serializers.DateTimeField()
    seconds_since_heartbeat = serializers.FloatField()


class WorkerListView(APIView):
    """Every worker process that reported in the last day; silent ones are shown as ``lost``.

    Workers serve every project, so only project owners (the ``admin`` capability) see them.
    """

    required_capabilities = {"get": Capability.ADMIN}

    @extend_schema(responses=WorkerSerializer(many=True), summary="Worker processes and their state")
    def get(self, request):
        now = timezone.now()
        workers = WorkerProcess.objects.order_by("name")
        return Response(WorkerSerializer([worker_summary(w, now) for w in workers], many=True).data)
