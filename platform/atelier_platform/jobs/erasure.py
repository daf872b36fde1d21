"""Erasing jobs' content for good, the job rows staying as tombstones: a person's erasure request (the API's
``DELETE /jobs/{id}/`` and ``/conversations/{id}/``, the job page's button) and the project's retention policy.

What goes, wherever a copy of it lies:
- the job's input, params, search text, the caller's metadata (an OpenAI response's key/value pairs: a customer's
  name, an order number), the plugin's progress detail, a failed job's error message (a plugin's error may quote its
  input), the reviewer's note a regeneration carries, and the excerpts of the input's screening report (its
  categories, scores and where they matched stay);
- the hashes of its request: its fingerprint, which a replay of its Idempotency-Key compares a body with (kept, a
  replay would answer a wrong guess at the input 422 and the right one the tombstone: a replay of an erased job
  now answers the same whatever the body, ``submission._replay``), and its batch key (a hash of input and params);
  and the lock its key left, where the request holding it died after saving the job;
- its outputs' content and their screening reports' excerpts; their files, from media storage once the erasure
  commits (``stored_files.remove_after_commit``);
- the comments and the original and edited content of the review decisions on those outputs; an open review item
  is closed (nobody can decide content that is gone);
- the turns the job added to a conversation (their text; the turns keep their places);
- the stored answers of retried review decisions about the job (``IdempotencyRecord``), which hold its input and
  output;
- the error message of its ``job.failed`` webhook deliveries (no other payload carries content, by design), and
  what their receiver answered (an echo of the payload is a copy);
- the content its audit events recorded (a review's before and after, its comment): redacted, never deleted;
- the exports in the background whose rows could hold it (``exports.services.withdraw_for_erasure``): a finished
  one's file is deleted and its download answers 410 ``export_withdrawn``; a running one keeps going and, before it
  stores its file, takes out or rewrites the rows of the jobs erased since it started, as its streaming export
  gives them now, and so holds none of it.

What stays, and why: the job row with its plugin, status, timings, attempts, who submitted it and when, because
the quotas and the usage reports count job rows and their run times, and an erasure must not give a project its
quota back nor rewrite its history; each output row with its review state and only the token counts its content
reported (``usage.prompt_tokens``, ``usage.completion_tokens``), and each file row with its role, type and size but
no file, because the usage report sums those tokens and counts those images; the review items and decisions with
who decided what, when and for which reason; every audit event, plus one ``job_erased`` event per job saying who
erased it and how much, never what. The events of exports (``exports.trail``: asked for, downloaded, streamed)
stay as they are: they record a search's filters as set, never its words, so they hold nothing of a person.

A job and the regenerations a reviewer queued for it share one input: erasing any of them erases them all (the
API's erasure; the retention policy erases each job at its own age). A conversational job's input also holds the
thread's earlier turns, and later jobs of the thread hold its turns: erasing a conversation erases all its jobs,
and the blocked attempts to continue it (kept with their input, never turns of the thread).

Every erasure is one transaction of a fixed number of statements, whatever the number of jobs (the per-row values
go in ``CASE`` updates of ``CHUNK`` rows), and erasing an erased job again does nothing.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from time import monotonic
from typing import Any, Callable, Iterable

from django.db import models, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from atelier_platform.jobs import lifecycle
from atelier_platform.jobs.errors import JobServiceError
from atelier_platform.jobs.models import FINISHED_STATUSES, Job, JobPurpose, JobStatus, Output, OutputFile
from atelier_platform.jobs.signals import jobs_erased
from atelier_platform.stored_files import remove_after_commit

logger = logging.getLogger("atelier.jobs")

#: Rows per ``CASE`` update: a statement's parameters stay well under SQLite's limit.
CHUNK = 500
#: The actor the retention task's erasures are recorded by.
RETENTION_ACTOR = "retention"
#: Jobs one retention transaction erases at most: a run never holds a huge transaction, and takes one batch of each
#: project in turn (``erase_expired_content``).
RETENTION_BATCH = 200
#: The projects a retention run's log line names when it leaves work (the rest are counted): thousands of slugs on
#: one line help no operator.
LOGGED_PROJECTS = 20
#: The shared cache's mark that a follow-up run of the retention is queued (``continue_later``).
RETENTION_FOLLOW_UP_KEY = "retention:follow-up"
#: The keys of an audit event's ``before`` and ``after`` that hold content (a review's output, edit and comment).
AUDIT_CONTENT_KEYS = frozenset({"content", "comment", "original_content", "edited_content", "input", "params"})
#: The fields of a job the erasure reads (under its lock).
_JOB_FIELDS = ("id", "project_id", "status", "purpose", "erased_at", "input_screening", "regenerated_from_id",
               "idempotency_scope", "idempotency_key")


class ErasureRefused(JobServiceError):
    status_code = 409
    code = "erasure_refused"


class JobStillRunning(ErasureRefused):
    code = "job_running"


class EvaluationJobKept(ErasureRefused):
    code = "evaluation_job"


@dataclass
class Erasure:
    """What one erasure did."""

    #: jobs whose content this erasure removed, and those it found erased already (nothing more to do)
    erased: list[uuid.UUID] = field(default_factory=list)
    already_erased: list[uuid.UUID] = field(default_factory=list)
    #: queued jobs cancelled first, so that no worker runs them afterwards
    cancelled: list[uuid.UUID] = field(default_factory=list)
    outputs: int = 0
    files: int = 0
    review_decisions: int = 0
    review_items_closed: int = 0
    messages: int = 0
    audit_events_redacted: int = 0
    webhook_deliveries_redacted: int = 0
    idempotency_records_removed: int = 0
    #: exports in the background that could hold the erased content: running ones, which take it out of their file
    #: before they store it, and finished ones, whose files are taken back (``exports.services.withdraw_for_erasure``)
    exports_running: int = 0
    exports_withdrawn: int = 0

    @property
    def jobs(self) -> int:
        return len(self.erased)


def _ids(jobs: Iterable) -> set[uuid.UUID]:
    return {job.pk if isinstance(job, Job) else uuid.UUID(str(job)) for job in jobs}


def _lock(project, ids: set[uuid.UUID], *, with_regenerations: bool) -> list[Job]:
    """The project's jobs among ``ids``, locked (and with them, where asked, every job of the same regeneration
    family: the jobs they regenerate and those that regenerate them, found step by step and locked as found). The
    lock is what the worker's writes wait for: a worker storing a job's result has committed when this reads the
    job, and one that comes after finds it finished (or cancelled here) and stores nothing."""
    found: dict[uuid.UUID, Job] = {}
    frontier = set(ids)
    while frontier:
        rows = list(Job.objects.select_for_update(of=("self",)).filter(project=project, pk__in=frontier)
                    .only(*_JOB_FIELDS).order_by("pk"))
        found.update((job.pk, job) for job in rows)
        if not with_regenerations or not rows:
            break
        origins = {job.regenerated_from_id for job in rows if job.regenerated_from_id is not None}
        earlier = set(Output.objects.filter(pk__in=origins).values_list("job_id", flat=True)) if origins else set()
        later = set(Job.objects.filter(project=project, regenerated_from__job_id__in=[job.pk for job in rows])
                    .values_list("pk", flat=True))
        frontier = (earlier | later) - set(found)
    return list(found.values())


def _refuse_what_cannot_go(jobs: list[Job]) -> None:
    """A running job (its worker would store outputs after the erasure) and a case of an evaluation run (the run's
    scores and comparisons read it) are refused, each named, before anything is written."""
    running = sorted(str(job.pk) for job in jobs if job.status not in FINISHED_STATUSES and job.status != JobStatus.QUEUED)
    if running:
        raise JobStillRunning(
            f"Job {running[0]} is running: cancel it (POST /api/v1/jobs/{running[0]}/cancel/) and erase it once it has "
            f"stopped. Nothing was erased.", details={"running_jobs": running})
    evaluation = [job.pk for job in jobs if job.purpose == JobPurpose.EVALUATION and job.erased_at is None]
    if evaluation:
        from atelier_platform.evaluation.models import EvaluationCase

        runs = dict(EvaluationCase.objects.filter(job_id__in=evaluation).values_list("job_id", "run_id"))
        if runs:
            job_id, run_id = sorted(runs.items(), key=lambda pair: str(pair[0]))[0]
            raise EvaluationJobKept(
                f"Job {job_id} answers a case of evaluation run {run_id}, whose scores and comparisons read it: delete "
                f"the run's reference set (DELETE /api/v1/evaluation/reference-sets/{{id}}/) first, then erase the job. "
                f"Nothing was erased.", details={"evaluation_runs": sorted({str(run) for run in runs.values()}),
                                                 "jobs": sorted(str(job) for job in runs)})


def without_excerpts(report: Any) -> Any:
    """A screening report without the text it quoted: each finding keeps its category, score, check, field and
    where it matched (offsets, an image region, the check's own words), not the excerpt of the content."""
    if not isinstance(report, dict) or not report.get("findings"):
        return report
    findings = [{**finding, "evidence": [{k: v for k, v in (evidence or {}).items() if k != "excerpt"}
                                         for evidence in finding.get("evidence") or []]}
                if isinstance(finding, dict) else finding for finding in report["findings"]]
    return {**report, "findings": findings}


def token_counts_only(content: Any) -> dict[str, Any]:
    """What of an output's content the erasure keeps: the token counts it reported, which the usage report sums
    (``usage.reports``), and nothing else."""
    usage = content.get("usage") if isinstance(content, dict) else None
    if not isinstance(usage, dict):
        return {}
    kept = {name: usage[name] for name in ("prompt_tokens", "completion_tokens")
            if isinstance(usage.get(name), (int, float)) and not isinstance(usage.get(name), bool)}
    return {"usage": kept} if kept else {}


def _update_each(model: type[models.Model], values: dict[Any, dict[str, Any]], json_fields: Iterable[str],
                 **common: Any) -> None:
    """Each row named in ``values`` (by primary key) gets its own values of ``json_fields``, and every one of them
    ``common``: one ``CASE`` update per ``CHUNK`` rows."""
    ids = list(values)
    for start in range(0, len(ids), CHUNK):
        part = ids[start:start + CHUNK]
        # ELSE the column (never taken) types the CASE as the column: all-NULL values were taken for text
        cases = {name: Case(*[When(pk=pk, then=Value(values[pk][name], output_field=models.JSONField())) for pk in part],
                            default=F(name), output_field=models.JSONField()) for name in json_fields}
        model.objects.filter(pk__in=part).update(**cases, **common)


def _redact_audit(project, about: dict[str, list[str]]) -> int:
    """Take the content out of the events about these objects (by type: their ids), leaving the events."""
    from atelier_platform.moderation.models import AuditEvent

    about = {kind: ids for kind, ids in about.items() if ids}
    if not about:
        return 0
    named = Q()
    for kind, ids in about.items():
        named |= Q(object_type=kind, object_id__in=ids)
    redacted = {}
    for pk, before, after in AuditEvent.objects.filter(named, project=project).values_list("pk", "before", "after"):
        clean = tuple({k: (None if k in AUDIT_CONTENT_KEYS else v) for k, v in side.items()} if isinstance(side, dict)
                      else side for side in (before, after))
        if clean != (before, after):
            redacted[pk] = clean
    return AuditEvent.objects.redact(redacted)


def _redact_webhook_payloads(project, job_ids: list[str]) -> int:
    """The one thing a delivery's payload may quote: a failed job's error message (``webhooks.events.job_data``);
    and with it what the receiver answered to those deliveries (the last answer and each attempt's), which a receiver
    that echoes what it is sent (a test endpoint, a request bin) made a copy of."""
    from atelier_platform.webhooks.events import EventType
    from atelier_platform.webhooks.models import WebhookAttempt, WebhookDelivery

    payloads = {}
    for pk, payload in (WebhookDelivery.objects.filter(endpoint__project=project, event_type=EventType.JOB_FAILED,
                                                        payload__data__job__id__in=job_ids)
                        .values_list("pk", "payload")):
        error = (((payload or {}).get("data") or {}).get("job") or {}).get("error")
        if isinstance(error, dict) and error.get("message"):
            payload["data"]["job"]["error"] = {**error, "message": ""}
            payloads[pk] = {"payload": payload}
    _update_each(WebhookDelivery, payloads, ["payload"], last_response_excerpt="")
    if payloads:
        WebhookAttempt.objects.filter(delivery_id__in=list(payloads)).exclude(response_excerpt="").update(
            response_excerpt="")
    return len(payloads)


def erase_jobs(project, jobs: Iterable, actor: str, *, with_regenerations: bool = True, now: datetime | None = None,
               why: dict[str, Any] | None = None) -> Erasure:
    """Erase the content of ``jobs`` (Job objects or ids) of ``project``, keeping their rows as tombstones (see the
    module); others' jobs and unknown ids are left out. ``with_regenerations``: their regeneration families too (the
    API's erasure; the retention erases each job at its own age). A queued job is cancelled first; a running one, or
    a case of an evaluation run, refuses the whole erasure (409, nothing written). ``why``: recorded in each job's
    ``job_erased`` audit event beside the counts (the retention's policy). Erasing twice is harmless: the second
    finds them erased and does nothing."""
    from atelier_platform.conversations.models import ConversationMessage
    from atelier_platform.exports.services import withdraw_for_erasure
    from atelier_platform.moderation import audit
    from atelier_platform.moderation.models import ReviewDecision, ReviewItem, ReviewItemState
    from atelier_platform.usage.models import IdempotencyRecord

    now = now or timezone.now()
    done = Erasure()
    with transaction.atomic():
        locked = _lock(project, _ids(jobs), with_regenerations=with_regenerations)
        _refuse_what_cannot_go(locked)
        queued = [job.pk for job in locked if job.status == JobStatus.QUEUED]
        if queued:  # cancelled under the same lock: a worker's claim, waiting on it, then finds nothing queued
            done.cancelled = lifecycle.cancel_jobs(queued).cancelled
        fresh = sorted((job for job in locked if job.erased_at is None), key=lambda job: str(job.pk))
        done.already_erased = sorted((job.pk for job in locked if job.erased_at is not None), key=str)
        done.erased = [job.pk for job in fresh]
        if not fresh:
            return done
        job_ids = [str(pk) for pk in done.erased]

        outputs = {pk: (job_id, content, safety) for pk, job_id, content, safety in
                   Output.objects.filter(job_id__in=done.erased).values_list("pk", "job_id", "content", "safety")}
        # before anything changes (an export's filters may search the content going now): an export written before
        # this erasure holds that content; its file is taken back, or, while it runs, it takes it out before it ends
        done.exports_running, done.exports_withdrawn = withdraw_for_erasure(project, job_ids=done.erased,
                                                                            output_ids=list(outputs), erased_at=now)
        _update_each(Output, {pk: {"content": token_counts_only(content), "safety": without_excerpts(safety)}
                              for pk, (_, content, safety) in outputs.items()}, ["content", "safety"],
                     search_text="")  # the library's search matched the content's words
        done.outputs = len(outputs)

        files = list(OutputFile.objects.filter(output_id__in=list(outputs)).exclude(file="").only("id", "file", "output_id"))
        for stored in files:  # the row stays (the usage report counts images by it); its file leaves storage
            remove_after_commit(stored.file, f"output {stored.output_id}, whose job's content was erased")
        if files:
            OutputFile.objects.filter(pk__in=[stored.pk for stored in files]).update(file="")
        done.files = len(files)

        items = ReviewItem.objects.filter(output_id__in=list(outputs))
        item_ids = [str(pk) for pk in items.values_list("pk", flat=True)] if outputs else []
        if item_ids:
            done.review_items_closed = items.filter(state=ReviewItemState.OPEN).update(
                state=ReviewItemState.DECIDED, decided_at=now, lease_holder="", lease_expires_at=None)
            done.review_decisions = ReviewDecision.objects.filter(item__output_id__in=list(outputs)).update(
                comment="", original_content=None, edited_content=None)

        turns = list(ConversationMessage.objects.filter(Q(job_id__in=done.erased) | Q(output_id__in=list(outputs)))
                     .values_list("pk", "job_id"))
        if turns:
            ConversationMessage.objects.filter(pk__in=[pk for pk, _ in turns]).update(content="")
        done.messages = len(turns)

        # A retried review decision replays its stored answer, which shows the job's input and the output; a job's
        # own key left a lock holding its request's fingerprint where its request died after saving it.
        stored = Q(response_body__job__in=job_ids)
        for job in fresh:
            if job.idempotency_key is not None:
                stored |= Q(scope=job.idempotency_scope, key=job.idempotency_key)
        done.idempotency_records_removed, _ = IdempotencyRecord.objects.filter(stored, project=project).delete()
        done.webhook_deliveries_redacted = _redact_webhook_payloads(project, job_ids)
        done.audit_events_redacted = _redact_audit(project, {
            "job": job_ids, "output": [str(pk) for pk in outputs], "reviewitem": item_ids})

        _update_each(Job, {job.pk: {"input_screening": without_excerpts(job.input_screening)} for job in fresh},
                     ["input_screening"], input={}, params={}, metadata={}, search_text="", progress_detail={},
                     review_note="", request_fingerprint="", batch_key="",
                     error_message=Case(When(status=JobStatus.FAILED, then=Value("")), default=F("error_message"),
                                        output_field=models.TextField()),
                     erased_at=now, erased_by=actor[:100])

        outputs_of: dict[uuid.UUID, int] = {}
        for job_id, _, _ in outputs.values():
            outputs_of[job_id] = outputs_of.get(job_id, 0) + 1
        files_of: dict[uuid.UUID, int] = {}
        for stored in files:
            job_id = outputs[stored.output_id][0]
            files_of[job_id] = files_of.get(job_id, 0) + 1
        turns_of: dict[uuid.UUID, int] = {}
        for _, job_id in turns:
            turns_of[job_id] = turns_of.get(job_id, 0) + 1
        audit.record_many([audit.event(project, actor, "job_erased", job, after={
            **(why or {}), "outputs": outputs_of.get(job.pk, 0), "files": files_of.get(job.pk, 0),
            "messages": turns_of.get(job.pk, 0), "cancelled": job.pk in done.cancelled}) for job in fresh])
        # downstream copies (a CMS the content went to) hear of it once it holds: the job.erased webhook event
        transaction.on_commit(functools.partial(jobs_erased.send, sender=Job, project=project, job_ids=list(done.erased)),
                              robust=True)
    return done


@dataclass
class ConversationErasure:
    messages: int
    jobs: Erasure


def blocked_attempts_in(project, conversation_id: uuid.UUID) -> set[uuid.UUID]:
    """The project's blocked jobs that tried to continue the conversation: screening kept each with its input as sent
    (the new turns and the ``conversation_id``, in whatever spelling the plugin let through) but never added its turns
    to the thread, so no turn names them. Blocked inputs are few, and often the very words a person wants gone."""
    found = set()
    for pk, named in (Job.objects.filter(project=project, status=JobStatus.BLOCKED, erased_at__isnull=True,
                                         input__has_key="conversation_id")
                      .values_list("pk", "input__conversation_id")):
        try:
            if isinstance(named, str) and uuid.UUID(named) == conversation_id:
                found.add(pk)
        except ValueError:  # a plugin may take any string: this one names no conversation
            continue
    return found


def erase_conversation(project, conversation_id, actor: str) -> ConversationErasure | None:
    """Erase a conversation: the content of every job of its thread (``erase_jobs``, with their regenerations:
    their inputs hold the thread) and of the blocked attempts to continue it (``blocked_attempts_in``), then the
    thread itself, which goes. None when the project has no such conversation (another project's, one erased
    already). Refused, nothing written, as ``erase_jobs`` refuses."""
    from atelier_platform.conversations.models import Conversation
    from atelier_platform.moderation import audit

    with transaction.atomic():
        # Locked first, as a new turn's submission locks it before creating its job: a turn sent meanwhile has
        # committed when this reads the thread (its job is erased too), or finds the conversation gone.
        conversation = Conversation.objects.select_for_update().filter(project=project, pk=conversation_id).first()
        if conversation is None:
            return None
        job_ids = set(conversation.messages.exclude(job_id=None).values_list("job_id", flat=True))
        job_ids |= blocked_attempts_in(project, conversation.pk)
        jobs = erase_jobs(project, job_ids, actor)
        messages = conversation.messages.count()
        audit.record(project, actor, "conversation_erased", conversation,
                     after={"messages": messages, "jobs": jobs.jobs + len(jobs.already_erased)})
        conversation.delete()  # its messages with it
    return ConversationErasure(messages=messages, jobs=jobs)


# --- retention --------------------------------------------------------------------------------------------------

def expired_jobs(project, cutoff: datetime) -> models.QuerySet:
    """The project's jobs the retention erases now: finished before ``cutoff``, content still there, not a case of
    an evaluation run (kept with their run), and no output still waiting for a reviewer (a reviewer's open work is
    not taken away; the job goes at the first run after its review)."""
    from atelier_platform.moderation.models import ReviewItemState

    return (Job.objects.filter(project=project, erased_at__isnull=True, finished_at__lt=cutoff,
                               status__in=list(FINISHED_STATUSES), evaluation_case__isnull=True)
            .exclude(outputs__review__state=ReviewItemState.OPEN).order_by("finished_at", "pk"))


@dataclass
class RetentionRun:
    """What one run of the retention did."""

    #: jobs erased, by project slug (only those that had some)
    erased: dict[str, int] = field(default_factory=dict)
    #: the projects that may have expired jobs left when the run's time was up, in the order the next run takes them
    left: list[str] = field(default_factory=list)
    #: the id of the first of them, where the next run starts (``erase_expired_content``'s ``resume_at``)
    resume_at: int | None = None
    #: the seconds the run had
    budget_s: float = 0.0


def _erase_expired_batch(project, days: int, now: datetime, batch: int) -> tuple[int, int]:
    """Erase the next ``batch`` of the project's expired jobs in one transaction: (jobs erased, jobs listed)."""
    with transaction.atomic():
        # Locked as they are listed, skipping those another run holds: two runs at once (an hourly one and a follow-up)
        # take different jobs, and neither waits for the other's to find them erased.
        ids = list(expired_jobs(project, now - timedelta(days=days)).select_for_update(skip_locked=True, of=("self",))
                   .values_list("pk", flat=True)[:batch])
        if not ids:
            return 0, 0
        done = erase_jobs(project, ids, RETENTION_ACTOR, with_regenerations=False, now=now,
                          why={"retention_days": days})
    return done.jobs, len(ids)


def erase_expired_content(now: datetime | None = None, *, batch: int | None = None, budget_s: float | None = None,
                          resume_at: int | None = None) -> RetentionRun:
    """The retention task's work: for each project whose policy sets ``content_retention_days``, erase the jobs
    ``expired_jobs`` finds, ``batch`` (``RETENTION_BATCH``) per transaction, in rounds of one batch of each project
    (a project's backlog makes no other wait for it), until none is left or ``budget_s``
    (``ATELIER_RETENTION_RUN_BUDGET_S``) are up: then it stops between two batches and says which projects it left,
    for a follow-up run, which starts with them (``resume_at``: the first one's id)."""
    from atelier_platform.config import get_config
    from atelier_platform.moderation.models import SafetyPolicy

    now = now or timezone.now()
    batch = batch or RETENTION_BATCH
    budget_s = get_config().retention_run_budget_s if budget_s is None else budget_s
    deadline = monotonic() + budget_s
    projects = [(policy.project, policy.content_retention_days) for policy in
                SafetyPolicy.objects.filter(content_retention_days__isnull=False).select_related("project")
                .order_by("project_id")]
    if resume_at is not None:  # the last run's time was up before these had their turn: they go first
        projects.sort(key=lambda each: each[0].pk < resume_at)
    waiting, erased, batches = deque(projects), {}, 0  # erased: project -> (its retention days, jobs erased)
    while waiting:
        if batches and monotonic() >= deadline:
            break
        project, days = waiting.popleft()
        try:
            jobs, listed = _erase_expired_batch(project, days, now, batch)
        except ErasureRefused:  # changed since it was listed: the next run looks again
            logger.warning("retention of project %s: a batch was refused; the next run tries again", project.slug,
                           exc_info=True)
            continue
        if listed:
            batches += 1
            erased[project] = (days, erased.get(project, (days, 0))[1] + jobs)
        if listed == batch:  # maybe more: back in the line, behind the others
            waiting.append((project, days))
    left = [project for project, _ in waiting]
    for project, (days, jobs) in erased.items():
        if jobs:
            logger.info("retention: erased the content of %d jobs of project %s (finished more than %d days ago)%s",
                        jobs, project.slug, days, "; more are left" if project in left else "")
    return RetentionRun(erased={project.slug: jobs for project, (_, jobs) in erased.items() if jobs},
                        left=[project.slug for project in left], resume_at=left[0].pk if left else None,
                        budget_s=budget_s)


def follow_up_started() -> None:
    """The queued follow-up run has started: the run after it may queue the next."""
    from django.core.cache import cache

    cache.delete(RETENTION_FOLLOW_UP_KEY)


def continue_later(run: RetentionRun, queue: Callable[..., Any], *, after_s: float, within_s: float) -> bool:
    """Queue a follow-up run for what ``run`` left (``queue``: the task's ``apply_async``), ``after_s`` from now and
    dropped unless started within ``within_s``, unless one is queued already: an hourly run while a backlog lasts
    would otherwise start a chain of runs of its own, and the chains would take every worker of the platform queue.
    True when it queued one."""
    from django.core.cache import cache

    named = ", ".join(run.left[:LOGGED_PROJECTS]) + (f" and {len(run.left) - LOGGED_PROJECTS} more"
                                                      if len(run.left) > LOGGED_PROJECTS else "")
    where = (f"the run's {run.budget_s:g} s are up with expired jobs left in {len(run.left)} "
             f"project{'s' if len(run.left) != 1 else ''} ({named})")
    if not cache.add(RETENTION_FOLLOW_UP_KEY, True, timeout=within_s):  # atomic: of two runs, one queues it
        logger.info("retention: %s; the follow-up run already queued goes on", where)
        return False
    try:
        queue(kwargs={"follow_up": True, "resume_at": run.resume_at}, countdown=after_s, expires=within_s)
    except Exception:  # the broker: the next hourly run goes on, and may queue one
        cache.delete(RETENTION_FOLLOW_UP_KEY)
        logger.exception("retention: %s, and the follow-up run could not be queued: the next hourly run goes on", where)
        return False
    logger.info("retention: %s; the next run follows in %g s", where, after_s)
    return True
