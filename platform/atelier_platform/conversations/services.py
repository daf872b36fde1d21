"""Multi-turn chat: a conversational job's input is the stored thread plus the new turns.

A plugin is conversational when its Input model has ``messages`` and ``conversation_id``
fields (the built-in chatbot has both; a third-party chat plugin gets the same behaviour).
The job row keeps the complete input it ran with, so every job is reproducible on its own.
"""

from __future__ import annotations

import functools
import typing
import uuid
from typing import Any

from django.db import transaction
from django.db.models import F, Func, IntegerField, Max, OuterRef, QuerySet, Subquery
from pydantic import TypeAdapter, ValidationError

from atelier_platform.accounts.models import Project
from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.jobs.errors import InvalidJobInput
from atelier_platform.jobs.models import DELIVERABLE_REVIEW_STATES, Output

#: messages kept in a job's input when a long thread is continued (oldest turns dropped first)
MAX_THREAD_MESSAGES = 50


def is_conversational(plugin) -> bool:
    fields = plugin.Input.model_fields
    return "messages" in fields and "conversation_id" in fields


def expand_thread(project: Project, plugin, validated_input: dict[str, Any]) -> tuple[dict[str, Any], Conversation, list[dict], bool]:
    """The input with the stored thread prepended, its conversation, the turns that are new, and
    whether the conversation was created here (without a ``conversation_id``; call this inside the
    job's transaction)."""
    new_turns = list(validated_input["messages"])
    conversation_id = validated_input.get("conversation_id")
    if conversation_id:
        # Locked until the job's turns are stored: a reply placed meanwhile would be in the thread but
        # not in this job's input.
        conversation = (Conversation.objects.select_for_update()
                        .filter(project=project, pk=_uuid_or_none(conversation_id)).first())
        if conversation is None:
            raise InvalidJobInput(
                "Unknown conversation.",
                details={"input.conversation_id": ["No conversation with this id in this project; omit it to start one."]},
            )
        # only what the job can keep is read and checked
        history = turns_the_plugin_accepts(plugin, _kept(_turns_a_job_may_keep(conversation)))
    else:
        conversation = Conversation.objects.create(project=project, plugin_id=plugin.manifest.id)
        history = []
    thread = _kept(history + new_turns)
    return {**validated_input, "messages": thread, "conversation_id": str(conversation.pk)}, conversation, new_turns, not conversation_id


def with_turn_counts(conversations: QuerySet) -> QuerySet:
    """``conversations``, each with ``message_count``: its turns, counted for each thread a page returns (a correlated
    subquery the database runs after the page's LIMIT), not by grouping every turn of the project on every page,
    which read them all (half a second for 400,000 turns, and growing with the project) to show fifty."""
    turns = (ConversationMessage.objects.filter(conversation=OuterRef("pk")).order_by()
             .annotate(n=Func(F("pk"), function="COUNT")).values("n"))
    return conversations.annotate(message_count=Subquery(turns, output_field=IntegerField()))


def first_system_turn(project: Project, conversation_id) -> str | None:
    """The system message a continued thread keeps (``_kept``: its first not erased), None when it has none (its
    instructions were erased with their job: new ones may be sent) or there is no such conversation in the project.
    A later system message would not reach the model: a caller who sends other instructions must be told so rather
    than be ignored."""
    turn = (not_erased(ConversationMessage.objects.filter(conversation__project=project,
                                                          conversation_id=_uuid_or_none(conversation_id), role="system"))
            .order_by("index").first())
    return turn.content if turn else None


def not_erased(turns):
    """The turns (a queryset of messages) whose job's content was not erased: an erased job's turns keep their
    places with no text (``jobs.erasure``), and no model is given them, neither as empty turns nor as the thread's
    instructions. A turn a caller sent without a job stays."""
    return turns.filter(job__erased_at__isnull=True)


def _uuid_or_none(value) -> uuid.UUID | None:
    """A conversation id as the database takes it. A plugin may type ``conversation_id`` as any string (the
    built-in chatbot checks it is a UUID; a third-party one need not): anything else names no conversation,
    rather than reaching the database as a malformed UUID."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def with_erasure(turns):
    """A thread's turns (a queryset of messages) each with when its job's content was erased (``job_erased_at``,
    None while kept), for the API to say which turns were erased: read with them (one join), not a query per turn,
    nor the jobs' whole rows."""
    return turns.annotate(job_erased_at=F("job__erased_at"))


def _turns_a_job_may_keep(conversation: Conversation) -> list[dict]:
    """The stored turns ``_kept`` can keep, read without the rest: its first system turn and its latest
    others, of those not erased (``not_erased``). Each new turn of a thread of thousands reads the few rows a
    job keeps, not the whole thread."""
    turns = not_erased(conversation.messages.all())
    system = list(turns.filter(role="system").order_by("index")[:1])
    latest = list(turns.exclude(role="system").order_by("-index")[:MAX_THREAD_MESSAGES])
    return [{"role": m.role, "content": m.content} for m in sorted(system + latest, key=lambda m: m.index)]


def latest_turns(turns, size: int, *, before: int | None = None) -> tuple[list[ConversationMessage], bool]:
    """Up to ``size`` turns of a thread (a queryset of its messages), oldest first: its latest, or the latest
    before index ``before``; and whether it has earlier ones. A thread of thousands of turns is shown a
    window at a time, never read whole."""
    if before is not None:
        turns = turns.filter(index__lt=before)
    window = list(turns.order_by("-index")[: size + 1])
    return window[:size][::-1], len(window) > size


def _kept(thread: list[dict]) -> list[dict]:
    """What of a long thread a job's input keeps: its first system turn and its latest other turns."""
    system = [m for m in thread if m["role"] == "system"][:1]
    rest = [m for m in thread if m["role"] != "system"]
    return system + rest[-(MAX_THREAD_MESSAGES - len(system)):]


@functools.lru_cache(maxsize=64)
def _message_schema(input_model) -> TypeAdapter | None:
    """A validator of one item of the plugin's ``messages`` list (None: the field is not a plain list)."""
    annotation = input_model.model_fields["messages"].annotation
    item_types = typing.get_args(annotation)
    if typing.get_origin(annotation) is not list or len(item_types) != 1:
        return None
    return TypeAdapter(item_types[0])


def turns_the_plugin_accepts(plugin, turns: list[dict]) -> list[dict]:
    """Stored turns as the plugin's input schema takes them: one too long is cut to the schema's limit,
    one refused for another reason (an empty reply, a role the plugin does not know) is left out. The
    thread holds what was said; a turn the caller did not send in this request must never be the
    reason the request is refused."""
    schema = _message_schema(plugin.Input)
    if schema is None:
        return turns
    accepted = []
    for turn in turns:
        try:
            schema.validate_python(turn)
        except ValidationError as exc:
            errors = exc.errors()
            if not all(e["type"] == "string_too_long" and e["loc"] == ("content",) for e in errors):
                continue
            turn = {**turn, "content": turn["content"][:errors[0]["ctx"]["max_length"]]}
        accepted.append(turn)
    return accepted


def _append(conversation_id, turns: list[tuple[str, str]], job=None, *, is_new: bool = False) -> None:
    """Add turns (role, content) at the end of a thread. A thread created in the caller's transaction
    is empty and seen by no one else: its turns are numbered from 0 without locking or counting."""
    if not turns:
        return
    with transaction.atomic(savepoint=False):
        first = 0
        if not is_new:
            conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
            last = conversation.messages.aggregate(last=Max("index"))["last"]
            first = 0 if last is None else last + 1
            conversation.save(update_fields=["updated_at"])
        ConversationMessage.objects.bulk_create([
            ConversationMessage(conversation_id=conversation_id, index=first + offset, role=role, content=content, job=job)
            for offset, (role, content) in enumerate(turns)
        ])


def record_turns(conversation: Conversation, turns: list[dict], job, *, is_new: bool = False) -> None:
    """The caller's new turns, in order; ``is_new``: the conversation was created in this transaction."""
    _append(conversation.pk, [(turn["role"], turn["content"]) for turn in turns], job, is_new=is_new)


def reply_of(output) -> str | None:
    reply = output.content.get("reply") if isinstance(output.content, dict) else None
    return reply if isinstance(reply, str) else None


def record_released_reply(job, outputs) -> None:
    """A chat job's reply joins its thread once it may be delivered: here, when released after
    screening (called in the transaction that stores it); under review before release, only when
    a reviewer approves it (receivers.follow_review). Unreviewed or rejected text never shows in
    the thread, nor is it fed back to the model on the next turn: a reply rejected in the audit
    after its release leaves the thread."""
    for output in outputs:
        if reply_of(output) is not None:
            if output.review_state in DELIVERABLE_REVIEW_STATES:
                place_reply(output)
            return


def place_reply(output) -> None:
    """Make the thread hold the output's reply as its review state now allows: deliverable and not
    blank, the assistant turn right after the turns its job sent, with the text as it stands now (a
    reviewer's edit included); otherwise no turn at all. Later turns shift, under the thread's lock."""
    job = output.job
    conversation_id = (job.input or {}).get("conversation_id")
    if not conversation_id:
        return
    with transaction.atomic(savepoint=False):
        conversation = Conversation.objects.select_for_update().filter(pk=conversation_id, project_id=job.project_id).first()
        if conversation is None:
            return
        output = Output.objects.get(pk=output.pk)  # its state and text now, read under the thread's lock
        reply = reply_of(output)
        in_thread = output.review_state in DELIVERABLE_REVIEW_STATES and reply is not None and reply.strip() != ""
        turn = conversation.messages.filter(output=output).first()
        if turn is not None and not in_thread:
            turn.delete()
            _shift(conversation.pk, turn.index + 1, -1)
        elif turn is not None and turn.content != reply:
            ConversationMessage.objects.filter(pk=turn.pk).update(content=reply)
        elif turn is None and in_thread:
            index = _reply_index(conversation, job)
            _shift(conversation.pk, index, +1)
            ConversationMessage.objects.create(conversation=conversation, index=index, role="assistant", content=reply,
                                               job=job, output=output)
        else:
            return
        conversation.save(update_fields=["updated_at"])


def _reply_index(conversation: Conversation, job) -> int:
    """Right after the last turn the job's request sent; a regenerated job answers its original's turns.
    A follow-up sent while the reply waited for review stays after it."""
    seen = set()
    while job is not None and job.pk not in seen:
        seen.add(job.pk)
        last = conversation.messages.filter(job=job, output__isnull=True).aggregate(last=Max("index"))["last"]
        if last is not None:
            return last + 1
        job = job.regenerated_from.job if job.regenerated_from_id else None
    last = conversation.messages.aggregate(last=Max("index"))["last"]
    return 0 if last is None else last + 1


def _shift(conversation_id, first_index: int, by: int) -> None:
    """Move the turns from ``first_index`` on by ``by`` places (+1 opens a place, -1 closes one). The
    unique (conversation, index) constraint is checked row by row, so one ``index + by`` update would
    collide with a neighbour on the way: the turns are parked above every index first. Hold the lock."""
    later = ConversationMessage.objects.filter(conversation_id=conversation_id, index__gte=first_index)
    last = later.aggregate(last=Max("index"))["last"]
    if last is None:
        return
    parking = last + 2  # parked indexes are above all old and new ones
    later.update(index=F("index") + parking)
    ConversationMessage.objects.filter(conversation_id=conversation_id, index__gte=first_index + parking).update(
        index=F("index") - parking + by)
