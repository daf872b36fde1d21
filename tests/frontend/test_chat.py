"""The chat view: a thread with the project's chat plugin, replies with their sources and review state."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from atelier_platform.conversations.models import Conversation
from atelier_platform.jobs.models import Job
from atelier_platform.moderation import review
from atelier_platform.moderation.models import ReviewItem

pytestmark = pytest.mark.django_db


def approve(job):
    reviewer = review.Reviewer(actor="user:999")
    item = ReviewItem.objects.get(output__job=job)
    review.decide(review.claim(item, reviewer), reviewer, action="approve")


def test_a_conversation_with_replies_sources_and_review_state(chat_project, signed_in, run_job, django_capture_on_commit_callbacks):
    editor = signed_in(chat_project, "editor")
    assert "Ask something" in editor.get("/chat/").content.decode()

    response = editor.post("/chat/", {"message": "Can I return shoes?"})
    conversation = Conversation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/chat/{conversation.pk}/"
    job = Job.objects.get()
    page = editor.get(response["Location"]).content.decode()
    assert "Can I return shoes?" in page and f'data-job="{job.pk}"' in page  # waiting: the page polls

    with django_capture_on_commit_callbacks(execute=True):
        run_job(job)
    page = editor.get(f"/chat/{conversation.pk}/").content.decode()
    assert "Turn 1: you said &#x27;Can I return shoes?&#x27;." in page
    assert 'class="msg assistant draft"' in page and "Pending review" in page  # not yet in the thread
    assert "<strong>Returns policy</strong>" in page and "faq/returns" in page and "0.87" in page

    with django_capture_on_commit_callbacks(execute=True):
        approve(job)
    page = editor.get(f"/chat/{conversation.pk}/").content.decode()
    assert 'class="msg assistant draft"' not in page and "Approved" in page and "<strong>Returns policy</strong>" in page

    with django_capture_on_commit_callbacks(execute=True):
        editor.post(f"/chat/{conversation.pk}/", {"message": "And sandals?"})
    second = Job.objects.exclude(pk=job.pk).get()
    assert second.input["conversation_id"] == str(conversation.pk) and len(second.input["messages"]) == 3
    with django_capture_on_commit_callbacks(execute=True):
        run_job(second)
    page = editor.get(f"/chat/{conversation.pk}/").content.decode()
    assert "Turn 2: you said &#x27;And sandals?&#x27;." in page


def test_a_thread_page_reads_the_same_number_of_times_for_one_turn_or_five(chat_project, signed_in, run_job,
                                                                            django_capture_on_commit_callbacks):
    editor = signed_in(chat_project, "editor")

    def say(conversation, text):
        with django_capture_on_commit_callbacks(execute=True):
            editor.post(f"/chat/{conversation.pk}/" if conversation else "/chat/", {"message": text})
        job = Job.objects.order_by("-created_at").first()
        with django_capture_on_commit_callbacks(execute=True):
            run_job(job)
            approve(job)
        return Conversation.objects.get()

    def count(conversation):
        url = f"/chat/{conversation.pk}/"
        editor.get(url)
        with CaptureQueriesContext(connection) as queries:
            assert editor.get(url).status_code == 200
        return len(queries)

    conversation = say(None, "one")
    few = count(conversation)
    for text in ("two", "three", "four", "five"):
        say(conversation, text)
    assert count(conversation) == few


def test_without_a_chat_plugin_the_page_says_so_and_other_projects_threads_are_not_found(
        project, other_project, signed_in):
    editor = signed_in(project, "editor")
    assert "No chat plugin is enabled" in editor.get("/chat/").content.decode()
    theirs = Conversation.objects.create(project=other_project, plugin_id="turn_counter")
    assert editor.get(f"/chat/{theirs.pk}/").status_code == 404
