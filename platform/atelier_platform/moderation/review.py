"""The review queue: items for outputs that need people, leases, and decisions.

Every change is a conditional write (two reviewers racing for one item: one wins, the other is
told who holds it) and leaves an audit event. A reviewer is named by an actor string
(``user:<id>`` or ``key:<prefix>``) so people and machine reviewers share one mechanism.
"""

from __future__ import annotations

import difflib
import functools
import json
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from atelier_sdk import editable_paths, protected_changes
from django.db import transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone
from pydantic import ValidationError

from atelier_platform.jobs.errors import JobServiceError
from atelier_platform.jobs.models import Job, Output, ReviewState
from atelier_platform.moderation import audit
from atelier_platform.moderation.models import ReviewAction, ReviewDecision, ReviewItem, ReviewItemState, ReviewMode, SafetyPolicy
from atelier_platform.moderation.screening import BLOCK, REVIEW, policy_for

#: Sent when an output's review state changes: ``output``, ``state`` (for webhooks).
output_review_changed = Signal()
#: Sent when screening flags an output: ``output``, ``categories``.
output_flagged = Signal()


class ReviewError(JobServiceError):
    status_code = 409
    code = "review_conflict"


class LeaseHeld(ReviewError):
    code = "lease_held"


class LeaseRequired(ReviewError):
    code = "lease_required"


class AlreadyDecided(ReviewError):
    code = "review_decided"


class ContentErased(AlreadyDecided):
    """The item's job's content was erased (``jobs.erasure``), which closed the item: not "decided" by anyone, as
    ``AlreadyDecided`` would tell a reviewer who held it; there is nothing left to review, nor to regenerate."""

    code = "content_erased"


def refuse_decided(item: ReviewItem) -> None:
    """Raise what a reviewer is told of an item that is no longer open: erased, or decided."""
    from atelier_platform.jobs.models import Job

    erased_at = Job.objects.filter(outputs__review=item).values_list("erased_at", flat=True).first()
    if erased_at is not None:
        raise ContentErased(f"The content of this item's job was erased ({erased_at.isoformat()}): there is nothing "
                            "left to review. Take the next item.", details={"erased_at": erased_at.isoformat()})
    raise AlreadyDecided("This item was already decided.")


class OwnContent(ReviewError):
    status_code = 403
    code = "own_content"


class InvalidDecision(ReviewError):
    status_code = 400
    code = "validation_error"


class FieldNotEditable(InvalidDecision):
    """An edit that changes what the plugin recorded about the run (token counts, ids, scores, sources...):
    refused whole, each such field named in ``details``, rather than applied with those fields put back, so
    that a reviewer never approves a version other than the one they sent, believing their change was kept."""

    code = "field_not_editable"


#: What ``FieldNotEditable`` says of each protected field an edit changed (the dashboard shows it translated).
NOT_EDITABLE_MESSAGE = "Recorded by the plugin about the run: a reviewer cannot change it. Send it as output.content shows it."


@dataclass(frozen=True)
class Reviewer:
    actor: str  # "user:12" or "key:ab12cd34ef56"
    user_id: int | None = None
    api_key_id: int | None = None


# --- when outputs are stored -------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """Where a new output goes: its first review state, and the review item to open (None: none)."""

    state: str
    decision: str | None
    flagged: list[str]
    item: dict[str, bool] | None


def review_route(report: dict[str, Any], policy: SafetyPolicy, *, input_screening: dict[str, Any]) -> Route:
    """A new output's route from its screening report, its job's input screening and the project's
    policy: blocked; released (sometimes sampled for an audit); or pending, with a review item where
    people must look at it. Where a safety check that should have screened the input or the output
    was not running, nothing is released without a person (fail closed), and its item is flagged."""
    decision = report.get("decision")
    input_flagged = input_screening.get("flagged", [])
    flagged = sorted(set(report.get("flagged", [])) | set(input_flagged))
    if decision == BLOCK:
        return Route(ReviewState.BLOCKED, decision, flagged, None)
    fully_screened = not report.get("not_checked_by") and not input_screening.get("not_checked_by")
    if (policy.review_mode == ReviewMode.RELEASE_AFTER_SCREENING and decision != REVIEW and not input_flagged
            and fully_screened):
        sampled = random.uniform(0, 100) < policy.audit_sample_percent
        return Route(ReviewState.RELEASED, decision, flagged, dict(flagged=False, sampled=True) if sampled else None)
    # Not fully screened counts as flagged: it needs a look (never approved in bulk), like a flagged one.
    return Route(ReviewState.PENDING, decision, flagged, dict(flagged=bool(flagged) or not fully_screened, sampled=False))


def evaluation_route(route: Route) -> Route:
    """The route of an evaluation job's output (``JobPurpose.EVALUATION``): screened like any output, and kept
    blocked when screening blocks it; otherwise pending for good, with no review item and no flagged notice (an
    evaluation run's 500 answers must not flood the queue or the webhooks). Never final content: nobody
    approves it, and the evaluation reads it where it is stored."""
    state = ReviewState.BLOCKED if route.state == ReviewState.BLOCKED else ReviewState.PENDING
    return Route(state, route.decision, route.flagged, None)


def open_reviews(routed: list[tuple[Output, Route]]) -> None:
    """For outputs just saved, each in its ``route.state``: their review items, flagged notices and audit
    records; one statement for the items and one for the records, however many outputs."""
    items, entries = [], []
    for output, route in routed:
        job = output.job
        if route.item is not None:
            items.append(ReviewItem(output=output, project_id=job.project_id, priority=job.priority,
                                    categories=route.flagged, **route.item))
        if route.flagged and not job.is_evaluation:
            transaction.on_commit(functools.partial(output_flagged.send, sender=Output, output=output,
                                                    categories=route.flagged), robust=True)
        after = {"decision": route.decision, "review_state": route.state, "flagged": route.flagged}
        if output.safety.get("not_checked_by"):
            after["not_checked_by"] = output.safety["not_checked_by"]
        entries.append(audit.event(job.project, "screening", "output_screened", output, after=after))
    if items:
        ReviewItem.objects.bulk_create(items)
    audit.record_many(entries)


# --- figures -------------------------------------------------------------------------------------

#: The review states a reviewer's decision leaves an output in. An item is also closed when its job's content is
#: erased (``jobs.erasure``: nothing is left to decide), with no decision and its output's state as it was (pending,
#: or released for an audit sample): nobody decided it, so it is neither approved nor rejected.
DECIDED_BY_A_REVIEWER = (ReviewState.APPROVED, ReviewState.REJECTED)


def decided_by_reviewers(items):
    """Of ``items`` (a queryset of review items), those a reviewer decided: what approval rates and decision counts
    read. Items closed by an erasure are left out; an item decided and erased afterwards stays in (its decision
    was made, and the output keeps the state it gave)."""
    return items.filter(state=ReviewItemState.DECIDED, output__review_state__in=DECIDED_BY_A_REVIEWER)


# --- queue -------------------------------------------------------------------------------------

def queue(project, *, state: str = "pending", plugin: str | None = None, category: str | None = None, flagged: bool | None = None):
    items = ReviewItem.objects.filter(project=project).select_related("output__job")
    if state == "pending":
        items = items.filter(state=ReviewItemState.OPEN)
    elif state == "decided":
        items = items.filter(state=ReviewItemState.DECIDED)
    if plugin:
        items = items.filter(output__job__plugin_id=plugin)
    if flagged is not None:
        items = items.filter(flagged=flagged)
    if category:
        # JSON containment is not portable to SQLite; categories are few, so filter the ids in Python
        ids = [pk for pk, cats in items.values_list("pk", "categories") if category in (cats or [])]
        items = items.filter(pk__in=ids)
    return items.order_by("-priority", "created_at", "pk")


def queue_position(project, item_id: int | None, **filters) -> tuple[int | None, int]:
    """Where a queue page stands: the place of ``item_id`` among the pending items (``queue``'s order and
    ``filters``), counted from 1, or None where it is not pending there (decided, another project's, none
    shown), and how many items are pending there."""
    pending = queue(project, state="pending", **filters)
    total = pending.count()
    shown = pending.filter(pk=item_id).values("priority", "created_at").first() if item_id is not None else None
    if shown is None:
        return None, total
    priority, created_at = shown["priority"], shown["created_at"]
    ahead = pending.filter(Q(priority__gt=priority) | Q(priority=priority, created_at__lt=created_at)
                           | Q(priority=priority, created_at=created_at, pk__lt=item_id)).count()
    return ahead + 1, total


def bulk_approvable(project, reviewer: Reviewer, policy: SafetyPolicy, *, plugin: str = "", counted_at=None):
    """Open, unflagged, not audit-sampled items nobody else holds (and, where the policy forbids
    self-approval, not the reviewer's own jobs), of ``plugin`` where the queue is filtered on one, and
    created by ``counted_at`` where given: those one click may approve together."""
    items = ReviewItem.objects.filter(project=project, state=ReviewItemState.OPEN, flagged=False, sampled=False).filter(
        Q(lease_holder="") | Q(lease_expires_at__lt=timezone.now()) | Q(lease_holder=reviewer.actor))
    if policy.forbid_self_approval and reviewer.user_id is not None:
        items = items.exclude(output__job__submitted_by_id=reviewer.user_id)
    if plugin:
        items = items.filter(output__job__plugin_id=plugin)
    if counted_at is not None:
        items = items.filter(created_at__lte=counted_at)
    return items.order_by("-priority", "created_at", "pk")


# --- leases --------------------------------------------------------------------------------------

def claim(item: ReviewItem, reviewer: Reviewer) -> ReviewItem:
    """Hold the item for this reviewer (or renew their lease). Another reviewer's live lease: 409."""
    policy = policy_for(item.project)
    now = timezone.now()
    renewing = item.lease_holder == reviewer.actor and item.lease_expires_at and item.lease_expires_at > now
    claimable = ReviewItem.objects.filter(pk=item.pk, state=ReviewItemState.OPEN).filter(
        Q(lease_holder="") | Q(lease_expires_at__lt=now) | Q(lease_holder=reviewer.actor))
    # Twice: the holder may let the item go (release, a first approval) between our update and our read; so may this
    # reviewer's own other page (a queue page giving its item back as it goes away), which left the item unheld
    # and the claim answering a lease it no longer had (a 500, as its lease time was gone).
    for _ in range(2):
        updated = claimable.update(lease_holder=reviewer.actor, lease_expires_at=now + timedelta(seconds=policy.lease_seconds))
        item.refresh_from_db()
        if updated and item.lease_holder == reviewer.actor and item.lease_expires_at is not None:
            break
        if item.state == ReviewItemState.DECIDED:
            refuse_decided(item)
        if item.lease_expires_at is not None and item.lease_expires_at >= now:
            raise LeaseHeld(
                f"Another reviewer holds this item until {item.lease_expires_at.isoformat()}.",
                details={"lease_expires_at": item.lease_expires_at.isoformat()},
            )
    else:
        raise LeaseHeld("Other reviewers are claiming and releasing this item; try again.")
    audit.record(item.project, reviewer.actor, "lease_renewed" if renewing else "lease_claimed", item,
                 after={"lease_expires_at": item.lease_expires_at.isoformat()})
    return item


def claim_next(project, reviewer: Reviewer, **filters) -> ReviewItem | None:
    """The first pending item nobody else holds and this reviewer has not approved yet (one waiting for a
    second reviewer), claimed for this reviewer."""
    now = timezone.now()
    candidates = queue(project, **filters).filter(Q(lease_holder="") | Q(lease_expires_at__lt=now) | Q(lease_holder=reviewer.actor))
    lost = 0
    for item in candidates.iterator(chunk_size=50):
        if reviewer.actor in item.approvals:
            continue
        try:
            return claim(item, reviewer)
        except (LeaseHeld, AlreadyDecided):
            lost += 1  # someone was faster; try the next one, for a while
            if lost >= 20:
                break
    return None


def release(item: ReviewItem, reviewer: Reviewer, *, lease_expires_at=None) -> ReviewItem:
    """Let the item go. ``lease_expires_at``: only the lease that ends then, the one the caller knows of. A queue
    page gives its item back as it goes away, and the same reviewer's next page (a reload, another language) may
    already have claimed the item again, with a lease ending later: that lease is not the one given back."""
    held = ReviewItem.objects.filter(pk=item.pk, lease_holder=reviewer.actor, state=ReviewItemState.OPEN)
    if lease_expires_at is not None:
        held = held.filter(lease_expires_at=lease_expires_at)
    updated = held.update(lease_holder="", lease_expires_at=None)
    if not updated:
        raise LeaseRequired("You do not hold this item." if lease_expires_at is None else
                            "You do not hold this item with the lease you name (it was renewed or claimed since).")
    item.refresh_from_db()
    audit.record(item.project, reviewer.actor, "lease_released", item)
    return item


# --- decisions -------------------------------------------------------------------------------------

def content_diff(original: Any, edited: Any) -> str:
    a = json.dumps(original, ensure_ascii=False, indent=1, sort_keys=True).splitlines()
    b = json.dumps(edited, ensure_ascii=False, indent=1, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(a, b, "original", "edited", lineterm=""))


def _people(user_id: int | None, api_key_id: int | None) -> set[tuple[str, int]]:
    """Who stands behind an actor: the person, or the key and the person who made it (a key made in the
    dashboard or through the API is its maker's: approving with it is approving as them)."""
    from atelier_platform.accounts.models import ApiKey

    people = set()
    if user_id is not None:
        people.add(("user", user_id))
    if api_key_id is not None:
        people.add(("key", api_key_id))
        maker = ApiKey.objects.filter(pk=api_key_id).values_list("created_by_id", flat=True).first()
        if maker is not None:
            people.add(("user", maker))
    return people


def _submitted_by_reviewer(job: Job, reviewer: Reviewer) -> bool:
    return bool(_people(job.submitted_by_id, job.api_key_id) & _people(reviewer.user_id, reviewer.api_key_id))


@transaction.atomic
def decide(item: ReviewItem, reviewer: Reviewer, *, action: str, reason: str = "", comment: str = "", content: Any = None) -> ReviewItem:
    # The job's row first, as the worker storing the job's outputs and an erasure of its content lock it before they
    # write its outputs and review items: a decision and an erasure take turns (the decision then finds the item
    # decided; the erasure, the regeneration it queued) instead of each holding a row the other waits for, a deadlock
    # that failed one of them.
    job_id = ReviewItem.objects.filter(pk=item.pk).values_list("output__job_id", flat=True).first()
    list(Job.objects.select_for_update().filter(pk=job_id).values_list("pk", flat=True))
    item = ReviewItem.objects.select_for_update().select_related("output__job__project").get(pk=item.pk)
    output, job = item.output, item.output.job
    policy = policy_for(job.project)
    if item.state == ReviewItemState.DECIDED:
        refuse_decided(item)
    if item.lease_holder != reviewer.actor or not item.lease_expires_at or item.lease_expires_at <= timezone.now():
        raise LeaseRequired("Claim the item first (POST .../claim/); your lease is missing or expired.")
    if action in (ReviewAction.APPROVE, ReviewAction.EDIT) and policy.forbid_self_approval and _submitted_by_reviewer(job, reviewer):
        raise OwnContent("You submitted this job; another reviewer must approve its content.")
    if action == ReviewAction.REJECT and reason not in policy.reasons:
        raise InvalidDecision("Choose a reason.", details={"reason": [f"One of: {', '.join(policy.reasons)}."]})
    before = {"review_state": output.review_state, "content": output.content}
    decision = ReviewDecision(item=item, action=action, reason=reason, comment=comment, decided_by=reviewer.actor,
                              decided_by_user_id=reviewer.user_id)

    if action == ReviewAction.EDIT:
        decision.original_content, decision.edited_content = output.content, _validated_edit(job, output.content, content)
        output.content = decision.edited_content
    if action in (ReviewAction.APPROVE, ReviewAction.EDIT):
        if reviewer.actor in item.approvals:
            raise InvalidDecision("You already approved this item; a second reviewer must confirm it.")
        item.approvals = [*item.approvals, reviewer.actor]
        needed = 2 if (item.flagged and policy.second_review_for_flagged) else 1
        decision.save()
        if len(item.approvals) < needed:
            item.lease_holder, item.lease_expires_at = "", None
            item.save(update_fields=["approvals", "lease_holder", "lease_expires_at"])
            output.save(update_fields=["content"])
            audit.record(job.project, reviewer.actor, "approval_recorded", item, before=before,
                         after={"approvals": item.approvals, "needed": needed})
            return item
        new_state = ReviewState.APPROVED
    elif action == ReviewAction.REJECT:
        decision.save()
        new_state = ReviewState.REJECTED
    elif action == ReviewAction.REGENERATE:
        decision.regenerated_job = _regenerate(job, output, reviewer, comment)
        decision.save()
        new_state = ReviewState.REJECTED
    else:
        raise InvalidDecision("Unknown action.", details={"action": [f"One of: {', '.join(ReviewAction.values)}."]})

    output.review_state = new_state
    output.save(update_fields=["review_state", "content"])
    item.state, item.decided_at, item.lease_holder, item.lease_expires_at = ReviewItemState.DECIDED, timezone.now(), "", None
    item.save(update_fields=["state", "decided_at", "lease_holder", "lease_expires_at", "approvals"])
    audit.record(job.project, reviewer.actor, f"review_{action}", output, before=before,
                 after={"review_state": new_state, "content": output.content, "reason": reason, "comment": comment,
                        "regenerated_job": str(decision.regenerated_job_id) if decision.regenerated_job_id else None})
    transaction.on_commit(lambda: output_review_changed.send(sender=Output, output=output, state=new_state), robust=True)
    return item


def _validated_edit(job: Job, original: Any, content: Any) -> Any:
    """The edited content as the plugin's output model writes it: valid against its schema, and changed only in
    the fields the plugin marks editable (``atelier_sdk.editable``); everything else it recorded about the run
    (token counts, which the usage report bills, ids, scores, sources) must come back as it is."""
    from atelier_platform.catalog.services import installed_plugin

    if not isinstance(content, dict):
        raise InvalidDecision("An edit needs the new content.", details={"content": ["An object matching the plugin's output schema."]})
    plugin = installed_plugin(job.plugin_id)
    if plugin is None:
        # Without the plugin there is no schema to check and no knowing which fields are its bookkeeping.
        raise InvalidDecision(
            f"The plugin {job.plugin_id!r} is not installed here, so its outputs cannot be edited: approve, reject "
            "or regenerate instead, or install the plugin again.",
            details={"content": [f"Plugin {job.plugin_id!r} is not installed."]})
    try:
        edited = plugin.Output.model_validate(content).model_dump(mode="json")
    except ValidationError as exc:
        from atelier_platform.jobs.submission import pydantic_error_details

        raise InvalidDecision("The edited content does not match the plugin's output schema.",
                              details=pydantic_error_details(exc, "content")) from None
    try:  # the stored output as the model writes it now (defaults filled in), to compare like with like
        original = plugin.Output.model_validate(original).model_dump(mode="json")
    except ValidationError:
        pass  # stored by an older version of the plugin: compared as stored
    changed = [f"content.{path}" if path else "content" for path in protected_changes(plugin.Output, original, edited)]
    if changed:
        allowed = editable_paths(plugin.Output)
        may = (f"A reviewer may change only {', '.join(allowed)}" if allowed
               else f"The plugin {job.plugin_id!r} marks no field of its outputs as editable: approve, reject or regenerate instead")
        raise FieldNotEditable(
            f"{may}; the other fields record the run. Changed: {', '.join(changed)}.",
            details={path: [NOT_EDITABLE_MESSAGE] for path in changed})
    return edited


def _regenerate(job: Job, output: Output, reviewer: Reviewer, note: str) -> Job:
    """A new job with the same input and a new seed, checked as any new job is (``prepare_again``: a
    plugin installed and enabled for the project, input and params valid for it as installed now) and
    within the project's quotas (429 ``quota_exceeded``); refused, the decision is not recorded."""
    from atelier_platform.jobs.queueing import publish_on_commit
    from atelier_platform.jobs.submission import batch_key_of, prepare_again
    from atelier_platform.usage import quotas

    prepared = prepare_again(job)
    quotas.recheck_locked(job.project, quotas.check_submission(job.project, 1), 1)
    manifest = prepared.plugin.manifest
    new_job = Job.objects.create(
        project=job.project, plugin_id=job.plugin_id, plugin_version=manifest.version,
        resource_class=manifest.resource_class.value, input=prepared.input, params=prepared.params,
        batch_key=batch_key_of(prepared.plugin, prepared.validated_input, prepared.validated_params),
        seed=random.randrange(2**31 - 1), priority=job.priority, max_attempts=manifest.max_attempts,
        time_limit_s=manifest.time_limit_s, submitted_by=job.submitted_by, api_key=job.api_key,
        regenerated_from=output, review_note=note, enqueued_at=timezone.now(), enqueue_count=1,
        webhook=job.webhook,  # the app that named it hears of the replacement too
        metadata=dict(job.metadata or {}),  # the caller's pairs belong to the request, which the new job answers again
    )
    publish_on_commit(new_job)
    return new_job
