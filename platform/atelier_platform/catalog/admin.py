from django.contrib import admin

from atelier_platform.catalog.models import ProjectPlugin


@admin.register(ProjectPlugin)
class ProjectPluginAdmin(admin.ModelAdmin):
    list_display = ["project", "plugin_id", "enabled", "updated_at"]
    list_filter = ["plugin_id", "enabled"]
