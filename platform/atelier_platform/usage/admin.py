from django.contrib import admin

from atelier_platform.moderation.admin import AuditedAdmin
from atelier_platform.usage.models import ProjectQuota


@admin.register(ProjectQuota)
class ProjectQuotaAdmin(AuditedAdmin):
    """Operators grant quotas here; empty fields follow ATELIER_QUOTA_JOBS_PER_DAY / _COMPUTE_SECONDS_PER_MONTH.
    Each grant goes to the project's audit log; a quota stays with the project it was granted to (moved, it
    silently put that project back on the defaults)."""

    list_display = ["project", "jobs_per_day", "compute_seconds_per_month", "updated_at"]
    list_select_related = ["project"]
    search_fields = ["project__slug"]
    autocomplete_fields = ["project"]
    audit_action = "quota_changed"

    def get_readonly_fields(self, request, obj=None):
        return ["project"] if obj is not None else []

    def audit_view(self, obj) -> dict:
        return {"jobs_per_day": obj.jobs_per_day, "compute_seconds_per_month": obj.compute_seconds_per_month}
