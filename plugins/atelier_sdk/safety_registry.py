"""Finding safety checks: the ``atelier.safety_checks`` entry-point group, plus explicit ``module:Class`` paths.

Works like the model-plugin registry (``atelier_sdk.registry``): a check that fails to import or
breaks the contract is recorded with its reason and skipped; discovery itself never raises.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Callable, Iterable

from pydantic import ValidationError

from atelier_sdk.errors import InvalidPlugin
from atelier_sdk.registry import first_errors, import_path, load_and_validate
from atelier_sdk.safety import SafetyCheck, SafetyCheckBase, SafetyCheckManifest

SAFETY_CHECK_ENTRY_POINT_GROUP = "atelier.safety_checks"

class InvalidSafetyCheck(InvalidPlugin):
    """A safety-check class that breaks the contract; discovery reports it and skips it."""


@dataclass(frozen=True)
class SafetyCheckRecord:
    """One discovered check: usable (``check`` set) or broken (``error`` set)."""

    name: str
    source: str
    check: type[SafetyCheck] | None = None
    error: str | None = None

    @property
    def state(self) -> str:
        return "ok" if self.check is not None else "broken"


def validate_safety_check_class(candidate: object) -> type[SafetyCheck]:
    """Check that ``candidate`` keeps the safety-check contract; raise ``InvalidSafetyCheck`` saying why not."""
    if not (inspect.isclass(candidate) and issubclass(candidate, SafetyCheck)):
        raise InvalidSafetyCheck(f"{candidate!r} is not a subclass of atelier_sdk.safety.SafetyCheck")
    if inspect.isabstract(candidate):
        missing = ", ".join(sorted(getattr(candidate, "__abstractmethods__", ()))) or "abstract methods"
        raise InvalidSafetyCheck(f"{candidate.__name__} does not implement {missing}")
    manifest = getattr(candidate, "manifest", None)
    if isinstance(manifest, dict):
        try:
            manifest = SafetyCheckManifest.model_validate(manifest)
        except ValidationError as exc:
            raise InvalidSafetyCheck(f"bad manifest: {first_errors(exc)}") from None
        candidate.manifest = manifest
    if not isinstance(manifest, SafetyCheckManifest):
        raise InvalidSafetyCheck(f"{candidate.__name__}.manifest must be an atelier_sdk.safety.SafetyCheckManifest")
    if not manifest.targets:
        raise InvalidSafetyCheck(f"{candidate.__name__}.manifest.targets is empty: say whether it screens input, output or both")
    if not manifest.categories:
        raise InvalidSafetyCheck(f"{candidate.__name__}.manifest.categories is empty: name the categories it scores")
    unknown = set(manifest.modalities) - {"text", "image"}
    if unknown or not manifest.modalities:
        raise InvalidSafetyCheck(f"{candidate.__name__}.manifest.modalities must be 'text' and/or 'image', got {sorted(manifest.modalities)}")
    # A check that declares a modality must screen it: the base class's default returns no
    # findings, which would silently pass everything.
    if "text" in manifest.modalities and not _overrides(candidate, "check_texts", "check_text"):
        raise InvalidSafetyCheck(f"{candidate.__name__} declares modality 'text' but implements neither check_texts nor check_text")
    if "image" in manifest.modalities and not _overrides(candidate, "check_images"):
        raise InvalidSafetyCheck(f"{candidate.__name__} declares modality 'image' but does not implement check_images")
    try:
        candidate()
    except Exception as exc:  # the platform instantiates checks without arguments
        raise InvalidSafetyCheck(f"{candidate.__name__}() cannot be created without arguments: {exc}") from None
    return candidate


def _overrides(candidate: type, *names: str) -> bool:
    for name in names:
        for klass in candidate.__mro__:
            if klass in (SafetyCheck, SafetyCheckBase, object):
                break
            if name in vars(klass):
                return True
    return False


def _load(load: Callable[[], object], name: str, source: str) -> SafetyCheckRecord:
    check, error = load_and_validate(load, validate_safety_check_class, "safety check", name, source)
    return SafetyCheckRecord(name=name, source=source, check=check, error=error)


def discover_safety_checks(
    entry_point_list: Iterable[EntryPoint] | None = None, extra_paths: Iterable[str] = ()
) -> list[SafetyCheckRecord]:
    """Every safety check found, usable or broken, sorted by name; two checks with one id: the second is broken."""
    found = entry_points(group=SAFETY_CHECK_ENTRY_POINT_GROUP) if entry_point_list is None else entry_point_list
    records: list[SafetyCheckRecord] = []
    for entry_point in found:
        records.append(_load(entry_point.load, entry_point.name, f"entry point {entry_point.value}"))
    for path in extra_paths:
        path = path.strip()
        if path:
            records.append(_load(lambda p=path: import_path(p), path.rpartition(":")[2], path))
    by_id: dict[str, SafetyCheckRecord] = {}
    result: list[SafetyCheckRecord] = []
    for record in records:
        if record.check is not None:
            check_id = record.check.manifest.id
            existing = by_id.get(check_id)
            if existing is not None:
                if existing.check is record.check:
                    continue  # the same class reached twice (entry point and explicit path)
                record = SafetyCheckRecord(
                    name=record.name,
                    source=record.source,
                    error=f"duplicate safety check id {check_id!r}, already provided by {existing.source}",
                )
            else:
                by_id[check_id] = record
        result.append(record)
    return sorted(result, key=lambda r: (r.name, r.source))


__all__ = [
    "SAFETY_CHECK_ENTRY_POINT_GROUP",
    "InvalidSafetyCheck",
    "SafetyCheckRecord",
    "discover_safety_checks",
    "validate_safety_check_class",
]
