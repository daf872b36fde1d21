"""A stored conversation holds only replies that may be delivered, each right after the turns it
answers, whatever order reviews and follow-ups come in; and a thread never makes the caller's next
turn fail because of a turn the caller did not send."""

from __future__ import annotations

import json
from typing import Literal

import pytest
from atelier_sdk import OutputItem
from pydantic import BaseModel, ConfigDict, Field

from atelier_platform.catalog.registry import get_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.conversations.models import ConversationMessage
from atelier_platform.conversations.services import first_system_turn
from atelier_platform.jobs import erasure
from atelier_platform.jobs.models import Job, Output
from atelier_platform.moderation import review
from atelier_platform.moderation.policies import update_policy
from atelier_platform.moderation.screening import policy_for
from atelier_workers.runtime import JobRunner, ModelCache
from tests.support.plugins import EchoChat, EchoChatInput, EchoChatOutput

pytestmark = pytest.mark.django_db(transaction=True)

SILENCE = "Say nothing."


class QuietEchoChat(EchoChat):
    """Echo chat that answers nothing at all when asked to, as a real model may (a stop string that
    matches its first token, an end-of-turn token first)."""

    def generate(self, batch, context):
        return [[OutputItem(EchoChatOutput(reply="", turns=len(request.input.messages), sources=[]))]
                if request.input.messages[-1].content == SILENCE else outputs
                for request, outputs in zip(batch, super().generate(batch, context))]


@pytest.fixture
def chat_project(project, empty_plugin_registry):
    empty_plugin_registry.register(QuietEchoChat)
    set_plugin_enabled(project, "echo_chat", True)
    return project


@pytest.fixture
def audited(chat_project):
    """Release after screening, with every released reply sampled for a reviewer's audit."""
    update_policy(chat_project, "test", {"review_mode": "release_after_screening", "audit_sample_percent": 100})
    return chat_project


@pytest.fixture
def run():
    runner = JobRunner(get_registry(), ModelCache("cpu"))

    def run_job(job_id):
        assert runner.run(job_id) == "succeeded"

    return run_job


def say(api, text, conversation_id=None):
    """Sends one user turn; answers the job as the API shows it."""
    body = {"plugin": "echo_chat", "input": {"messages": [{"role": "user", "content": text}],
                                             **({"conversation_id": conversation_id} if conversation_id else {})}}
    response = api.post("/api/v1/jobs/", json.dumps(body), content_type="application/json")
    assert response.status_code == 201, response.content
    return response.json()


def thread(api, conversation_id):
    messages = api.get(f"/api/v1/conversations/{conversation_id}/").json()["messages"]
    assert [m["index"] for m in messages] == list(range(len(messages))), messages
    return [(m["role"], m["content"]) for m in messages]


def fed(job):
    """What the model is given: the messages of the job's stored input."""
    return [(m["role"], m["content"]) for m in Job.objects.get(pk=job["id"]).input["messages"]]


def decide(job, action, **fields):
    reviewer = review.Reviewer(actor="user:reviewer-1")
    item = review.claim(Output.objects.get(job_id=job["id"]).review, reviewer)
    if action == "reject":
        fields.setdefault("reason", policy_for(item.project).reasons[0])
    return review.decide(item, reviewer, action=action, **fields)


def edited(job, reply):
    content = Output.objects.get(job_id=job["id"]).content
    return {**content, "reply": reply}


class TestAuditAfterRelease:
    def test_a_released_reply_rejected_in_the_audit_leaves_the_thread_and_the_models_input(self, audited, api, run):
        first = say(api, "Where is my parcel?")
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])
        assert thread(api, conversation_id) == [("user", "Where is my parcel?"), ("assistant", "you said: Where is my parcel?")]
        follow_up = say(api, "Hello?", conversation_id)  # asked while the audit was still to come

        decide(first, "reject")

        assert thread(api, conversation_id) == [("user", "Where is my parcel?"), ("user", "Hello?")]
        run(follow_up["id"])
        next_turn = say(api, "Anyone?", conversation_id)
        assert "you said: Where is my parcel?" not in [content for _, content in fed(next_turn)]

    def test_a_reviewers_edit_in_the_audit_replaces_the_released_text(self, audited, api, run):
        first = say(api, "Where is my parcel?")
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])

        decide(first, "edit", content=edited(first, "It ships tomorrow."))

        assert thread(api, conversation_id) == [("user", "Where is my parcel?"), ("assistant", "It ships tomorrow.")]
        second = say(api, "Thanks!", conversation_id)
        assert fed(second) == [("user", "Where is my parcel?"), ("assistant", "It ships tomorrow."), ("user", "Thanks!")]

    def test_the_callers_own_assistant_turn_is_not_taken_for_the_reply(self, audited, api, run):
        turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
                 {"role": "user", "content": "Price?"}]
        response = api.post("/api/v1/jobs/", json.dumps({"plugin": "echo_chat", "input": {"messages": turns}}),
                            content_type="application/json")
        first = response.json()
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])
        assert thread(api, conversation_id)[-1] == ("assistant", "you said: Price?")

        decide(first, "reject")

        assert thread(api, conversation_id) == [("user", "Hi"), ("assistant", "Hello! How can I help?"), ("user", "Price?")]


class TestRepliesThatCannotBeFedBack:
    def test_an_empty_reply_does_not_join_the_thread_and_the_conversation_goes_on(self, audited, api, run):
        first = say(api, SILENCE)
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])
        assert Output.objects.get(job_id=first["id"]).content["reply"] == ""

        assert thread(api, conversation_id) == [("user", SILENCE)]
        second = say(api, "Hello?", conversation_id)
        assert fed(second) == [("user", SILENCE), ("user", "Hello?")]

    def test_a_thread_that_already_holds_an_empty_reply_goes_on_without_it(self, chat_project, api):
        first = say(api, "Where is my parcel?")
        conversation_id = first["input"]["conversation_id"]
        # As threads stored before blank replies were left out hold them.
        ConversationMessage.objects.create(conversation_id=conversation_id, index=1, role="assistant", content="",
                                           job_id=first["id"])

        second = say(api, "Hello?", conversation_id)

        assert fed(second) == [("user", "Where is my parcel?"), ("user", "Hello?")]

    def test_a_reply_edited_to_nothing_does_not_join_the_thread(self, chat_project, api, run):
        first = say(api, "Where is my parcel?")
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])

        decide(first, "edit", content=edited(first, ""))

        assert thread(api, conversation_id) == [("user", "Where is my parcel?")]
        say(api, "Hello?", conversation_id)

    def test_a_reply_edited_past_the_plugins_message_limit_is_kept_and_fed_back_cut_to_it(self, chat_project, api, run):
        long_reply = "Our returns policy, in full. " + "x" * 5000  # echo_chat takes messages up to 4000 characters
        first = say(api, "What is your returns policy?")
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])

        decide(first, "edit", content=edited(first, long_reply))

        assert thread(api, conversation_id)[-1] == ("assistant", long_reply)
        second = say(api, "Thanks!", conversation_id)
        assert fed(second) == [("user", "What is your returns policy?"), ("assistant", long_reply[:4000]), ("user", "Thanks!")]


class TestOrderUnderReviewBeforeRelease:
    def test_a_reply_approved_after_a_follow_up_is_placed_before_the_follow_up(self, chat_project, api, run):
        first = say(api, "Where is my parcel?")
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])
        second = say(api, "And can I return it?", conversation_id)  # the first reply still waits for a reviewer
        run(second["id"])

        decide(first, "approve")
        assert thread(api, conversation_id) == [
            ("user", "Where is my parcel?"), ("assistant", "you said: Where is my parcel?"), ("user", "And can I return it?"),
        ]
        decide(second, "approve")
        expected = [
            ("user", "Where is my parcel?"), ("assistant", "you said: Where is my parcel?"),
            ("user", "And can I return it?"), ("assistant", "you said: And can I return it?"),
        ]
        assert thread(api, conversation_id) == expected
        third = say(api, "Thanks!", conversation_id)
        assert fed(third) == [*expected, ("user", "Thanks!")]

    def test_a_regenerated_reply_takes_the_place_of_the_one_it_replaces(self, chat_project, api, run):
        first = say(api, "Where is my parcel?")
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])
        say(api, "Hello?", conversation_id)

        regenerated = {"id": str(decide(first, "regenerate").decisions.get().regenerated_job_id)}
        run(regenerated["id"])
        decide(regenerated, "approve")

        assert thread(api, conversation_id) == [
            ("user", "Where is my parcel?"), ("assistant", "you said: Where is my parcel?"), ("user", "Hello?"),
        ]
        # the same words: that they are the regenerated job's reply, not the rejected one's, is in the turn
        reply = ConversationMessage.objects.get(conversation_id=conversation_id, index=1)
        assert str(reply.job_id) == regenerated["id"]


class LenientMessage(BaseModel):
    """A third-party plugin's turn that may be empty: the platform, not the plugin's schema, keeps erased turns out."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=4000)


class LenientEchoChatInput(EchoChatInput):
    messages: list[LenientMessage] = Field(min_length=1, max_length=50)


class LenientEchoChat(QuietEchoChat):
    Input = LenientEchoChatInput


@pytest.fixture
def lenient_chat(project, empty_plugin_registry):
    empty_plugin_registry.register(LenientEchoChat)
    set_plugin_enabled(project, "echo_chat", True)
    update_policy(project, "test", {"review_mode": "release_after_screening", "audit_sample_percent": 0})
    return project


class TestErasedTurns:
    """A thread whose jobs were erased one by one (``jobs.erasure``) goes on with the turns left: its erased turns
    keep their places with no text, and no model is given them, as empty turns or as the thread's instructions."""

    def test_the_turns_of_an_erased_job_are_not_fed_to_the_model(self, lenient_chat, api, run):
        first = say(api, "My number is 07700 900123")
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])
        second = say(api, "Where is my parcel?", conversation_id)
        run(second["id"])

        erasure.erase_jobs(lenient_chat, [first["id"]], "user:1")

        assert thread(api, conversation_id) == [("user", ""), ("assistant", ""), ("user", "Where is my parcel?"),
                                                ("assistant", "you said: Where is my parcel?")]
        third = say(api, "Thanks!", conversation_id)
        assert fed(third) == [("user", "Where is my parcel?"), ("assistant", "you said: Where is my parcel?"),
                              ("user", "Thanks!")]
        run(third["id"])
        assert Output.objects.get(job_id=third["id"]).content["turns"] == 3

    def test_a_thread_whose_instructions_were_erased_takes_new_ones(self, lenient_chat, api, run):
        body = {"plugin": "echo_chat", "input": {"messages": [{"role": "system", "content": "Call me Jane Roe."},
                                                              {"role": "user", "content": "Hello"}]}}
        first = api.post("/api/v1/jobs/", json.dumps(body), content_type="application/json").json()
        conversation_id = first["input"]["conversation_id"]
        run(first["id"])
        erasure.erase_jobs(lenient_chat, [first["id"]], "user:1")

        body = {"plugin": "echo_chat", "input": {"conversation_id": conversation_id, "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Price?"}]}}
        second = api.post("/api/v1/jobs/", json.dumps(body), content_type="application/json").json()
        assert fed(second) == [("system", "Be brief."), ("user", "Price?")]
        assert first_system_turn(lenient_chat, conversation_id) == "Be brief."  # the thread keeps them now
        third = say(api, "And shipping?", conversation_id)
        assert fed(third) == [("system", "Be brief."), ("user", "Price?"), ("user", "And shipping?")]
