"""bench/overhead.py's breakdown of a job's overhead, from the times the API shows on the job."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from overhead import STAGES, stage_times  # noqa: E402


def test_each_stage_is_the_time_between_the_platforms_stored_times_less_the_model():
    sent = 1_800_000_000.000  # 2027-01-15T08:00:00Z, the client's clock
    job = {
        # as the API writes them: UTC with "Z", and an offset (the same instants, one clock)
        "created_at": "2027-01-15T08:00:00.006Z",
        "started_at": "2027-01-15T09:00:00.017+01:00",
        "finished_at": "2027-01-15T08:00:00.072Z",
        "outputs": [{"provenance": {"generate_seconds": 0.05}}],
    }
    stages = stage_times(sent, sent + 0.081, job)
    assert len(stages) == len(STAGES)
    assert stages == pytest.approx([0.006, 0.011, 0.005, 0.009], abs=1e-6)
    assert sum(stages) == pytest.approx(0.081 - 0.05, abs=1e-6)  # the whole overhead: nothing counted twice


class _Stopped:
    """What main() needs of the stack, the API client and the bare Celery worker, with no process behind them."""

    backend = "embedded"
    env: dict = {}

    def __init__(self, *args, **kwargs) -> None:
        pass

    def stop(self) -> None:
        pass


def figures_of(monkeypatch, capsys, runs: int, times: dict) -> dict:
    """The last JSON line main() prints for the given measured ``times``."""
    import json

    import overhead

    monkeypatch.setattr(overhead, "build_bench_model", lambda *args: None)
    monkeypatch.setattr(overhead, "start_stack", lambda *args, **kwargs: _Stopped())
    monkeypatch.setattr(overhead, "ApiClient", _Stopped)
    monkeypatch.setattr(overhead, "BareCelery", _Stopped)
    monkeypatch.setattr(overhead, "measure", lambda client, bare, count: times)
    monkeypatch.setattr(sys, "argv", ["overhead.py", "--runs", str(runs)])
    assert overhead.main() == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("runs", [5, 15, 25, 40])
def test_the_p90_is_the_value_that_90_percent_of_the_runs_do_not_exceed(monkeypatch, capsys, runs):
    overheads = [0.001 * (n + 1) for n in range(runs)]  # 1, 2, ... runs ms, the model's time 0
    times = {"waited": overheads, "waited_model": [0.0] * runs, "polled": overheads, "polled_model": [0.0] * runs,
             "ping": [0.002] * runs, "stages": [[0.0] * len(STAGES)] * runs}
    figures = figures_of(monkeypatch, capsys, runs, times)
    nearest_rank = -(-runs * 9 // 10)  # ceil(0.9 n): the smallest value with 90 % of the runs at or below it
    assert figures["overhead_p90_ms"] == pytest.approx(float(nearest_rank))
    assert sum(value <= figures["overhead_p90_ms"] / 1000 + 1e-12 for value in overheads) >= 0.9 * runs
    assert figures["overhead_ratio"] == pytest.approx(round(statistics.median(overheads) / 0.002, 2))


def test_a_bare_celery_client_that_does_not_start_leaves_no_worker_behind(monkeypatch):
    """The bare worker starts first; when its client then fails, nothing else would ever stop it."""
    import subprocess

    import overhead

    started = []
    real_popen = subprocess.Popen

    def popen(command, **options):
        is_worker = "worker" in command
        # stand-ins: a worker that would run for a minute, a client that exits without saying "ready"
        command = [sys.executable, "-c", "import time; time.sleep(60)" if is_worker else "pass"]
        process = real_popen(command, **options)
        started.append(process)
        return process

    monkeypatch.setattr(overhead.subprocess, "Popen", popen)
    try:
        with pytest.raises(RuntimeError, match="did not start"):
            overhead.BareCelery(_Stopped())
        worker = started[0]
        assert worker.wait(timeout=10) is not None  # stopped, not left running
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
