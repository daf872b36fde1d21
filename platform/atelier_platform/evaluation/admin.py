"""Read only: reference sets and watches change through the API (validated against the plugin, audited), runs come
from their jobs."""

from django.contrib import admin

from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule, ReferenceSet
from atelier_platform.moderation.admin import AtelierModelAdmin


class ReadOnlyAdmin(AtelierModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ReferenceSet)
class ReferenceSetAdmin(ReadOnlyAdmin):
    list_display = ("name", "project", "plugin_id", "created_at")
    list_filter = ("plugin_id",)
    search_fields = ("name", "project__slug")


@admin.register(EvaluationRun)
class EvaluationRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "project", "reference_set", "model_version", "status", "cases_done", "cases_total", "created_at")
    list_filter = ("status", "plugin_id")
    search_fields = ("project__slug", "reference_set__name")


@admin.register(EvaluationSchedule)
class EvaluationScheduleAdmin(ReadOnlyAdmin):
    list_display = ("reference_set", "project", "interval_hours", "enabled", "next_run_at", "last_skip_code")
    list_filter = ("enabled",)
    search_fields = ("project__slug", "reference_set__name")
