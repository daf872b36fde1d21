"""The events a project can subscribe to, and the payloads they carry.

A payload never carries generated content: by project policy outputs are held for review, and
a webhook receiver is outside that review. It carries ids, states, screening flags and the URLs
from which the receiver fetches content with its API key, where the API applies the review rules.

Every payload has the Standard Webhooks shape ``{"type", "timestamp", "data"}``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Iterable

from django.db import models

from atelier_platform.config import get_config
from atelier_platform.evaluation.models import EvaluationRun, EvaluationSchedule
from atelier_platform.jobs.models import DELIVERABLE_REVIEW_STATES, Job, Output, ReviewState


class EventType(models.TextChoices):
    JOB_SUCCEEDED = "job.succeeded", "A job finished with outputs (held for review unless released)"
    JOB_FAILED = "job.failed", "A job failed"
    JOB_CANCELLED = "job.cancelled", "A job was cancelled"
    JOB_ERASED = "job.erased", "A job's content was erased (on request, or by the project's content retention)"
    OUTPUT_FLAGGED = "output.flagged", "Screening flagged an output"
    OUTPUT_REVIEW_CHANGED = "output.review_changed", "A reviewer decided an output (approved or rejected)"
    EVALUATION_RUN_FINISHED = "evaluation_run.finished", "An evaluation run ended (succeeded, failed or cancelled), scored"
    EVALUATION_WATCH_REGRESSED = "evaluation_watch.regressed", ("A scheduled evaluation run fell further than its watch "
                                                                "allows against the watch's previous run, or failed")
    EVALUATION_WATCH_FAILED_TO_START = "evaluation_watch.failed_to_start", (
        "A due watch started no run (the service refused it, or an error stopped it): once until a run starts")
    EXPORT_FINISHED = "export.finished", "An export in the background ended (succeeded, failed or cancelled)"
    WEBHOOK_TEST = "webhook.test", "A test ping asked for through the API"


#: What an endpoint may subscribe to. The test ping goes to the endpoint it was asked for, whatever its filter.
SUBSCRIBABLE_EVENTS: tuple[str, ...] = tuple(value for value in EventType.values if value != EventType.WEBHOOK_TEST)

# A fixed namespace, so that the same fact (this job succeeded) always gets the same event id.
_EVENT_NAMESPACE = uuid.UUID("6f1f7f4e-2b8e-4d36-9a57-0a7c2f3e5d11")


def event_id_for(event_type: str, key: str) -> str:
    """The ``webhook-id`` of an event: derived from what happened, so that a signal sent twice
    for one transition yields one delivery per endpoint, not two (the table has a unique key)."""
    return "evt_" + uuid.uuid5(_EVENT_NAMESPACE, f"{event_type}:{key}").hex


def random_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def api_url(path: str) -> str:
    """``ATELIER_PUBLIC_URL`` + path when the operator set it; the bare path otherwise."""
    return get_config().public_url.rstrip("/") + path


def envelope(event_type: str, data: dict[str, Any], occurred_at: datetime) -> dict[str, Any]:
    return {"type": event_type, "timestamp": occurred_at.isoformat(), "data": data}


def job_data(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project": job.project.slug,
        "job": {
            "id": str(job.id),
            "plugin": job.plugin_id,
            "plugin_version": job.plugin_version,
            "status": job.status,
            "attempts": job.attempts,
            "created_at": job.created_at.isoformat() if job.created_at else None,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "url": api_url(f"/api/v1/jobs/{job.id}/"),
        },
    }
    if job.error_code:
        data["job"]["error"] = {"code": job.error_code, "message": job.error_message}
    return data


def job_erased_data(job: Job) -> dict[str, Any]:
    """A job whose content was erased: what a receiver that kept a copy (a CMS, a data warehouse) needs to erase its
    own, by the job's and its outputs' ids; who erased it as the audit log names them (``user:12``, ``key:ab12cd34ef56``,
    ``retention``)."""
    return {
        "project": job.project.slug,
        "job": {"id": str(job.id), "plugin": job.plugin_id, "status": job.status,
                "erased_at": job.erased_at.isoformat() if job.erased_at else None, "erased_by": job.erased_by,
                "outputs": [str(pk) for pk in job.output_ids], "url": api_url(f"/api/v1/jobs/{job.id}/")},
    }


def output_summary(output: Output) -> dict[str, Any]:
    """What a receiver may know about an output before fetching it: no content."""
    safety = output.safety if isinstance(output.safety, dict) else {}
    return {
        "id": str(output.id),
        "job_id": str(output.job_id),
        "index": output.index,
        "review_state": output.review_state,
        "final": output.review_state in DELIVERABLE_REVIEW_STATES,
        "flagged": sorted(safety.get("flagged", []) or []),
        "url": api_url(f"/api/v1/jobs/{output.job_id}/"),
    }


def job_succeeded_data(job: Job, outputs: Iterable[Output]) -> dict[str, Any]:
    return {**job_data(job), "outputs": [output_summary(output) for output in outputs]}


def job_link(job: Job) -> dict[str, Any]:
    """``data.job`` of an output's event: the README tells receivers to fetch content from
    ``data.job.url`` whatever the event, so output events carry it too."""
    return {"id": str(job.id), "url": api_url(f"/api/v1/jobs/{job.id}/")}


def output_flagged_data(output: Output, categories: Iterable[str]) -> dict[str, Any]:
    job = output.job
    return {
        "project": job.project.slug,
        "plugin": job.plugin_id,
        "job": job_link(job),
        "output": {**output_summary(output), "flagged": sorted(set(categories))},
    }


def output_review_changed_data(output: Output, state: str) -> dict[str, Any]:
    """``regenerated_job``: the job a reviewer's "regenerate" queued in place of this output (its ``id`` and
    ``url``, where a receiver waits for it as for the first), null for any other decision. The output reads
    ``rejected`` either way; without the link a receiver waiting on the job never learnt a new try was coming."""
    job = output.job
    summary = output_summary(output)
    summary["review_state"] = state
    summary["final"] = state in DELIVERABLE_REVIEW_STATES
    regenerated = None
    if state == ReviewState.REJECTED:  # only a rejection can have queued a regeneration: one look, by index
        regenerated = (Job.objects.filter(regenerated_from_id=output.pk).order_by("-created_at", "-pk")
                       .values_list("pk", flat=True).first())
    return {"project": job.project.slug, "plugin": job.plugin_id, "job": job_link(job), "output": summary,
            "regenerated_job": _job_link_by_id(regenerated) if regenerated else None}


def _job_link_by_id(job_id) -> dict[str, Any]:
    return {"id": str(job_id), "url": api_url(f"/api/v1/jobs/{job_id}/")}


def evaluation_run_finished_data(run: EvaluationRun) -> dict[str, Any]:
    """An ended run as a release pipeline needs it: what was evaluated, on which model, how it ended and its metrics
    (the API's ``metrics``, the same numbers; no case's answer, which is generated content). ``model_version`` is
    the version the run named, null for the project's current model; ``answered_by`` names the versions whose
    answers were scored (the current one's name for such a run). ``scheduled``: a watch started it; ``watch``: its
    verdict (``watch_verdict``), null for a run someone started."""
    return {
        "project": run.project.slug,
        "evaluation_run": evaluation_run_summary(run),
        "scheduled": run.schedule_id is not None or bool(run.watch),
        "watch": watch_verdict(run),
    }


def watch_verdict(run: EvaluationRun) -> dict[str, Any] | None:
    """A scheduled run's verdict (``evaluation.watch.judge``) with links: ``outcome`` (passed, regressed, failed,
    baseline, set_changed, cancelled, not_judged), ``passed`` (true, false, or null where nothing was gated), the
    limits, each gate, the failing metrics, and the run it was measured against with the comparison's URL."""
    verdict = run.watch if isinstance(run.watch, dict) else {}
    if not verdict:
        return None
    compared_to = verdict.get("compared_to")
    schedule_id = verdict.get("schedule")
    return {
        "schedule": {"id": schedule_id, "url": api_url(f"/api/v1/evaluation/schedules/{schedule_id}/")},
        "outcome": verdict.get("outcome"), "passed": verdict.get("passed"), "reason": verdict.get("reason", ""),
        "max_drop": verdict.get("max_drop") or {}, "gates": verdict.get("gates") or [],
        "failed_metrics": verdict.get("failed_metrics") or [],
        "compared_to": {"id": compared_to, "url": api_url(f"/api/v1/evaluation/runs/{compared_to}/")}
        if compared_to else None,
        "comparison_url": api_url(f"/api/v1/evaluation/runs/{run.pk}/compare/?to={compared_to}") if compared_to else None,
    }


def evaluation_watch_regressed_data(run: EvaluationRun) -> dict[str, Any]:
    """A scheduled run that regressed (or failed): the run, as ``evaluation_run.finished`` shows it, and the verdict."""
    return {"project": run.project.slug, "evaluation_run": evaluation_run_summary(run), "watch": watch_verdict(run)}


def evaluation_watch_failed_to_start_data(schedule: EvaluationSchedule, *, code: str, message: str,
                                          failed_at: datetime) -> dict[str, Any]:
    """A due watch that started no run: the watch, its set and why (the code and message its ``last_skip`` shows: the
    service's refusal with its first detail, or ``start_failed``), never a case of the set; ``next_run_at``: when it
    is tried again."""
    reference_set, version = schedule.reference_set, schedule.model_version
    return {
        "project": schedule.project.slug,
        "schedule": {"id": str(schedule.pk), "url": api_url(f"/api/v1/evaluation/schedules/{schedule.pk}/")},
        "reference_set": {"id": str(reference_set.pk), "name": reference_set.name},
        "plugin": reference_set.plugin_id,
        "model_version": {"id": version.pk, "version": version.version} if version is not None else None,
        "reason": {"code": code, "message": message},
        "failed_at": failed_at.isoformat(),
        "next_run_at": schedule.next_run_at.isoformat(),
    }


def evaluation_run_summary(run: EvaluationRun) -> dict[str, Any]:
    """``data.evaluation_run`` of the evaluation events: the run as the API lists it, without its cases' answers."""
    version = run.model_version
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    return {
        "id": str(run.pk),
        "status": run.status,
        "plugin": run.plugin_id,
        "reference_set": {"id": str(run.reference_set_id), "name": run.reference_set.name},
        "model_version": {"id": version.pk, "version": version.version} if version is not None else None,
        "answered_by": list(metrics.get("model_versions") or []),
        "progress": {"done": run.cases_done, "failed": run.cases_failed, "total": run.cases_total},
        "metrics": metrics,
        "error": run.error_message,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "url": api_url(f"/api/v1/evaluation/runs/{run.pk}/"),
    }


def export_finished_data(export) -> dict[str, Any]:
    """An export in the background that ended: its id, kind, format, status, rows and size, and where to download it
    (``download_url``, null unless it succeeded) with the key that asked for it; never a row of it, nor its filters
    (a search's words may name a person)."""
    from atelier_platform.exports.services import is_downloadable

    return {
        "project": export.project.slug,
        "export": {
            "id": str(export.pk), "kind": export.kind, "format": export.format, "status": export.status,
            "rows": export.rows_done, "size": export.size,
            "error": {"code": export.error_code, "message": export.error_message} if export.error_code else None,
            "created_at": export.created_at.isoformat(),
            "finished_at": export.finished_at.isoformat() if export.finished_at else None,
            "expires_at": export.expires_at.isoformat() if export.expires_at else None,
            "url": api_url(f"/api/v1/exports/{export.pk}/"),
            "download_url": api_url(f"/api/v1/exports/{export.pk}/download/") if is_downloadable(export) else None,
        },
    }
