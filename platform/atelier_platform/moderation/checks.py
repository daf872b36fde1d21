"""The safety checks this process runs: discovered once (entry-point group ``atelier.safety_checks``
plus ATELIER_EXTRA_SAFETY_CHECKS), each loaded once on first use."""

from __future__ import annotations

import logging
import threading

from atelier_sdk.safety import SafetyCheck

logger = logging.getLogger("atelier.safety")

_lock = threading.Lock()
_checks: list[SafetyCheck] | None = None


def _discover() -> list[SafetyCheck]:
    from atelier_sdk.safety_registry import discover_safety_checks

    from atelier_platform.config import get_config

    loaded = []
    for record in discover_safety_checks(extra_paths=get_config().extra_safety_checks.split(",")):
        if record.check is None:
            logger.warning("safety check %s is broken and will not run: %s", record.name, record.error)
            continue
        try:
            instance = record.check()
            instance.load("cpu")
        except Exception as error:
            # One that cannot load (a model file, a library at another version than its data was saved
            # with) is skipped like one that cannot be imported: raising would fail every screening.
            logger.error("safety check %s could not load and will not run: %s: %s", record.name,
                         type(error).__name__, error, exc_info=True)
            continue
        loaded.append(instance)
    return loaded


def get_safety_checks() -> list[SafetyCheck]:
    global _checks
    if _checks is None:
        with _lock:
            if _checks is None:
                _checks = _discover()
    return _checks


def replace_safety_checks(checks: list[SafetyCheck] | None) -> None:
    """Swap the running checks (tests); ``None`` makes the next call discover again."""
    global _checks
    with _lock:
        _checks = checks
