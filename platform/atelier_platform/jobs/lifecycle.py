"""A job's life after submission: claim, heartbeat, progress, finish, retry, cancel.

Every transition is a conditional write on the job row, so that two workers, a worker and the
sweeper, or a worker and a cancelling user can race and the row still tells one story:
- ``claim_job`` moves queued -> running for exactly one caller and hands it a claim token;
- every later write by that worker names the token, and is refused once the claim is lost.
"""

from __future__ import annotations

import contextvars
import copy
import functools
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable, Iterable

from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Case, F, FloatField, JSONField, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone

from atelier_platform.config import get_config
from atelier_platform.conversations.services import record_released_reply
from atelier_platform.jobs import waiting
from atelier_platform.jobs.errors import JobAlreadyFinished
from atelier_platform.jobs.models import FINISHED_STATUSES, Job, JobStatus, Output, OutputFile
from atelier_platform.jobs.queueing import database_now_plus, enqueue_on_commit, mark_enqueued, publish_job
from atelier_platform.jobs.signals import job_cancelled, job_failed, jobs_cancelled, jobs_succeeded
from atelier_platform.prepared_reads import PreparedRead

logger = logging.getLogger("atelier.jobs")


@dataclass(frozen=True)
class Claim:
    job: Job
    token: uuid.UUID


@dataclass(frozen=True)
class ProducedOutput:
    """What a worker hands back for one output: JSON content and files (name, media type, bytes)."""

    content: dict[str, Any]
    files: tuple[tuple[str, str, bytes, str], ...] = ()  # (name, media_type, data, role)
    safety: dict[str, Any] | None = None  # the output's screening report


@dataclass(frozen=True)
class JobCompletion:
    """One job's succeeded result, ready to store: the job as its worker holds it (project loaded), its
    screened outputs, provenance, and the project's safety policy when the worker has it."""

    job: Job
    outputs: list[ProducedOutput]
    provenance: dict[str, Any]
    policy: Any = None
    #: The progress detail the plugin reported last (its final step or token count), which the worker's
    #: timed flushes may not have written yet: stored with the result, so that a finished job does not
    #: show a step it had passed, or none.
    progress_detail: dict[str, Any] = field(default_factory=dict)


#: The error code of a job queued again because the worker running it stopped responding.
WORKER_LOST = "worker_lost"


def runs_alone(job: Job) -> bool:
    """Whether ``job`` must run in a batch of its own: its last worker died while running it, and the job
    may be what killed it (a segfault in native code, the host's out-of-memory killer, the hard time
    limit). Alone, it cannot take a batch of other jobs down with it again, attempt after attempt,
    until all of them fail; the split that isolates a failing job works only for errors the process
    survives."""
    return job.error_code == WORKER_LOST


class NotAllOurs(Exception):
    """Some job of a group was asked to cancel, or its claim was lost: store each on its own."""


def _claim_fields(token: uuid.UUID, worker: str, now) -> dict[str, Any]:
    return dict(
        status=JobStatus.RUNNING,
        attempts=F("attempts") + 1,
        claim_token=token,
        worker=worker[:255],
        started_at=now,
        heartbeat_at=now,
        progress=0.0,
        progress_detail={},
    )


#: Read with a claimed job: its project, and the project's safety policy, which a short batch screens
#: its outputs with (see ``atelier_workers.runtime``).
CLAIMED_JOB_RELATED = ("project", "project__safety_policy")
_claimed_job_read = PreparedRead(lambda pk: Job.objects.select_related(*CLAIMED_JOB_RELATED).filter(pk=pk),
                                 pk=Job._meta.pk)


#: How early a retry's message may claim its job: the broker holds a countdown message by its
#: publisher's clock, the job's due time is the database's (``queueing.enqueue_on_commit``).
DUE_TOLERANCE_S = 1.0


def claim_job(job_id: str, worker: str) -> Claim | None:
    """Take a queued job for this worker; None when it is not queued (done, running elsewhere, cancelled)
    or is a retry not due yet.

    A retry is due when its backoff is over. Its countdown message comes then; an older message of the
    job may come first: the one a job taken as a batch's company leaves on the broker, delivered after
    that job failed transiently and was queued again. That one is dropped, or the retry would run at
    once, and a whole batch's transient failure would spend every job's attempts in seconds."""
    token = uuid.uuid4()
    due = Q(attempts=0) | Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=database_now_plus(DUE_TOLERANCE_S))
    claimed = Job.objects.filter(due, pk=job_id, status=JobStatus.QUEUED).update(**_claim_fields(token, worker, timezone.now()))
    if not claimed:
        return None
    job = _claimed_job_read.first(pk=job_id)
    if job is None:  # deleted with its project between the claim and this read
        return None
    return Claim(job=job, token=token)


def _waiting_company(plugin_id: str, plugin_version: str, batch_key: str):
    """Queued jobs that may join a batch of this plugin version and batch key (see ``claim_company``)."""
    return Job.objects.filter(
        status=JobStatus.QUEUED, plugin_id=plugin_id, plugin_version=plugin_version,
        batch_key=batch_key, enqueued_at__lte=Now(), cancel_requested_at__isnull=True,
    ).exclude(error_code=WORKER_LOST)  # those that must run alone (``runs_alone``)


#: Whether any job waits as company, read for every claimed job (at idle, the answer is no): ``exists()``
#: with its SQL built once per connection.
_any_waiting_company = PreparedRead(
    lambda plugin_id, plugin_version, batch_key: _waiting_company(plugin_id, plugin_version, batch_key).only("pk")
    .order_by()[:1],
    plugin_id=Job._meta.get_field("plugin_id"), plugin_version=Job._meta.get_field("plugin_version"),
    batch_key=Job._meta.get_field("batch_key"),
)


def claim_company(leader: Job, token: uuid.UUID, worker: str, limit: int,
                  same_model: Callable[[int, int | None], bool]) -> list[Job]:
    """Claim up to ``limit`` more queued jobs that may share ``leader``'s batch, under the same token.

    Company is a job of the same plugin version and batch key, due now by the database's clock (a
    retry waiting out its backoff is not), not being cancelled, not one that must run alone
    (``runs_alone``), that resolves to the same model (``same_model(project_id, model_version_id)``: the
    version the job names, else its project's pin). On
    PostgreSQL the candidates are locked with ``SKIP LOCKED``, so workers gathering batches at once
    never wait for each other nor take the same job; on SQLite, which writes one transaction at a
    time, the conditional update alone decides.
    The messages of the jobs taken here stay on the broker; when they arrive, the claim finds
    the jobs no longer queued and drops them.
    """
    if limit <= 0:
        return []
    now = timezone.now()
    company_of = dict(plugin_id=leader.plugin_id, plugin_version=leader.plugin_version, batch_key=leader.batch_key)
    # A lone job at idle finds none: one plain read says so, without a transaction and its locks.
    if not _any_waiting_company(**company_of):
        return []
    waiting_company = _waiting_company(**company_of)
    with transaction.atomic():
        candidates = list(
            waiting_company.select_for_update(skip_locked=True)
            .order_by("-priority", "created_at")
            .values_list("pk", "project_id", "model_version_id")[: limit * 2]
        )
        chosen = [pk for pk, project_id, version_id in candidates if same_model(project_id, version_id)][:limit]
        if not chosen:
            return []
        Job.objects.filter(pk__in=chosen, status=JobStatus.QUEUED).update(**_claim_fields(token, worker, now))
    claimed = {job.pk: job for job in Job.objects.filter(pk__in=chosen, claim_token=token, status=JobStatus.RUNNING)
               .select_related(*CLAIMED_JOB_RELATED)}
    return [claimed[pk] for pk in chosen if pk in claimed]  # most urgent first


@transaction.atomic
def heartbeat_claims(token: uuid.UUID, job_ids: Iterable[str]) -> tuple[set[str], set[str]]:
    """Prove a batch's worker alive for ``job_ids``, the jobs of the claim it still works on, in two queries.
    Returns (job ids still ours, ids asked to cancel). Only those: a job whose result the worker could not
    store stays running under the claim, and must fall silent for the sweeper to queue it again.
    The rows are locked in id order, as ``complete_jobs`` locks them, so that the two never deadlock."""
    ours, cancel = set(), set()
    for pk, cancel_requested_at in (Job.objects.select_for_update()
                                    .filter(pk__in=list(job_ids), claim_token=token, status=JobStatus.RUNNING)
                                    .order_by("pk").values_list("pk", "cancel_requested_at")):
        ours.add(str(pk))
        if cancel_requested_at is not None:
            cancel.add(str(pk))
    if ours:
        Job.objects.filter(pk__in=ours).update(heartbeat_at=timezone.now())
    return ours, cancel


def cancels_asked(job_ids: Iterable[str]) -> set[str]:
    """Which of ``job_ids`` have been asked to cancel (a running batch looks between its heartbeats)."""
    return {str(pk) for pk in Job.objects.filter(pk__in=list(job_ids), cancel_requested_at__isnull=False)
            .values_list("pk", flat=True)}


def record_progress(token: uuid.UUID, progress: dict[str, tuple[float, dict[str, Any]]]) -> None:
    """Each job's (fraction, detail) in ``progress``, for those jobs still running under this claim: one
    statement however many jobs (a batch of 32 wrote 32 before, every flush)."""
    if not progress:
        return
    fractions = [When(pk=job_id, then=Value(fraction)) for job_id, (fraction, _) in progress.items()]
    details = [When(pk=job_id, then=Value(detail, output_field=JSONField())) for job_id, (_, detail) in progress.items()]
    Job.objects.filter(pk__in=list(progress), claim_token=token, status=JobStatus.RUNNING).update(
        progress=Case(*fractions, output_field=FloatField()),
        progress_detail=Case(*details, output_field=JSONField()),
        heartbeat_at=timezone.now(),
    )


def _locked_claimed_job(job_id: str, token: uuid.UUID) -> Job | None:
    # The project comes in the same query; only the job's row is locked.
    job = Job.objects.select_for_update(of=("self",)).select_related("project").filter(pk=job_id).first()
    if job is None or job.status != JobStatus.RUNNING or job.claim_token != token:
        logger.warning("job %s: claim %s was lost; discarding this worker's result", job_id, token)
        return None
    return job


def _finished_fields(status: str, code: str = "", message: str = "") -> dict[str, Any]:
    return dict(status=status, error_code=code, error_message=message, finished_at=timezone.now(), claim_token=None)


def _finish(job: Job, status: str, *, code: str = "", message: str = "") -> None:
    fields = _finished_fields(status, code, message)
    for name, value in fields.items():
        setattr(job, name, value)
    job.save(update_fields=list(fields))
    waiting.announce_finished(job.pk)
    if status in (JobStatus.FAILED, JobStatus.CANCELLED):
        signal = job_failed if status == JobStatus.FAILED else job_cancelled
        transaction.on_commit(lambda: signal.send(sender=Job, job=job), robust=True)


def _succeeded_fields(progress_detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**_finished_fields(JobStatus.SUCCEEDED), "progress": 1.0, "progress_detail": progress_detail or {}}


def _as_succeeded(job: Job, fields: dict[str, Any]) -> Job:
    """A copy of ``job`` with the succeeded ``fields`` just written, its waiters woken after commit. A copy:
    the caller's object still says running if the transaction rolls back."""
    job = copy.copy(job)
    for name, value in fields.items():
        setattr(job, name, value)
    waiting.announce_finished(job.pk)
    return job


def _finish_as_succeeded(job_id: str, token: uuid.UUID, known: Job | None, progress_detail: dict[str, Any]) -> Job | None:
    """Mark a job ours and not asked to cancel as succeeded, in one conditional update that also
    locks its row for the rest of the transaction. None when the claim was lost or a cancel was asked.
    ``known``: the job as the worker holds it (its project loaded), to save reading it again."""
    fields = _succeeded_fields(progress_detail)
    if not Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, claim_token=token,
                              cancel_requested_at__isnull=True).update(**fields):
        return None
    if known is None or str(known.pk) != str(job_id):
        known = Job.objects.select_related("project").get(pk=job_id)
    return _as_succeeded(known, fields)


#: The files the storing of outputs in this context has saved (set by ``_files_removed_unless_stored``).
_files_saved: contextvars.ContextVar[list | None] = contextvars.ContextVar("files_saved", default=None)


def _files_removed_unless_stored(function):
    """Outputs' files go to storage inside the transaction that stores their rows. When that
    transaction does not commit (the database refuses a row, the commit fails), nothing names them any
    more and the retry saves them again under new names: remove them."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        saved: list = []
        context = _files_saved.set(saved)
        try:
            return function(*args, **kwargs)
        except BaseException:
            for field_file in saved:
                try:
                    field_file.storage.delete(field_file.name)
                except Exception:
                    logger.warning("could not remove %s, saved for outputs that were not stored", field_file.name,
                                   exc_info=True)
            raise
        finally:
            _files_saved.reset(context)
    return wrapper


@_files_removed_unless_stored
@transaction.atomic
def complete_job(job_id: str, token: uuid.UUID, outputs: Iterable[ProducedOutput], provenance: dict[str, Any],
                 *, policy=None, job: Job | None = None, progress_detail: dict[str, Any] | None = None) -> str:
    """Store a job's outputs, all or none, pending review. Returns the job's new status, or "lost".
    ``policy``: the project's safety policy when the caller has it already; ``job``: the job as the
    caller holds it; ``progress_detail``: what the plugin reported last (``JobCompletion.progress_detail``)."""
    finished = _finish_as_succeeded(job_id, token, job, progress_detail or {})
    if finished is None:
        job = _locked_claimed_job(job_id, token)
        if job is None:
            return "lost"
        if job.cancel_requested_at is None:  # cannot happen: the update above refused only a cancel or a lost claim
            logger.error("job %s: completion refused though the claim holds and no cancel was asked", job_id)
            return "lost"
        _finish(job, JobStatus.CANCELLED, code="cancelled", message="Cancelled while running; outputs discarded.")
        return JobStatus.CANCELLED
    _store_outputs([JobCompletion(finished, list(outputs), provenance, policy)])
    return JobStatus.SUCCEEDED


@_files_removed_unless_stored
@transaction.atomic
def complete_jobs(token: uuid.UUID, completions: list[JobCompletion]) -> dict[str, str]:
    """``complete_job`` for several jobs of one claim (the results a batch produced together), in one
    transaction of a few statements however many jobs: each job's new status by job id.

    Raises ``NotAllOurs``, having stored nothing, when one of them was asked to cancel or its claim
    was lost: the caller then stores each with ``complete_job``, which gives each its own outcome."""
    ids = sorted(c.job.pk for c in completions)
    # Rows locked in id order, as the heartbeat locks them: two writers of one batch's rows never deadlock.
    ours = list(Job.objects.select_for_update().filter(pk__in=ids, status=JobStatus.RUNNING, claim_token=token,
                                                       cancel_requested_at__isnull=True).order_by("pk").values_list("pk", flat=True))
    if len(ours) != len(ids):
        raise NotAllOurs
    fields = _succeeded_fields()
    details = [When(pk=c.job.pk, then=Value(c.progress_detail, output_field=JSONField())) for c in completions]
    Job.objects.filter(pk__in=ids).update(**{**fields, "progress_detail": Case(*details, output_field=JSONField())})
    _store_outputs([
        JobCompletion(_as_succeeded(c.job, {**fields, "progress_detail": c.progress_detail}), c.outputs, c.provenance, c.policy)
        for c in completions
    ])
    return {str(pk): JobStatus.SUCCEEDED for pk in ids}


def _store_outputs(finished: list[JobCompletion]) -> None:
    """The outputs of jobs just marked succeeded, each in the review state its screening and its project's
    policy give it, with their files, review items and audit records: one statement per table however
    many jobs (files aside). Then each job's released chat reply, and one notice for them all."""
    from atelier_platform.jobs.library import output_search_text
    from atelier_platform.moderation.review import evaluation_route, open_reviews, review_route
    from atelier_platform.moderation.screening import policy_for

    policies: dict[int, Any] = {}
    rows: list[tuple[Output, ProducedOutput]] = []
    routed = []
    stored_by_job = []
    for completion in finished:
        job = completion.job
        policy = completion.policy
        if policy is None or policy.project_id != job.project_id:
            if job.project_id not in policies:
                policies[job.project_id] = policy_for(job.project)
            policy = policies[job.project_id]
        stored = []
        for index, produced in enumerate(completion.outputs):
            route = review_route(produced.safety or {}, policy, input_screening=job.input_screening or {})
            if job.is_evaluation:
                route = evaluation_route(route)
            output = Output(
                job=job,
                index=index,
                content=produced.content,
                provenance={**completion.provenance, "ai_generated": True, "output_index": index},
                safety=produced.safety or {},
                review_state=route.state,
                search_text=output_search_text(job.plugin_id, produced.content),  # bulk_create skips Output.save
            )
            rows.append((output, produced))
            routed.append((output, route))
            stored.append(output)
        stored_by_job.append((job, stored))
    Output.objects.bulk_create([output for output, _ in rows])
    for output, produced in rows:
        for name, media_type, data, role in produced.files:
            file_row = OutputFile(output=output, role=role, media_type=media_type, size=len(data))
            file_row.file.save(name, ContentFile(data), save=False)
            if (saved := _files_saved.get()) is not None:
                saved.append(file_row.file)
            file_row.save()
    open_reviews(routed)
    for job, stored in stored_by_job:
        # A chat reply released at once joins its thread in this transaction: a client woken by the
        # finish notice and sending its next turn finds the reply there.
        record_released_reply(job, stored)
    transaction.on_commit(functools.partial(jobs_succeeded.send, sender=Job, finished=stored_by_job), robust=True)


@transaction.atomic
def fail_job(job_id: str, token: uuid.UUID, code: str, message: str) -> bool:
    job = _locked_claimed_job(job_id, token)
    if job is None:
        return False
    if job.cancel_requested_at is not None:
        _finish(job, JobStatus.CANCELLED, code="cancelled", message="Cancelled while running.")
    else:
        _finish(job, JobStatus.FAILED, code=code, message=message)
    return True


def retry_delay_s(attempt: int) -> float:
    config = get_config()
    return min(config.retry_backoff_max_s, config.retry_backoff_base_s * (2 ** max(0, attempt - 1)))


@transaction.atomic
def retry_or_fail(job_id: str, token: uuid.UUID, code: str, message: str) -> str:
    """After a transient error: queue the job again with backoff, or fail it after its last attempt."""
    job = _locked_claimed_job(job_id, token)
    if job is None:
        return "lost"
    if job.cancel_requested_at is not None:
        _finish(job, JobStatus.CANCELLED, code="cancelled", message="Cancelled while running.")
        return JobStatus.CANCELLED
    if job.attempts >= job.max_attempts:
        _finish(job, JobStatus.FAILED, code=code, message=f"{message} (gave up after {job.attempts} attempts)")
        return JobStatus.FAILED
    _requeue(job, code=code, message=message, countdown=retry_delay_s(job.attempts))
    return JobStatus.QUEUED


def _requeue(job: Job, *, code: str, message: str, countdown: float = 0) -> None:
    job.status = JobStatus.QUEUED
    job.claim_token = None
    job.worker = ""
    job.error_code = code
    job.error_message = message
    job.progress = None
    job.save(update_fields=["status", "claim_token", "worker", "error_code", "error_message", "progress"])
    enqueue_on_commit(job, countdown=countdown)


@transaction.atomic
def cancel_job(job: Job) -> Job:
    """Cancel a queued job at once; ask a running one to stop. A finished job answers 409."""
    job = Job.objects.select_for_update().get(pk=job.pk)
    if job.status in FINISHED_STATUSES:
        raise JobAlreadyFinished(f"Job {job.id} already finished with status {job.status!r}; nothing to cancel.")
    job.cancel_requested_at = job.cancel_requested_at or timezone.now()
    job.save(update_fields=["cancel_requested_at"])
    if job.status == JobStatus.QUEUED:  # finished at once, its waiters woken, as a worker's finish does
        _finish(job, JobStatus.CANCELLED, code="cancelled", message="Cancelled before it started.")
    return job


@dataclass(frozen=True)
class CancelledJobs:
    """What ``cancel_jobs`` did, by job id."""

    cancelled: list  # were queued: cancelled at once
    stopping: list  # were running: asked to stop at their next step
    finished: list  # had finished already (or were not found): nothing done

    @property
    def asked(self) -> int:
        return len(self.cancelled) + len(self.stopping)


@transaction.atomic
def cancel_jobs(job_ids: Iterable) -> CancelledJobs:
    """``cancel_job`` for many jobs at once (an evaluation run's), in a few statements however many: a queued job
    is cancelled at once, a running one asked to stop, a finished one left as it is (no 409: the caller asked for
    whatever is still unfinished). The rows are locked first, in id order as ``complete_jobs`` and the heartbeat
    lock them: a worker storing a job's result meanwhile has committed when this reads it (succeeded: left alone),
    or stores it after, finds the cancel asked and discards it, as with ``cancel_job``. Waiters are woken and
    ``jobs_cancelled`` sent once it commits; as ``cancel_job``, no audit record per job (the caller records its
    own act) and nothing revoked on the broker (a cancelled job's message finds it not queued and is dropped)."""
    ids = sorted({uuid.UUID(str(pk)) for pk in job_ids})
    jobs = list(Job.objects.select_for_update(of=("self",)).select_related("project").filter(pk__in=ids).order_by("pk"))
    queued = [job for job in jobs if job.status == JobStatus.QUEUED]
    running = [job for job in jobs if job.status not in FINISHED_STATUSES and job.status != JobStatus.QUEUED]
    unfinished = [job.pk for job in (*queued, *running)]
    now = timezone.now()
    if unfinished:
        Job.objects.filter(pk__in=unfinished, cancel_requested_at__isnull=True).update(cancel_requested_at=now)
    fields = _finished_fields(JobStatus.CANCELLED, "cancelled", "Cancelled before it started.")
    if queued:
        Job.objects.filter(pk__in=[job.pk for job in queued]).update(**fields)
    for job in (*queued, *running):
        job.cancel_requested_at = job.cancel_requested_at or now
    for job in queued:
        for name, value in fields.items():
            setattr(job, name, value)
    if queued:
        waiting.announce_all_finished([job.pk for job in queued])
        transaction.on_commit(functools.partial(jobs_cancelled.send, sender=Job, jobs=queued), robust=True)
    done = {job.pk for job in (*queued, *running)}
    return CancelledJobs(cancelled=[job.pk for job in queued], stopping=[job.pk for job in running],
                         finished=[pk for pk in ids if pk not in done])


def sweep(now=None) -> dict[str, int]:
    """Repair what lost messages and dead workers left behind. Run periodically by beat.

    - running jobs whose worker stopped sending heartbeats are queued again (or failed after
      their last attempt, or cancelled if a cancel was asked for);
    - queued jobs whose message should have been picked up long ago get a new message.
    Duplicate messages this may create are harmless: only one can claim the job.
    """
    config = get_config()
    now = now or timezone.now()
    counts = {"requeued_lost_workers": 0, "failed_lost_workers": 0, "cancelled": 0, "republished": 0}

    stale = Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=now - timedelta(seconds=config.job_stale_after_s))
    for job_id in stale.values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.RUNNING).first()
            if job is None or job.heartbeat_at >= now - timedelta(seconds=config.job_stale_after_s):
                continue
            # Still beating after its time limit: the job hung (the hard limit killed it), so a
            # retry would hang again. Silent before its limit: the worker died; try again.
            past_deadline = bool(job.started_at) and job.heartbeat_at > job.started_at + timedelta(seconds=job.time_limit_s)
            if job.cancel_requested_at is not None:
                _finish(job, JobStatus.CANCELLED, code="cancelled", message="Cancelled; its worker stopped.")
                counts["cancelled"] += 1
            elif job.attempts >= job.max_attempts or past_deadline:
                reason = (
                    f"Exceeded its time limit of {job.time_limit_s} s."
                    if past_deadline
                    else f"The worker running it stopped responding, {job.attempts} times; giving up."
                )
                _finish(job, JobStatus.FAILED, code="time_limit" if past_deadline else WORKER_LOST, message=reason)
                counts["failed_lost_workers"] += 1
            else:
                logger.warning("job %s: worker %s stopped responding; queueing it again", job.pk, job.worker)
                # With that code, it runs alone next time (``runs_alone``).
                _requeue(job, code=WORKER_LOST, message=f"Worker {job.worker} stopped responding; retrying.")
                counts["requeued_lost_workers"] += 1

    lost = Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=now - timedelta(seconds=config.job_requeue_after_s))
    for job_id in lost.values_list("pk", flat=True)[:500]:
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.QUEUED).first()
            if job is None:
                continue
            logger.warning("job %s: no worker took its message for %.0f s; sending another", job.pk, config.job_requeue_after_s)
            mark_enqueued(job)
        # Published here rather than on commit, to see whether it went: on a broker that does not answer,
        # each of up to 500 lost jobs would wait out its own publish timeout (about 40 minutes in all) and the
        # sweep's other repairs with them. The first that fails leaves the rest to the next sweep.
        if not publish_job(job):
            logger.warning("the broker took no message; the other lost jobs wait for the next sweep")
            break
        counts["republished"] += 1
    return counts
