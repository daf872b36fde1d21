"""``/metrics`` for Prometheus: queue depth from the job table, everything else from worker reports.

Every figure comes from the shared database, so one scrape of any web process sees all
workers on all hosts. Per-worker series carry a ``worker`` label; sum them in PromQL
(``sum(rate(atelier_generated_tokens_total[1m]))``). A worker that restarts starts its
counters from zero, which ``rate()`` understands as a counter reset.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from datetime import timedelta

from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from atelier_platform.config import get_config
from atelier_platform.fleet.models import WorkerProcess
from atelier_platform.fleet.services import queue_counts, shown_state
from atelier_platform.fleet.stats import cumulative_buckets
from atelier_platform.jobs.waiting import wait_slot_metrics
from atelier_platform.moderation.checks import unavailable_safety_checks

HISTOGRAM_HELP = {
    "queue_wait_seconds": "Seconds from a job's message being due to a worker claiming it.",
    "run_seconds": "Seconds from claim to the job's result being stored.",
    "batch_size": "Jobs per plugin call.",
}
COUNTER_HELP = {
    "tokens": ("atelier_generated_tokens", "Tokens generated."),
    "images": ("atelier_generated_images", "Images generated."),
    "generation_seconds": ("atelier_generation_seconds", "Seconds spent inside plugin generate calls."),
    "batches": ("atelier_batches", "Plugin generate calls."),
    "oom_splits": ("atelier_oom_batch_splits", "Batches split in two after running out of device memory."),
}
JOB_OUTCOMES = {"jobs_succeeded": "succeeded", "jobs_failed": "failed", "jobs_retried": "retried", "jobs_cancelled": "cancelled"}


class AtelierCollector:
    """Builds the metric families at scrape time from the database."""

    def collect(self):
        depth = GaugeMetricFamily("atelier_queue_depth", "Jobs queued, per queue.", labels=["queue"])
        running = GaugeMetricFamily("atelier_jobs_running", "Jobs running, per queue.", labels=["queue"])
        for queue, counts in queue_counts().items():
            depth.add_metric([queue], counts["queued"])
            running.add_metric([queue], counts["running"])
        yield depth
        yield running

        now = timezone.now()
        # Workers gone for a while no longer export series; the rows stay for the API for a day.
        workers = list(WorkerProcess.objects.filter(heartbeat_at__gte=now - timedelta(hours=1)))
        states = GaugeMetricFamily("atelier_worker_up", "1 for each worker process in its shown state.", labels=["worker", "state", "device"])
        age = GaugeMetricFamily("atelier_worker_heartbeat_age_seconds", "Seconds since the worker last reported.", labels=["worker"])
        histograms = {name: HistogramMetricFamily(f"atelier_job_{name}" if name != "batch_size" else "atelier_batch_size",
                                                  text, labels=["worker"]) for name, text in HISTOGRAM_HELP.items()}
        counters = {key: CounterMetricFamily(name, text, labels=["worker"]) for key, (name, text) in COUNTER_HELP.items()}
        jobs = CounterMetricFamily("atelier_jobs_finished", "Jobs a worker finished, by outcome.", labels=["worker", "outcome"])
        tokens_rate = GaugeMetricFamily("atelier_tokens_per_second", "Tokens per second of the worker's last batch.", labels=["worker"])
        images_rate = GaugeMetricFamily("atelier_images_per_second", "Images per second of the worker's last batch.", labels=["worker"])
        load = GaugeMetricFamily("atelier_model_load_seconds", "Seconds a loaded model took to load.", labels=["worker", "plugin", "model"])
        memory = GaugeMetricFamily("atelier_device_memory_bytes", "Memory of the worker's device and process.", labels=["worker", "device", "kind"])
        not_running = GaugeMetricFamily(
            "atelier_safety_check_not_running",
            "1 for each safety check a process found but does not run (it failed to import or load): its category goes unscreened there.",
            labels=["process", "check"])
        for check in unavailable_safety_checks():  # this web process's own, for input screening
            not_running.add_metric([f"web {socket.gethostname()}:{os.getpid()}", check], 1)
        for worker in workers:
            name = worker.name
            state = shown_state(worker, now)
            states.add_metric([name, state, worker.device], 1)
            age.add_metric([name], max(0.0, (now - worker.heartbeat_at).total_seconds()))
            stats = worker.stats or {}
            for key, histogram in (stats.get("histograms") or {}).items():
                if key in histograms:
                    histograms[key].add_metric([name], cumulative_buckets(histogram), histogram.get("sum", 0.0))
            values = stats.get("counters") or {}
            for key, family in counters.items():
                family.add_metric([name], float(values.get(key, 0)))
            for key, outcome in JOB_OUTCOMES.items():
                jobs.add_metric([name, outcome], float(values.get(key, 0)))
            gauges = stats.get("gauges") or {}
            tokens_rate.add_metric([name], float(gauges.get("tokens_per_second", 0)))
            images_rate.add_metric([name], float(gauges.get("images_per_second", 0)))
            for model in worker.loaded_models or []:
                load.add_metric([name, model.get("plugin", ""), model.get("model_dir") or ""], float(model.get("load_seconds", 0)))
            for kind, value in (worker.memory or {}).items():
                if isinstance(value, (int, float)):
                    memory.add_metric([name, worker.device, kind.removesuffix("_bytes")], float(value))
            if state not in ("lost", "stopped"):
                for check in stats.get("safety_checks_not_running") or []:
                    not_running.add_metric([name, str(check)], 1)
        yield states
        yield age
        yield from histograms.values()
        yield from counters.values()
        yield jobs
        yield tokens_rate
        yield images_rate
        yield load
        yield memory
        yield not_running
        yield from wait_slot_metrics()  # this web process's requests waiting for their jobs


def _allowed(request) -> bool:
    token = get_config().metrics_token
    if token:
        import hmac

        sent = request.headers.get("Authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())
    if "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META:
        # A proxy on this host passed it on: it comes from wherever the proxy's client is, not from here.
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    # Behind a reverse proxy every request comes from the proxy's address: set a token there.
    return address.is_loopback


@never_cache
@require_GET
def metrics_view(request):
    if not _allowed(request):
        return HttpResponse(
            "metrics: set ATELIER_METRICS_TOKEN and send 'Authorization: Bearer <token>' "
            "(without a token only loopback addresses may scrape)\n",
            status=403, content_type="text/plain",
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AtelierCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
