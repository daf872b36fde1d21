"""Waiting for a job to finish inside a request (``Prefer: wait``, the OpenAI-compatible endpoints).

The job row is the truth; a notice only says "look now". With Redis (REDIS_URL), whoever finishes
a job publishes its id on the job's channel once the transaction has committed, and a waiting
request wakes at once. A waiter subscribes *before* it reads the row, so a job that finishes
between the read and the wait still wakes it; it also rereads the row every
``SAFETY_RECHECK_S`` in case a notice was lost (Redis restarted, a publisher that failed).
Without Redis (the embedded set-up), waiters read the row at growing intervals.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

from django.db import transaction

from atelier_platform.config import get_config
from atelier_platform.jobs.models import FINISHED_STATUSES, Job

logger = logging.getLogger("atelier.jobs")

CHANNEL_PREFIX = "atelier:job-finished:"
#: How often a subscribed waiter rereads the row anyway.
SAFETY_RECHECK_S = 1.0
#: Row polling without Redis: first interval, growth, ceiling. The ceiling is how late a waiter may see a
#: long job finish. Not lower: on a small host, waking every 10 ms preempted the model's threads often
#: enough to add about 100 ms to a 450 ms job (bench/batching.py's idle latency), 25 ms added about 25.
POLL_FIRST_S, POLL_GROWTH, POLL_MAX_S = 0.005, 1.5, 0.025

_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _redis():
    """One client (and connection pool) per process, or None in the embedded set-up."""
    url = get_config().redis_url
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        import redis

        with _clients_lock:
            client = _clients.setdefault(url, redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2))
    return client


def channel_of(job_id) -> str:
    return f"{CHANNEL_PREFIX}{job_id}"


def announce_finished(job_id) -> None:
    """After the current transaction commits, wake whoever waits for this job (no-op without Redis)."""
    if not get_config().redis_url:
        return

    def publish() -> None:
        try:
            _redis().publish(channel_of(job_id), "finished")
        except Exception:  # a lost notice only delays a waiter until its next reread of the row
            logger.warning("could not announce that job %s finished", job_id, exc_info=True)

    transaction.on_commit(publish)


def _status(job_id) -> str | None:
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


def _is_done(status: str | None) -> bool:
    return status is None or status in FINISHED_STATUSES


def _notice_within(subscription, seconds: float) -> bool:
    """True when the job's notice arrives within ``seconds``. The subscription's own confirmation
    also ends a ``get_message`` (as None): keep listening until the time is up."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        if subscription.get_message(timeout=left) is not None:
            return True
    return False


def watch(job_id, timeout_s: float) -> Iterator[bool]:
    """Yields False after each look at a running job (at least once a second with Redis, every 5-25 ms
    without), then True once it has finished (or no longer exists, or its finish notice came) and
    stops; stops after ``timeout_s`` without yielding True."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    client = _redis()
    subscription = None
    if client is not None:
        try:
            subscription = client.pubsub(ignore_subscribe_messages=True)
            subscription.subscribe(channel_of(job_id))
        except Exception:
            logger.warning("waiting for job %s by reading its row: Redis subscribe failed", job_id, exc_info=True)
            subscription = None
    try:
        delay = POLL_FIRST_S
        while True:
            if _is_done(_status(job_id)):
                yield True
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            yield False
            if subscription is not None:
                try:
                    if _notice_within(subscription, min(SAFETY_RECHECK_S, remaining)):
                        # Published once the finishing transaction committed: the row says so already.
                        yield True
                        return
                    continue
                except Exception:
                    logger.warning("waiting for job %s by reading its row: Redis went away", job_id, exc_info=True)
                    subscription = None
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * POLL_GROWTH, POLL_MAX_S)
    finally:
        if subscription is not None:
            try:
                subscription.close()
            except Exception:
                pass


def wait_until_finished(job_id, timeout_s: float) -> bool:
    """True once the job has finished, False if ``timeout_s`` ran out first."""
    looks = watch(job_id, timeout_s)
    try:
        return any(looks)
    finally:
        looks.close()
