"""bench/batching.py's baseline must run the model the way the platform's chatbot does, or the ratio
measures a precision, not batching."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

torch = pytest.importorskip("torch")

from batching import Baseline, batch_sizes, build_bench_model  # noqa: E402


def test_the_baseline_loads_the_model_in_the_dtype_the_plugin_uses(tmp_path):
    """A checkpoint saved in bf16 (as real chat models are, given with --model-dir): the chatbot loads it in
    float32 on a CPU; a baseline left to transformers' default ("auto": the file's bf16) would run slower
    than the platform's model for a reason that has nothing to do with batching."""
    from transformers import AutoModelForCausalLM

    from atelier_plugins.text.generation import CausalChatLM, inference_dtype

    model_dir = build_bench_model(tmp_path / "built", "tiny")
    AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).save_pretrained(model_dir, safe_serialization=True)

    baseline = Baseline(model_dir, "cpu", new_tokens=2)
    plugin_model = CausalChatLM(model_dir, "cpu").model
    assert baseline.model.dtype == plugin_model.dtype == inference_dtype("cpu")
    assert baseline.one("Where is my parcel?") <= 2


def test_batch_sizes_are_read_back_from_the_sizes_each_job_reports():
    assert batch_sizes([5] * 5 + [27] * 27) == [5, 27]
    assert batch_sizes([1] * 3) == [1, 1, 1]
    assert batch_sizes([16] * 32) == [16, 16]


class FakeClient:
    """Answers at once; counts how many submissions are in flight together."""

    def __init__(self) -> None:
        import threading

        self.lock, self.in_flight, self.most = threading.Lock(), 0, 0

    def submit(self, **body) -> str:
        import time

        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(0.05)
        with self.lock:
            self.in_flight -= 1
        return body["input"]["messages"][0]["content"]

    def job(self, job_id: str, wait_s: int | None = None) -> dict:
        return {"status": "succeeded", "outputs": [{"content": {"usage": {"completion_tokens": 4}}, "provenance": {"batch_size": 1}}]}


def run_main(monkeypatch, capsys, jobs: int, baseline: dict, platform: dict, idle: tuple[float, float]) -> tuple[str, dict]:
    """main()'s output (the table, the last line's JSON) for the given measured runs, with no model and no stack."""
    import json

    import batching

    class Stopped:
        backend = "embedded"

        def stop(self) -> None:
            pass

    monkeypatch.setattr(batching, "build_bench_model", lambda *args: None)
    monkeypatch.setattr(batching, "Baseline", lambda *args: None)
    monkeypatch.setattr(batching, "start_stack", lambda *args, **kwargs: Stopped())
    monkeypatch.setattr(batching, "ApiClient", lambda stack: types.SimpleNamespace(submit_and_wait=lambda **body: None))
    monkeypatch.setattr(batching, "throughputs", lambda *args: {"baseline": dict(baseline), "batch_request": dict(platform),
                                                               "concurrent_clients": dict(platform)})
    monkeypatch.setattr(batching, "idle_latencies", lambda *args: idle)
    monkeypatch.setattr(sys, "argv", ["batching.py", "--jobs", str(jobs), "--device", "cpu", "--max-wait-ms", "50"])
    assert batching.main() == 0
    out = capsys.readouterr().out
    return out, json.loads(out.strip().splitlines()[-1])



def test_the_clients_the_table_names_are_the_clients_that_submitted_together(monkeypatch, capsys):
    import re

    import batching

    client = FakeClient()
    batching.through_platform(client, batching.questions(32), 4, "concurrent_clients")
    platform = {"seconds": 2.0, "tokens": 128, "batch_sizes": [1] * 32}
    out, figures = run_main(monkeypatch, capsys, 32, {"seconds": 8.0, "tokens": 128}, platform, (0.2, 0.25))
    named = [int(n) for n in re.findall(r"Atelier: (\d+) clients", out)]
    assert named == [client.most], out
    assert figures["concurrent_clients"] == client.most


def test_the_last_line_has_the_figures_the_issue_asks_for_from_the_right_runs(monkeypatch, capsys):
    platform = {"seconds": 2.0, "tokens": 640, "batch_sizes": [32] * 32}
    _, figures = run_main(monkeypatch, capsys, 32, {"seconds": 8.0, "tokens": 1024}, platform, (0.2, 0.25))
    assert figures["throughput_ratio"] == 4.0  # (32 / 2 s) / (32 / 8 s)
    assert (figures["baseline_idle_latency_ms"], figures["idle_latency_ms"], figures["max_wait_ms"]) == (200.0, 250.0, 50.0)
    assert (figures["baseline_tokens_per_second"], figures["tokens_per_second"]) == (128.0, 320.0)
    assert figures["batch_sizes_seen"] == [32]
