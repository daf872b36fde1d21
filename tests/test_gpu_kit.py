"""The GPU benchmark kit (bench/gpu) cannot reach a GPU here: check that what it carries matches what CI tests."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def kit_pins() -> dict[str, str]:
    script = (REPO / "bench" / "gpu" / "fetch_wheels.sh").read_text()
    block = re.search(r"^PINS=\((.*?)^\)", script, re.S | re.M).group(1)
    return dict(re.findall(r"^\s+([A-Za-z0-9_.-]+)==(\S+)", block, re.M))


def test_the_kit_carries_the_versions_this_environment_tests():
    pins = kit_pins()
    assert {"django", "celery", "pydantic", "gunicorn"} <= set(pins)
    differ = {}
    for name, pinned in pins.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            differ[name] = (pinned, installed)
    assert differ == {}, "update bench/gpu/fetch_wheels.sh: (kit, installed here)"


def test_the_kit_leaves_torch_to_the_gpu_machine():
    """A CUDA torch is what that machine has and what the benchmark wants there; a wheel of ours would replace it."""
    assert not {"torch", "transformers", "tokenizers"} & set(kit_pins())
