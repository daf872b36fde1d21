"""Submitting a job: validate against the plugin's schema, save the row, enqueue on commit."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import BaseModel, ValidationError

from atelier_platform.accounts.models import ApiKey, Project
from atelier_platform.catalog.services import enabled_plugin_ids, installed_plugin, project_param_defaults
from atelier_platform.conversations.services import expand_thread, is_conversational, record_turns
from atelier_platform.catalog.registry import get_registry
from atelier_platform.jobs.errors import IdempotencyConflict, InputBlocked, InvalidJobInput, PluginNotEnabled, UnknownPlugin
from atelier_platform.jobs.models import Job, JobStatus
from atelier_platform.jobs.queueing import publish_on_commit

MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class JobRequest:
    plugin_id: str
    input: dict[str, Any]
    params: dict[str, Any]
    priority: int = 5


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False when an Idempotency-Key replayed an earlier submission


def pydantic_error_details(exc: ValidationError, root: str) -> dict[str, list[str]]:
    """Field errors as ``{"input.prompt": ["Field required"]}``, the shape of the API's details."""
    details: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False):
        location = ".".join([root, *map(str, error["loc"])])
        details.setdefault(location, []).append(error["msg"])
    return details


def _validate(model: type[BaseModel], data: dict[str, Any], root: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidJobInput(f"The {root} does not match the plugin's schema.", details=pydantic_error_details(exc, root)) from None


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
    body = json.dumps([request.plugin_id, request.input, request.params, request.priority], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def submit_job(
    project: Project,
    request: JobRequest,
    *,
    submitted_by=None,
    api_key: ApiKey | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    plugin = installed_plugin(request.plugin_id)
    if plugin is None:
        available = sorted(p.manifest.id for p in get_registry().available())
        raise UnknownPlugin(
            f"No plugin named {request.plugin_id!r} is installed.",
            details={"plugin": [f"Choose one of: {', '.join(available) or '(none installed)'}."]},
        )
    if request.plugin_id not in enabled_plugin_ids(project):
        raise PluginNotEnabled(
            f"Plugin {request.plugin_id!r} is not enabled for project {project.slug!r}; a project owner can enable it."
        )
    validated_input = _validate(plugin.Input, request.input, "input")
    # The project's defaults for this plugin (brand voice, banned words, ...) under the caller's params.
    validated_params = _validate(plugin.Params, {**project_param_defaults(project, request.plugin_id), **request.params}, "params")
    normalised_input = validated_input.model_dump(mode="json")
    normalised_params = validated_params.model_dump(mode="json")
    request_fingerprint = fingerprint(request)

    if idempotency_key:
        earlier = Job.objects.filter(project=project, idempotency_key=idempotency_key).first()
        if earlier is not None:
            return _replay(earlier, request_fingerprint)

    manifest = plugin.manifest
    from atelier_sdk.safety import Target

    from atelier_platform.moderation.screening import BLOCK, collect_texts, screen

    input_screening = screen(project, Target.INPUT, collect_texts(normalised_input, "input"))
    if input_screening["decision"] == BLOCK:
        _keep_blocked_attempt(project, plugin, request, normalised_input, normalised_params, input_screening,
                              submitted_by=submitted_by, api_key=api_key, request_fingerprint=request_fingerprint)
        raise InputBlocked(
            "The input was blocked by the project's safety policy.",
            details={"categories": input_screening["flagged"],
                     "fields": sorted({f["field"] for f in input_screening["findings"]})},
        )
    try:
        with transaction.atomic():
            conversation = new_turns = None
            if is_conversational(plugin):
                normalised_input, conversation, new_turns = expand_thread(project, manifest.id, normalised_input)
                _validate(plugin.Input, normalised_input, "input")
            job = Job.objects.create(
                project=project,
                plugin_id=manifest.id,
                plugin_version=manifest.version,
                resource_class=manifest.resource_class.value,
                input=normalised_input,
                params=normalised_params,
                seed=_seed_of(normalised_input, normalised_params),
                priority=request.priority,
                batch_key=batch_key_of(plugin, validated_input, validated_params),
                max_attempts=manifest.max_attempts,
                time_limit_s=manifest.time_limit_s,
                submitted_by=submitted_by,
                api_key=api_key,
                idempotency_key=idempotency_key or None,
                request_fingerprint=request_fingerprint,
                enqueued_at=timezone.now(),
                enqueue_count=1,
                input_screening=input_screening,
            )
            if conversation is not None:
                record_turns(conversation, new_turns, job)
            publish_on_commit(job)
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the other one saved first.
        earlier = Job.objects.filter(project=project, idempotency_key=idempotency_key).first() if idempotency_key else None
        if earlier is None:
            raise
        return _replay(earlier, request_fingerprint)
    return Submission(job=job, created=True)


def _keep_blocked_attempt(project, plugin, request, input_data, params, report, *, submitted_by, api_key, request_fingerprint) -> Job:
    """A blocked input is not run, but kept (status ``blocked``) with its report, for the audit."""
    from atelier_platform.moderation import audit

    with transaction.atomic():
        job = Job.objects.create(
            project=project, plugin_id=plugin.manifest.id, plugin_version=plugin.manifest.version,
            resource_class=plugin.manifest.resource_class.value, input=input_data, params=params,
            seed=_seed_of(input_data, params), priority=request.priority, status=JobStatus.BLOCKED,
            submitted_by=submitted_by, api_key=api_key, request_fingerprint=request_fingerprint,
            input_screening=report, finished_at=timezone.now(), error_code="input_blocked",
            error_message=f"Blocked by screening: {', '.join(report['flagged'])}.",
        )
        actor = f"key:{api_key.prefix}" if api_key else f"user:{getattr(submitted_by, 'pk', '?')}"
        audit.record(project, actor, "input_blocked", job, after={"categories": report["flagged"]})
    return job


def _replay(earlier: Job, request_fingerprint: str) -> Submission:
    if earlier.request_fingerprint != request_fingerprint:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different request; use a new key for a new request.",
            details={"job": str(earlier.id)},
        )
    return Submission(job=earlier, created=False)
