"""bench/overhead.py's breakdown of a job's overhead, from the times the API shows on the job."""

from __future__ import annotations

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
