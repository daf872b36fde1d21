"""Which plugins a project may use."""

from __future__ import annotations

from atelier_sdk import Plugin

from atelier_platform.accounts.models import Project
from atelier_platform.catalog.models import ProjectPlugin
from atelier_platform.catalog.registry import get_registry
from atelier_platform.prepared_reads import PreparedRead

#: A project's plugin settings, read on every job submission (see ``plugin_settings``).
_settings_read = PreparedRead(lambda project_id: ProjectPlugin.objects.filter(project_id=project_id).order_by(),
                              project_id=ProjectPlugin._meta.get_field("project"))


def enable_installed_plugins(project: Project) -> list[str]:
    """Enable every plugin installed now for a new project; returns their ids."""
    ids = [plugin.manifest.id for plugin in get_registry().available()]
    for plugin_id in ids:
        ProjectPlugin.objects.get_or_create(project=project, plugin_id=plugin_id, defaults={"enabled": True})
    return ids


def set_plugin_enabled(project: Project, plugin_id: str, enabled: bool) -> ProjectPlugin:
    setting, _ = ProjectPlugin.objects.update_or_create(
        project=project, plugin_id=plugin_id, defaults={"enabled": enabled}
    )
    return setting


def enabled_plugin_ids(project: Project) -> set[str]:
    return set(ProjectPlugin.objects.filter(project=project, enabled=True).values_list("plugin_id", flat=True))


def installed_plugin(plugin_id: str) -> type[Plugin] | None:
    return get_registry().get(plugin_id)


def param_defaults_of(config: dict | None) -> dict:
    """Params a project set for a plugin (``config["params"]``); a caller's params override them."""
    defaults = (config or {}).get("params")
    return dict(defaults) if isinstance(defaults, dict) else {}


def param_default_problems(plugin: type[Plugin], defaults: dict) -> dict[str, list[str]]:
    """What the plugin's Params refuse in a project's default params, by field (``params.colour``): a
    field the plugin does not have, a value of the wrong kind. A required field the defaults leave to
    the caller is no problem."""
    from pydantic import ValidationError

    from atelier_platform.jobs.submission import as_sent

    try:
        # read as a job reads them (strictly, as the JSON they are stored as): a lax reading took "300" for
        # max_chars, and every job then failed with project_defaults_invalid
        as_sent(plugin.Params, defaults)
    except ValidationError as exc:
        return problems_of_defaults(exc, defaults)
    return {}


def default_cap_problems(plugin: type[Plugin], defaults: dict) -> dict[str, list[str]]:
    """The operator's caps (``ATELIER_MAX_NEW_TOKENS``, ``ATELIER_PLUGIN_LIMITS``...) that a project's default params
    exceed, by field (``params.max_new_tokens``). Saved, such a default would refuse every job that leaves the field
    to it with ``limit_exceeded``, as if its caller had asked for too much."""
    from atelier_platform.usage import limits
    from atelier_platform.usage.errors import LimitExceeded

    try:
        limits.check(plugin.manifest.id, {}, defaults)
    except LimitExceeded as exceeded:
        return dict(exceeded.details or {})
    return {}


def strict_params_errors(plugin: type[Plugin], defaults: dict) -> list[dict]:
    """pydantic's errors of ``defaults`` read as params (as ``param_default_problems`` reads them), each with its
    type and context, for a caller that words them itself (the dashboard)."""
    from pydantic import ValidationError

    from atelier_platform.jobs.submission import as_sent

    try:
        as_sent(plugin.Params, defaults)
    except ValidationError as exc:
        return exc.errors(include_url=False)
    return []


def problems_of_defaults(exc, defaults: dict) -> dict[str, list[str]]:
    """The errors of a Params validation (``exc``) that lie in fields ``defaults`` gave, by field."""
    problems: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        if error["type"] == "missing" or not error["loc"] or error["loc"][0] not in defaults:
            continue
        problems.setdefault("params." + ".".join(map(str, error["loc"])), []).append(error["msg"])
    return problems


def plugin_settings(project: Project) -> dict[str, tuple[bool, dict]]:
    """Every plugin the project has a setting for: (enabled, param defaults), in one query."""
    return {setting.plugin_id: (setting.enabled, param_defaults_of(setting.config)) for setting in _settings_read(project_id=project.pk)}
