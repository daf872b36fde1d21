"""Finding safety checks: the ``atelier.safety_checks`` entry-point group plus ``module:Class`` paths.

Like model plugins, a check that fails to import or breaks the contract is recorded with its
reason and skipped; discovery itself never fails.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Iterable

from atelier_sdk.safety import SafetyCheck, SafetyCheckManifest

SAFETY_ENTRY_POINT_GROUP = "atelier.safety_checks"


@dataclass(frozen=True)
class SafetyCheckRecord:
    name: str
    source: str
    check: type[SafetyCheck] | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        return "ok" if self.check is not None else "broken"


def _validate(candidate: object) -> type[SafetyCheck]:
    if not (inspect.isclass(candidate) and issubclass(candidate, SafetyCheck)):
        raise TypeError(f"{candidate!r} is not a subclass of atelier_sdk.safety.SafetyCheck")
    if inspect.isabstract(candidate):
        raise TypeError(f"{candidate.__name__} leaves abstract methods unimplemented")
    if not isinstance(getattr(candidate, "manifest", None), SafetyCheckManifest):
        raise TypeError(f"{candidate.__name__}.manifest must be a SafetyCheckManifest")
    return candidate


def _record(load, name: str, source: str) -> SafetyCheckRecord:
    try:
        loaded = load()
    except Exception as exc:
        reason = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return SafetyCheckRecord(name, source, error=f"import failed: {reason}")
    try:
        return SafetyCheckRecord(name, source, check=_validate(loaded))
    except TypeError as exc:
        return SafetyCheckRecord(name, source, error=str(exc))


def _import_path(path: str):
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ImportError(f"{path!r} is not of the form module:Class")
    return getattr(importlib.import_module(module_name), attribute)


def discover_safety_checks(
    entry_point_list: Iterable[EntryPoint] | None = None, extra_paths: Iterable[str] = ()
) -> list[SafetyCheckRecord]:
    found = entry_points(group=SAFETY_ENTRY_POINT_GROUP) if entry_point_list is None else entry_point_list
    records = [_record(ep.load, ep.name, f"entry point {ep.value}") for ep in found]
    records += [_record(lambda p=p.strip(): _import_path(p), p.strip(), p.strip()) for p in extra_paths if p.strip()]
    seen: set[str] = set()
    unique = []
    for record in records:
        if record.check is not None:
            if record.check.manifest.id in seen:
                record = SafetyCheckRecord(record.name, record.source, error=f"duplicate check id {record.check.manifest.id!r}")
            else:
                seen.add(record.check.manifest.id)
        unique.append(record)
    return unique
