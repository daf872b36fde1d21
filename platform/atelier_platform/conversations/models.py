from __future__ import annotations

import uuid

from django.db import models

from atelier_platform.accounts.models import Project


class Conversation(models.Model):
    """A chat thread; a client continues it by passing its id as the job input's conversation_id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="conversations")
    plugin_id = models.CharField(max_length=63)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        # GET /conversations/: a project's threads, newest first
        indexes = [models.Index(fields=["project", "-created_at"], name="conversation_project_newest")]


class ConversationMessage(models.Model):
    """One turn of a thread, at its place (``index``, from 0, without gaps): a turn a caller sent with
    its job, or a job's reply, which names its output and leaves when that output is no longer
    deliverable."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    index = models.PositiveIntegerField()
    role = models.CharField(max_length=20)
    content = models.TextField()
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # A caller may send assistant turns of its own: only this tells a job's reply from them.
    output = models.OneToOneField("jobs.Output", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                  help_text="the output this turn is the reply of; empty for a turn the caller sent")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "index"]
        constraints = [models.UniqueConstraint(fields=["conversation", "index"], name="one_message_per_index")]
