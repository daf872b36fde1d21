"""What the tests of waiting requests share: every wait slot given back, and waiting for a condition."""

from __future__ import annotations

import time

import pytest

from atelier_platform.jobs import waiting


@pytest.fixture(autouse=True)
def no_slot_left_behind():
    """Autouse where imported: each test starts and ends with no wait slot of this process taken."""
    assert waiting.wait_slots.in_use == 0
    yield
    assert waiting.wait_slots.in_use == 0, "a wait slot was not given back"


def until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
