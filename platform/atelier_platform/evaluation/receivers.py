"""An evaluation job's finish moves its run on (sent after the finish commits, in the worker's process); a reference
image's file goes with its row."""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver

from atelier_platform.evaluation.models import ReferenceImage
from atelier_platform.jobs.signals import job_cancelled, job_failed, jobs_cancelled, jobs_succeeded
from atelier_platform.stored_files import remove_after_commit


def _record(jobs) -> None:
    ids = [job.pk for job in jobs if job.is_evaluation]
    if ids:
        from atelier_platform.evaluation.services import record_finished_jobs

        record_finished_jobs(ids)


@receiver(jobs_succeeded, dispatch_uid="evaluation.jobs_succeeded")
def on_jobs_succeeded(sender, finished, **kwargs):
    _record([job for job, _ in finished])


@receiver(job_failed, dispatch_uid="evaluation.job_failed")
def on_job_failed(sender, job, **kwargs):
    _record([job])


@receiver(job_cancelled, dispatch_uid="evaluation.job_cancelled")
def on_job_cancelled(sender, job, **kwargs):
    _record([job])


@receiver(post_delete, sender=ReferenceImage, dispatch_uid="evaluation.reference_image_deleted")
def remove_deleted_reference_image(sender, instance: ReferenceImage, **kwargs) -> None:
    """A reference image's file leaves storage with its row (its set deleted, in cascade with its project, or no
    case names it any more), once the deletion commits: a rolled-back one keeps it."""
    remove_after_commit(instance.file, "a deleted reference image")


@receiver(jobs_cancelled, dispatch_uid="evaluation.jobs_cancelled")
def on_jobs_cancelled(sender, jobs, **kwargs):
    _record(jobs)
