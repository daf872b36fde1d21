from django.contrib import admin

from atelier_platform.accounts.models import ApiKey, Membership, Project
from atelier_platform.accounts.services import revoke_api_key


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
    """Keys are issued with `create_api_key` (the secret is shown once); here they are listed, renamed
    and revoked (an action: audited, and for good). What a key may reach (its project, its scopes) and
    its revocation are never form fields: a cleared date would bring a revoked key back."""

    list_display = ["prefix", "project", "name", "scopes", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["project"]
    readonly_fields = ["prefix", "project", "scopes", "secret_hash", "created_at", "last_used_at", "created_by",
                       "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked_at__isnull=True).select_related("project"):
            revoke_api_key(api_key, actor=f"user:{request.user.pk}")
        self.message_user(request, "Revoked: the next request with these keys gets 401.")
