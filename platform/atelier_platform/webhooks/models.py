from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from django.db import models

from atelier_platform.accounts.models import Project


class PreviousSecret(NamedTuple):
    secret: str
    expires_at: datetime

    def stored(self) -> dict[str, str]:
        return {"secret": self.secret, "expires_at": self.expires_at.isoformat()}


class WebhookEndpoint(models.Model):
    """A URL of one project that receives signed event deliveries.

    The secret is kept in clear because every delivery is signed with it (a hash could not sign).
    After a rotation the secrets rotated away sign too, each until its own expiry, so that a receiver
    still on any of them can switch without missing a delivery (Standard Webhooks allows several
    signatures in one header).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField(max_length=2000)
    description = models.CharField(max_length=300, blank=True)
    #: event types delivered to this endpoint; empty means every subscribable event
    event_types = models.JSONField(default=list, blank=True)
    secret = models.CharField(max_length=100)
    #: secrets rotated away, newest first, as ``{"secret": ..., "expires_at": ISO 8601}``; each signs until it expires
    previous_secrets = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    #: deliveries in a row that failed every attempt; any success resets it
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=300, blank=True)
    #: the same reason as a code and its values (``{"code": "disabled_after_failures", "params": {...}}``), by which
    #: the dashboard says it in its reader's language; ``disabled_reason`` is its English, the API's
    disabled_reason_coded = models.JSONField(default=dict, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "enabled"], name="webhook_project_enabled")]

    def accepts(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types

    def previous_secrets_at(self, now: datetime) -> list[PreviousSecret]:
        """The secrets rotated away that still sign at ``now``, newest first."""
        kept = (PreviousSecret(entry["secret"], datetime.fromisoformat(entry["expires_at"])) for entry in self.previous_secrets)
        return [previous for previous in kept if previous.expires_at > now]

    def signing_secrets(self, now: datetime) -> list[str]:
        """Every secret a delivery sent at ``now`` is signed with: the current one first."""
        return [self.secret, *(previous.secret for previous in self.previous_secrets_at(now))]

    def __str__(self) -> str:
        return f"webhook {self.url} ({self.project})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Waiting for its next attempt"
    SUCCEEDED = "succeeded", "Delivered (the receiver answered 2xx)"
    FAILED = "failed", "Gave up after its last attempt"
    CANCELLED = "cancelled", "Not sent: the endpoint was disabled"


class WebhookDelivery(models.Model):
    """One event for one endpoint: the delivery log, and the truth about the delivery.

    The row is written before any message is sent; messages carry only its id. An attempt claims
    the row by a conditional update that moves ``next_attempt_at`` past the attempt's time limit,
    so a duplicate message finds nothing due and does nothing.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=50)
    #: the ``webhook-id`` header: the same on every attempt, so receivers can drop duplicates
    event_id = models.CharField(max_length=64)
    payload = models.JSONField()
    #: a job's own webhook URL (under the endpoint's) this delivery goes to; empty: the endpoint's URL
    target_url = models.CharField(max_length=2000, blank=True, default="")
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    #: the same error as a code and its values (``{"code": "timed_out", "params": {"limit": "10"}}``), by which the
    #: dashboard says it in its reader's language; ``last_error`` is its English, the API's
    last_error_coded = models.JSONField(default=dict, blank=True)
    last_response_excerpt = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_newest"),
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]
        constraints = [models.UniqueConstraint(fields=["endpoint", "event_id"], name="one_delivery_per_endpoint_event")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} to {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, with what the receiver answered (or why nothing came back)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="one_webhook_attempt_per_number")]
