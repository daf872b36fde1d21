"""Fixtures the platform tests share."""

from __future__ import annotations

import pytest

from atelier_platform.config import get_config


@pytest.fixture
def environment(monkeypatch):
    """Set variables by their full names; the cached configuration is read afresh."""

    def set_variables(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_config.cache_clear()

    yield set_variables
    get_config.cache_clear()
