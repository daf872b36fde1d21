"""``GET /api/v1/workers/``: the worker processes, their state, models, device and memory."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from atelier_platform.accounts.roles import Capability
from atelier_platform.config import get_config
from atelier_platform.fleet.models import WorkerProcess
from atelier_platform.fleet.services import shown_state


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


def _relative_model_dir(path: str | None) -> str | None:
    """Model directories relative to the models root: the API does not publish the host's paths."""
    if not path:
        return None
    root = str(get_config().resolved_models_root)
    return path[len(root):].lstrip("/") if path.startswith(root + "/") else path.rsplit("/", 1)[-1]


def worker_view_data(worker: WorkerProcess, now) -> dict:
    stats = worker.stats or {}
    counters, gauges = stats.get("counters") or {}, stats.get("gauges") or {}
    return {
        "name": worker.name, "hostname": worker.hostname, "pid": worker.pid, "device": worker.device,
        "state": shown_state(worker, now), "detail": worker.detail, "current_jobs": worker.current_jobs,
        "loaded_models": [
            {**{k: m.get(k) for k in ("plugin", "plugin_version", "bytes", "load_seconds")},
             "model_dir": _relative_model_dir(m.get("model_dir"))}
            for m in worker.loaded_models or []
        ],
        "memory": {k: int(v) for k, v in (worker.memory or {}).items() if isinstance(v, (int, float))},
        "jobs_succeeded": int(counters.get("jobs_succeeded", 0)), "jobs_failed": int(counters.get("jobs_failed", 0)),
        "batches": int(counters.get("batches", 0)),
        "tokens_per_second": float(gauges.get("tokens_per_second", 0.0)),
        "images_per_second": float(gauges.get("images_per_second", 0.0)),
        "started_at": worker.started_at, "last_heartbeat_at": worker.heartbeat_at,
        "seconds_since_heartbeat": round(max(0.0, (now - worker.heartbeat_at).total_seconds()), 1),
    }


class WorkerListView(APIView):
    """Every worker process that reported in the last day; silent ones are shown as ``lost``.

    Workers serve every project, so only project owners (the ``admin`` capability) see them.
    """

    required_capabilities = {"get": Capability.ADMIN}

    @extend_schema(responses=WorkerSerializer(many=True), summary="Worker processes and their state")
    def get(self, request):
        now = timezone.now()
        workers = WorkerProcess.objects.order_by("name")
        return Response(WorkerSerializer([worker_view_data(w, now) for w in workers], many=True).data)
