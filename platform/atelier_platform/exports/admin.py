from django.contrib import admin

from atelier_platform.exports.models import Export


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    """Read-only: an export is its requester's; operators look, and may delete one (its file goes with it)."""

    list_display = ("id", "project", "kind", "format", "status", "rows_done", "rows_total", "requested_by", "created_at",
                    "expires_at")
    list_filter = ("kind", "status")
    search_fields = ("id", "project__slug", "requested_by")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
