"""The platform's housekeeping tasks (the job-running task lives in atelier_workers.tasks)."""

from atelier_platform import fs_broker
from atelier_platform.celery_app import (ERASE_EXPIRED_CONTENT_TASK, RETENTION_FOLLOW_UP_MIN_S, RETENTION_INTERVAL_S,
                                         SWEEP_JOBS_TASK)
from atelier_platform.config import get_config
from atelier_platform.evaluation.services import sweep_runs
from atelier_platform.exports import services as export_services
from atelier_platform.fleet.services import forget_old_workers
from atelier_platform.jobs import erasure, lifecycle, waiting
from atelier_platform.knowledge.services import resend_overdue_indexing
from atelier_platform.tasking import atelier_task


@atelier_task(SWEEP_JOBS_TASK)
def sweep_jobs(task) -> dict[str, int]:
    counts = lifecycle.sweep()
    counts["forgotten_workers"] = forget_old_workers()
    counts["forgotten_notices"] = waiting.forget_old_notices()
    counts["republished_documents"] = resend_overdue_indexing()
    counts["finished_evaluations"] = sweep_runs()  # runs whose last job's finish notice was missed
    counts["resent_exports"] = export_services.sweep()  # exports whose message was lost or whose worker died
    config = get_config()
    if config.uses_embedded_broker:  # messages taken by worker processes that ended before acking them
        counts["redelivered_messages"] = fs_broker.requeue_orphaned_in(config.broker_folder)
        counts["forgotten_replies"] = fs_broker.forget_unread_replies_in(config.broker_folder)
    return counts


@atelier_task(ERASE_EXPIRED_CONTENT_TASK)
def erase_expired_content(task, follow_up: bool = False, resume_at: int | None = None) -> dict[str, int]:
    """The projects' content retention (``SafetyPolicy.content_retention_days``), batch by batch and project by
    project for at most ``ATELIER_RETENTION_RUN_BUDGET_S``; what is left then goes on in a follow-up run of this task
    (``follow_up``, starting with the projects it names: ``resume_at``), not at the next hourly one. Idempotent."""
    if follow_up:
        erasure.follow_up_started()
    run = erasure.erase_expired_content(resume_at=resume_at)
    if run.left:  # the follow-up is dropped past an hour: the hourly run has come meanwhile
        after_s = max(RETENTION_FOLLOW_UP_MIN_S, run.budget_s)
        erasure.continue_later(run, task.apply_async, after_s=after_s, within_s=after_s + RETENTION_INTERVAL_S)
    return run.erased
