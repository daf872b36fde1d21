from __future__ import annotations

from django.db import models

from atelier_platform.accounts.models import Project


class ProjectPlugin(models.Model):
    """Whether a project may use a plugin, and with which configuration.

    ``config`` holds project defaults for the plugin (brand voice, default params) and
    ``model_dir`` the model directory under the models root that the project pins; both are
    read by later stages (model versions, batching) and passed to the worker with each job.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="plugins")
    plugin_id = models.CharField(max_length=63)
    enabled = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "plugin_id"], name="one_setting_per_plugin")]
        ordering = ["plugin_id"]

    def __str__(self) -> str:
        return f"{self.plugin_id} in {self.project} ({'enabled' if self.enabled else 'disabled'})"
