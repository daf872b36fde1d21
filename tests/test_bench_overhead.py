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
    monkeypatch.setattr(overhead, "cpu_meters", lambda stack, bare: None)
    monkeypatch.setattr(overhead, "measure", lambda client, bare, count, meters, floor=None: times)
    monkeypatch.setattr(sys, "argv", ["overhead.py", "--runs", str(runs)])
    assert overhead.main() == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("runs", [5, 15, 25, 40])
def test_the_p90_is_the_value_that_90_percent_of_the_runs_do_not_exceed(monkeypatch, capsys, runs):
    overheads = [0.001 * (n + 1) for n in range(runs)]  # 1, 2, ... runs ms, the model's time 0
    times = {"waited": overheads, "waited_model": [0.0] * runs, "polled": overheads, "polled_model": [0.0] * runs,
             "ping": [0.002] * runs, "stages": [[0.0] * len(STAGES)] * runs, "cpu": [], "ping_cpu": [], "floor": [], "floor_stages": [], "floor_cpu": []}
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


def test_cpu_per_job_is_each_parts_mean_and_their_total(monkeypatch, capsys):
    """Means, not medians: a heartbeat's work lands beside one job in ten, and is still a cost of the jobs."""
    runs = 10
    cpu = [{"web": 0.010, "worker": 0.020 + (0.030 if n == 0 else 0.0), "client": 0.001} for n in range(runs)]
    times = {"waited": [0.03] * runs, "waited_model": [0.01] * runs, "polled": [0.03] * runs,
             "polled_model": [0.01] * runs, "ping": [0.002] * runs, "stages": [[0.0] * len(STAGES)] * runs,
             "cpu": cpu, "ping_cpu": [{"worker": 0.001, "client": 0.0005}] * runs, "floor": [], "floor_stages": [], "floor_cpu": []}
    figures = figures_of(monkeypatch, capsys, runs, times)
    assert figures["cpu_ms_per_job"] == {"web": 10.0, "worker": 23.0, "client": 1.0, "total": 34.0}
    assert figures["bare_celery_cpu_ms"] == {"worker": 1.0, "client": 0.5, "total": 1.5}


def test_the_cpu_meter_counts_each_groups_own_work():
    """A busy process's CPU goes to its group, an idle one's group gets none of it."""
    import subprocess

    from overhead import CpuMeter, with_children

    # each says "ready" once started (an interpreter's start is work of its own), then waits for its turn
    busy = subprocess.Popen([sys.executable, "-c", "import sys\nprint(flush=True)\nfor _ in sys.stdin:\n"
                             "    sum(range(3_000_000)); print(flush=True)"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    idle = subprocess.Popen([sys.executable, "-c", "import sys; print(flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        busy.stdout.readline(), idle.stdout.readline()
        meter = CpuMeter({"busy": with_children(busy), "idle": with_children(idle)}, first="idle")
        before = meter.read(after=False)
        busy.stdin.write("\n")
        busy.stdin.flush()
        busy.stdout.readline()  # the sum is done
        spent = CpuMeter.spent(before, meter.read(after=True))
        assert set(spent) == {"busy", "idle"}
        assert spent["busy"] > 10 * spent["idle"]
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()
