"""Putting job messages on the broker. The job row is already saved; a message only carries its id.

A publish that fails (broker down) is logged and left to the sweeper, which re-sends messages
for queued jobs that no worker picked up: the submitter still gets their 201. A publish that gets no
answer (a hung broker) gives up after one broker socket timeout (5 s; ``celery_app.bounded_publish_retry_policy``)
for the same reason: the job is safe in its row, and the request that submitted it is waiting.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Value
from django.db.models.functions import Now
from django.utils import timezone

from atelier_platform.celery_app import RUN_JOB_TASK, app, bounded_publish_retry_policy

logger = logging.getLogger("atelier.jobs")

#: Seconds between the soft time limit (raised inside the task) and the hard kill.
HARD_LIMIT_GRACE_S = 30


def broker_priority(priority: int) -> int:
    """API priority 9 is the most urgent; brokers here serve priority 0 first."""
    return 9 - max(0, min(9, priority))


def publish_run_job(job_id: str, *, queue: str, priority: int, time_limit_s: int, countdown: float = 0) -> bool:
    started = time.monotonic()
    try:
        app.send_task(
            RUN_JOB_TASK,
            args=[str(job_id)],
            queue=queue,
            priority=broker_priority(priority),
            soft_time_limit=time_limit_s,
            time_limit=time_limit_s + HARD_LIMIT_GRACE_S,
            countdown=countdown or None,
            retry=True,
            retry_policy=bounded_publish_retry_policy(),
        )
        return True
    except Exception:  # broker unreachable or not answering: the sweeper re-sends later
        logger.exception("could not publish job %s to queue %s (gave up after %.1f s); the sweeper sends it again once "
                         "it has been queued ATELIER_JOB_REQUEUE_AFTER_S", job_id, queue, time.monotonic() - started)
        return False


def database_now_plus(seconds: float) -> ExpressionWrapper:
    """The database's clock, ``seconds`` ahead: the one clock every host that writes or checks when a job
    is due reads alike (``enqueue_on_commit``, ``lifecycle.claim_job``)."""
    return ExpressionWrapper(Now() + Value(timedelta(seconds=seconds)), output_field=DateTimeField())


def enqueue_on_commit(job, *, countdown: float = 0) -> None:
    """Record when the message is due and publish it once the surrounding transaction commits."""
    mark_enqueued(job, countdown=countdown)
    publish_on_commit(job, countdown=countdown)


def mark_enqueued(job, *, countdown: float = 0) -> None:
    """Record that a message for ``job`` is due ``countdown`` seconds from now (the sweeper's measure of a lost one)."""
    from atelier_platform.jobs.models import Job

    Job.objects.filter(pk=job.pk).update(enqueued_at=database_now_plus(countdown), enqueue_count=F("enqueue_count") + 1)
    job.enqueued_at = timezone.now() + timedelta(seconds=countdown)  # this process's reckoning of the same


def _message_of(job, countdown: float) -> dict:
    return dict(job_id=str(job.pk), queue=job.resource_class, priority=job.priority, time_limit_s=job.time_limit_s,
                countdown=countdown)


def publish_job(job, *, countdown: float = 0) -> bool:
    """Publish ``job``'s message now; False when the broker did not take it (logged)."""
    return publish_run_job(**_message_of(job, countdown))


def publish_on_commit(job, *, countdown: float = 0) -> None:
    message = _message_of(job, countdown)  # as the job is now, whatever the transaction does to the object later
    transaction.on_commit(lambda: publish_run_job(**message), robust=True)
