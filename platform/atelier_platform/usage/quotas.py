"""Per-project quotas: jobs per UTC day and worker seconds per UTC calendar month.

Both are computed from the job rows (the truth), never from counters that could drift:
- jobs today: one COUNT on the (project, created_at) index; blocked inputs and evaluation jobs (whose
  number a run's reference set bounds) do not count;
- compute this month: the sum of ``finished_at - started_at`` of the project's jobs that finished
  this month, cached for ``COMPUTE_CACHE_S`` in the shared cache (it only grows as jobs finish,
  so a briefly stale figure lets at most the jobs of those seconds through).

The jobs-per-day check runs twice: once before screening (fail fast, no screening spent on a
refused request), and again inside the transaction that creates the jobs, after locking the
project row, so that concurrent submissions cannot together pass the limit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.core.cache import cache
from django.db.models import DurationField, ExpressionWrapper, F, Sum
from django.utils import timezone

from atelier_platform.accounts.models import Project
from atelier_platform.config import get_config
from atelier_platform.jobs.models import Job, JobPurpose, JobStatus
from atelier_platform.usage.errors import QuotaExceeded
from atelier_platform.usage.models import ProjectQuota

logger = logging.getLogger("atelier.api")

COMPUTE_CACHE_S = 30
_NOT_READ = object()
#: a job counted in a month's compute finished in it and was created at most this long before it began
LONGEST_QUEUE_WAIT = timedelta(days=31)


@dataclass(frozen=True)
class QuotaLimits:
    jobs_per_day: int  # 0: unlimited
    compute_seconds_per_month: int  # 0: unlimited

    @property
    def any(self) -> bool:
        return bool(self.jobs_per_day or self.compute_seconds_per_month)


def limits_for(project: Project) -> QuotaLimits:
    config = get_config()
    own = Project.quota.related.get_cached_value(project, default=_NOT_READ)  # read along by API-key requests
    if own is _NOT_READ:
        own = ProjectQuota.objects.filter(project=project).first()
    jobs = own.jobs_per_day if own is not None and own.jobs_per_day is not None else config.quota_jobs_per_day
    compute = (own.compute_seconds_per_month if own is not None and own.compute_seconds_per_month is not None
               else config.quota_compute_seconds_per_month)
    return QuotaLimits(jobs_per_day=jobs, compute_seconds_per_month=compute)


def day_start(now: datetime) -> datetime:
    now = now.astimezone(dt_timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return (start + timedelta(days=32)).replace(day=1)


def jobs_today(project: Project, now: datetime) -> int:
    return Job.objects.filter(project=project, created_at__gte=day_start(now)).exclude(status=JobStatus.BLOCKED).exclude(
        purpose=JobPurpose.EVALUATION).count()


def compute_seconds_this_month(project: Project, now: datetime, *, use_cache: bool = True) -> float:
    cache_key = f"quota:compute:{project.pk}:{project.slug}:{month_start(now).strftime('%Y-%m')}"
    if use_cache:
        try:
            cached = cache.get(cache_key)
        except Exception:  # noqa: BLE001 - the cache is an optimisation here
            cached = None
        if cached is not None:
            return float(cached)
    start = month_start(now)
    total = Job.objects.filter(
        project=project, finished_at__gte=start, started_at__isnull=False, created_at__gte=start - LONGEST_QUEUE_WAIT,
    ).aggregate(seconds=Sum(ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())))["seconds"]
    seconds = max(0.0, total.total_seconds()) if total else 0.0
    if use_cache:
        try:
            cache.set(cache_key, seconds, timeout=COMPUTE_CACHE_S)
        except Exception:  # noqa: BLE001
            logger.warning("quota cache unavailable", exc_info=True)
    return seconds


def _retry_after(resets_at: datetime, now: datetime) -> int:
    return int((resets_at - now).total_seconds()) + 1


def check_jobs_per_day(project: Project, limits: QuotaLimits, new_jobs: int, *, now: datetime | None = None) -> None:
    if not limits.jobs_per_day:
        return
    now = now or timezone.now()
    used = jobs_today(project, now)
    if used + new_jobs > limits.jobs_per_day:
        resets_at = day_start(now) + timedelta(days=1)
        left = max(0, limits.jobs_per_day - used)
        raise QuotaExceeded(
            f"The project's quota of {limits.jobs_per_day} jobs per day is used up ({used} today"
            + (f"; this request asks for {new_jobs}, {left} remain" if new_jobs > 1 else "")
            + f"). It resets at {resets_at.isoformat()}; an operator can raise it.",
            retry_after=_retry_after(resets_at, now),
            details={"quota": "jobs_per_day", "limit": limits.jobs_per_day, "used": used, "requested": new_jobs,
                     "resets_at": resets_at.isoformat()},
        )


def check_compute(project: Project, limits: QuotaLimits, *, now: datetime | None = None) -> None:
    if not limits.compute_seconds_per_month:
        return
    now = now or timezone.now()
    used = compute_seconds_this_month(project, now)
    if used >= limits.compute_seconds_per_month:
        resets_at = next_month_start(now)
        raise QuotaExceeded(
            f"The project's quota of {limits.compute_seconds_per_month} compute seconds per month is used up "
            f"({round(used)} s this month). It resets at {resets_at.isoformat()}; an operator can raise it.",
            retry_after=_retry_after(resets_at, now),
            details={"quota": "compute_seconds_per_month", "limit": limits.compute_seconds_per_month,
                     "used": round(used, 1), "resets_at": resets_at.isoformat()},
        )


def check_submission(project: Project, new_jobs: int) -> QuotaLimits:
    """Refuse ``new_jobs`` more jobs when a quota is used up (429 ``quota_exceeded``); the limits, for the locked re-check."""
    limits = limits_for(project)
    if limits.any:
        now = timezone.now()
        check_jobs_per_day(project, limits, new_jobs, now=now)
        check_compute(project, limits, now=now)
    return limits


def recheck_locked(project: Project, limits: QuotaLimits, new_jobs: int) -> None:
    """Inside the creating transaction: lock the project row, count again (concurrent submissions take turns)."""
    if not limits.jobs_per_day:
        return
    list(Project.objects.select_for_update().filter(pk=project.pk).values_list("pk", flat=True))
    check_jobs_per_day(project, limits, new_jobs)


def quota_status(project: Project) -> dict:
    """What ``GET /api/v1/usage/quota/`` shows: each quota's limit (null: unlimited), use and reset time."""
    limits = limits_for(project)
    now = timezone.now()
    jobs_used = jobs_today(project, now)
    compute_used = compute_seconds_this_month(project, now, use_cache=False)
    return {
        "jobs_per_day": {"limit": limits.jobs_per_day or None, "used": jobs_used,
                         "remaining": max(0, limits.jobs_per_day - jobs_used) if limits.jobs_per_day else None,
                         "resets_at": day_start(now) + timedelta(days=1)},
        "compute_seconds_per_month": {
            "limit": limits.compute_seconds_per_month or None, "used": round(compute_used, 1),
            "remaining": round(max(0.0, limits.compute_seconds_per_month - compute_used), 1) if limits.compute_seconds_per_month else None,
            "resets_at": next_month_start(now)},
    }
