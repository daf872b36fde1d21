from django.contrib import admin

from atelier_platform.accounts.models import ApiKey, Membership, Project


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are issued with `create_api_key` (the secret is shown once); here they are listed and revoked."""

    list_display = ["prefix", "project", "name", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["project"]
    readonly_fields = ["prefix", "secret_hash", "created_at", "last_used_at", "created_by"]

    def has_add_permission(self, request):
        return False
