"""Webhook endpoints and their delivery log over the API. Thin: parse, scope, call a service."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from atelier_platform.accounts.roles import Capability
from atelier_platform.api.access import parent_in_project
from atelier_platform.api.pagination import NewestFirstCursorPagination
from atelier_platform.api.schema import error_responses
from atelier_platform.webhooks import services
from atelier_platform.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from atelier_platform.webhooks.serializers import (
    WebhookDeliverySerializer,
    WebhookEndpointCreateSerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
    WebhookEndpointWithSecretSerializer,
    WebhookSecretRotateSerializer,
)

MANAGE = Capability.WEBHOOKS_MANAGE


def actor_of(request) -> str:
    access = request.access
    return f"key:{access.api_key.prefix}" if access.api_key else f"user:{access.user.pk}"


class WebhookEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A project's webhook endpoints. The signing secret is shown on creation and on rotation only."""

    required_capabilities = {action: MANAGE for action in
                             ("list", "retrieve", "create", "partial_update", "destroy", "test", "rotate_secret")}
    serializer_class = WebhookEndpointSerializer
    pagination_class = NewestFirstCursorPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookEndpoint.objects.none()
        # Scoped to the caller's project: another project's endpoint is "not found".
        return WebhookEndpoint.objects.filter(project=self.request.access.project)

    @extend_schema(request=WebhookEndpointCreateSerializer,
                   responses={201: WebhookEndpointWithSecretSerializer, **error_responses(400, 403, 409, 503)},
                   summary="Create a webhook endpoint (the answer holds its secret)")
    def create(self, request):
        incoming = WebhookEndpointCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        endpoint = services.create_endpoint(request.access.project, actor_of(request), **incoming.validated_data)
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/v1/webhooks/{endpoint.pk}/"})

    @extend_schema(request=WebhookEndpointUpdateSerializer,
                   responses={200: WebhookEndpointSerializer, **error_responses(400, 403, 404, 503)},
                   summary="Change a webhook endpoint")
    def partial_update(self, request, pk=None):
        incoming = WebhookEndpointUpdateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        endpoint = services.update_endpoint(self.get_object(), actor_of(request), incoming.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(responses={204: None}, summary="Delete a webhook endpoint and its delivery log")
    def destroy(self, request, pk=None):
        services.delete_endpoint(self.get_object(), actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer},
                   summary="Send a webhook.test ping now (it shows in the delivery log)")
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        delivery = services.send_test(self.get_object(), actor_of(request))
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=WebhookSecretRotateSerializer,
                   responses={200: WebhookEndpointWithSecretSerializer, **error_responses(400, 403, 404, 409)},
                   summary="Replace the signing secret (each secret replaced also signs for 24 hours)",
                   description="Every secret rotated away keeps signing deliveries until its own expiry (listed in "
                               f"previous_secrets), at most {services.MAX_PREVIOUS_SECRETS} at once: beyond that the "
                               "answer is 409 secret_rotation_limit, unless the body says {\"expire_previous\": true}.")
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        incoming = WebhookSecretRotateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        endpoint = services.rotate_secret(self.get_object(), actor_of(request), **incoming.validated_data)
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data)


ENDPOINT_ID = OpenApiParameter("endpoint_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The webhook endpoint's id.")
STATUS_FILTER = OpenApiParameter("status", OpenApiTypes.STR, enum=DeliveryStatus.values, description="Only deliveries in this state.")


@extend_schema_view(
    list=extend_schema(parameters=[ENDPOINT_ID, STATUS_FILTER], summary="The endpoint's delivery log, newest first"),
    retrieve=extend_schema(parameters=[ENDPOINT_ID], summary="One delivery with every attempt"),
    retry=extend_schema(parameters=[ENDPOINT_ID], request=None, responses={202: WebhookDeliverySerializer},
                        summary="Send a finished delivery once more (same webhook-id)"),
)
class WebhookDeliveryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    required_capabilities = {"list": MANAGE, "retrieve": MANAGE, "retry": MANAGE}
    serializer_class = WebhookDeliverySerializer
    pagination_class = NewestFirstCursorPagination

    def _endpoint(self) -> WebhookEndpoint:
        return parent_in_project(WebhookEndpoint.objects, self.request.access.project, self.kwargs.get("endpoint_id"),
                                 "No such webhook endpoint.")

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        deliveries = WebhookDelivery.objects.filter(endpoint=self._endpoint()).prefetch_related("attempt_log")
        wanted = self.request.query_params.get("status")
        if wanted is not None and self.action == "list":
            if wanted not in DeliveryStatus.values:
                raise ValidationError({"status": [f"One of: {', '.join(DeliveryStatus.values)}."]})
            deliveries = deliveries.filter(status=wanted)
        return deliveries

    @action(detail=True, methods=["post"])
    def retry(self, request, endpoint_id=None, pk=None):
        delivery = services.retry_delivery(self.get_object(), actor_of(request))
        fresh = self.get_queryset().get(pk=delivery.pk)
        return Response(WebhookDeliverySerializer(fresh).data, status=status.HTTP_202_ACCEPTED)
