"""Exports in the background: one export of the content library or of the audit log, asked for by a member or an
API key, written to a file in media storage by a task on the exports queue (``services``), downloaded while it is
kept. Its row is the truth: status, progress, the file, and who may download it."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from atelier_platform.accounts.models import ApiKey, Project


class ExportKind(models.TextChoices):
    LIBRARY = "library", "The content library (outputs, as GET /api/v1/outputs/?export= gives them)"
    AUDIT = "audit", "The audit log (as GET /api/v1/audit/?export= gives it)"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    JSONL = "jsonl", "JSON Lines"


class ExportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_EXPORT_STATUSES = frozenset({ExportStatus.SUCCEEDED, ExportStatus.FAILED, ExportStatus.CANCELLED})


class ExportOrigin(models.TextChoices):
    """Where it was asked for: its rows' links are the ones that page's streaming export writes (the dashboard's
    file links carry ``?project=``, for a member signed in to several projects)."""

    API = "api", "API"
    DASHBOARD = "dashboard", "Dashboard"


class Export(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    kind = models.CharField(max_length=20, choices=ExportKind.choices)
    format = models.CharField(max_length=10, choices=ExportFormat.choices)
    #: the filters as given, checked by the streaming export's own code (``kinds.checked_filters``): text values
    filters = models.JSONField(default=dict, blank=True)
    #: the library's ``approved_by`` column filled in: the requester could read the review queue (or asked on the
    #: dashboard, whose library names approvers to every member)
    with_approvers = models.BooleanField(default=False)
    #: the scheme and host the rows' absolute links start with, as the request that asked for it was addressed
    site = models.CharField(max_length=300, blank=True, default="")
    requested_from = models.CharField(max_length=20, choices=ExportOrigin.choices, default=ExportOrigin.API)
    #: who asked: a member (signed in), or an API key; only they see and download it
    requested_by_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                          related_name="+")
    requested_by_key = models.ForeignKey(ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    #: the same, as the audit log names actors (``user:12``, ``key:ab12cd34ef56``): kept when the key or user goes
    requested_by = models.CharField(max_length=100, blank=True, default="")

    status = models.CharField(max_length=20, choices=ExportStatus.choices, default=ExportStatus.QUEUED)
    #: the run that holds it: each claim counts one up, and a run writes progress and its file only while its number
    #: is the row's (a run taken over or cancelled stops at its next progress)
    attempt = models.PositiveIntegerField(default=0)
    #: runs that stopped without a word (their worker died): past ``services.MAX_LOST_RUNS`` it fails
    lost_runs = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    rows_total = models.PositiveBigIntegerField(null=True, blank=True)
    file = models.FileField(max_length=500, blank=True, default="")
    size = models.PositiveBigIntegerField(default=0)
    error_code = models.CharField(max_length=50, blank=True, default="")
    error_message = models.TextField(blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    #: when its message was last sent: the sweeper sends it again when a queued one waits too long after that
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    #: the running run's last sign of life (each progress): a run silent past ``services.EXPORT_STALE_AFTER`` died
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    #: until when its file is downloaded (``ATELIER_EXPORTS_KEPT_HOURS`` after it succeeded); then it is deleted
    expires_at = models.DateTimeField(null=True, blank=True)
    #: when an erasure took back its file: it held content erased since (``services.withdraw_for_erasure``)
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    #: erasures that could touch the rows of the run that holds it (``services.withdraw_for_erasure``): how many, and
    #: the erasure time (``Job.erased_at``) of the first; before it stores its file, the run takes out or rewrites
    #: the rows of jobs erased since then, until no erasure came in between (``services._write``)
    erasures_seen = models.PositiveIntegerField(default=0)
    erased_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="export_project_newest"),
            models.Index(fields=["status", "enqueued_at"], name="export_status_enqueued"),
            models.Index(fields=["expires_at"], name="export_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} export {self.pk} ({self.format}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_EXPORT_STATUSES
