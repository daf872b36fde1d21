"""A project's configuration of one plugin, as its owner changes it: switched on or off, pinned to a model version
(promoted, rolled back), and its default params (the recommender's brand voice and banned words, the chatbot's reply
length...). The settings page, the API (``/api/v1/plugins/{id}/settings/``) and the Django admin keep to the same
rules and audit each change alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from atelier_platform.accounts.models import Project
from atelier_platform.catalog.models import ModelVersion, ProjectPlugin
from atelier_platform.catalog.services import (
    default_cap_problems,
    installed_plugin,
    param_defaults_of,
    strict_params_errors,
)
from atelier_platform.jobs.errors import InvalidJobInput, UnknownPlugin
from atelier_platform.moderation import audit

#: An argument of ``configure_plugin`` that was not given: that part of the configuration stays as it is.
KEEP: Any = type("Keep", (), {"__repr__": lambda self: "KEEP"})()


@dataclass(frozen=True)
class PluginConfiguration:
    """What a project set for a plugin; a plugin never configured is off, on its default model, with no defaults."""

    plugin_id: str
    enabled: bool
    model_version: ModelVersion | None  # None: the plugin's default model directory
    defaults: dict[str, Any]
    updated_at: Any = None


@dataclass(frozen=True)
class Configured:
    """The outcome of ``configure_plugin``: the configuration before and after, and what changed (``enabled``,
    ``model_version``, ``defaults``; empty when nothing did, and then nothing was written or audited)."""

    before: PluginConfiguration
    after: PluginConfiguration
    changed: frozenset[str] = field(default_factory=frozenset)


def plugin_configuration(project: Project, plugin_id: str) -> PluginConfiguration:
    """The project's configuration of an installed plugin (``UnknownPlugin`` for one that is not installed)."""
    _installed_or_refuse(plugin_id)
    setting = ProjectPlugin.objects.filter(project=project, plugin_id=plugin_id).select_related("model_version").first()
    return _configuration_of(setting, plugin_id)


def configure_plugin(project: Project, plugin_id: str, actor: str, *, enabled: bool = KEEP, model_version: int | None = KEEP,
                     defaults: dict = KEEP, require_evaluation: dict | None = None) -> Configured:
    """Change what is given of a project's configuration of ``plugin_id``, all of it or none, in one transaction with
    one ``plugin_configured`` audit event (before and after, as the admin records them).

    ``model_version``: the id of a version of this plugin the project may use (shared, or its own), or None for the
    plugin's default model: a promotion and a rollback are both a pin. Another project's private version reads as no
    version at all, so that a guessed id learns nothing of it. ``defaults`` replaces the project's default params as
    a whole (``{}``: none): each field is one the plugin's params schema names, with a value its Params take as a
    caller's JSON would be taken (strictly), without NUL characters (the database cannot store them), and within
    the server's caps on what a job may ask (``usage.limits``).

    ``require_evaluation`` (``{"reference_set": name or id, "max_drop": {"chrf": 1.5}}``) gates a change of the pin:
    the version pinned must have a succeeded run of the set no metric of which fell further than allowed against the
    newest run of the version pinned now (``evaluation.gate.check_promotion``: else 409, nothing changed); the evidence
    goes to the audit event.

    Refusals are ``InvalidJobInput`` (400 ``validation_error``) with ``details`` by field (``model_version``,
    ``defaults.max_chars``) and pydantic's errors in ``field_errors`` (located from ``defaults``, for the dashboard's
    own words); a plugin not installed is ``UnknownPlugin``."""
    plugin = _installed_or_refuse(plugin_id)
    requirement = None
    if require_evaluation is not None:
        from atelier_platform.evaluation import gate

        if model_version is KEEP:
            raise InvalidJobInput("require_evaluation gates a promotion: give model_version too.",
                                  details={"require_evaluation": ["Give model_version, the version to pin."]})
        requirement = gate.promotion_requirement(project, plugin_id, require_evaluation)
    problems: dict[str, list[str]] = {}
    field_errors: list[dict] = []
    version = None
    if model_version is not KEEP and model_version is not None:
        version = ModelVersion.objects.available_to(project).filter(plugin_id=plugin_id, pk=model_version).first() \
            if isinstance(model_version, int) and not isinstance(model_version, bool) and 0 < model_version < 2 ** 63 \
            else None
        if version is None:
            problems["model_version"] = [f"No model version {model_version!r} of {plugin_id} that this project may use: "
                                         "see GET /api/v1/model-versions/?plugin=" + plugin_id + "."]
    if defaults is not KEEP:
        found, errors = default_problems(plugin, defaults)
        problems.update(found)
        field_errors.extend(errors)
    if problems:
        raise InvalidJobInput(f"The settings of {plugin_id} were not saved: correct the fields named.", details=problems,
                              field_errors=field_errors)
    with transaction.atomic():
        ProjectPlugin.objects.get_or_create(project=project, plugin_id=plugin_id, defaults={"enabled": False})
        # locked until the commit: two owners saving at once each audit what they really changed
        setting = ProjectPlugin.objects.select_for_update(of=("self",)).select_related("model_version").get(
            project=project, plugin_id=plugin_id)
        before = _configuration_of(setting, plugin_id)
        updates: dict[str, Any] = {}
        if enabled is not KEEP and bool(enabled) != before.enabled:
            updates["enabled"] = bool(enabled)
        # (a pin to another project's version, which every way of pinning refuses, reads as none: pinning nothing
        # over it clears it)
        if model_version is not KEEP and (version.pk if version else None) != setting.model_version_id:
            updates["model_version"] = version
        if defaults is not KEEP and defaults != before.defaults:
            config = dict(setting.config) if isinstance(setting.config, dict) else {}
            config["params"] = dict(defaults)
            if not defaults:
                config.pop("params")
            updates["config"] = config
        if not updates:
            return Configured(before, before)
        evidence = {}
        if requirement is not None and "model_version" in updates:
            # under the setting's lock: the version measured against is the one pinned until this commits
            evidence = {"evaluation": gate.check_promotion(project, requirement, candidate=version,
                                                           current=before.model_version)}
        for name, value in updates.items():
            setattr(setting, name, value)
        setting.save(update_fields=[*updates, "updated_at"])
        after = _configuration_of(setting, plugin_id)
        changed = frozenset("defaults" if name == "config" else name for name in updates)
        audit.record(project, actor, "plugin_configured", setting, before=audit_view(before),
                     after={**audit_view(after), "changed_params": changed_params(before.defaults, after.defaults),
                            **evidence})
    return Configured(before, after, changed)


def pinnable_versions(project: Project):
    """The model versions ``project`` may pin: the shared ones and its own, never another project's."""
    return ModelVersion.objects.available_to(project)


def pins(project: Project) -> dict[str, int]:
    """The version each plugin of the project is pinned to, by plugin id (a pin to another project's private
    version, refused everywhere, is left out as no pin)."""
    return {plugin_id: version_id for plugin_id, version_id, owner in ProjectPlugin.objects.filter(
        project=project, model_version__isnull=False).values_list("plugin_id", "model_version_id", "model_version__project_id")
        if owner is None or owner == project.pk}


def default_problems(plugin, defaults) -> tuple[dict[str, list[str]], list[dict]]:
    """What refuses ``defaults`` as a plugin's default params, by field (``defaults.brand_voice``), and pydantic's
    errors behind them, located from ``defaults``. Nothing for defaults the plugin takes."""
    from atelier_platform.jobs.submission import nul_paths

    if not isinstance(defaults, dict):
        return {"defaults": ["Give an object of params, such as {\"max_new_tokens\": 64}, or {} for none."]}, []
    nul = nul_paths(defaults, "defaults")
    if nul:
        return {path: ["The NUL character (\\u0000) is not allowed."] for path in nul}, []
    # Params that ignore unknown fields would store one silently, and the owner would believe it did something.
    known = set((plugin.params_schema().get("properties") or {}))
    problems: dict[str, list[str]] = {f"defaults.{name}": [f"{plugin.manifest.id} has no param {name!r}; it takes: "
                                                           f"{', '.join(sorted(known)) or 'none'}."]
                                      for name in defaults if name not in known}
    errors = [{**error, "loc": ("defaults", *error["loc"])} for error in strict_params_errors(plugin, defaults)
              if error["loc"] and error["loc"][0] in defaults and error["loc"][0] in known and error["type"] != "missing"]
    for error in errors:
        problems.setdefault(".".join(map(str, error["loc"])), []).append(error["msg"])
    if not problems:  # within the plugin's schema, and within this server's caps too
        problems = {"defaults" + path.removeprefix("params"): messages
                    for path, messages in default_cap_problems(plugin, defaults).items()}
    return problems, errors


def changed_params(before: dict, after: dict) -> list[str]:
    """The names of the default params set, changed or removed: the audit says which, never their values (a brand's
    banned words are the project's own business)."""
    return sorted(name for name in {*before, *after} if before.get(name, KEEP) != after.get(name, KEEP))


def audit_view(configuration: PluginConfiguration) -> dict:
    """A configuration as the audit log records it: the version by name, the defaults by their names only."""
    return {"plugin": configuration.plugin_id, "enabled": configuration.enabled,
            "model_version": configuration.model_version.version if configuration.model_version else None,
            "default_params": sorted(configuration.defaults)}


def _configuration_of(setting: ProjectPlugin | None, plugin_id: str) -> PluginConfiguration:
    if setting is None:
        return PluginConfiguration(plugin_id, False, None, {})
    return PluginConfiguration(plugin_id, setting.enabled, setting.usable_model_version, param_defaults_of(setting.config),
                               setting.updated_at)


def _installed_or_refuse(plugin_id: str):
    plugin = installed_plugin(plugin_id) if isinstance(plugin_id, str) else None
    if plugin is None:
        raise UnknownPlugin(f"No plugin named {plugin_id!r} is installed.")
    return plugin
