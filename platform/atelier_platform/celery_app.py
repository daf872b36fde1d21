"""The Celery app: the only way the platform reaches the workers.

The platform sends tasks by name (``send_task``); it never imports ``atelier_workers``. The
database row of a job is its truth: messages carry only ids, and a lost or duplicated message
is repaired by the sweeper and the idempotent claim.
"""

from __future__ import annotations

import os
import logging
import time

from celery import Celery
from kombu import Exchange, Queue

from atelier_platform import fs_broker
from atelier_platform.config import get_config

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "atelier_platform.settings")
# Workers and web processes write logs, not a terminal: transformers' "Loading weights" progress bars
# would fill them, and a worker's stderr reaches Celery's log as WARNING lines at every model load.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

#: Queues by resource class, plus one for the platform's own housekeeping, so that a sweep is
#: never stuck behind a long generation.
QUEUE_GPU = "gpu"
QUEUE_CPU = "cpu"
QUEUE_PLATFORM = "platform"
#: Exports in the background, on a worker of their own: a million rows take a quarter of an hour, which on the
#: platform queue's slots would hold up the sweeps and webhook deliveries (and, sharing its worker, the cpu jobs).
QUEUE_EXPORTS = "exports"
JOB_QUEUES = (QUEUE_GPU, QUEUE_CPU)

#: Task names, the contract between the platform and the workers.
RUN_JOB_TASK = "atelier.run_job"
SWEEP_JOBS_TASK = "atelier.sweep_jobs"
INDEX_DOCUMENT_TASK = "atelier.index_document"
SCORE_EVALUATION_TASK = "atelier.score_evaluation"
DELIVER_WEBHOOK_TASK = "atelier.deliver_webhook"
SWEEP_WEBHOOKS_TASK = "atelier.sweep_webhooks"
ERASE_EXPIRED_CONTENT_TASK = "atelier.erase_expired_content"
#: How often the projects' content retention is applied: a day's retention is kept to within an hour.
RETENTION_INTERVAL_S = 3600
#: How soon a retention run whose time (``ATELIER_RETENTION_RUN_BUDGET_S``) was up with expired jobs left is followed
#: by the next: after as long a pause as the run took (at least this), so that a backlog takes at most half of a
#: platform worker's time: the sweeper's and the watches' ticks, which expire unless run soon, get the rest.
RETENTION_FOLLOW_UP_MIN_S = 10
START_EVALUATION_WATCHES_TASK = "atelier.start_evaluation_watches"
RUN_EXPORT_TASK = "atelier.run_export"
DELETE_EXPIRED_EXPORTS_TASK = "atelier.delete_expired_exports"
#: How often beat has the files of expired exports deleted: a file outlives its ATELIER_EXPORTS_KEPT_HOURS by at most this.
EXPORTS_CLEANUP_INTERVAL_S = 600
#: how often beat looks for due evaluation watches (``evaluation.watch``; their interval is whole hours)
EVALUATION_WATCH_TICK_S = 60.0


#: Bounds of one connection attempt and of one command's answer on a Redis broker (as ``redis_client``'s).
REDIS_CONNECT_TIMEOUT_S = 2
REDIS_SOCKET_TIMEOUT_S = 5


#: A failed publish is tried again (once, 0.2 s later, on a new connection) only when it failed within this
#: long: the broker closed a pooled connection (a restart, an idle timeout) and may answer the next one.
#: One that failed after waiting out a socket timeout met a broker that does not answer, and asking it again
#: made its caller wait as long again: with two retries and their reconnections, the web request that
#: submitted a job waited about 21 s on a hung Redis instead of 5 s.
QUICK_PUBLISH_FAILURE_S = 1.0


def bounded_publish_retry_policy() -> dict:
    """kombu's retry policy for one publish that someone waits on (the web request that submitted a job): it
    gives up after about one socket timeout (``REDIS_SOCKET_TIMEOUT_S``) on a broker that does not answer, and
    within ``REDIS_CONNECT_TIMEOUT_S`` on one that cannot be reached. Its ``errback`` is called before each
    reconnection and retry, with the seconds about to be slept, and stops them by raising."""
    started = time.monotonic()

    def give_up_unless_quick(exc: BaseException, interval: float) -> None:
        if time.monotonic() + interval - started > QUICK_PUBLISH_FAILURE_S:
            raise exc

    return {"max_retries": 1, "interval_start": 0.2, "interval_step": 0, "interval_max": 0.2,
            "errback": give_up_unless_quick}



def publish_or_leave_to_sweeper(app, task: str, args: list, *, queue: str, what: str, **options) -> bool:
    """Send ``task`` from where someone waits on the publish (a web request, a finishing job): a broker that does not
    answer gives up quickly (``bounded_publish_retry_policy``), and the failure is logged naming ``what``, since
    the sweeper that owns this kind of work sends it again later. ``app`` is the caller's Celery app (tests give a
    module one whose broker hangs)."""
    try:
        app.send_task(task, args=args, queue=queue, retry=True, retry_policy=bounded_publish_retry_policy(), **options)
        return True
    except Exception:  # unreachable or not answering: the message is not lost, its row says it is still due
        logging.getLogger("atelier.tasks").exception("could not queue %s; the sweeper sends it again later", what)
        return False

def _broker_options(config) -> dict:
    if config.uses_embedded_broker:
        fs_broker.register()
        return {**fs_broker.transport_options(config.broker_folder), "polling_interval": config.broker_poll_interval_s}
    return {
        # Ten priority levels, 0 served first (the Redis convention; see jobs.services.broker_priority).
        "priority_steps": list(range(10)),
        "sep": ":",
        "queue_order_strategy": "priority",
        "visibility_timeout": config.broker_visibility_timeout_s,
        # Without these a Redis that takes the connection and never answers (hung, a failover, a connection a
        # firewall dropped without a word) holds a publish for good: the web thread submitting a job never
        # answers. A worker's BRPOP returns within a second (kombu's brpop_timeout), well inside them.
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_S,
        "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
    }


def create_app() -> Celery:
    config = get_config()
    app = Celery("atelier", include=["atelier_platform.jobs.tasks", "atelier_workers.tasks", "atelier_workers.knowledge_tasks",
                                    "atelier_workers.evaluation_tasks", "atelier_platform.webhooks.tasks",
                                    "atelier_platform.evaluation.tasks", "atelier_platform.exports.tasks"])
    app.conf.update(
        broker_url=config.resolved_broker_url,
        broker_transport_options=_broker_options(config),
        broker_connection_retry_on_startup=True,
        # JSON only: a message can never make a worker unpickle attacker-controlled bytes.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Results live in the database (the job row); the broker only carries work.
        task_ignore_result=True,
        result_backend=None,
        # A message is acknowledged only after its task finished; a worker that dies mid-task
        # leaves it to be delivered again, and the claim makes the second delivery harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # One direct exchange per queue: a message published for "cpu" reaches the cpu queue only.
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in (QUEUE_GPU, QUEUE_CPU, QUEUE_PLATFORM,
                                                                                             QUEUE_EXPORTS)],
        task_default_queue=QUEUE_PLATFORM,
        # Where a task is sent when its sender names no queue (every sender here names one; a job's
        # queue is chosen per message, by its plugin's resource class). Routes, not the tasks' own
        # ``queue`` attribute: Celery 5.7 deprecates that and 6.0 ignores it.
        task_routes={
            RUN_JOB_TASK: {"queue": QUEUE_CPU},
            INDEX_DOCUMENT_TASK: {"queue": QUEUE_CPU},
            SCORE_EVALUATION_TASK: {"queue": QUEUE_CPU},
            SWEEP_JOBS_TASK: {"queue": QUEUE_PLATFORM},
            DELIVER_WEBHOOK_TASK: {"queue": QUEUE_PLATFORM},
            SWEEP_WEBHOOKS_TASK: {"queue": QUEUE_PLATFORM},
            ERASE_EXPIRED_CONTENT_TASK: {"queue": QUEUE_PLATFORM},
            START_EVALUATION_WATCHES_TASK: {"queue": QUEUE_PLATFORM},
            RUN_EXPORT_TASK: {"queue": QUEUE_EXPORTS},
            DELETE_EXPIRED_EXPORTS_TASK: {"queue": QUEUE_PLATFORM},
        },
        task_default_exchange=QUEUE_PLATFORM,
        task_default_routing_key=QUEUE_PLATFORM,
        task_default_priority=4,
        worker_hijack_root_logger=False,
        # When the broker connection drops (a Redis restart, a failover), running tasks go on: a running job's
        # batch is stored, and its message, delivered again later, finds it done (the claim). Cancelling them
        # (Celery 6.0's default) terminated the pool process with its loaded models and left the jobs to the
        # sweeper, to be run again, each on another attempt.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # Celery's Django fix-up closes the database connection before and after every task unless
        # this is set: a new PostgreSQL connection per job, about 10 ms before the claim. With it the
        # fix-up closes only every 1000 tasks; tasking.atelier_task gives each task Django's own
        # per-request handling instead (health checks, close_old_connections).
        CELERY_DB_REUSE_MAX=1000,
        # beat keeps its schedule in memory (celery.beat:Scheduler): no shelve/pickle file.
        beat_scheduler="celery.beat:Scheduler",
        beat_schedule={
            "sweep-jobs": {
                "task": SWEEP_JOBS_TASK,
                "schedule": config.sweep_interval_s,
                "options": {"queue": QUEUE_PLATFORM, "expires": max(config.sweep_interval_s * 2, 5)},
            },
            # re-sends webhook deliveries whose message was lost (the delivery row is the truth)
            "sweep-webhooks": {
                "task": SWEEP_WEBHOOKS_TASK,
                "schedule": config.sweep_interval_s,
                "options": {"queue": QUEUE_PLATFORM, "expires": max(config.sweep_interval_s * 2, 5)},
            },
            # erases the content of finished jobs past their project's content_retention_days (jobs.erasure)
            "erase-expired-content": {
                "task": ERASE_EXPIRED_CONTENT_TASK,
                "schedule": RETENTION_INTERVAL_S,
                "options": {"queue": QUEUE_PLATFORM, "expires": RETENTION_INTERVAL_S},
            },
            # starts the due scheduled evaluations (each claimed once, whichever beat or delivery runs it)
            "start-evaluation-watches": {
                "task": START_EVALUATION_WATCHES_TASK,
                "schedule": EVALUATION_WATCH_TICK_S,
                "options": {"queue": QUEUE_PLATFORM, "expires": EVALUATION_WATCH_TICK_S * 2},
            },
            # deletes the files of exports past their expires_at (exports.services.delete_expired)
            "delete-expired-exports": {
                "task": DELETE_EXPIRED_EXPORTS_TASK,
                "schedule": EXPORTS_CLEANUP_INTERVAL_S,
                "options": {"queue": QUEUE_PLATFORM, "expires": EXPORTS_CLEANUP_INTERVAL_S},
            },
        },
    )
    return app


app = create_app()
