"""The benchmarks' stacks and model folders are throw-away: nothing of them may outlive a run, even a failed one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import platform_stack  # noqa: E402
from tests.e2e.stack import Stack  # noqa: E402


@pytest.fixture
def embedded(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)


def test_a_stopped_bench_stack_leaves_no_data_folder(embedded, monkeypatch, tmp_path):
    monkeypatch.setattr(Stack, "_start", lambda self, *args: self)  # no processes: only the folder is in question
    stack = platform_stack.start_stack(tmp_path)
    assert stack.root.is_dir()
    stack.stop()
    assert not stack.root.exists()


def test_a_bench_stack_that_fails_to_start_leaves_no_data_folder(embedded, monkeypatch, tmp_path):
    roots = []

    def fail(self, *args):
        roots.append(self.root)
        raise TimeoutError("web not ready")

    monkeypatch.setattr(Stack, "_start", fail)
    with pytest.raises(TimeoutError):
        platform_stack.start_stack(tmp_path)
    assert roots and not roots[0].exists()


def test_batching_removes_its_models_folder_when_building_the_model_fails(monkeypatch, tmp_path):
    import batching

    models_root = tmp_path / "bench-models"
    models_root.mkdir()
    monkeypatch.setattr(batching.tempfile, "mkdtemp", lambda prefix: str(models_root))

    def no_model(*args):
        raise OSError("disk full")

    monkeypatch.setattr(batching, "build_bench_model", no_model)
    monkeypatch.setattr(sys, "argv", ["batching.py", "--device", "cpu"])
    with pytest.raises(OSError, match="disk full"):
        batching.main()
    assert not models_root.exists()
