"""The figures a worker process keeps about its own work, in a JSON-friendly form.

Plain Python (no Django, no prometheus_client): the worker accumulates them in memory and
writes them with its state report; ``fleet.metrics`` turns every worker's figures into
Prometheus metric families. Bucket bounds live here, shared by both sides.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

HISTOGRAM_BUCKETS: dict[str, tuple[float, ...]] = {
    "queue_wait_seconds": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    "run_seconds": (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
    "batch_size": (1, 2, 4, 8, 16, 32, 64, 128),
}

COUNTERS = ("jobs_succeeded", "jobs_failed", "jobs_retried", "jobs_cancelled", "batches", "tokens", "images",
            "generation_seconds", "oom_splits")


class WorkerStats:
    """Counters, histograms and last-batch throughput of one worker process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, float] = {name: 0 for name in COUNTERS}
        self.histograms: dict[str, dict[str, Any]] = {
            name: {"buckets": list(bounds), "counts": [0] * len(bounds), "sum": 0.0, "count": 0}
            for name, bounds in HISTOGRAM_BUCKETS.items()
        }
        self.gauges: dict[str, float] = {"tokens_per_second": 0.0, "images_per_second": 0.0}

    def count(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + amount

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            histogram = self.histograms[name]
            # counts are per bucket (not cumulative) here; the exporter accumulates them
            index = bisect.bisect_left(histogram["buckets"], value)
            if index < len(histogram["counts"]):
                histogram["counts"][index] += 1
            histogram["sum"] += value
            histogram["count"] += 1

    def set_gauge(self, name: str, value: float) -> None:
        with self._lock:
            self.gauges[name] = value

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counters": dict(self.counters),
                "histograms": {name: {**h, "counts": list(h["counts"])} for name, h in self.histograms.items()},
                "gauges": dict(self.gauges),
            }


def cumulative_buckets(histogram: dict[str, Any]) -> list[tuple[str, float]]:
    """Prometheus buckets ``[(upper bound, cumulative count)...]`` ending with ``+Inf`` = the total count."""
    running, buckets = 0, []
    for bound, count in zip(histogram.get("buckets", []), histogram.get("counts", [])):
        running += count
        buckets.append((_bound_label(bound), running))
    buckets.append(("+Inf", histogram.get("count", running)))
    return buckets


def _bound_label(bound: float) -> str:
    return str(float(bound))
