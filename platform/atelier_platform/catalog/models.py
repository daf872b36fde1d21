from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from atelier_platform.accounts.models import Project


#: What every output's provenance, a run's ``model_versions`` and the evaluation gate call the plugin's own default
#: model, used where a project pins no version. No registered version may take this name (any case): runs of "the
#: current model" know who answered only from that provenance name, so a version called "default" pinned then would
#: read as the unpinned default, and a release gate would measure one against the other's runs.
DEFAULT_MODEL_NAME = "default"


def reserved_version_name_problem(version: str) -> str | None:
    """Why ``version`` cannot name a registered model version, or None."""
    if version.strip().lower() == DEFAULT_MODEL_NAME:
        return (f"{version!r} is reserved: it names the plugin's own default model (no version pinned) in outputs' "
                f"provenance and evaluation gates; choose another name, such as v1 or 2026-11-28.")
    return None


class ModelVersionQuerySet(models.QuerySet):
    def available_to(self, project) -> "ModelVersionQuerySet":
        """The versions a project may see and pin: the shared ones and its own (``project``: a Project or its id)."""
        return self.filter(Q(project__isnull=True) | Q(project=project))


class ModelVersion(models.Model):
    """A model directory registered for a plugin, under a version name a project can pin.

    A version without a ``project`` is shared: every project sees it and may pin it (every version registered
    before versions had owners is). A version with one (``register_model --project``, such as a fine-tune made
    for one tenant) is that project's alone: no other project lists it, pins it or learns its name or
    description. Its owner is fixed at registration (the admin shows it read only): a private version made
    shared would hand a tenant's weights to everyone, a shared one made private would break the others' pins.

    A version's name is unique per plugin across the whole installation, private and shared alike: a private
    name can never shadow a shared one, a name in the operator's logs, the admin and each output's provenance
    means one directory, and no tenant can learn another's names from a refusal (only operators register
    versions). The price is that two tenants' fine-tunes need two names (``acme-ft-v1``, ``globex-ft-v1``).
    """

    plugin_id = models.CharField(max_length=63)
    version = models.CharField(max_length=64)
    model_dir = models.CharField(max_length=500, help_text="relative to the models root")
    description = models.TextField(blank=True)
    # CASCADE: a project deleted takes its private versions (the rows; the directories stay under the models root).
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="model_versions",
        help_text="the one project that may use this version; empty means shared by every project",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ModelVersionQuerySet.as_manager()

    class Meta:
        ordering = ["plugin_id", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["plugin_id", "version"], name="one_model_version_name_per_plugin")]

    def __str__(self) -> str:
        return f"{self.plugin_id} {self.version} ({self.model_dir})"

    def is_available_to(self, project_id: int | None) -> bool:
        return self.project_id is None or self.project_id == project_id

    def clean(self) -> None:
        problem = reserved_version_name_problem(self.version or "") if self._state.adding else None
        if problem:
            raise ValidationError({"version": problem})


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
    # RESTRICT, not PROTECT: a pinned version is never deleted under a project, yet a project deleted goes with
    # its private versions and its settings pinned to them (PROTECT refused that cascade).
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.RESTRICT,
        help_text="pinned model; empty means the plugin's default model directory",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "plugin_id"], name="one_setting_per_plugin")]
        ordering = ["plugin_id"]

    def __str__(self) -> str:
        return f"{self.plugin_id} in {self.project} ({'enabled' if self.enabled else 'disabled'})"

    @property
    def usable_model_version(self) -> ModelVersion | None:
        """The pinned version, or None where none is pinned or the pin names another project's private version
        (which every way of pinning refuses; a reader shows such a pin as no pin, and never names it)."""
        version = self.model_version if self.model_version_id else None
        return version if version is not None and version.is_available_to(self.project_id) else None

    def clean(self) -> None:
        from atelier_platform.catalog.services import default_cap_problems, installed_plugin, param_default_problems

        params = (self.config or {}).get("params") if isinstance(self.config, dict) else None
        plugin = installed_plugin(self.plugin_id)
        if params is not None and plugin is not None:
            # Saved, a default the plugin refuses would fail every caller's job over a field they never sent.
            problems = params if not isinstance(params, dict) else (param_default_problems(plugin, params)
                                                                    or default_cap_problems(plugin, params))
            if problems:
                raise ValidationError({"config": f"Default params the plugin {self.plugin_id} refuses: {problems}"})
        # A chatbot pinned to an image model's directory would fail every job at load time.
        if self.model_version_id and self.model_version.plugin_id != self.plugin_id:
            raise ValidationError({"model_version": f"Version {self.model_version.version!r} is a model of "
                                                    f"{self.model_version.plugin_id}, not of {self.plugin_id}."})
        # Another tenant's fine-tune: its weights are theirs alone.
        if self.model_version_id and not self.model_version.is_available_to(self.project_id):
            raise ValidationError({"model_version": f"Version {self.model_version.version!r} is private to project "
                                                    f"{self.model_version.project.slug!r}: pin a shared version or "
                                                    f"one of this project's own."})
