"""bench/api.py's figures: the percentiles of the latencies it reports, and the stack it says it measured."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import api  # noqa: E402


@pytest.mark.parametrize(("count", "q"), [(100, 99), (20, 95), (300, 99), (1600, 99), (1600, 95), (10, 50), (7, 99), (1, 99)])
def test_a_percentile_is_the_smallest_latency_that_q_percent_do_not_exceed(count, q):
    latencies = [float(n + 1) for n in range(count)]  # 1, 2, ... count
    nearest_rank = -(-count * q // 100)  # ceil(q/100 n)
    assert api.percentile(latencies, q) == nearest_rank
