"""Events from the rest of the platform become webhook deliveries.

The signals are sent after their transaction commits, from the web process or a worker. A failure
here is logged and swallowed: a webhook problem must never fail a job or a review decision.
Evaluation jobs (``JobPurpose.EVALUATION``) fire none: they are the platform's own, not a caller's; their run fires
``evaluation_run.finished`` when it ends.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

from django.dispatch import receiver

from atelier_platform.evaluation.signals import evaluation_run_finished, evaluation_watch_failed_to_start
from atelier_platform.exports.signals import export_finished
from atelier_platform.jobs.signals import job_cancelled, job_failed, jobs_cancelled, jobs_erased, jobs_succeeded
from atelier_platform.moderation.review import output_flagged, output_review_changed
from atelier_platform.webhooks import events, services
from atelier_platform.webhooks.events import EventType

logger = logging.getLogger("atelier.webhooks")


def _safely(event_type: str, emit: Callable[[], object]) -> None:
    try:
        emit()
    except Exception:
        logger.exception("could not create webhook deliveries for %s", event_type)


@receiver(jobs_succeeded, dispatch_uid="webhooks.jobs_succeeded")
def on_jobs_succeeded(sender, finished, **kwargs):
    by_project: dict[int, list] = {}
    for job, outputs in finished:
        if job.is_evaluation:
            continue
        by_project.setdefault(job.project_id, []).append((job, outputs))
    for done in by_project.values():
        facts = [services.Fact(str(job.pk), functools.partial(events.job_succeeded_data, job, outputs), job.webhook)
                 for job, outputs in done]
        _safely(EventType.JOB_SUCCEEDED, lambda project=done[0][0].project, facts=facts: services.emit_many(
            project, EventType.JOB_SUCCEEDED, facts))


@receiver(job_failed, dispatch_uid="webhooks.job_failed")
def on_job_failed(sender, job, **kwargs):
    if job.is_evaluation:
        return
    _safely(EventType.JOB_FAILED, lambda: services.emit(
        job.project, EventType.JOB_FAILED, events.job_data(job), event_key=str(job.pk), job_webhook=job.webhook))


@receiver(job_cancelled, dispatch_uid="webhooks.job_cancelled")
def on_job_cancelled(sender, job, **kwargs):
    if job.is_evaluation:
        return
    _safely(EventType.JOB_CANCELLED, lambda: services.emit(
        job.project, EventType.JOB_CANCELLED, events.job_data(job), event_key=str(job.pk), job_webhook=job.webhook))


@receiver(jobs_cancelled, dispatch_uid="webhooks.jobs_cancelled")
def on_jobs_cancelled(sender, jobs, **kwargs):
    """Jobs cancelled together: the events ``on_job_cancelled`` makes of each, one query per project."""
    by_project: dict[int, list] = {}
    for job in jobs:
        if not job.is_evaluation:
            by_project.setdefault(job.project_id, []).append(job)
    for cancelled in by_project.values():
        facts = [services.Fact(str(job.pk), functools.partial(events.job_data, job), job.webhook) for job in cancelled]
        _safely(EventType.JOB_CANCELLED, lambda project=cancelled[0].project, facts=facts: services.emit_many(
            project, EventType.JOB_CANCELLED, facts))


@receiver(jobs_erased, dispatch_uid="webhooks.jobs_erased")
def on_jobs_erased(sender, project, job_ids, **kwargs):
    """Jobs erased together (a request, a conversation, a retention batch): one ``job.erased`` each, read afresh after
    the commit with their outputs' ids, in one query for them all. Keyed by the job: erased once, announced once."""
    from atelier_platform.jobs.models import Job, JobPurpose, Output

    def emit():
        jobs = list(Job.objects.filter(project=project, pk__in=job_ids).exclude(purpose=JobPurpose.EVALUATION)
                    .select_related("project").only("id", "project__slug", "plugin_id", "status", "erased_at",
                                                    "erased_by", "webhook", "purpose"))
        outputs: dict = {}
        for output_id, job_id in Output.objects.filter(job_id__in=[job.pk for job in jobs]).order_by("index").values_list(
                "pk", "job_id"):
            outputs.setdefault(job_id, []).append(output_id)
        facts = []
        for job in jobs:
            job.output_ids = outputs.get(job.pk, [])
            facts.append(services.Fact(str(job.pk), functools.partial(events.job_erased_data, job), job.webhook))
        services.emit_many(project, EventType.JOB_ERASED, facts)

    if job_ids:
        _safely(EventType.JOB_ERASED, emit)


@receiver(output_flagged, dispatch_uid="webhooks.output_flagged")
def on_output_flagged(sender, output, categories, **kwargs):
    _safely(EventType.OUTPUT_FLAGGED, lambda: services.emit(
        output.job.project, EventType.OUTPUT_FLAGGED, events.output_flagged_data(output, categories),
        event_key=str(output.pk), job_webhook=output.job.webhook))


@receiver(output_review_changed, dispatch_uid="webhooks.output_review_changed")
def on_output_review_changed(sender, output, state, **kwargs):
    _safely(EventType.OUTPUT_REVIEW_CHANGED, lambda: services.emit(
        output.job.project, EventType.OUTPUT_REVIEW_CHANGED, events.output_review_changed_data(output, state),
        event_key=f"{output.pk}:{state}", job_webhook=output.job.webhook))


@receiver(evaluation_run_finished, dispatch_uid="webhooks.evaluation_run_finished")
def on_evaluation_run_finished(sender, run_id, **kwargs):
    """A run's end, keyed by the run: sent twice (it is not, but a receiver must not count on that), one delivery per
    endpoint all the same. Read afresh: the run as it ended, after the commit, with its watch's verdict (judged in
    the transaction that ended it); a scheduled run that regressed or failed is ``evaluation_watch.regressed`` too."""
    from atelier_platform.evaluation.models import EvaluationRun
    from atelier_platform.evaluation.watch import ALERTS

    run = None

    def read():
        nonlocal run
        run = (EvaluationRun.objects.filter(pk=run_id).select_related("project", "reference_set", "model_version")
               .defer("results", "reference_set__cases").first())

    def emit_finished():
        if run is not None:  # else deleted with its reference set meanwhile
            services.emit(run.project, EventType.EVALUATION_RUN_FINISHED, events.evaluation_run_finished_data(run),
                          event_key=str(run.pk))

    def emit_regressed():
        if run is not None and isinstance(run.watch, dict) and run.watch.get("outcome") in ALERTS:
            services.emit(run.project, EventType.EVALUATION_WATCH_REGRESSED, events.evaluation_watch_regressed_data(run),
                          event_key=str(run.pk))

    _safely(EventType.EVALUATION_RUN_FINISHED, read)
    _safely(EventType.EVALUATION_RUN_FINISHED, emit_finished)
    _safely(EventType.EVALUATION_WATCH_REGRESSED, emit_regressed)


@receiver(evaluation_watch_failed_to_start, dispatch_uid="webhooks.evaluation_watch_failed_to_start")
def on_evaluation_watch_failed_to_start(sender, schedule_id, code, message, failed_at, **kwargs):
    """A watch's streak of failed starts, announced once: keyed by the watch and the streak's first failure, so the
    signal sent twice for it is one delivery per endpoint. The watch read afresh, after the commit (its next run)."""
    from atelier_platform.evaluation.models import EvaluationSchedule

    def emit():
        schedule = (EvaluationSchedule.objects.filter(pk=schedule_id)
                    .select_related("project", "reference_set", "model_version").defer("reference_set__cases").first())
        if schedule is not None:  # else deleted meanwhile, with its set or by an owner
            services.emit(schedule.project, EventType.EVALUATION_WATCH_FAILED_TO_START,
                          events.evaluation_watch_failed_to_start_data(schedule, code=code, message=message,
                                                                       failed_at=failed_at),
                          event_key=f"{schedule_id}:{failed_at.isoformat()}")

    _safely(EventType.EVALUATION_WATCH_FAILED_TO_START, emit)


@receiver(export_finished, dispatch_uid="webhooks.export_finished")
def on_export_finished(sender, export_id, **kwargs):
    """An export's end, keyed by the export: one delivery per endpoint, however often it is sent. Read afresh, after
    the commit: the export as it ended."""
    from atelier_platform.exports.models import Export

    def emit():
        export = Export.objects.filter(pk=export_id).select_related("project").first()
        if export is not None:  # else deleted meanwhile, with its project
            services.emit(export.project, EventType.EXPORT_FINISHED, events.export_finished_data(export),
                          event_key=str(export.pk))

    _safely(EventType.EXPORT_FINISHED, emit)
