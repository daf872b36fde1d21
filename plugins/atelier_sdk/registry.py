"""Finding plugins: the ``atelier.plugins`` entry-point group, plus explicit ``module:Class`` paths.

A plugin that fails to import or breaks the contract is recorded with its reason and skipped;
it never stops the platform from starting.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Callable, Iterable

from pydantic import BaseModel, ValidationError

from atelier_sdk.errors import InvalidPlugin
from atelier_sdk.manifest import Manifest
from atelier_sdk.plugin import Plugin

ENTRY_POINT_GROUP = "atelier.plugins"

logger = logging.getLogger("atelier.plugins")


@dataclass(frozen=True)
class PluginRecord:
    """One discovered plugin: usable (``plugin`` set) or broken (``error`` set)."""

    name: str
    source: str
    plugin: type[Plugin] | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        return "ok" if self.plugin is not None else "broken"


def validate_plugin_class(candidate: object) -> type[Plugin]:
    """Check that ``candidate`` keeps the plugin contract; raise ``InvalidPlugin`` saying why not."""
    if not (inspect.isclass(candidate) and issubclass(candidate, Plugin)):
        raise InvalidPlugin(f"{candidate!r} is not a subclass of atelier_sdk.Plugin")
    if inspect.isabstract(candidate):
        raise InvalidPlugin(f"{candidate.__name__} does not implement generate()")
    manifest = getattr(candidate, "manifest", None)
    if isinstance(manifest, dict):
        try:
            manifest = Manifest.model_validate(manifest)
        except ValidationError as exc:
            raise InvalidPlugin(f"bad manifest: {first_errors(exc)}") from None
        candidate.manifest = manifest
    if not isinstance(manifest, Manifest):
        raise InvalidPlugin(f"{candidate.__name__}.manifest must be an atelier_sdk.Manifest")
    for attribute in ("Input", "Output", "Params"):
        model = getattr(candidate, attribute, None)
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            raise InvalidPlugin(f"{candidate.__name__}.{attribute} must be a pydantic model class")
        try:
            model.model_json_schema()
        except Exception as exc:  # a model pydantic cannot describe cannot be published either
            raise InvalidPlugin(f"{candidate.__name__}.{attribute} has no JSON Schema: {exc}") from None
    return candidate


def first_errors(exc: ValidationError) -> str:
    """The first few pydantic errors as one line, for a "bad manifest" reason."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])


def load_and_validate(load: Callable[[], object], validate: Callable[[object], type], kind: str, name: str,
                      source: str) -> tuple[type | None, str | None]:
    """Import one entry (``load``) and check its contract (``validate``): (class, None) or (None, reason).

    Shared by model plugins and safety checks: whatever goes wrong is the entry's fault, reported
    with its reason, and never stops discovery.
    """
    try:
        loaded = load()
    except (Exception, SystemExit) as exc:  # a module that exits as it imports (a dependency check) too
        logger.warning("%s %s (%s) failed to import: %s", kind, name, source, exc)
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return None, f"import failed: {last}"
    try:
        return validate(loaded), None
    except InvalidPlugin as exc:
        logger.warning("%s %s (%s) is invalid: %s", kind, name, source, exc)
        return None, str(exc)
    except Exception as exc:  # a contract check tripping over an odd object is still that object's fault
        return None, f"invalid: {type(exc).__name__}: {exc}"


def _load_target(load: Callable[[], object], name: str, source: str) -> PluginRecord:
    plugin, error = load_and_validate(load, validate_plugin_class, "plugin", name, source)
    return PluginRecord(name=name, source=source, plugin=plugin, error=error)


def import_path(path: str):
    """The object a ``module:Attribute`` path names (ATELIER_EXTRA_PLUGINS and friends)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ImportError(f"{path!r} is not of the form module:Class")
    return getattr(importlib.import_module(module_name), attribute)


class PluginRegistry:
    """All plugins known to this process, by manifest id."""

    def __init__(self, records: Iterable[PluginRecord] = ()) -> None:
        self._records: dict[str, PluginRecord] = {}
        for record in records:
            self.add(record)

    @classmethod
    def discover(
        cls, *, extra_paths: Iterable[str] = (), entry_point_list: Iterable[EntryPoint] | None = None
    ) -> "PluginRegistry":
        registry = cls()
        found = entry_points(group=ENTRY_POINT_GROUP) if entry_point_list is None else entry_point_list
        for entry_point in found:
            registry.add(_load_target(entry_point.load, entry_point.name, f"entry point {entry_point.value}"))
        for path in extra_paths:
            path = path.strip()
            if path:
                registry.add(_load_target(lambda p=path: import_path(p), path.rpartition(":")[2], path))
        return registry

    def add(self, record: PluginRecord) -> None:
        """Keep ``record`` under its plugin id (or name, if broken); a clash never hides a working plugin.

        Two records with one key: a working one holds the key and the other is kept under a key naming
        its source, so it is still reported (a broken duplicate entry point, say a stale
        distribution's, must not replace the working plugin, whichever is discovered first).
        """
        key = record.plugin.manifest.id if record.plugin is not None else record.name
        existing = self._records.get(key)
        if existing is not None:
            if existing.plugin is not None and record.plugin is not None:
                if existing.plugin is record.plugin:
                    return
                record = PluginRecord(
                    name=record.name,
                    source=record.source,
                    error=f"duplicate plugin id {key!r}, already provided by {existing.source}",
                )
            elif record.plugin is not None:  # a working plugin takes the key from a broken one
                self._records[f"{key} ({existing.source})"] = existing
                self._records[key] = record
                return
            self._records[f"{key} ({record.source})"] = record
            return
        self._records[key] = record

    def register(self, plugin: type[Plugin], source: str = "registered in code") -> type[Plugin]:
        """Add a plugin class directly (tests, embedding); invalid classes raise ``InvalidPlugin``."""
        plugin = validate_plugin_class(plugin)
        self.add(PluginRecord(name=plugin.manifest.id, source=source, plugin=plugin))
        return plugin

    def get(self, plugin_id: str) -> type[Plugin] | None:
        record = self._records.get(plugin_id)
        return record.plugin if record is not None else None

    def available(self) -> list[type[Plugin]]:
        return sorted((r.plugin for r in self._records.values() if r.plugin is not None), key=lambda p: p.manifest.id)

    def records(self) -> list[PluginRecord]:
        # By source too, so that records of one name list the same whatever order they were found in.
        return sorted(self._records.values(), key=lambda r: (r.name, r.source))
