"""Submitting jobs: validate against the plugin's schema and the operator's caps, check quotas,
screen the input, save the rows, enqueue on commit. One job (``submit_job``) or many at once,
all or none (``submit_jobs``).

Idempotency-Key: a key already used for a finished request replays its answer; the same key with
another body is refused (422), unless the job's content was erased: its fingerprint went with it,
and any body replays the tombstone (a 422 for a wrong guess would tell the right one); while the
first request with a key is still running, a duplicate is told so (409 ``idempotency_in_flight``
with Retry-After) instead of doing the work twice. The in-flight lock is a row written before
validation and removed (single jobs, whose rows carry the key) or completed with the answer
(batches, whose jobs carry their requests' fingerprints) at the end; see ``usage/idempotency.py``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Sequence

from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from atelier_platform.accounts.models import ApiKey, Project
from atelier_platform.catalog.services import installed_plugin, plugin_settings, problems_of_defaults
from atelier_platform.conversations.services import expand_thread, is_conversational, record_turns
from atelier_platform.catalog.registry import get_registry
from atelier_platform.config import get_config
from atelier_platform.jobs.errors import (
    IdempotencyConflict,
    InputBlocked,
    InvalidJobInput,
    JobServiceError,
    PluginNotEnabled,
    ProjectDefaultsInvalid,
    UnknownPlugin,
)
from atelier_platform.jobs.models import Job, JobPurpose, JobStatus
from atelier_platform.jobs.queueing import publish_on_commit
from atelier_platform.usage import idempotency, limits, quotas
from atelier_platform.usage.errors import LimitExceeded

MAX_SEED = 2**31 - 1
#: idempotency scopes: a key is unique per project and per endpoint
SINGLE_SCOPE = "jobs"
BATCH_SCOPE = "jobs/batch"
CHAT_COMPLETIONS_SCOPE = "v1/chat/completions"
IMAGE_GENERATIONS_SCOPE = "v1/images/generations"
RESPONSES_SCOPE = "v1/responses"


@dataclass(frozen=True)
class JobRequest:
    plugin_id: str
    input: dict[str, Any]
    params: dict[str, Any]
    priority: int = 5
    webhook: str = ""  # where the job's own events go as well (webhooks.services.checked_job_webhook)
    metadata: dict[str, str] = dataclass_field(default_factory=dict)  # the caller's own pairs (``Job.metadata``)
    background: bool = False  # nobody waits for it (``Job.background``)


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False when an Idempotency-Key replayed an earlier submission


@dataclass(frozen=True)
class BatchSubmission:
    jobs: list[Job]
    created: bool  # False when an Idempotency-Key replayed an earlier batch


def pydantic_error_details(exc: ValidationError, root: str) -> dict[str, list[str]]:
    """Field errors as ``{"input.prompt": ["Field required"]}``, the shape of the API's details."""
    details: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        location = ".".join([root, *map(str, error["loc"])])
        details.setdefault(location, []).append(error["msg"])
    return details


def rooted_errors(exc: ValidationError, root: str) -> list[dict[str, Any]]:
    """pydantic's errors with their locations from ``root`` (``("input", "text")``), as ``InvalidJobInput`` keeps them."""
    return [{**error, "loc": (root, *error["loc"])} for error in exc.errors(include_url=False)]


def as_sent(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """``data`` (a request's JSON, decoded) validated as the JSON it came as, in pydantic's strict mode: a number
    must be a number and a flag a flag (``"max_new_tokens": true`` ran a 1-token job, ``"temperature": "0.5"``
    passed), while what JSON can only write as a string (a date, a UUID, an enum's value) is still read from one."""
    return model.model_validate_json(json.dumps(data), strict=True)


def _validate(model: type[BaseModel], data: dict[str, Any], root: str) -> BaseModel:
    try:
        return as_sent(model, data)
    except ValidationError as exc:
        raise InvalidJobInput(f"The {root} does not match the plugin's schema.", details=pydantic_error_details(exc, root),
                              field_errors=rooted_errors(exc, root)) from None


def nul_paths(value: Any, root: str) -> list[str]:
    """Where ``value`` holds a NUL character (keys too): PostgreSQL's jsonb cannot store one."""
    found: list[str] = []
    pending: list[tuple[Any, str]] = [(value, root)]  # a loop, not recursion: any depth is safe
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                found.append(where)
        elif isinstance(item, dict):
            for key, inner in item.items():
                path = f"{where}.{key}".replace("\x00", "\\u0000")
                if isinstance(key, str) and "\x00" in key:
                    found.append(path)
                pending.append((inner, path))
        elif isinstance(item, list):
            pending.extend((inner, f"{where}.{index}") for index, inner in enumerate(item))
    return sorted(found)


def refuse_nul(value: Any, root: str) -> None:
    paths = nul_paths(value, root)
    if paths:
        raise InvalidJobInput("Text may not contain the NUL character (\\u0000).",
                              details={path: ["The NUL character (\\u0000) is not allowed."] for path in paths})


def _seed_of(input_data: dict[str, Any], params: dict[str, Any]) -> int:
    for source in (params, input_data):
        seed = source.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED:
            return seed
    return secrets.randbelow(MAX_SEED)


def batch_key_of(plugin, validated_input: BaseModel, validated_params: BaseModel) -> str:
    """The stored form of ``Plugin.batch_key``: a hash, so that any key fits the indexed column."""
    key = plugin.batch_key(validated_input, validated_params)
    return hashlib.sha256(json.dumps(list(key), sort_keys=True, default=str).encode()).hexdigest()[:32]


def fingerprint(request: JobRequest) -> str:
    # The webhook, metadata and background only when there are: a request without them keeps the fingerprint it had
    # before jobs could have them.
    extras = {name: value for name, value in (("metadata", request.metadata), ("background", request.background)) if value}
    body = json.dumps([request.plugin_id, request.input, request.params, request.priority,
                       *([request.webhook] if request.webhook else []), *([extras] if extras else [])], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def batch_fingerprint(requests: Sequence[JobRequest]) -> str:
    return hashlib.sha256(json.dumps([fingerprint(r) for r in requests]).encode()).hexdigest()


# --- preparing one job: everything that can refuse it before anything is written -------------------

@dataclass
class _ProjectFacts:
    """What every job of one request needs to know about its project, read once per request."""

    project: Project
    settings: dict[str, tuple[bool, dict]] | None = None  # plugin id -> (enabled, param defaults)

    def _setting(self, plugin_id: str) -> tuple[bool, dict]:
        if self.settings is None:
            self.settings = plugin_settings(self.project)
        return self.settings.get(plugin_id, (False, {}))

    def is_enabled(self, plugin_id: str) -> bool:
        return self._setting(plugin_id)[0]

    def param_defaults(self, plugin_id: str) -> dict:
        return dict(self._setting(plugin_id)[1])


@dataclass(frozen=True)
class _Prepared:
    request: JobRequest
    plugin: Any
    validated_input: BaseModel
    validated_params: BaseModel
    input: dict[str, Any]
    params: dict[str, Any]
    fingerprint: str
    webhook: str = ""


def prepare_again(job: Job) -> _Prepared:
    """``job``'s request checked as a new job's would be, against the plugin as installed now (for a
    regeneration): installed and enabled for its project, input and params valid, within the limits."""
    return _prepare(_ProjectFacts(job.project), JobRequest(job.plugin_id, job.input, job.params, job.priority))


def _prepare(facts: _ProjectFacts, request: JobRequest) -> _Prepared:
    refuse_nul(request.input, "input")
    refuse_nul(request.params, "params")
    refuse_nul(request.metadata, "metadata")
    plugin = installed_plugin(request.plugin_id)
    if plugin is None:
        available = sorted(p.manifest.id for p in get_registry().available())
        raise UnknownPlugin(
            f"No plugin named {request.plugin_id!r} is installed.",
            details={"plugin": [f"Choose one of: {', '.join(available) or '(none installed)'}."]},
        )
    if not facts.is_enabled(request.plugin_id):
        raise PluginNotEnabled(
            f"Plugin {request.plugin_id!r} is not enabled for project {facts.project.slug!r}; a project owner can enable it."
        )
    validated_input = _validate(plugin.Input, request.input, "input")
    # The project's defaults for this plugin (brand voice, banned words, ...) under the caller's params.
    defaults = facts.param_defaults(request.plugin_id)
    try:
        validated_params = as_sent(plugin.Params, {**defaults, **request.params})
    except ValidationError as exc:
        inherited = {name: value for name, value in defaults.items() if name not in request.params}
        problems = problems_of_defaults(exc, inherited)
        if problems:  # saved before the settings were checked, or the plugin changed since: not the caller's doing
            raise ProjectDefaultsInvalid(
                f"The project's default params for {request.plugin_id!r} no longer match the plugin; a project owner "
                "must correct them in the plugin's settings (or send these params yourself).", details=problems) from None
        raise InvalidJobInput("The params does not match the plugin's schema.",
                              details=pydantic_error_details(exc, "params"), field_errors=rooted_errors(exc, "params")) from None
    normalised_input = validated_input.model_dump(mode="json")
    normalised_params = validated_params.model_dump(mode="json")
    capped_input, capped_params = limits.lower_unasked(plugin.manifest.id, normalised_input, normalised_params,
                                                       asked_input=request.input, asked_params={**defaults, **request.params})
    if capped_input is not normalised_input or capped_params is not normalised_params:
        validated_input = _within_schema(plugin.Input, capped_input, "input")
        validated_params = _within_schema(plugin.Params, capped_params, "params")
        normalised_input = validated_input.model_dump(mode="json")
        normalised_params = validated_params.model_dump(mode="json")
    _check_limits(plugin.manifest.id, normalised_input, normalised_params,
                  inherited={name for name in defaults if name not in request.params})
    webhook = ""
    if request.webhook:
        from atelier_platform.webhooks.services import checked_job_webhook

        webhook = checked_job_webhook(facts.project, request.webhook)
    return _Prepared(request, plugin, validated_input, validated_params, normalised_input, normalised_params,
                     fingerprint(request), webhook)


def _check_limits(plugin_id: str, normalised_input: dict[str, Any], normalised_params: dict[str, Any], *,
                  inherited: set[str]) -> None:
    """``limits.check``, its refusal saying which values came from the project's default params (``inherited``: those
    the request left to them): a cap lowered after an owner saved a default above it refuses every job that leaves
    the field to the default, which its caller can neither see nor have asked for. Same code and status."""
    try:
        limits.check(plugin_id, normalised_input, normalised_params)
    except LimitExceeded as exceeded:
        details = {field: list(messages) for field, messages in (exceeded.details or {}).items()}
        from_defaults = [field for field in details
                         if field.startswith("params.") and field.split(".")[1] in inherited]
        if not from_defaults:
            raise
        fix = (f"a project owner lowers it in the plugin's default params (the settings page, or PATCH "
               f"/api/v1/plugins/{plugin_id}/settings/ with its defaults), or send the field in the request's params")
        for field in from_defaults:
            details[field].append(f"This value is the project's default for {plugin_id}, not the request's: {fix}.")
        named = ", ".join(from_defaults)
        raise LimitExceeded(
            f"The job asks for more than this server allows: {named} "
            f"{'comes' if len(from_defaults) == 1 else 'come'} from the project's default params for {plugin_id!r}, "
            f"above this server's cap (lowered since the default was saved); {fix}.", details=details) from None


def _within_schema(model: type[BaseModel], lowered: dict[str, Any], root: str) -> BaseModel:
    """``lowered`` (a default brought down to a server cap) validated again: a cap below what the plugin
    accepts at all leaves the job no valid value on this server."""
    try:
        return model.model_validate(lowered)
    except ValidationError as exc:
        raise LimitExceeded("This server's caps leave the plugin no valid value; an operator must raise them.",
                            details=pydantic_error_details(exc, root)) from None


def _screen(project: Project, prepared: _Prepared, policy=None) -> dict[str, Any]:
    from atelier_sdk.safety import Target

    from atelier_platform.moderation.screening import collect_texts, screen

    return screen(project, Target.INPUT, collect_texts(prepared.input, "input"), policy=policy)


def _is_blocked(report: dict[str, Any]) -> bool:
    from atelier_platform.moderation.screening import BLOCK

    return report["decision"] == BLOCK


def _blocked_details(report: dict[str, Any]) -> dict[str, Any]:
    return {"categories": report["flagged"], "fields": sorted({f["field"] for f in report["findings"]})}


def _create(project: Project, prepared: _Prepared, screening: dict[str, Any], *, submitted_by, api_key,
            keyed_by: tuple[str, str] | None, purpose: str = JobPurpose.REQUEST, model_version=None) -> Job:
    """Save one queued job and publish it on commit. Call inside a transaction. ``keyed_by``: the
    endpoint and the Idempotency-Key it came with; ``model_version``: the model it must run with
    instead of the project's pin (evaluation jobs only)."""
    manifest = prepared.plugin.manifest
    normalised_input = prepared.input
    conversation = new_turns = None
    starts_conversation = False
    # An evaluation case is self-contained (its turns in its input): it neither starts nor continues a thread.
    if is_conversational(prepared.plugin) and purpose != JobPurpose.EVALUATION:
        normalised_input, conversation, new_turns, starts_conversation = expand_thread(project, prepared.plugin, normalised_input)
        _validate(prepared.plugin.Input, normalised_input, "input")
    job = Job.objects.create(
        project=project,
        plugin_id=manifest.id,
        plugin_version=manifest.version,
        resource_class=manifest.resource_class.value,
        input=normalised_input,
        params=prepared.params,
        seed=_seed_of(normalised_input, prepared.params),
        priority=prepared.request.priority,
        batch_key=batch_key_of(prepared.plugin, prepared.validated_input, prepared.validated_params),
        max_attempts=manifest.max_attempts,
        time_limit_s=manifest.time_limit_s,
        submitted_by=submitted_by,
        api_key=api_key,
        idempotency_scope=keyed_by[0] if keyed_by else SINGLE_SCOPE,
        idempotency_key=keyed_by[1] if keyed_by else None,
        request_fingerprint=prepared.fingerprint,
        enqueued_at=timezone.now(),
        enqueue_count=1,
        input_screening=screening,
        webhook=prepared.webhook,
        purpose=purpose,
        model_version=model_version,
        metadata=prepared.request.metadata,
        background=prepared.request.background,
    )
    if conversation is not None:
        record_turns(conversation, new_turns, job, is_new=starts_conversation)
    publish_on_commit(job)
    return job


# --- one job -------------------------------------------------------------------------------------------

def submit_job(
    project: Project,
    request: JobRequest,
    *,
    submitted_by=None,
    api_key: ApiKey | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str = SINGLE_SCOPE,
) -> Submission:
    """Create one job. With ``idempotency_key``, a retry on the same endpoint (``idempotency_scope``) gets
    the first job back; the same key on another endpoint is another request."""
    if not idempotency_key:
        return _submit_one(project, request, submitted_by=submitted_by, api_key=api_key, keyed_by=None)
    request_fingerprint = fingerprint(request)
    keyed = Job.objects.filter(project=project, idempotency_scope=idempotency_scope, idempotency_key=idempotency_key)
    earlier = keyed.first()
    if earlier is not None:
        return _replay(earlier, request_fingerprint)
    with idempotency.hold(project, idempotency_scope, idempotency_key, request_fingerprint):
        # The first request may have finished between the look-up above and taking the key.
        earlier = keyed.first()
        if earlier is not None:
            return _replay(earlier, request_fingerprint)
        return _submit_one(project, request, submitted_by=submitted_by, api_key=api_key,
                           keyed_by=(idempotency_scope, idempotency_key))


def _submit_one(project, request, *, submitted_by, api_key, keyed_by: tuple[str, str] | None) -> Submission:
    prepared = _prepare(_ProjectFacts(project), request)
    quota_limits = quotas.check_submission(project, 1)
    input_screening = _screen(project, prepared)
    if _is_blocked(input_screening):
        _keep_blocked_attempt(project, prepared, input_screening, submitted_by=submitted_by, api_key=api_key)
        raise InputBlocked("The input was blocked by the project's safety policy.", details=_blocked_details(input_screening))
    try:
        with transaction.atomic():
            quotas.recheck_locked(project, quota_limits, 1)
            job = _create(project, prepared, input_screening, submitted_by=submitted_by, api_key=api_key,
                          keyed_by=keyed_by)
    except IntegrityError:
        # Two requests with one Idempotency-Key raced past the lock (a lock older than its expiry); the other saved first.
        if keyed_by is None:
            raise
        scope, key = keyed_by
        earlier = Job.objects.filter(project=project, idempotency_scope=scope, idempotency_key=key).first()
        if earlier is None:
            raise
        return _replay(earlier, prepared.fingerprint)
    return Submission(job=job, created=True)


# --- many jobs, all or none ------------------------------------------------------------------------------

def _indexed_details(index: int, error: JobServiceError) -> dict[str, list[str]]:
    prefix = f"jobs.{index}"
    if isinstance(error.details, dict) and error.details:
        return {f"{prefix}.{name}": messages if isinstance(messages, list) else [messages]
                for name, messages in error.details.items()}
    where = f"{prefix}.plugin" if isinstance(error, (UnknownPlugin, PluginNotEnabled)) else prefix
    return {where: [error.message]}


def submit_jobs(
    project: Project,
    requests: Sequence[JobRequest],
    *,
    submitted_by=None,
    api_key: ApiKey | None = None,
    idempotency_key: str | None = None,
) -> BatchSubmission:
    """Create every job of ``requests`` or none.

    Every job is validated first; any invalid one refuses the batch with 400 and the errors of all
    of them (``jobs.3.input.prompt``). The quotas must allow all of them. A blocked input refuses the
    batch (422 ``input_blocked``, per index); as for single jobs, blocked inputs are kept as
    ``blocked`` jobs for the audit. Then all jobs are saved in one transaction.
    """
    most = get_config().max_jobs_per_request
    if not requests:
        raise InvalidJobInput("Send at least one job.", details={"jobs": ["Send at least one job."]})
    if len(requests) > most:
        message = f"At most {most} jobs per request (ATELIER_MAX_JOBS_PER_REQUEST); this one has {len(requests)}."
        raise InvalidJobInput(message, details={"jobs": [message]}, code="limit_exceeded")
    if not idempotency_key:
        return _submit_many(project, requests, submitted_by=submitted_by, api_key=api_key)
    with idempotency.hold(project, BATCH_SCOPE, idempotency_key, batch_fingerprint(requests)) as held:
        if held.is_replay:
            ids = [uuid.UUID(pk) for pk in held.replay["job_ids"]]
            found = {job.pk: job for job in Job.objects.filter(project=project, pk__in=ids)}
            _refuse_another_batch(idempotency_key, requests, [found.get(pk) for pk in ids])
            return BatchSubmission(jobs=[found[pk] for pk in ids if pk in found], created=False)
        batch = _submit_many(project, requests, submitted_by=submitted_by, api_key=api_key)
        # kept as long as a single job's key, which its row holds: a retry a day later must not double the batch;
        # without the batch's fingerprint, which would outlive the erasure of its jobs' content
        held.complete(201, {"job_ids": [str(job.pk) for job in batch.jobs]}, keep_for=idempotency.FOR_GOOD,
                      compared_by_caller=True)
        return batch


def _refuse_another_batch(idempotency_key: str, requests: Sequence[JobRequest], jobs: list[Job | None]) -> None:
    """A batch's key replays the same requests only: each compared with its job's fingerprint, as ``_replay``
    compares a single job's; an erased job's went with its content and any request matches it (nor does a job gone
    from the table refuse one), so that a replay tells nothing of what was erased."""
    same = len(requests) == len(jobs) and all(
        job is None or job.erased_at is not None or job.request_fingerprint == fingerprint(request)
        for request, job in zip(requests, jobs))
    if not same:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different request; use a new key for a new request.",
            details={"idempotency_key": idempotency_key},
        )


def _prepare_each(project, requests) -> tuple[list[_Prepared], dict[str, list[str]]]:
    """Each request checked as a single job is (``_prepare``), and the refusals by ``jobs.N.<field>``."""
    facts = _ProjectFacts(project)
    prepared: list[_Prepared] = []
    problems: dict[str, list[str]] = {}
    for index, request in enumerate(requests):
        try:
            prepared.append(_prepare(facts, request))
        except JobServiceError as error:
            problems.update(_indexed_details(index, error))
    return prepared, problems


def _submit_many(project, requests, *, submitted_by, api_key) -> BatchSubmission:
    prepared, problems = _prepare_each(project, requests)
    if problems:
        bad = sorted({int(name.split(".")[1]) for name in problems})
        raise InvalidJobInput(
            f"{len(bad)} of {len(requests)} jobs are invalid (index {', '.join(map(str, bad[:10]))}"
            f"{', ...' if len(bad) > 10 else ''}); none was created.",
            details=problems,
        )
    quota_limits = quotas.check_submission(project, len(prepared))

    from atelier_platform.moderation.screening import policy_for

    policy = policy_for(project)
    reports = [_screen(project, item, policy) for item in prepared]
    blocked = {index: report for index, report in enumerate(reports) if _is_blocked(report)}
    if blocked:
        for index, report in blocked.items():
            _keep_blocked_attempt(project, prepared[index], report, submitted_by=submitted_by, api_key=api_key)
        raise InputBlocked(
            f"{len(blocked)} of {len(prepared)} inputs were blocked by the project's safety policy; none was created.",
            details={f"jobs.{index}": _blocked_details(report) for index, report in blocked.items()},
        )
    with transaction.atomic():
        quotas.recheck_locked(project, quota_limits, len(prepared))
        jobs = [_create(project, item, report, submitted_by=submitted_by, api_key=api_key, keyed_by=None)
                for item, report in zip(prepared, reports)]
    return BatchSubmission(jobs=jobs, created=True)


# --- evaluation jobs -----------------------------------------------------------------------------------------

def submit_evaluation_jobs(project: Project, requests: Sequence[JobRequest], *, model_version=None,
                           submitted_by=None) -> list[Job]:
    """One job per case of an evaluation run, with ``model_version`` (None: the project's pin), purpose
    ``evaluation``. Call inside the transaction that saves the run: all are saved or none, and each is
    published once it commits.

    Each request is checked as any job is (plugin enabled, input and params, the server's caps: a 400
    naming ``cases.N``), and its input screened: a blocked input is kept as a ``blocked`` job (the run
    counts it as a failed case) instead of refusing the run. The jobs-per-day quota does not count
    evaluation jobs (the reference set's size bounds a run); the compute quota does, and a used-up one
    refuses the run."""
    from atelier_platform.moderation.screening import policy_for

    prepared, problems = _prepare_each(project, requests)
    if problems:
        raise InvalidJobInput("Some cases of the reference set cannot run as jobs; none was started.",
                              details={name.replace("jobs.", "cases.", 1): messages for name, messages in problems.items()})
    limits = quotas.limits_for(project)
    quotas.check_compute(project, limits)
    policy = policy_for(project)
    jobs = []
    for item in prepared:
        report = _screen(project, item, policy)
        if _is_blocked(report):
            jobs.append(_keep_blocked_attempt(project, item, report, submitted_by=submitted_by, api_key=None,
                                              purpose=JobPurpose.EVALUATION, model_version=model_version))
        else:
            jobs.append(_create(project, item, report, submitted_by=submitted_by, api_key=None, keyed_by=None,
                                purpose=JobPurpose.EVALUATION, model_version=model_version))
    return jobs


# --- shared -----------------------------------------------------------------------------------------------

def _keep_blocked_attempt(project, prepared: _Prepared, report, *, submitted_by, api_key,
                          purpose: str = JobPurpose.REQUEST, model_version=None) -> Job:
    """A blocked input is not run, but kept (status ``blocked``) with its report, for the audit."""
    from atelier_platform.moderation import audit

    manifest = prepared.plugin.manifest
    with transaction.atomic():
        job = Job.objects.create(
            project=project, plugin_id=manifest.id, plugin_version=manifest.version,
            resource_class=manifest.resource_class.value, input=prepared.input, params=prepared.params,
            seed=_seed_of(prepared.input, prepared.params), priority=prepared.request.priority, status=JobStatus.BLOCKED,
            submitted_by=submitted_by, api_key=api_key, request_fingerprint=prepared.fingerprint,
            input_screening=report, finished_at=timezone.now(), error_code="input_blocked",
            error_message=f"Blocked by screening: {', '.join(report['flagged'])}.",
            purpose=purpose, model_version=model_version, metadata=prepared.request.metadata,
            background=prepared.request.background,
        )
        actor = f"key:{api_key.prefix}" if api_key else f"user:{getattr(submitted_by, 'pk', '?')}"
        audit.record(project, actor, "input_blocked", job, after={"categories": report["flagged"]})
    return job


def _replay(earlier: Job, request_fingerprint: str) -> Submission:
    # An erased job's fingerprint went with its content: any body replays the tombstone, the same answer for every
    # guess at what it held.
    if earlier.erased_at is None and earlier.request_fingerprint != request_fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different request; use a new key for a new request.",
            details={"job": str(earlier.id)},
        )
    return Submission(job=earlier, created=False)
