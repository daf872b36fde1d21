from django.contrib import admin

from atelier_platform.jobs.models import Job, Output


class OutputInline(admin.TabularInline):
    """Shown, never changed here: a review state moves only through the review service (lease, rules,
    decision, audit), never by a form field."""

    model = Output
    extra = 0
    fields = ["index", "review_state", "content"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "plugin_id", "status", "priority", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "plugin_id", "project"]
    list_select_related = ["project"]
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [OutputInline]

    def has_add_permission(self, request):
        return False
