"""Usage per plugin per UTC day, aggregated by the database (three grouped queries, whatever the data).

- jobs: counted by status, on the day they were submitted;
- compute seconds: ``finished_at - started_at`` of those jobs (the wall-clock seconds each held a
  worker; jobs that ran in one batch each count the batch's time);
- tokens: the ``usage.prompt_tokens`` / ``usage.completion_tokens`` the outputs report (the chatbot
  does; any plugin whose outputs carry ``usage`` the same way is counted too);
- images: output files of role ``primary`` with an ``image/*`` media type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, FloatField, Q, Sum
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, TruncDate

from atelier_platform.jobs.models import Job, JobStatus, Output, OutputFile

MAX_DAYS = 366
#: token counts outside this range (or not numbers) are ignored rather than summed
_TOKEN_RANGE = (0, 10**12)


@dataclass(frozen=True)
class UsageQuery:
    date_from: date
    date_to: date
    plugin: str | None = None


def _bounds(query: UsageQuery) -> tuple[datetime, datetime]:
    start = datetime.combine(query.date_from, time.min, tzinfo=dt_timezone.utc)
    end = datetime.combine(query.date_to + timedelta(days=1), time.min, tzinfo=dt_timezone.utc)
    return start, end


def _tokens(field: str):
    path = KeyTextTransform(field, KeyTransform("usage", "content"))
    lookup = f"content__usage__{field}"
    is_count = Q(**{f"{lookup}__gte": _TOKEN_RANGE[0], f"{lookup}__lte": _TOKEN_RANGE[1]})
    return Sum(Cast(path, FloatField()), filter=is_count)


def usage_rows(project, query: UsageQuery) -> list[dict[str, Any]]:
    start, end = _bounds(query)
    jobs = Job.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
    outputs = Output.objects.filter(job__project=project, job__created_at__gte=start, job__created_at__lt=end)
    files = OutputFile.objects.filter(
        output__job__project=project, output__job__created_at__gte=start, output__job__created_at__lt=end,
        role="primary", media_type__startswith="image/",
    )
    if query.plugin:
        jobs = jobs.filter(plugin_id=query.plugin)
        outputs = outputs.filter(job__plugin_id=query.plugin)
        files = files.filter(output__job__plugin_id=query.plugin)

    run_time = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    job_rows = (
        jobs.annotate(day=TruncDate("created_at")).values("day", "plugin_id").order_by()
        .annotate(
            total=Count("id"),
            **{status: Count("id", filter=Q(status=status)) for status in JobStatus.values},
            compute=Sum(run_time, filter=Q(started_at__isnull=False, finished_at__isnull=False)),
        )
    )
    token_rows = (
        outputs.annotate(day=TruncDate("job__created_at")).values("day", "job__plugin_id").order_by()
        .annotate(prompt=_tokens("prompt_tokens"), completion=_tokens("completion_tokens"))
    )
    image_rows = (
        files.annotate(day=TruncDate("output__job__created_at")).values("day", "output__job__plugin_id").order_by()
        .annotate(images=Count("id"))
    )

    # Merging the three grouped results: at most days x plugins rows each, not one per job.
    merged: dict[tuple[date, str], dict[str, Any]] = {}
    for row in job_rows:
        compute = row["compute"]
        merged[(row["day"], row["plugin_id"])] = {
            "date": row["day"], "plugin": row["plugin_id"],
            "jobs": {"total": row["total"], **{status: row[status] for status in JobStatus.values}},
            "tokens": {"prompt": 0, "completion": 0, "total": 0},
            "images": 0,
            "compute_seconds": round(compute.total_seconds(), 3) if compute else 0.0,
        }
    for row in token_rows:
        entry = merged.get((row["day"], row["job__plugin_id"]))
        if entry is not None:
            prompt, completion = int(row["prompt"] or 0), int(row["completion"] or 0)
            entry["tokens"] = {"prompt": prompt, "completion": completion, "total": prompt + completion}
    for row in image_rows:
        entry = merged.get((row["day"], row["output__job__plugin_id"]))
        if entry is not None:
            entry["images"] = row["images"]
    return [merged[key] for key in sorted(merged)]


def totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = {"jobs": {"total": 0, **{status: 0 for status in JobStatus.values}},
             "tokens": {"prompt": 0, "completion": 0, "total": 0}, "images": 0, "compute_seconds": 0.0}
    for row in rows:
        for name in total["jobs"]:
            total["jobs"][name] += row["jobs"][name]
        for name in total["tokens"]:
            total["tokens"][name] += row["tokens"][name]
        total["images"] += row["images"]
        total["compute_seconds"] += row["compute_seconds"]
    total["compute_seconds"] = round(total["compute_seconds"], 3)
    return total
