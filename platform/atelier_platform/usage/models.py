from __future__ import annotations

import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from atelier_platform.accounts.models import Project


class ProjectQuota(models.Model):
    """A project's own quotas. Empty fields take the operator's defaults (``ATELIER_QUOTA_*``); 0 is unlimited.

    Set by operators (Django admin), not by project owners: a quota is what the operator grants.
    """

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="quota")
    jobs_per_day = models.PositiveIntegerField(
        null=True, blank=True, help_text="jobs per UTC day (blocked inputs not counted); empty: the default; 0: unlimited"
    )
    compute_seconds_per_month = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="worker seconds per UTC calendar month; empty: the default; 0: unlimited"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"quota of {self.project}"


class IdempotencyState(models.TextChoices):
    IN_FLIGHT = "in_flight", "The first request is being processed"
    COMPLETED = "completed", "Done; its answer is replayed"


class IdempotencyRecord(models.Model):
    """One Idempotency-Key of one project on one endpoint (``scope``).

    Written *before* the request's work starts (state ``in_flight``, a lock until ``locked_until``),
    so that a duplicate arriving meanwhile is told to wait instead of doing the work twice; the
    unique constraint makes the first writer win on every database and across processes. A
    finished request either leaves its answer here (``completed``, replayed until ``expires_at``)
    or, where the created rows carry the key themselves (single jobs), removes the record.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=200, help_text="the endpoint, e.g. jobs/batch or /api/v1/reviews/12/decision/")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request body")
    state = models.CharField(max_length=20, choices=IdempotencyState.choices, default=IdempotencyState.IN_FLIGHT)
    #: the holder of the lock; a holder whose lock expired and was taken over can no longer write
    holder = models.UUIDField(default=uuid.uuid4)
    locked_until = models.DateTimeField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "scope", "key"], name="one_idempotency_record_per_key"),
        ]
        indexes = [models.Index(fields=["project", "expires_at"], name="idempotency_expiry")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key} ({self.state})"
