from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from atelier_platform.accounts.models import Project


class ModelVersion(models.Model):
    """A model directory registered for a plugin, under a version name a project can pin."""

    plugin_id = models.CharField(max_length=63)
    version = models.CharField(max_length=64)
    model_dir = models.CharField(max_length=500, help_text="relative to the models root")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["plugin_id", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["plugin_id", "version"], name="one_model_version_name_per_plugin")]

    def __str__(self) -> str:
        return f"{self.plugin_id} {self.version} ({self.model_dir})"


class ProjectPlugin(models.Model):
    """Whether a project may use a plugin, and with which configuration.

    ``config["params"]`` holds the project's default params for the plugin (brand voice, banned
    words, ...), merged under each caller's params. ``model_version`` pins a registered model
    directory; without one the plugin's manifest default is used.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="plugins")
    plugin_id = models.CharField(max_length=63)
    enabled = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT,
        help_text="pinned model; empty means the plugin's default model directory",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "plugin_id"], name="one_setting_per_plugin")]
        ordering = ["plugin_id"]

    def __str__(self) -> str:
        return f"{self.plugin_id} in {self.project} ({'enabled' if self.enabled else 'disabled'})"

    def clean(self) -> None:
        from atelier_platform.catalog.services import installed_plugin, param_default_problems

        params = (self.config or {}).get("params") if isinstance(self.config, dict) else None
        plugin = installed_plugin(self.plugin_id)
        if params is not None and plugin is not None:
            # Saved, a default the plugin refuses would fail every caller's job over a field they never sent.
            problems = params if not isinstance(params, dict) else param_default_problems(plugin, params)
            if problems:
                raise ValidationError({"config": f"Default params the plugin {self.plugin_id} refuses: {problems}"})
        # A chatbot pinned to an image model's directory would fail every job at load time.
        if self.model_version_id and self.model_version.plugin_id != self.plugin_id:
            raise ValidationError({"model_version": f"Version {self.model_version.version!r} is a model of "
                                                    f"{self.model_version.plugin_id}, not of {self.plugin_id}."})
