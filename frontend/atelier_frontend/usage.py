"""Usage and quality figures of a project, per day, for the dashboard's charts.

Read from the rows the platform keeps anyway (jobs, outputs, files, review items), in a fixed
number of queries whatever the volume: counts are grouped in the database; latencies, tokens
and compute seconds are read as a few columns of the window's jobs (at most ``MAX_ROWS``).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone as dt_timezone

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from atelier_platform.jobs.models import Job, JobStatus, Output, OutputFile
from atelier_platform.moderation.models import ReviewItem, ReviewItemState
from atelier_platform.moderation.review import decided_by_reviewers
from atelier_platform.moderation.screening import IMAGE_TYPES

MAX_ROWS = 20_000


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` 0.5 for the median)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return round(ordered[rank - 1], 3)


def summary(project, days: int = 14, today: date | None = None) -> dict:
    today = today or timezone.now().date()
    day_list = [today - timedelta(days=days - 1 - i) for i in range(days)]
    start = datetime.combine(day_list[0], time.min, tzinfo=dt_timezone.utc)
    keys = [d.isoformat() for d in day_list]
    index = {key: i for i, key in enumerate(keys)}

    def zeros():
        return [0] * days

    jobs = Job.objects.filter(project=project, created_at__gte=start)
    per_plugin: dict[str, list[int]] = {}
    for row in jobs.annotate(day=TruncDate("created_at")).values("day", "plugin_id").annotate(n=Count("id")):
        per_plugin.setdefault(row["plugin_id"], zeros())[index[row["day"].isoformat()]] = row["n"]

    latencies: list[list[float]] = [[] for _ in day_list]
    for created, finished in jobs.filter(status=JobStatus.SUCCEEDED, finished_at__isnull=False).values_list(
            "created_at", "finished_at")[:MAX_ROWS]:
        latencies[index[created.date().isoformat()]].append((finished - created).total_seconds())

    tokens, compute = zeros(), [0.0] * days
    outputs = Output.objects.filter(job__project=project, created_at__gte=start)
    for created, seconds, usage, position in outputs.values_list(
            "created_at", "provenance__generate_seconds", "content__usage", "index")[:MAX_ROWS]:
        i = index[created.date().isoformat()]
        if isinstance(usage, dict):
            tokens[i] += int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
        if position == 0 and isinstance(seconds, (int, float)):
            compute[i] += seconds  # one job's time, shared by its outputs: counted once

    images = zeros()
    image_files = OutputFile.objects.filter(output__job__project=project, output__created_at__gte=start,
                                            media_type__in=IMAGE_TYPES, role="primary")
    for row in image_files.annotate(day=TruncDate("output__created_at")).values("day").annotate(n=Count("id")):
        images[index[row["day"].isoformat()]] = row["n"]

    approved, decided = zeros(), zeros()
    # decided by reviewers (``decided_by_reviewers``): an item an erasure closed is no decision, approving or not
    decisions = decided_by_reviewers(ReviewItem.objects.filter(project=project, decided_at__gte=start))
    for row in decisions.annotate(day=TruncDate("decided_at")).values("day").annotate(
            n=Count("id"), ok=Count("id", filter=Q(output__review_state="approved"))):
        i = index[row["day"].isoformat()]
        decided[i], approved[i] = row["n"], row["ok"]

    # queue depth at the end of each day: items opened by then and not yet decided by then
    depth = zeros()
    spans = ReviewItem.objects.filter(project=project).filter(
        Q(state=ReviewItemState.OPEN) | Q(decided_at__gte=start)).values_list("created_at", "decided_at")[:MAX_ROWS]
    ends = [datetime.combine(d + timedelta(days=1), time.min, tzinfo=dt_timezone.utc) for d in day_list]
    for opened, closed in spans:
        for i, end in enumerate(ends):
            if opened < end and (closed is None or closed >= end):
                depth[i] += 1

    now_counts = Job.objects.filter(project=project).aggregate(
        queued=Count("id", filter=Q(status=JobStatus.QUEUED)), running=Count("id", filter=Q(status=JobStatus.RUNNING)))
    return {
        "days": keys,
        "jobs_per_plugin": per_plugin,
        "approval_rate": [round(a / n, 3) if n else None for a, n in zip(approved, decided)],
        "decided": decided,
        "queue_depth": depth,
        "latency_p50": [percentile(v, 0.5) for v in latencies],
        "latency_p95": [percentile(v, 0.95) for v in latencies],
        "tokens": tokens,
        "images": images,
        "compute_seconds": [round(c, 2) for c in compute],
        "now": {**now_counts, "review_open": depth[-1]},
    }
