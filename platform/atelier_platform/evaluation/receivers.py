"""An evaluation job's finish moves its run on (sent after the finish commits, in the worker's process)."""

from __future__ import annotations

from django.dispatch import receiver

from atelier_platform.jobs.signals import job_cancelled, job_failed, jobs_succeeded


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
