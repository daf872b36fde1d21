"""Idempotency-Key records: a duplicate in flight waits, a finished one is replayed.

Why a database row and not a cache key: the row is written with a unique constraint, which
makes exactly one of two concurrent first requests the holder on SQLite and PostgreSQL alike,
across processes and hosts, with no second service to configure or lose (a cache may evict a
lock, and the embedded default's file cache is local to one machine). The row is committed at
once (it is written outside the request's transaction), so other processes see the lock while
the first request still validates, screens and creates. A holder that died leaves a lock that
expires after ``LOCK_S``; the next duplicate then takes it over, and the dead holder's late
writes (if it was only slow) are ignored, because every write names the holder.

Single jobs keep their key on the job row (``Job.idempotency_key``) and replay from it, so their
record is only the in-flight lock and is removed when the request ends. Other endpoints store
their answer in the record and replay it for ``KEEP_FOR``. A batch of jobs keeps its job ids and
no fingerprint once answered (``compared_by_caller``): each job row holds its own request's, which
an erasure of its content clears, and the batch compares a retry with those.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Iterator

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from atelier_platform.jobs.errors import IdempotencyConflict
from atelier_platform.usage.errors import IdempotencyInFlight
from atelier_platform.usage.models import IdempotencyRecord, IdempotencyState

#: a request holding a key longer than this is presumed dead, and a duplicate may take over
LOCK_S = 120
#: answers are replayed this long after the first request
KEEP_FOR = timedelta(hours=24)
#: answers replayed as long as single jobs' keys, which their rows keep (a batch's job ids)
FOR_GOOD = timedelta(days=100 * 365)
#: what a duplicate in flight is told to wait before trying again
RETRY_AFTER_S = 1
#: the fingerprint of an answer whose caller compares a retry's body itself (``Held.complete``)
COMPARED_BY_CALLER = ""


def body_fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, cls=DjangoJSONEncoder, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Held:
    """The caller holds the key (``replay`` None) or gets the stored answer (``replay``)."""

    record: IdempotencyRecord | None
    replay: Any = None
    replay_status: int | None = None
    completed: bool = field(default=False)

    @property
    def is_replay(self) -> bool:
        return self.record is None

    def complete(self, status: int, body: Any, *, keep_for: timedelta = KEEP_FOR,
                 compared_by_caller: bool = False) -> None:
        """Keep the answer for replays for ``keep_for`` (only if this caller still holds the key).
        ``compared_by_caller``: the answer names rows that hold their own requests' fingerprints (a batch's jobs),
        which the caller compares a replay's body with; the record then keeps none, which would outlive an erasure
        of those rows' content and tell a guess at it from a wrong one."""
        assert self.record is not None
        kept = {"fingerprint": COMPARED_BY_CALLER} if compared_by_caller else {}
        IdempotencyRecord.objects.filter(pk=self.record.pk, holder=self.record.holder).update(
            state=IdempotencyState.COMPLETED, response_status=status, **kept,
            response_body=json.loads(json.dumps(body, cls=DjangoJSONEncoder)), expires_at=timezone.now() + keep_for,
        )
        self.completed = True


def _refused(existing: IdempotencyRecord, fingerprint: str) -> Held | None:
    compared_by_caller = existing.state == IdempotencyState.COMPLETED and existing.fingerprint == COMPARED_BY_CALLER
    if existing.fingerprint != fingerprint and not compared_by_caller:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different request; use a new key for a new request.",
            details={"idempotency_key": existing.key},
        )
    if existing.state == IdempotencyState.COMPLETED:
        return Held(record=None, replay=existing.response_body, replay_status=existing.response_status)
    return None


def _acquire(project, scope: str, key: str, fingerprint: str) -> Held:
    sweep_expired(project)
    for _ in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                record = IdempotencyRecord.objects.create(
                    project=project, scope=scope, key=key, fingerprint=fingerprint,
                    locked_until=now + timedelta(seconds=LOCK_S), expires_at=now + KEEP_FOR,
                )
            return Held(record=record)
        except IntegrityError:
            pass
        existing = IdempotencyRecord.objects.filter(project=project, scope=scope, key=key).first()
        if existing is None:
            continue  # released meanwhile: try again
        if existing.expires_at <= now:
            IdempotencyRecord.objects.filter(pk=existing.pk, expires_at__lte=now).delete()
            continue
        replay = _refused(existing, fingerprint)
        if replay is not None:
            return replay
        if existing.locked_until > now:
            raise IdempotencyInFlight(
                "A request with this Idempotency-Key is still being processed; retry after it finishes "
                "to get its answer.",
                retry_after=RETRY_AFTER_S, details={"idempotency_key": key},
            )
        # The holder died (or is far too slow): take the key over, unless another duplicate just did.
        holder = uuid.uuid4()
        taken = IdempotencyRecord.objects.filter(
            pk=existing.pk, state=IdempotencyState.IN_FLIGHT, holder=existing.holder,
        ).update(holder=holder, locked_until=now + timedelta(seconds=LOCK_S))
        if taken:
            existing.holder, existing.locked_until = holder, now + timedelta(seconds=LOCK_S)
            return Held(record=existing)
    raise IdempotencyInFlight("A request with this Idempotency-Key is still being processed; retry shortly.",
                              retry_after=RETRY_AFTER_S, details={"idempotency_key": key})


def _release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, holder=record.holder, state=IdempotencyState.IN_FLIGHT).delete()


@contextmanager
def hold(project, scope: str, key: str, fingerprint: str) -> Iterator[Held]:
    """Hold ``key`` on ``scope`` for the block, or get the stored answer of the first request.

    Raises ``IdempotencyInFlight`` (409, Retry-After) while the first request runs and
    ``IdempotencyConflict`` (422) when the key came with another body (a replay of an answer
    ``compared_by_caller`` is the caller's to refuse). An error inside the block
    releases the key, so the client may fix the request and send it again with the same key;
    a block that does not ``complete`` releases it too.
    """
    held = _acquire(project, scope, key, fingerprint)
    if held.is_replay:
        yield held
        return
    try:
        yield held
    finally:
        if not held.completed:
            _release(held.record)


def sweep_expired(project) -> None:
    """Drop the project's expired answers (before each key is taken; one indexed DELETE)."""
    IdempotencyRecord.objects.filter(project=project, expires_at__lt=timezone.now()).delete()
