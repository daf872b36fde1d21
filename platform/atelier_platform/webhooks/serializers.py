from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from atelier_platform.api.serializers import StrictSerializer
from atelier_platform.webhooks.events import SUBSCRIBABLE_EVENTS
from atelier_platform.webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from atelier_platform.webhooks.signing import secret_hint
from atelier_platform.webhooks.targets import MAX_URL_LENGTH

EVENT_TYPES_HELP = "Event types to deliver; empty (the default) means all of them."


class WebhookEndpointCreateSerializer(StrictSerializer):
    url = serializers.CharField(max_length=MAX_URL_LENGTH, help_text="http(s) URL with a public host; redirects are not followed.")
    description = serializers.CharField(max_length=300, required=False, allow_blank=True, default="")
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=SUBSCRIBABLE_EVENTS), required=False,
                                        default=list, max_length=len(SUBSCRIBABLE_EVENTS) * 2, help_text=EVENT_TYPES_HELP)
    enabled = serializers.BooleanField(required=False, default=True)


class WebhookEndpointUpdateSerializer(StrictSerializer):
    url = serializers.CharField(max_length=MAX_URL_LENGTH, required=False)
    description = serializers.CharField(max_length=300, required=False, allow_blank=True)
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=SUBSCRIBABLE_EVENTS), required=False,
                                        max_length=len(SUBSCRIBABLE_EVENTS) * 2, help_text=EVENT_TYPES_HELP)
    enabled = serializers.BooleanField(required=False, help_text="true re-enables an endpoint and clears its failure count.")


class WebhookSecretRotateSerializer(StrictSerializer):
    expire_previous = serializers.BooleanField(
        required=False, default=False,
        help_text="true: the secrets rotated away before stop signing now (the one being replaced still signs for "
                  "24 hours). Needed when the most secrets that can still sign already do.")


class PreviousSecretSerializer(serializers.Serializer):
    secret_hint = serializers.CharField(help_text="The start of the secret rotated away.")
    expires_at = serializers.DateTimeField(help_text="Deliveries are signed with it too until then.")


class WebhookEndpointSerializer(serializers.ModelSerializer):
    secret_hint = serializers.SerializerMethodField(help_text="The start of the signing secret, to tell secrets apart.")
    previous_secrets = serializers.SerializerMethodField(
        help_text="Secrets rotated away that still sign every delivery beside the current one, newest first.")
    deliveries_url = serializers.SerializerMethodField()

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id", "url", "description", "event_types", "enabled", "consecutive_failures", "disabled_reason",
            "disabled_at", "secret_hint", "previous_secrets", "deliveries_url", "created_at", "updated_at",
        ]

    def get_secret_hint(self, endpoint: WebhookEndpoint) -> str:
        return secret_hint(endpoint.secret)

    @extend_schema_field(PreviousSecretSerializer(many=True))
    def get_previous_secrets(self, endpoint: WebhookEndpoint) -> list[dict]:
        still_signing = endpoint.previous_secrets_at(timezone.now())
        return PreviousSecretSerializer([{"secret_hint": secret_hint(p.secret), "expires_at": p.expires_at}
                                         for p in still_signing], many=True).data

    def get_deliveries_url(self, endpoint: WebhookEndpoint) -> str:
        return f"/api/v1/webhooks/{endpoint.pk}/deliveries/"


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    """Only in the answers to creation and rotation: the secret is shown then, and not listed."""

    secret = serializers.CharField(help_text="Standard Webhooks secret (whsec_...): verify the webhook-signature header with it.")

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_excerpt"]


# A plain string in the schema: an enum named "status" would collide with the jobs' status enum
# (drf-spectacular would then rename the jobs' component). The values are in the description.
@extend_schema_field({"type": "string", "description": "one of: " + ", ".join(DeliveryStatus.values)})
class DeliveryStatusField(serializers.CharField):
    pass


class WebhookDeliverySerializer(serializers.ModelSerializer):
    status = DeliveryStatusField(read_only=True, help_text="pending (waiting for an attempt), succeeded, failed (gave up) or cancelled (endpoint disabled)")
    endpoint_id = serializers.UUIDField(read_only=True)
    attempt_log = WebhookAttemptSerializer(many=True, read_only=True, help_text="Every attempt, oldest first.")
    job_webhook = serializers.SerializerMethodField(
        help_text="The job's own webhook URL (under the endpoint's) this delivery goes to; null: the endpoint's URL.")

    class Meta:
        model = WebhookDelivery
        fields = [
            "id", "endpoint_id", "job_webhook", "event_type", "event_id", "status", "attempts", "max_attempts", "next_attempt_at",
            "last_attempt_at", "last_status_code", "last_error", "last_response_excerpt", "created_at", "finished_at",
            "payload", "attempt_log",
        ]

    def get_job_webhook(self, delivery: WebhookDelivery) -> str | None:
        return delivery.target_url or None
