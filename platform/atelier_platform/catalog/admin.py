from django import forms
from django.contrib import admin

from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.jobs.submission import nul_paths
from atelier_platform.moderation.admin import AtelierModelAdmin, AuditedAdmin


class ProjectPluginForm(forms.ModelForm):
    class Meta:
        model = ProjectPlugin
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.project_id and "model_version" in self.fields:
            # a setting's choices: the shared versions and its project's own (clean() refuses any other)
            field = self.fields["model_version"]
            field.queryset = ModelVersion.objects.available_to(self.instance.project_id).order_by("plugin_id", "version")

    def clean_config(self):
        config = self.cleaned_data.get("config")
        if config is None:
            return {}  # emptied: no defaults (the column holds an object, never NULL)
        # Every job of the project reads its defaults from here: a list or a string failed each one (500).
        if not isinstance(config, dict):
            raise forms.ValidationError('Give an object, such as {"params": {"max_new_tokens": 64}}.')
        if nul_paths(config, "config"):
            raise forms.ValidationError("The NUL character (\\u0000) is not allowed: the database cannot store it.")
        return config


@admin.register(ProjectPlugin)
class ProjectPluginAdmin(AuditedAdmin):
    """A plugin switched on or off, pinned to a model version or given other defaults here is audited as
    on the dashboard's settings page. A setting stays with its project and plugin: moved, it left its
    project without the plugin and put the change in another project's log."""

    form = ProjectPluginForm
    list_display = ["project", "plugin_id", "enabled", "model_version", "updated_at"]
    list_filter = ["plugin_id", "enabled"]
    list_select_related = ["project", "model_version"]
    audit_action = "plugin_configured"

    def get_readonly_fields(self, request, obj=None):
        return ["project", "plugin_id"] if obj is not None else []

    def audit_view(self, obj) -> dict:
        params = (obj.config or {}).get("params") if isinstance(obj.config, dict) else None
        # the names of the defaults, not their values: a brand's banned words are the project's own business
        return {"plugin": obj.plugin_id, "enabled": obj.enabled,
                "model_version": obj.model_version.version if obj.model_version_id else None,
                "default_params": sorted(params) if isinstance(params, dict) else []}


@admin.register(ModelVersion)
class ModelVersionAdmin(AtelierModelAdmin):
    """Versions are registered with `manage.py register_model`, which checks the directory."""

    list_display = ["plugin_id", "version", "owner", "model_dir", "created_at"]
    list_filter = ["plugin_id", ("project", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["project"]
    search_fields = ["version", "project__slug"]
    # the owner too: made shared, a tenant's fine-tune would be everyone's; made private, the others' pins broke
    readonly_fields = ["plugin_id", "version", "project", "model_dir", "created_at"]
    empty_value_display = "shared"  # a version without a project (and the filter's choice of them)

    @admin.display(description="project", ordering="project__slug")
    def owner(self, obj) -> str:
        return obj.project.slug if obj.project_id else "shared"

    def has_add_permission(self, request):
        return False  # an empty version, its directory never checked, would join the pin pickers
