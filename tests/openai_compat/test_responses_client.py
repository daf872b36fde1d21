"""The official ``openai`` client's Responses API (``client.responses``) against a live test server: create,
stream (both ways the client offers), retrieve, input items and multi-turn with ``previous_response_id``, the
review rule, background responses polled and cancelled, refusals as the client raises them; tiny models run by the
``worker`` fixture."""

from __future__ import annotations

import openai
import pydantic
import pytest

from atelier_platform.jobs.models import Job, JobStatus, Output
from atelier_platform.moderation import review
from tests.support.wait_slots import until

pytestmark = pytest.mark.django_db(transaction=True)

QUESTION = "Where is my parcel?"


@pytest.fixture
def client(live_server, api_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=api_key.raw, max_retries=0, timeout=60)


def approve(job_id) -> None:
    reviewer = review.Reviewer(actor="user:reviewer-1")
    review.decide(review.claim(Output.objects.get(job_id=job_id).review, reviewer), reviewer, action="approve")


def test_a_response_pending_review_holds_the_notice_and_a_retrieval_delivers_the_approved_reply(client, chat_project, worker):
    raw = client.responses.with_raw_response.create(model="chatbot", input=QUESTION, max_output_tokens=16)
    response = raw.parse()
    job = Job.objects.get(pk=raw.headers["X-Atelier-Job-Id"])
    reply = job.outputs.get().content["reply"]
    assert response.id == f"resp_{job.pk.hex}" and response.status == "completed"
    assert "pending human review" in response.output_text and reply not in response.output_text
    assert response.model_extra["atelier"]["final"] is False
    assert response.usage.output_tokens == job.outputs.get().content["usage"]["completion_tokens"]

    approve(job.pk)  # later, a reviewer approves it: the stored response now delivers it
    stored = client.responses.retrieve(response.id)
    assert stored.output_text == reply and stored.model_extra["atelier"]["final"] is True
    assert stored.status in ("completed", "incomplete") and stored.output[0].id == response.output[0].id


def test_the_client_deletes_a_response_and_then_reads_it_as_gone(client, live_server, chat_project, worker, make_key):
    response = client.responses.create(model="chatbot", input=QUESTION, max_output_tokens=16)
    with pytest.raises(openai.PermissionDeniedError):  # the default key may read and write jobs, not erase them
        client.responses.delete(response.id)
    eraser = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=make_key(chat_project, ["jobs:read", "content:erase"]).raw,
                           max_retries=0, timeout=60)
    assert eraser.responses.delete(response.id) is None  # the client reads no body
    with pytest.raises(openai.APIStatusError) as gone:
        eraser.responses.retrieve(response.id)
    assert gone.value.status_code == 410 and gone.value.code == "job_erased"
    assert Job.objects.get(pk=response.model_extra["atelier"]["job_id"]).erased_at is not None


def test_stream_helper_gives_the_events_and_the_final_response(client, chat_project, worker):
    with client.responses.stream(model="chatbot", input=QUESTION, max_output_tokens=16) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "pending human review" in final.output_text and final.id == events[0].response.id
    assert events[4].snapshot == final.output_text  # the helper's running text


def test_iterating_a_created_stream_gives_a_released_reply_in_pieces(client, chat_project, worker, release_after_screening):
    release_after_screening(chat_project)
    events = list(client.responses.create(model="chatbot", input=QUESTION, max_output_tokens=24, stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    job = Job.objects.get()
    assert "".join(deltas) == job.outputs.get().content["reply"] and len(deltas) > 1
    last = events[-1]
    assert last.type in ("response.completed", "response.incomplete") and last.response.output_text == "".join(deltas)


def test_previous_response_id_carries_the_conversation(client, chat_project, worker, release_after_screening):
    release_after_screening(chat_project)
    first = client.responses.create(model="chatbot", input=QUESTION, instructions="Be brief.", max_output_tokens=12)
    second = client.responses.create(model="chatbot", input="And my refund?", previous_response_id=first.id,
                                     instructions="Be brief.", max_output_tokens=12)
    job = Job.objects.get(pk=second.model_extra["atelier"]["job_id"])
    assert job.input["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first.output_text}, {"role": "user", "content": "And my refund?"}]
    assert second.model_extra["atelier"]["conversation_id"] == first.model_extra["atelier"]["conversation_id"]
    items = list(client.responses.input_items.list(second.id, order="asc", limit=2))  # the client pages through them
    assert [(item.role, item.content[0].text) for item in items] == [(m["role"], m["content"]) for m in job.input["messages"]]

    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="chatbot", input="Hi", previous_response_id="resp_" + "0" * 32)
    assert unknown.value.code == "previous_response_not_found" and unknown.value.param == "previous_response_id"


class Answer(pydantic.BaseModel):
    text: str


@pytest.mark.parametrize(("call", "param"), [
    (lambda c: c.responses.create(model="chatbot", input=QUESTION, tools=[{"type": "function", "name": "f", "parameters": {}}]),
     "tools"),
    (lambda c: c.responses.create(model="chatbot", input=QUESTION, reasoning={"effort": "low"}), "reasoning"),
    (lambda c: c.responses.create(model="chatbot", input=QUESTION, store=False), "store"),
    (lambda c: c.responses.parse(model="chatbot", input=QUESTION, text_format=Answer), "text.format"),
    (lambda c: c.responses.create(model="chatbot", input=[{"role": "user", "content": [
        {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "auto"}]}]), "input.0.content.0"),
])
def test_what_cannot_be_honoured_is_a_bad_request_naming_the_parameter(client, chat_project, call, param):
    with pytest.raises(openai.BadRequestError) as refused:
        call(client)
    assert refused.value.param == param
    assert not Job.objects.exists()


def test_another_projects_response_is_not_found(client, chat_project, other_project, make_key, live_server, wait_s):
    wait_s(0.05)
    with pytest.raises(openai.APIStatusError):  # no worker: 504, the job goes on
        client.responses.create(model="chatbot", input=QUESTION)
    theirs = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=make_key(other_project).raw, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        theirs.responses.retrieve(f"resp_{Job.objects.get().pk.hex}")
    assert missing.value.code == "response_not_found"


@pytest.mark.parametrize("helper", [True, False])
def test_an_error_after_the_stream_opened_is_raised_by_the_client(client, chat_project, wait_s, helper):
    """No worker: the wait runs out after the stream opened; the client raises the error event, naming the job."""
    wait_s(0.3)
    with pytest.raises(openai.APIError) as ended:
        if helper:
            with client.responses.stream(model="chatbot", input=QUESTION) as stream:
                list(stream)
        else:
            list(client.responses.create(model="chatbot", input=QUESTION, stream=True))
    assert ended.value.code == "job_still_running"
    assert ended.value.body["details"]["job_id"] == str(Job.objects.get().pk)


def test_a_background_response_is_polled_until_it_completes_and_then_delivers_the_approved_reply(client, chat_project,
                                                                                                   worker):
    created = client.responses.create(model="chatbot", input=QUESTION, max_output_tokens=16, background=True,
                                      metadata={"ticket": "T-9"})
    assert created.status == "queued" and created.background is True and created.output == []
    assert created.metadata == {"ticket": "T-9"}
    polled = []
    until(lambda: polled.append(client.responses.retrieve(created.id)) or polled[-1].status not in ("queued", "in_progress"))
    done = polled[-1]
    assert done.status == "completed" and done.background is True and done.metadata == {"ticket": "T-9"}
    job = Job.objects.get(pk=created.model_extra["atelier"]["job_id"])
    reply = job.outputs.get().content["reply"]
    assert "pending human review" in done.output_text and reply not in done.output_text  # held for review
    with pytest.raises(openai.BadRequestError) as finished:
        client.responses.cancel(created.id)
    assert finished.value.code == "response_finished"
    approve(job.pk)
    assert client.responses.retrieve(created.id).output_text == reply


def test_the_client_cancels_a_background_response(client, chat_project, live_server, other_project, make_key):
    """No worker: the job stays queued until the cancel."""
    created = client.responses.create(model="chatbot", input=QUESTION, background=True)
    theirs = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=make_key(other_project).raw, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        theirs.responses.cancel(created.id)
    assert missing.value.code == "response_not_found"
    cancelled = client.responses.cancel(created.id)
    assert cancelled.id == created.id and cancelled.status == "cancelled" and cancelled.background is True
    assert Job.objects.get().status == JobStatus.CANCELLED
    assert client.responses.cancel(created.id).status == "cancelled"  # twice: the same answer
    assert client.responses.retrieve(created.id).status == "cancelled"
