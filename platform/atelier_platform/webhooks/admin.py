from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.db import transaction

from atelier_platform.moderation.admin import AtelierModelAdmin, admin_actor
from atelier_platform.webhooks import services
from atelier_platform.webhooks.events import EventType
from atelier_platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AtelierModelAdmin):
    list_display = ["url", "project", "enabled", "consecutive_failures", "disabled_at", "created_at"]
    list_filter = ["enabled", "project"]
    list_select_related = ["project"]
    # The secret is left out: the admin is no place to read signing keys over someone's shoulder.
    fields = ["project", "url", "description", "event_types", "enabled", "consecutive_failures", "disabled_reason",
              "disabled_at", "created_at", "updated_at"]
    # Read-only: changes go through the API, which checks URLs, resets failure counts and audits.
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def get_deleted_objects(self, objs, request):
        # Counts of what goes with them, not a line per delivery and attempt as Django's page had: the log of an
        # endpoint in use for months holds hundreds of thousands, each read and linked before the page showed.
        endpoints = list(objs)
        deliveries = WebhookDelivery.objects.filter(endpoint__in=endpoints).count()
        attempts = WebhookAttempt.objects.filter(delivery__endpoint__in=endpoints).count()
        model_count = {"webhook endpoints": len(endpoints), "webhook deliveries": deliveries, "webhook attempts": attempts}
        delete_deliveries = f"webhooks.{get_permission_codename('delete', WebhookDelivery._meta)}"
        perms_needed = {WebhookDelivery._meta.verbose_name} if deliveries and not request.user.has_perm(delete_deliveries) \
            else set()
        return [str(endpoint) for endpoint in endpoints], model_count, perms_needed, []

    # Deleted through the service the API and the dashboard use, which audits it (the bulk action too).
    def delete_model(self, request, obj):
        services.delete_endpoint(obj, admin_actor(request))

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for endpoint in queryset.select_related("project"):
                services.delete_endpoint(endpoint, admin_actor(request))


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    readonly_fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_excerpt"]
    can_delete = False


class EventTypeFilter(admin.SimpleListFilter):
    """The event types there are: Django's own filter read every delivery for their distinct types, on every
    page of the list."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request, model_admin):
        return EventType.choices

    def queryset(self, request, queryset):
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(AtelierModelAdmin):
    list_display = ["event_id", "event_type", "endpoint", "status", "attempts", "last_status_code", "created_at"]
    list_filter = ["status", EventTypeFilter]
    list_select_related = ["endpoint__project"]
    show_full_result_count = False  # a filtered page counted every delivery of the table too
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    inlines = [WebhookAttemptInline]

    def has_add_permission(self, request):
        return False
