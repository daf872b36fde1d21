"""The safety checks this process runs: discovered once (entry-point group ``atelier.safety_checks``
plus ATELIER_EXTRA_SAFETY_CHECKS), each loaded once on first use."""

from __future__ import annotations

import logging
import threading

from atelier_sdk.safety import SafetyCheck

logger = logging.getLogger("atelier.safety")

_lock = threading.Lock()
_checks: list[SafetyCheck] | None = None
#: Checks found but not running in this process (broken, or failed to load): why, and what each would
#: have screened, (targets, modalities) from its manifest; None when it could not even be imported (its
#: manifest is unknown: it is taken to screen everything).
_unavailable: dict[str, tuple[str, tuple[frozenset, frozenset] | None]] = {}


def _scope_of(check_class) -> tuple[frozenset, frozenset] | None:
    manifest = getattr(check_class, "manifest", None)
    if manifest is None:
        return None
    return frozenset(target.value for target in manifest.targets), frozenset(manifest.modalities)


def _discover() -> tuple[list[SafetyCheck], dict[str, tuple[str, tuple[frozenset, frozenset] | None]]]:
    from atelier_sdk.safety_registry import discover_safety_checks

    from atelier_platform.config import get_config

    loaded, unavailable = [], {}
    for record in discover_safety_checks(extra_paths=get_config().extra_safety_checks.split(",")):
        if record.check is None:
            logger.warning("safety check %s is broken and will not run: %s", record.name, record.error)
            unavailable[record.name] = (str(record.error), None)
            continue
        try:
            instance = record.check()
            instance.load("cpu")
        except Exception as error:
            # One that cannot load (a model file, a library at another version than its data was saved
            # with) is skipped like one that cannot be imported: raising would fail every screening.
            logger.error("safety check %s could not load and will not run: %s: %s", record.name,
                         type(error).__name__, error, exc_info=True)
            unavailable[record.name] = (f"{type(error).__name__}: {error}", _scope_of(record.check))
            continue
        loaded.append(instance)
    return loaded, unavailable


def get_safety_checks() -> list[SafetyCheck]:
    global _checks, _unavailable
    if _checks is None:
        with _lock:
            if _checks is None:
                _checks, _unavailable = _discover()
    return _checks


def unavailable_safety_checks() -> dict[str, str]:
    """The checks this process found but does not run, by name, with why: what they screen for goes
    unscreened here. Shown by ``/readyz``, in the worker's state and in ``/metrics`` (empty until the
    checks are loaded)."""
    return {name: why for name, (why, _) in sorted(_unavailable.items())}


def checks_not_screening(target: str, modalities: set[str]) -> list[str]:
    """The checks not running here that would have screened this ``target`` ("input", "output") in one
    of these ``modalities`` ("text", "image"), by name: what a screening here misses."""
    get_safety_checks()
    return sorted(name for name, (_, scope) in _unavailable.items()
                  if scope is None or (target in scope[0] and modalities & scope[1]))


def unavailable_safety_check_warnings(unavailable: dict[str, str] | None = None) -> list[str]:
    """``unavailable`` (by default ``unavailable_safety_checks()``) in words, one line per check."""
    unavailable = unavailable_safety_checks() if unavailable is None else unavailable
    return [f"safety check {name} is not running: {why}" for name, why in unavailable.items()]


def replace_safety_checks(checks: list[SafetyCheck] | None) -> None:
    """Swap the running checks (tests); ``None`` makes the next call discover again."""
    global _checks, _unavailable
    with _lock:
        _checks, _unavailable = checks, {}
