"""A conversation of thousands of turns is read a page at a time, by its API and when it goes on; a cursor
keeps its place while replies are placed into the thread; a conversation id no conversation can have is a 400."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest
from django.db.models.signals import post_init

from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.conversations.models import Conversation, ConversationMessage
from atelier_platform.jobs.models import Job, Output
from atelier_platform.moderation import review
from atelier_workers.runtime import JobRunner, ModelCache
from tests.api.helpers import assert_envelope
from tests.support.plugins import EchoChat


@pytest.fixture
def chat_project(project, empty_plugin_registry):
    empty_plugin_registry.register(EchoChat)
    set_plugin_enabled(project, "echo_chat", True)
    return project


def long_thread(project, turns: int) -> Conversation:
    conversation = Conversation.objects.create(project=project, plugin_id="echo_chat")
    ConversationMessage.objects.bulk_create(
        ConversationMessage(conversation=conversation, index=i, role="user" if i % 2 == 0 else "assistant", content=f"turn {i}")
        for i in range(turns)
    )
    return conversation


def say(api, text, conversation_id=None):
    body = {"plugin": "echo_chat", "input": {"messages": [{"role": "user", "content": text}],
                                             **({"conversation_id": conversation_id} if conversation_id else {})}}
    return api.post("/api/v1/jobs/", json.dumps(body), content_type="application/json")


@pytest.mark.django_db
class TestLongThreads:
    def test_a_thread_of_thousands_of_turns_shows_its_latest_and_pages_back_to_its_start(self, chat_project, api):
        conversation = long_thread(chat_project, 1230)

        shown = api.get(f"/api/v1/conversations/{conversation.pk}/").json()

        assert shown["message_count"] == 1230
        assert [m["content"] for m in shown["messages"]] == [f"turn {i}" for i in range(1180, 1230)]  # oldest first
        seen = [m["index"] for m in shown["messages"]]
        url = shown["earlier_messages"]
        while url:
            page = api.get(url).json()
            assert set(page) == {"next", "previous", "results"} and len(page["results"]) <= 50
            seen = [m["index"] for m in reversed(page["results"])] + seen  # each page newest first
            url = page["next"]
        assert seen == list(range(1230))

    def test_the_detail_takes_a_page_size_and_a_short_thread_comes_whole(self, chat_project, api):
        conversation = long_thread(chat_project, 30)
        shown = api.get(f"/api/v1/conversations/{conversation.pk}/").json()
        assert [m["index"] for m in shown["messages"]] == list(range(30)) and shown["earlier_messages"] is None

        few = api.get(f"/api/v1/conversations/{conversation.pk}/?page_size=4").json()
        assert [m["index"] for m in few["messages"]] == [26, 27, 28, 29]
        earlier = api.get(few["earlier_messages"]).json()
        assert [m["index"] for m in earlier["results"]] == [25, 24, 23, 22], "the same page size goes on"

    def test_a_forged_cursor_is_a_clean_400(self, chat_project, api):
        conversation = long_thread(chat_project, 3)
        url = f"/api/v1/conversations/{conversation.pk}/messages/"
        for position in ("[1]", "[1,2,3]", '["1",2]', "[-1,1]", f"[1,{2**70}]", f"[{2**40},1]", "[1.5,1]", "{"):
            cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
            error = assert_envelope(api.get(f"{url}?cursor={cursor}"), 400, "validation_error")
            assert list(error["details"]) == ["cursor"], error
        assert_envelope(api.get(f"/api/v1/conversations/{'-' * 36}/messages/"), 404, "not_found")

    def test_continuing_a_long_thread_reads_only_the_turns_the_job_keeps(self, chat_project, api):
        conversation = long_thread(chat_project, 3000)
        ConversationMessage.objects.filter(conversation=conversation, index=0).update(role="system", content="Be brief.")
        read = []

        def count(sender, instance, **kwargs):
            read.append(instance)

        post_init.connect(count, sender=ConversationMessage)
        try:
            response = say(api, "And now?", str(conversation.pk))
        finally:
            post_init.disconnect(count, sender=ConversationMessage)

        assert response.status_code == 201, response.content
        fed = response.json()["input"]["messages"]
        assert fed[0] == {"role": "system", "content": "Be brief."} and fed[-1]["content"] == "And now?"
        assert [m["content"] for m in fed[1:-1]] == [f"turn {i}" for i in range(2952, 3000)]
        assert len(read) <= 60, f"{len(read)} stored turns read to keep 49 of them"


@pytest.mark.django_db(transaction=True)
def test_the_message_cursor_keeps_its_place_when_a_late_reply_moves_the_turns(chat_project, api):
    """A reply approved after a follow-up is placed before it, and the turns after it move up one place: the
    next page after the follow-up still holds that reply, then the turn it answers, nothing skipped."""
    runner = JobRunner(get_registry(), ModelCache("cpu"))
    first = say(api, "Where is my parcel?").json()
    conversation_id = first["input"]["conversation_id"]
    runner.run(first["id"])  # its reply waits for a reviewer
    say(api, "Hello?", conversation_id)
    url = f"/api/v1/conversations/{conversation_id}/messages/?page_size=1"
    newest = api.get(url).json()
    assert [m["content"] for m in newest["results"]] == ["Hello?"]

    reviewer = review.Reviewer(actor="user:reviewer-1")
    review.decide(review.claim(Output.objects.get(job_id=first["id"]).review, reviewer), reviewer, action="approve")

    earlier = api.get(newest["next"]).json()
    assert [m["content"] for m in earlier["results"]] == ["you said: Where is my parcel?"]
    earliest = api.get(earlier["next"]).json()
    assert [m["content"] for m in earliest["results"]] == ["Where is my parcel?"] and earliest["next"] is None
    back = api.get(earliest["previous"]).json()
    assert [m["content"] for m in back["results"]] == ["you said: Where is my parcel?"]


@pytest.mark.django_db
def test_a_cursor_whose_turn_left_the_thread_goes_on_from_its_place(chat_project, api):
    conversation = long_thread(chat_project, 6)
    page = api.get(f"/api/v1/conversations/{conversation.pk}/messages/?page_size=2").json()
    assert [m["index"] for m in page["results"]] == [5, 4]
    gone = ConversationMessage.objects.get(conversation=conversation, index=4)
    gone.delete()  # as a reply rejected in the audit leaves: the turn after it moves down into its place
    ConversationMessage.objects.filter(conversation=conversation, index=5).update(index=4)

    older = api.get(page["next"]).json()
    assert [m["content"] for m in older["results"]] == ["turn 3", "turn 2"]
    newer = api.get(older["previous"]).json()
    assert [m["content"] for m in newer["results"]] == ["turn 5"]


@pytest.mark.django_db
@pytest.mark.parametrize("conversation_id", ["abc", "x" * 5000, "5d8f7a1e-0000-4000-8000-00000000000Z"])
def test_a_conversation_id_that_no_conversation_has_is_a_400_not_a_500(chat_project, api, conversation_id):
    """The built-in chatbot checks that conversation_id is a UUID; a third-party chat plugin (echo_chat here)
    may take any string, which reached the database as a malformed UUID."""
    api.raise_request_exception = False
    response = say(api, "hi", conversation_id)
    error = assert_envelope(response, 400, "validation_error")
    assert "input.conversation_id" in error["details"]
    assert not Job.objects.exists()
