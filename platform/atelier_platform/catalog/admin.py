from django.contrib import admin

from atelier_platform.catalog.models import ModelVersion, ProjectPlugin


@admin.register(ProjectPlugin)
class ProjectPluginAdmin(admin.ModelAdmin):
    list_display = ["project", "plugin_id", "enabled", "model_version", "updated_at"]
    list_filter = ["plugin_id", "enabled"]
    list_select_related = ["project", "model_version"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Versions are registered with `manage.py register_model`, which checks the directory."""

    list_display = ["plugin_id", "version", "model_dir", "created_at"]
    list_filter = ["plugin_id"]
    readonly_fields = ["plugin_id", "version", "model_dir", "created_at"]

    def has_add_permission(self, request):
        return False  # an empty version, its directory never checked, would join the pin pickers
