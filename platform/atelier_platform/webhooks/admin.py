from django.contrib import admin

from atelier_platform.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
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


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    readonly_fields = ["number", "started_at", "duration_ms", "status_code", "error", "response_excerpt"]
    can_delete = False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["event_id", "event_type", "endpoint", "status", "attempts", "last_status_code", "created_at"]
    list_filter = ["status", "event_type"]
    list_select_related = ["endpoint__project"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]
    inlines = [WebhookAttemptInline]

    def has_add_permission(self, request):
        return False
