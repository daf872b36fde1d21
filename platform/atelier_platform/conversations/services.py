"""Multi-turn chat: a conversational job's input is the stored thread plus the new turns.

A plugin is conversational when its Input model has ``messages`` and ``conversation_id``
fields (the built-in chatbot has both; a third-party chat plugin gets the same behaviour).
The job row keeps the complete input it ran with, so every job is reproducible on its own.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max

from atelier_platform.accounts.models import Project
from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.jobs.errors import InvalidJobInput
from atelier_platform.jobs.models import DELIVERABLE_REVIEW_STATES

#: messages kept in a job's input when a long thread is continued (oldest turns dropped first)
MAX_THREAD_MESSAGES = 50


def is_conversational(plugin) -> bool:
    fields = plugin.Input.model_fields
    return "messages" in fields and "conversation_id" in fields


def expand_thread(project: Project, plugin_id: str, validated_input: dict[str, Any]) -> tuple[dict[str, Any], Conversation, list[dict], bool]:
    """The input with the stored thread prepended, its conversation, the turns that are new, and
    whether the conversation was created here (without a ``conversation_id``; call this inside the
    job's transaction)."""
    new_turns = list(validated_input["messages"])
    conversation_id = validated_input.get("conversation_id")
    if conversation_id:
        conversation = Conversation.objects.filter(project=project, pk=conversation_id).first()
        if conversation is None:
            raise InvalidJobInput(
                "Unknown conversation.",
                details={"input.conversation_id": ["No conversation with this id in this project; omit it to start one."]},
            )
        history = [{"role": m.role, "content": m.content} for m in conversation.messages.all()]
    else:
        conversation = Conversation.objects.create(project=project, plugin_id=plugin_id)
        history = []
    thread = history + new_turns
    system = [m for m in thread if m["role"] == "system"][:1]
    rest = [m for m in thread if m["role"] != "system"]
    thread = system + rest[-(MAX_THREAD_MESSAGES - len(system)):]
    return {**validated_input, "messages": thread, "conversation_id": str(conversation.pk)}, conversation, new_turns, not conversation_id


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
    a reviewer approves it (receivers.append_approved_reply). Unreviewed or rejected text never
    shows in the thread, nor is it fed back to the model on the next turn."""
    for output in outputs:
        reply = reply_of(output)
        if reply is not None:
            if output.review_state in DELIVERABLE_REVIEW_STATES:
                record_reply(job, reply)
            return


def record_reply(job, reply: str) -> None:
    """The job's reply as the thread's assistant turn, once (a second approval adds nothing)."""
    conversation_id = (job.input or {}).get("conversation_id")
    if not conversation_id or not Conversation.objects.filter(pk=conversation_id, project_id=job.project_id).exists():
        return
    if ConversationMessage.objects.filter(conversation_id=conversation_id, job=job, role="assistant").exists():
        return
    _append(conversation_id, [("assistant", reply)], job)
