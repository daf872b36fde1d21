"""Routes under /api/v1/ (included by atelier_platform.api.urls)."""

from rest_framework.routers import DefaultRouter

from atelier_platform.webhooks.views import WebhookDeliveryViewSet, WebhookEndpointViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")
router.register(r"webhooks/(?P<endpoint_id>[0-9a-fA-F-]{36})/deliveries", WebhookDeliveryViewSet, basename="webhook-delivery")

urlpatterns = router.urls
