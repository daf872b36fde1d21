"""The plugin SDK and registry, without Django or a database."""

from __future__ import annotations

import sys
import subprocess
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from atelier_sdk import InvalidPlugin, JobCancelled, Manifest, PluginError, PluginRegistry, RunContext, validate_plugin_class
from pydantic import ValidationError

from tests.support.plugins import GpuEcho, ReverseText

GROUP = "atelier.plugins"


def entry_point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=GROUP)


class TestManifest:
    def test_valid(self):
        assert ReverseText.manifest.resource_class == "cpu"

    @pytest.mark.parametrize(
        "change",
        [{"id": "Has Spaces"}, {"version": "1"}, {"max_batch_size": 0}, {"resource_class": "tpu"}, {"surprise": 1}],
    )
    def test_invalid_fields_are_refused(self, change):
        fields = {**ReverseText.manifest.model_dump(), **change}
        with pytest.raises(ValidationError):
            Manifest(**fields)


class TestRegistry:
    def test_entry_points_broken_and_good(self):
        registry = PluginRegistry.discover(
            entry_point_list=[
                entry_point("reverse_text", "tests.support.plugins:ReverseText"),
                entry_point("missing", "tests.support.no_such_module:Plugin"),
                entry_point("not_a_plugin", "tests.support.plugins:NotAPlugin"),
                entry_point("bad_manifest", "tests.support.plugins:BadManifest"),
            ]
        )
        assert [p.manifest.id for p in registry.available()] == ["reverse_text"]
        broken = {r.name: r.error for r in registry.records() if r.state == "broken"}
        assert "No module named 'tests.support.no_such_module'" in broken["missing"]
        assert "not a subclass" in broken["not_a_plugin"]
        assert "bad manifest" in broken["bad_manifest"] and "id:" in broken["bad_manifest"]

    def test_extra_paths(self):
        registry = PluginRegistry.discover(
            entry_point_list=[], extra_paths=["tests.support.plugins:GpuEcho", "no-colon", ""]
        )
        assert registry.get("gpu_reverse") is GpuEcho
        assert [r.error for r in registry.records() if r.state == "broken"] == [
            "import failed: ImportError: 'no-colon' is not of the form module:Class"
        ]

    def test_duplicate_ids_keep_the_first(self):
        class Impostor(ReverseText):
            pass

        registry = PluginRegistry()
        registry.register(ReverseText)
        registry.register(Impostor, source="impostor")
        assert registry.get("reverse_text") is ReverseText
        assert any("duplicate plugin id" in (r.error or "") for r in registry.records())

    def test_abstract_plugin_is_invalid(self):
        from atelier_sdk import Plugin

        class Half(Plugin):
            manifest = ReverseText.manifest
            Input = Output = ReverseText.Input

        with pytest.raises(InvalidPlugin, match="generate"):
            validate_plugin_class(Half)

    def test_builtin_entry_points_load(self):
        """Whatever the installed distribution registers in the group loads without breaking."""
        registry = PluginRegistry.discover()
        assert all(r.state == "ok" for r in registry.records()), [r.error for r in registry.records()]


class TestRunContext:
    def test_progress_is_clamped_and_reported(self):
        seen = []
        context = RunContext("cpu", on_progress=lambda job, fraction, detail: seen.append((job, fraction, detail)))
        context.report_progress("j", 1.7, tokens=3)
        assert seen == [("j", 1.0, {"tokens": 3})]

    def test_results_handed_over_together_reach_the_worker_together(self):
        handed = []
        context = RunContext("cpu", on_results=handed.append)
        context.deliver_many({"a": [], "b": PluginError("no", code="invalid_input")})
        context.deliver("c", [])
        context.deliver_many({})
        assert [sorted(results) for results in handed] == [["a", "b"], ["c"]]

    def test_cancellation(self):
        context = RunContext("cpu", is_cancelled=lambda job: job == "stop-me")
        context.raise_if_cancelled("keep-going")
        with pytest.raises(JobCancelled):
            context.raise_if_cancelled("stop-me")


def test_sdk_imports_no_django():
    """Plugin authors need only the SDK: importing it must not import Django."""
    code = "import sys, atelier_sdk; sys.exit(1 if any(m.startswith('django') for m in sys.modules) else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2]).returncode == 0


@pytest.mark.parametrize("error,expected", [
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"), True),
    (MemoryError("Unable to allocate 64.0 GiB for an array with shape (8589934592,)"), True),
    (RuntimeError("Expected all tensors to be on the same device"), False),
    (ValueError("out of memory is what this message says, but it is a bad value"), False),
])
def test_one_reading_of_running_out_of_memory_for_the_worker_and_the_plugins(error, expected):
    """The worker runtime splits a batch that ran out of memory, and the image plugin its own calls: both by
    this reading, so that the CPU allocator's words count for both (the worker's own copy missed them)."""
    import torch

    from atelier_sdk import is_out_of_memory

    assert is_out_of_memory(error) is expected
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory")) is True
