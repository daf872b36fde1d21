"""What each worker process last said about itself.

Workers write their row every ``ATELIER_WORKER_REPORT_S``; the web reads the rows for
``GET /api/v1/workers/`` and ``/metrics``. Keeping this in the shared database (not in each
process's memory) is what lets one ``/metrics`` scrape see every worker on every host.
"""

from __future__ import annotations

from django.db import models


class WorkerState(models.TextChoices):
    STARTING = "starting", "Starting"
    READY = "ready", "Ready"
    BUSY = "busy", "Busy"
    UNHEALTHY = "unhealthy", "Unhealthy"
    STOPPED = "stopped", "Stopped"


#: Shown for a worker whose reports stopped without a clean stop (killed, host lost).
LOST = "lost"


class WorkerProcess(models.Model):
    name = models.CharField(max_length=255, unique=True, help_text="ATELIER_WORKER_NAME, else host:pid")
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    device = models.CharField(max_length=50)
    state = models.CharField(max_length=20, choices=WorkerState.choices, default=WorkerState.STARTING)
    detail = models.TextField(blank=True, help_text="why the worker is unhealthy, or what it is doing")
    #: [{"plugin", "plugin_version", "model_dir", "bytes", "load_seconds", "last_used_at"}]
    loaded_models = models.JSONField(default=list)
    #: {"device_allocated_bytes", "device_reserved_bytes", "device_total_bytes", "rss_bytes", "budget_bytes"}
    memory = models.JSONField(default=dict)
    #: counters, histograms and gauges of ``fleet.stats.WorkerStats``
    stats = models.JSONField(default=dict)
    current_jobs = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["heartbeat_at"], name="worker_heartbeat")]

    def __str__(self) -> str:
        return f"worker {self.name} ({self.state})"
