"""The GPU benchmark kit (bench/gpu) cannot reach a GPU here: check that what it carries matches what CI tests,
and that it carries everything its packages need beyond what the GPU machine has."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "bench" / "gpu"
#: The GPU machine's Python, for the requirements' environment markers.
THERE = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux", "platform_system": "Linux",
         "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
         "platform_python_implementation": "CPython", "extra": ""}


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def kit_pins() -> dict[str, str]:
    script = (KIT / "fetch_wheels.sh").read_text()
    block = re.search(r"^PINS=\((.*?)^\)", script, re.S | re.M).group(1)
    return {normalised(name): pinned for name, pinned in re.findall(r"^\s+([A-Za-z0-9_.-]+)==(\S+)", block, re.M)}


def on_the_gpu_machine() -> set[str]:
    lines = (KIT / "on_the_gpu_machine.txt").read_text().splitlines()
    return {normalised(line.strip()) for line in lines if line.strip() and not line.startswith("#")}


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


def test_every_package_a_carried_one_needs_is_carried_or_on_the_gpu_machine():
    pins, there = kit_pins(), on_the_gpu_machine()
    missing = {}
    for name in pins:
        for line in distribution(name).requires or []:
            requirement = Requirement(line)
            if requirement.marker and not requirement.marker.evaluate(THERE):
                continue
            needed = normalised(requirement.name)
            if needed not in pins and needed not in there:
                missing.setdefault(needed, []).append(name)
    assert missing == {}, "carry these too (needed by)"


def test_the_kit_leaves_torch_to_the_gpu_machine():
    """A CUDA torch is what that machine has and what the benchmark wants there; a wheel of ours would replace it."""
    assert not {"torch", "transformers", "tokenizers"} & set(kit_pins())
    assert {"torch", "transformers", "tokenizers"} <= on_the_gpu_machine()
