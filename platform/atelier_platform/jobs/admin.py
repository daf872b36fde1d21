from django.contrib import admin
from django.db import transaction

from atelier_platform.catalog.models import ProjectPlugin
from atelier_platform.catalog.registry import get_registry
from atelier_platform.jobs.models import Job, Output
from atelier_platform.moderation import audit
from atelier_platform.moderation.admin import AtelierModelAdmin, admin_actor


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

    # A deletion is audited as the other admin changes are: its id, plugin and status, never its input or outputs
    # (the project's content, gone with it).
    def delete_model(self, request, obj):
        self.delete_queryset(request, Job.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        actor = admin_actor(request)
        with transaction.atomic():
            # locked: the status recorded is the one the job had when it went
            jobs = list(Job.objects.select_for_update(of=("self",)).filter(pk__in=queryset.values("pk"))
                        .select_related("project").only("id", "plugin_id", "status", "project"))
            audit.record_many([audit.event(job.project, actor, "job_deleted", job,
                                           before={"plugin": job.plugin_id, "status": job.status}) for job in jobs])
            Job.objects.filter(pk__in=[job.pk for job in jobs]).delete()  # its outputs and their files go with it
