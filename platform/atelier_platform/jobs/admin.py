from django.contrib import admin

from atelier_platform.catalog.models import ProjectPlugin
from atelier_platform.catalog.registry import get_registry
from atelier_platform.jobs.models import Job, Output
from atelier_platform.moderation.admin import AtelierModelAdmin


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


class PluginFilter(admin.SimpleListFilter):
    """The plugins installed or set up for some project: Django's own filter read every job for their
    distinct plugin ids, on every page of the list."""

    title = "plugin"
    parameter_name = "plugin_id"

    def lookups(self, request, model_admin):
        plugin_ids = {plugin.manifest.id for plugin in get_registry().available()}
        plugin_ids |= set(ProjectPlugin.objects.values_list("plugin_id", flat=True).distinct())
        return [(plugin_id, plugin_id) for plugin_id in sorted(plugin_ids)]

    def queryset(self, request, queryset):
        return queryset.filter(plugin_id=self.value()) if self.value() else queryset


@admin.register(Job)
class JobAdmin(AtelierModelAdmin):
    list_display = ["id", "project", "plugin_id", "status", "priority", "attempts", "created_at", "finished_at"]
    list_filter = ["status", PluginFilter, "project"]
    list_select_related = ["project"]
    show_full_result_count = False  # a filtered page counted every job of the table too
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [OutputInline]

    def has_add_permission(self, request):
        return False
