"""The process-wide plugin registry, discovered once from entry points and ATELIER_EXTRA_PLUGINS."""

from __future__ import annotations

import threading

from atelier_sdk import PluginRegistry

from atelier_platform.config import get_config

_lock = threading.Lock()
_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    global _registry
    if _registry is None:
        with _lock:
            if _registry is None:
                extra = get_config().extra_plugins.split(",")
                _registry = PluginRegistry.discover(extra_paths=extra)
    return _registry


def replace_registry(registry: PluginRegistry | None) -> None:
    """Swap the registry (tests); ``None`` makes the next call discover again."""
    global _registry
    with _lock:
        _registry = registry
