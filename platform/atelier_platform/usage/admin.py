from django.contrib import admin

from atelier_platform.usage.models import ProjectQuota


@admin.register(ProjectQuota)
class ProjectQuotaAdmin(admin.ModelAdmin):
    """Operators grant quotas here; empty fields follow ATELIER_QUOTA_JOBS_PER_DAY / _COMPUTE_SECONDS_PER_MONTH."""

    list_display = ["project", "jobs_per_day", "compute_seconds_per_month", "updated_at"]
    search_fields = ["project__slug"]
    autocomplete_fields = ["project"]
