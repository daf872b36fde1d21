"""What the dashboard keeps of its own: prompt templates that a project's members share."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from atelier_platform.accounts.models import Project


class PromptTemplate(models.Model):
    """A saved request for one plugin (its input and params), reusable by everyone in the project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompt_templates")
    plugin_id = models.CharField(max_length=63)
    name = models.CharField(max_length=100)
    input = models.JSONField(default=dict)
    params = models.JSONField(default=dict)
    priority = models.PositiveSmallIntegerField(default=5)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "plugin_id", "name"], name="one_template_name_per_plugin")]

    def __str__(self) -> str:
        return f"{self.name} ({self.plugin_id}, {self.project})"
