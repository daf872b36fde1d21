"""``GET /api/v1/workers/``: the worker processes, their state, models, device and memory."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.fleet.services import worker_summaries


class LoadedModelSerializer(serializers.Serializer):
    plugin = serializers.CharField()
    plugin_version = serializers.CharField()
    model_dir = serializers.CharField(allow_null=True, help_text="relative to the models root")
    bytes = serializers.IntegerField()
    load_seconds = serializers.FloatField()


#: What the fields an operator alone sees say to a project owner (``fleet.services.OPERATOR_ONLY_FIELDS``).
OPERATORS_ONLY = "operators (Django staff) only: null for project owners and API keys"


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="ATELIER_WORKER_NAME, else host:pid; to project owners and API keys a "
                                           "label of the worker that does not name its host")
    hostname = serializers.CharField(allow_null=True, help_text=OPERATORS_ONLY)
    pid = serializers.IntegerField(allow_null=True, help_text=OPERATORS_ONLY)
    device = serializers.CharField()
    state = serializers.ChoiceField(choices=["starting", "ready", "busy", "unhealthy", "stopped", "lost"])
    detail = serializers.CharField(allow_null=True, help_text=OPERATORS_ONLY)
    current_jobs = serializers.IntegerField()
    loaded_models = LoadedModelSerializer(many=True, help_text="to project owners and API keys: only the models "
                                                               "of the project's enabled plugins (its pins, else "
                                                               "the plugins' defaults)")
    memory = serializers.DictField(child=serializers.IntegerField(), help_text="operators (Django staff) only: "
                                                                               "empty for project owners and API keys")
    jobs_succeeded = serializers.IntegerField(allow_null=True, help_text=OPERATORS_ONLY)
    jobs_failed = serializers.IntegerField(allow_null=True, help_text=OPERATORS_ONLY)
    batches = serializers.IntegerField(allow_null=True, help_text=OPERATORS_ONLY)
    tokens_per_second = serializers.FloatField(allow_null=True, help_text=f"of the last batch; {OPERATORS_ONLY}")
    images_per_second = serializers.FloatField(allow_null=True, help_text=f"of the last batch; {OPERATORS_ONLY}")
    started_at = serializers.DateTimeField()
    last_heartbeat_at = serializers.DateTimeField()
    seconds_since_heartbeat = serializers.FloatField()


class WorkerListView(APIView):
    """Every worker process that reported in the last day; silent ones are shown as ``lost``.

    Workers serve every project, so only project owners (the ``admin`` capability) see them, and only what
    concerns their project: whether workers are up and how loaded, and which of the project's own models they keep
    warm. Where a worker runs, its memory, its counters and the other tenants' models are for operators (a signed-in
    Django staff member or superuser), who see every field.
    """

    required_capabilities = {"get": Capability.ADMIN}

    @extend_schema(responses=WorkerSerializer(many=True), summary="Worker processes and their state")
    def get(self, request):
        return Response(WorkerSerializer(worker_summaries(request.access.project, request.user), many=True).data)
