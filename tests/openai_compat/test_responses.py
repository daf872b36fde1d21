"""POST /v1/responses, GET /v1/responses/{id} and its input items: OpenAI's Responses API over chatbot jobs,
with the review rule, conversations (previous_response_id), refusals, idempotency and wait slots of chat."""

from __future__ import annotations

import json
import random
import uuid

import pytest
from django.utils import timezone
from openai.types.responses import Response as OpenAIResponse
from openai.types.responses import ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs import waiting
from atelier_platform.jobs.models import Job, JobStatus, Output, ReviewState
from atelier_platform.moderation.checks import replace_safety_checks
from tests.openai_compat.test_chat_completions import assert_openai_error
from tests.openai_compat.test_waiting_limit import assert_refused_busy
from tests.support.safety import WordCheck
from tests.support.wait_slots import no_slot_left_behind  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.django_db
with_worker = pytest.mark.django_db(transaction=True)

RESPONSES = "/v1/responses"


def respond(api, question="Where is my parcel?", headers=None, **fields):
    body = {"model": "chatbot", "input": question, "max_output_tokens": 24, **fields}
    return api.post(RESPONSES, json.dumps(body), content_type="application/json", **(headers or {}))


def strictly(shape, data: dict) -> dict:
    """``data`` validated (not merely constructed, as the client does) against the installed openai package's type."""
    TypeAdapter(shape).validate_python(data)
    return data


def sse_events(response) -> list[dict]:
    """The events of a Responses stream: each named (``event:``) as its data's type, each valid as the openai
    package's ``ResponseStreamEvent``; comments skipped."""
    text = b"".join(response.streaming_content).decode()
    events = []
    for block in text.split("\n\n"):
        if not block or block.startswith(":"):
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        events.append(strictly(ResponseStreamEvent, json.loads(data[len("data: "):])))
        assert events[-1]["type"] == name[len("event: "):]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def queued_job(api, wait_s, **fields) -> Job:
    """A response whose call ran out of time (no worker): its job, queued."""
    wait_s(0.01)
    error = assert_openai_error(respond(api, headers={"HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex}, **fields), 504,
                                "job_still_running")
    return Job.objects.get(pk=error["details"]["job_id"])


def finish(job: Job, review_state: str, reply="Returns are accepted within 45 days.", finish_reason="stop") -> Output:
    output = Output.objects.create(job=job, index=0, review_state=review_state, content={
        "reply": reply, "sources": [], "finish_reason": finish_reason,
        "usage": {"prompt_tokens": 30, "completion_tokens": 9}, "conversation_id": job.input["conversation_id"]})
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    return output


def rid(job) -> str:
    return f"resp_{job.pk.hex}"


# --- the review rule and the answer's shape ---------------------------------------------------------------
@with_worker
def test_a_reply_pending_review_is_a_completed_response_holding_the_notice(api, chat_project, worker):
    response = respond(api)
    assert response.status_code == 200, response.content
    body = strictly(OpenAIResponse, response.json())
    job = Job.objects.get(pk=response["X-Atelier-Job-Id"])
    output = job.outputs.get()
    assert body["id"] == rid(job) and body["object"] == "response" and body["model"] == "chatbot"
    assert body["status"] == "completed" and body["incomplete_details"] is None and body["error"] is None
    [message] = body["output"]
    assert message["id"] == f"msg_{output.pk.hex}" and message["role"] == "assistant" and message["status"] == "completed"
    [part] = message["content"]
    assert part["type"] == "output_text" and "pending human review" in part["text"] and f"/api/v1/jobs/{job.pk}/" in part["text"]
    assert body["atelier"]["final"] is False and body["atelier"]["review_state"] == "pending"
    assert body["atelier"]["notice"] == part["text"] and body["atelier"]["conversation_id"] == job.input["conversation_id"]
    assert output.content["reply"] not in response.content.decode()
    usage = output.content["usage"]
    assert body["usage"] == {"input_tokens": usage["prompt_tokens"], "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                             "output_tokens": usage["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
                             "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
    assert body["max_output_tokens"] == 24 and body["metadata"] == {} and body["tools"] == []


def test_a_withheld_reply_is_incomplete_with_reason_content_filter(api, chat_project, wait_s):
    job = queued_job(api, wait_s)
    finish(job, ReviewState.REJECTED, reply="SECRET UNREVIEWED WORDS")
    body = api.get(f"/v1/responses/{rid(job)}").json()
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "content_filter"}
    assert "withheld" in body["output"][0]["content"][0]["text"] and body["output"][0]["status"] == "incomplete"
    assert "SECRET" not in json.dumps(body)


def test_a_retrieval_gives_the_job_as_it_stands_now(api, chat_project, wait_s):
    """The call ran out of time; retrieving follows the job: queued, then the notice, then the approved reply."""
    job = queued_job(api, wait_s, temperature=0.5)
    queued = strictly(OpenAIResponse, api.get(f"/v1/responses/{rid(job)}").json())
    assert queued["status"] == "queued" and queued["output"] == [] and queued["usage"] is None
    assert queued["atelier"]["review_state"] is None and queued["temperature"] == 0.5 and queued["completed_at"] is None
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    assert api.get(f"/v1/responses/{rid(job)}").json()["status"] == "in_progress"
    output = finish(job, ReviewState.PENDING)
    pending = api.get(f"/v1/responses/{rid(job)}").json()
    assert pending["status"] == "completed" and "pending human review" in pending["output"][0]["content"][0]["text"]
    Output.objects.filter(pk=output.pk).update(review_state=ReviewState.APPROVED)
    approved = strictly(OpenAIResponse, api.get(f"/v1/responses/{rid(job)}").json())
    assert approved["output"][0]["content"][0]["text"] == "Returns are accepted within 45 days."
    assert approved["atelier"]["final"] is True and approved["completed_at"] >= approved["created_at"]


def test_a_reply_cut_at_max_output_tokens_is_incomplete(api, chat_project, wait_s):
    job = queued_job(api, wait_s)
    finish(job, ReviewState.APPROVED, finish_reason="length")
    body = api.get(f"/v1/responses/{rid(job)}").json()
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
    assert body["output"][0]["content"][0]["text"] == "Returns are accepted within 45 days."


@pytest.mark.parametrize(("status", "error_code", "expected"), [
    (JobStatus.FAILED, "model_not_found", ("failed", "server_error")),
    (JobStatus.FAILED, "invalid_input", ("failed", "invalid_prompt")),
    (JobStatus.CANCELLED, "", ("cancelled", None)),
])
def test_a_job_without_a_reply_is_a_failed_or_cancelled_response(api, chat_project, wait_s, status, error_code, expected):
    job = queued_job(api, wait_s)
    Job.objects.filter(pk=job.pk).update(status=status, error_code=error_code, error_message="went wrong",
                                         finished_at=timezone.now())
    body = strictly(OpenAIResponse, api.get(f"/v1/responses/{rid(job)}").json())
    assert body["status"] == expected[0] and body["output"] == []
    assert (body["error"] or {}).get("code") == expected[1]


def test_a_blocked_input_is_422_and_its_response_failed(api, chat_project):
    replace_safety_checks([WordCheck()])
    response = respond(api, question="a violent request")
    assert_openai_error(response, 422, "input_blocked")
    job = Job.objects.get()  # kept for the audit
    assert api.get(f"/v1/responses/{rid(job)}").json()["error"]["code"] == "invalid_prompt"


# --- streaming ---------------------------------------------------------------------------------------------------
@with_worker
def test_a_stream_sends_the_responses_events_in_order(api, chat_project, worker):
    response = respond(api, stream=True, headers={"HTTP_ACCEPT": "text/event-stream"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed"]
    completed = events[-1]["response"]
    assert events[0]["response"]["id"] == completed["id"] == rid(Job.objects.get())
    assert events[0]["response"]["output"] == [] and events[0]["response"]["status"] == "in_progress"
    notice = completed["output"][0]["content"][0]["text"]
    assert events[4]["delta"] == events[5]["text"] == notice and "pending human review" in notice  # the notice, whole
    assert events[2]["item"]["status"] == "in_progress" and events[2]["item"]["content"] == []
    assert events[7]["item"] == completed["output"][0] and completed["usage"]["total_tokens"] > 0
    assert Job.objects.get().outputs.get().content["reply"] not in json.dumps(events)


@with_worker
def test_a_stream_of_a_released_reply_streams_it_in_pieces(api, chat_project, worker, release_after_screening):
    release_after_screening(chat_project)
    events = sse_events(respond(api, stream=True, max_output_tokens=40))
    reply = Job.objects.get().outputs.get().content["reply"]
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == reply
    last = events[-1]
    assert last["type"] == ("response.incomplete" if last["response"]["status"] == "incomplete" else "response.completed")
    assert last["response"]["output"][0]["content"][0]["text"] == reply and last["response"]["atelier"]["final"] is True


def test_a_stream_that_times_out_keeps_alive_then_ends_with_an_error_event(api, chat_project, wait_s, monkeypatch):
    wait_s(0.3)
    monkeypatch.setattr("atelier_platform.openai_compat.streaming.KEEPALIVE_S", 0.0)
    response = respond(api, stream=True)
    text = b"".join(response.streaming_content).decode()
    assert "\n\n: keep-alive\n\n" in text and "[DONE]" not in text
    last = strictly(ResponseStreamEvent, json.loads(text.rstrip().split("\n")[-1][len("data: "):]))
    assert last["type"] == "error" and last["code"] == last["error"]["code"] == "job_still_running"
    assert last["message"] == last["error"]["message"] and last["error"]["details"]["job_id"] == response["X-Atelier-Job-Id"]


# --- mapping onto the job -------------------------------------------------------------------------------
def test_openai_fields_become_the_jobs_input_and_params(api, chat_project, wait_s):
    job = queued_job(api, wait_s, instructions="Be brief.", temperature=0.7, top_p=0.9, max_output_tokens=33, input=[
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hello"}, {"type": "input_text", "text": "there"}]},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Hi!", "annotations": []}]},
        {"role": "user", "content": "Where is my parcel?"},
    ], metadata={"customer": "9"}, store=True, tool_choice="auto", tools=[], text={"format": {"type": "text"}, "verbosity": "low"},
        reasoning={"effort": None}, truncation="auto", user="customer-9", use_knowledge=False, top_k=2, seed=5, priority=8)
    # one system message (a thread keeps one): the instructions, then the input's system and developer messages
    assert [m["role"] for m in job.input["messages"]] == ["system", "user", "assistant", "user"]
    assert job.input["messages"][0]["content"] == "Be brief.\n\nAnswer in English."
    assert job.input["messages"][1]["content"] == "Hello\nthere"
    assert job.input["use_knowledge"] is False and job.input["top_k"] == 2
    assert {name: job.params[name] for name in ("max_new_tokens", "temperature", "top_p", "seed")} == {
        "max_new_tokens": 33, "temperature": 0.7, "top_p": 0.9, "seed": 5}
    assert job.priority == 8 and job.plugin_id == "chatbot" and job.idempotency_scope == "v1/responses"
    assert job.metadata == {"customer": "9"} and "metadata" not in job.params  # the plugin never reads it


@with_worker
def test_metadata_is_kept_with_the_job_and_every_answer_carries_it(api, chat_project, worker):
    metadata = {**{f"key-{i}": f"value {i}" for i in range(15)}, "k" * 64: "v" * 512}
    response = respond(api, metadata=metadata)
    assert response.status_code == 200, response.content
    created = strictly(OpenAIResponse, response.json())
    job = Job.objects.get(pk=response["X-Atelier-Job-Id"])
    assert job.metadata == metadata and created["metadata"] == metadata
    assert strictly(OpenAIResponse, api.get(f"/v1/responses/{rid(job)}").json()) == created
    streamed = sse_events(respond(api, question="And my refund?", stream=True, metadata={"ticket": "T-9"}))
    assert {e["response"]["metadata"]["ticket"] for e in streamed if "response" in e} == {"T-9"}


def test_a_blocked_input_keeps_its_metadata_for_the_failed_response(api, chat_project):
    replace_safety_checks([WordCheck()])
    assert_openai_error(respond(api, question="a violent request", metadata={"ticket": "T-9"}), 422, "input_blocked")
    body = strictly(OpenAIResponse, api.get(f"/v1/responses/{rid(Job.objects.get())}").json())
    assert body["status"] == "failed" and body["metadata"] == {"ticket": "T-9"}


def test_an_idempotency_key_with_other_metadata_is_another_request(api, chat_project, wait_s):
    key = {"HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex}
    wait_s(0.01)
    assert_openai_error(respond(api, headers=key, metadata={"ticket": "T-9"}), 504, "job_still_running")
    assert_openai_error(respond(api, headers=key, metadata={"ticket": "T-10"}), 422, "idempotency_key_reused")
    assert_openai_error(respond(api, headers=key), 422, "idempotency_key_reused")
    assert_openai_error(respond(api, headers=key, metadata={"ticket": "T-9"}), 504, "job_still_running")  # the replay
    assert Job.objects.count() == 1


def test_the_input_items_are_the_messages_the_job_read(api, chat_project, wait_s):
    job = queued_job(api, wait_s, instructions="Be brief.", input=[
        {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "Parcel?"}])
    url = f"/v1/responses/{rid(job)}/input_items"
    newest_first = api.get(url).json()
    for item in newest_first["data"]:
        strictly(ResponseItem, item)
    assert [(i["role"], i["content"][0]["type"], i["content"][0]["text"]) for i in newest_first["data"]] == [
        ("user", "input_text", "Parcel?"), ("assistant", "output_text", "Hi!"), ("user", "input_text", "Hello"),
        ("system", "input_text", "Be brief.")]
    assert newest_first["has_more"] is False and newest_first["first_id"] == newest_first["data"][0]["id"]
    page = api.get(url, {"order": "asc", "limit": 2}).json()
    assert [i["content"][0]["text"] for i in page["data"]] == ["Be brief.", "Hello"] and page["has_more"] is True
    rest = api.get(url, {"order": "asc", "limit": 2, "after": page["last_id"]}).json()
    assert [i["content"][0]["text"] for i in rest["data"]] == ["Hi!", "Parcel?"] and rest["has_more"] is False
    for query, param in (({"order": "up"}, "order"), ({"limit": "0"}, "limit"), ({"limit": "101"}, "limit"),
                         ({"limit": "x"}, "limit"), ({"limit": "٣"}, "limit"), ({"after": "msg_nope"}, "after")):
        assert_openai_error(api.get(url, query), 400, "invalid_value", param)


# --- conversations -------------------------------------------------------------------------------------------------
def test_previous_response_id_continues_its_conversation(api, chat_project, wait_s):
    first = queued_job(api, wait_s, instructions="Be brief.")
    finish(first, ReviewState.RELEASED)
    from atelier_platform.conversations.services import place_reply

    place_reply(first.outputs.get())  # as storing a released reply does
    second = queued_job(api, wait_s, question="And my refund?", previous_response_id=rid(first), instructions="Be brief.")
    assert second.input["conversation_id"] == first.input["conversation_id"]
    assert second.input["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my parcel?"},
        {"role": "assistant", "content": "Returns are accepted within 45 days."}, {"role": "user", "content": "And my refund?"}]
    # the same instructions were not stored again in the thread
    from atelier_platform.conversations.models import ConversationMessage

    assert ConversationMessage.objects.filter(conversation_id=first.input["conversation_id"], role="system").count() == 1
    other = assert_openai_error(respond(api, previous_response_id=rid(first), instructions="Be long-winded."), 400,
                                "unsupported_value", "instructions")
    assert "first turn" in other["message"]


def test_a_pending_reply_is_not_fed_back_to_the_next_turn(api, chat_project, wait_s):
    first = queued_job(api, wait_s)
    finish(first, ReviewState.PENDING, reply="UNREVIEWED")
    second = queued_job(api, wait_s, question="Hello?", previous_response_id=rid(first))
    assert [m["content"] for m in second.input["messages"]] == ["Where is my parcel?", "Hello?"]


def test_an_unknown_or_another_projects_previous_response_is_refused(api, chat_project, other_project, make_key,
                                                                     client_for, wait_s):
    mine = queued_job(api, wait_s)
    set_plugin_enabled(other_project, "chatbot", True)
    theirs = client_for(make_key(other_project).raw)
    for value in (rid(mine), f"resp_{uuid.uuid4().hex}", "nope", rid(mine).upper()):
        error = assert_openai_error(respond(theirs, previous_response_id=value), 400, "previous_response_not_found",
                                    "previous_response_id")
        assert str(mine.pk) not in json.dumps(error)
    assert_openai_error(theirs.get(f"/v1/responses/{rid(mine)}"), 404, "response_not_found")
    assert_openai_error(theirs.get(f"/v1/responses/{rid(mine)}/input_items"), 404, "response_not_found")
    assert Job.objects.filter(project=other_project).count() == 0


def test_a_response_id_names_a_chatbot_job_only(api, chat_project, wait_s):
    job = queued_job(api, wait_s)
    Job.objects.filter(pk=job.pk).update(plugin_id="reverse_text")
    assert_openai_error(api.get(f"/v1/responses/{rid(job)}"), 404, "response_not_found")
    for value in ("resp_", "resp_" + "g" * 32, "x" * 3000, "resp_%00", str(job.pk)):
        assert_openai_error(api.get(f"/v1/responses/{value}"), 404, "response_not_found")


def test_previous_response_id_and_another_conversation_id_conflict(api, chat_project, wait_s):
    first = queued_job(api, wait_s)
    other = queued_job(api, wait_s)
    assert_openai_error(respond(api, previous_response_id=rid(first), conversation_id=other.input["conversation_id"]),
                        400, "invalid_value", "conversation_id")
    same = queued_job(api, wait_s, previous_response_id=rid(first), conversation_id=first.input["conversation_id"].upper())
    assert same.input["conversation_id"] == first.input["conversation_id"]


# --- refusals -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"tools": [{"type": "function", "name": "f", "parameters": {}}]}, "tools", "unsupported_parameter"),
    ({"tool_choice": "required"}, "tool_choice", "unsupported_value"),
    ({"tool_choice": {"type": "function", "name": "f"}}, "tool_choice", "unsupported_value"),
    ({"reasoning": {"effort": "low"}}, "reasoning", "unsupported_parameter"),
    ({"text": {"format": {"type": "json_object"}}}, "text.format", "unsupported_value"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {}}}}, "text.format", "unsupported_value"),
    ({"text": {"format": "text"}}, "text.format", "unsupported_value"),
    ({"store": False}, "store", "unsupported_value"),
    ({"include": ["message.output_text.logprobs"]}, "include", "unsupported_parameter"),
    ({"top_logprobs": 2}, "top_logprobs", "unsupported_parameter"),
    ({"prompt": {"id": "pmpt_1"}}, "prompt", "unsupported_parameter"),
    ({"conversation": "conv_1"}, "conversation", "unsupported_parameter"),
    ({"n": 2}, "n", "unsupported_value"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "input.0.content.0", "unsupported_parameter"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}, "input.0.content.0",
     "unsupported_parameter"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}, "input.0.content.0",
     "unsupported_parameter"),
    ({"input": [{"type": "function_call_output", "call_id": "c", "output": "42"}]}, "input.0.type", "unsupported_parameter"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input.0.type", "unsupported_parameter"),
    ({"input": [{"role": "tool", "content": "42"}]}, "input.0.role", "invalid_value"),
    ({"input": [{"role": "user"}]}, "input.0.content", "invalid_value"),
    ({"input": [{"role": "user", "content": ["hi"]}]}, "input.0.content", "invalid_value"),
    ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]}, "input.0.content.0.text", "invalid_value"),
    ({"input": []}, "input", "invalid_value"),
    ({"input": ""}, "input", "validation_error"),
    ({"input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}, "input", "validation_error"),
    ({"input": [{"role": "user", "content": "hi"}, {"role": "user", "content": ""}]}, "input.1.content", "validation_error"),
    ({"instructions": "x" * 9000}, "instructions", "validation_error"),
    ({"input": [{"role": "developer", "content": "x" * 9000}, {"role": "user", "content": "hi"}]}, "input.0.content",
     "validation_error"),
    ({"input": 5}, "input", "invalid_value"),
    ({"temperature": "hot"}, "temperature", "invalid_value"),
    ({"temperature": 3}, "temperature", "validation_error"),
    ({"max_output_tokens": 100_000}, "max_output_tokens", "validation_error"),
    ({"stream": "yes"}, "stream", "invalid_value"),
    ({"metadata": {str(i): "v" for i in range(17)}}, "metadata", "invalid_value"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k", "invalid_value"),
    ({"metadata": {"k" * 65: "v"}}, "metadata", "invalid_value"),
    ({"metadata": {"k": 1}}, "metadata.k", "invalid_value"),
    ({"metadata": {"k": "a\u0000b"}}, "metadata.k", "invalid_value"),
    ({"metadata": {"k\u0000": "v"}}, "metadata", "invalid_value"),
    ({"metadata": ["k", "v"]}, "metadata", "invalid_value"),
    ({"previous_response_id": 7}, "previous_response_id", "invalid_value"),
    ({"conversation_id": str(uuid.uuid4())}, "conversation_id", "validation_error"),
    ({"seed": -1}, "seed", "validation_error"),
    ({"priority": 10}, "priority", "invalid_value"),
    ({"model": "gpt-5"}, "model", "model_not_found"),
])
def test_what_cannot_be_honoured_is_refused_naming_the_parameter(api, chat_project, fields, param, code):
    response = respond(api, **fields)
    status = 404 if code == "model_not_found" else 400
    error = assert_openai_error(response, status, code, param)
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    assert not Job.objects.exists()


def test_a_missing_input_or_model_is_named(api, chat_project):
    assert_openai_error(api.post(RESPONSES, {"model": "chatbot"}, format="json"), 400, "missing_required_parameter", "input")
    assert_openai_error(api.post(RESPONSES, {"input": "hi"}, format="json"), 400, "missing_required_parameter", "model")
    assert_openai_error(api.post(RESPONSES, "[1]", content_type="application/json"), 400, "invalid_value")
    assert_openai_error(api.post(RESPONSES, "{nope", content_type="application/json"), 400, "malformed_json")


def test_a_stored_response_is_not_streamed_again(api, chat_project, wait_s):
    job = queued_job(api, wait_s)
    assert_openai_error(api.get(f"/v1/responses/{rid(job)}", {"stream": "true"}), 400, "unsupported_parameter", "stream")


# --- idempotency, access, waiting ---------------------------------------------------------------------------------
def test_an_idempotency_key_replays_the_first_job(api, chat_project, wait_s):
    wait_s(0.01)
    key = {"HTTP_IDEMPOTENCY_KEY": "respond-1"}
    first = assert_openai_error(respond(api, headers=key), 504, "job_still_running")
    job = Job.objects.get(pk=first["details"]["job_id"])
    finish(job, ReviewState.APPROVED)
    again = respond(api, headers=key)
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true" and again["X-Atelier-Job-Id"] == str(job.pk)
    assert again.json()["output"][0]["content"][0]["text"] == "Returns are accepted within 45 days."
    assert_openai_error(respond(api, question="Another question", headers=key), 422, "idempotency_key_reused")
    # the same key on chat completions is another request
    chat = api.post("/v1/chat/completions", {"model": "chatbot", "messages": [{"role": "user", "content": "hi"}]},
                    format="json", HTTP_IDEMPOTENCY_KEY="respond-1")
    assert_openai_error(chat, 504, "job_still_running")
    assert Job.objects.count() == 2


def test_creating_needs_jobs_write_and_reading_jobs_read(chat_project, make_key, client_for, api, wait_s):
    job = queued_job(api, wait_s)
    reader = client_for(make_key(chat_project, scopes=["jobs:read"]).raw)
    assert_openai_error(respond(reader), 403, "permission_denied")
    assert reader.get(f"/v1/responses/{rid(job)}").status_code == 200
    writer = client_for(make_key(chat_project, scopes=["jobs:write"]).raw)
    assert_openai_error(writer.get(f"/v1/responses/{rid(job)}"), 403, "permission_denied")
    assert_openai_error(respond(client_for(None)), 401, "not_authenticated")


def test_every_wait_slot_taken_is_503_and_submits_nothing(api, chat_project, atelier_config):
    atelier_config(max_waiting_requests=1)
    with waiting.take_wait_slot("another request", "test"):
        assert_refused_busy(respond(api))
        streamed = respond(api, stream=True)
        assert not streamed.streaming
        assert_refused_busy(streamed)
    assert not Job.objects.exists()


def test_a_timeout_without_idempotency_key_tells_the_client_not_to_retry(api, chat_project, wait_s):
    wait_s(0.01)
    response = respond(api)
    assert_openai_error(response, 504, "job_still_running")
    assert response["x-should-retry"] == "false"


# --- no input gives a 5xx ------------------------------------------------------------------------------------------
FIELDS = ["model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream", "metadata", "store",
          "previous_response_id", "text", "tools", "tool_choice", "reasoning", "background", "include", "conversation",
          "conversation_id", "use_knowledge", "top_k", "seed", "priority", "n", "role", "content", "type", "format"]


def odd_value(rng: random.Random, depth: int = 0):
    kinds = ["none", "bool", "int", "float", "str", "list", "dict"] if depth < 3 else ["none", "bool", "int", "str"]
    kind = rng.choice(kinds)
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 2**31, 2**63, -(2**70), 512, 513])
    if kind == "float":
        return rng.choice([0.5, -0.0, 1e308, 2.5, 1e-300])
    if kind == "str":
        return rng.choice(["", "chatbot", "user", "text", "input_text", "resp_" + "0" * 32, "\u0000", "x" * 9000, "٣",
                           "auto", "none", "message", str(uuid.uuid4())])
    if kind == "list":
        return [odd_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(FIELDS): odd_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_no_body_gives_a_server_error(api, chat_project, wait_s):
    """Odd JSON bodies, seeded: every answer is a 4xx in OpenAI's shape, or the 504 of a job that was submitted."""
    wait_s(0.01)
    rng = random.Random(20260)
    bodies = [None, [], "x", 1, {}, {"model": "chatbot", "input": {"role": "user"}}, {"model": "chatbot", "input": [[]]},
              {"model": "chatbot", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
              {"model": "chatbot", "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
              {"model": "chatbot", "input": "hi", "text": {"format": None}}, {"model": "chatbot", "input": "hi", "text": []}]
    for _ in range(150):
        body = {"model": "chatbot", "input": "hi"} if rng.random() < 0.5 else {}
        body.update({rng.choice(FIELDS): odd_value(rng) for _ in range(rng.randint(1, 4))})
        bodies.append(body)
    for body in bodies:
        response = api.post(RESPONSES, json.dumps(body), content_type="application/json")
        if response.streaming:
            text = b"".join(response.streaming_content).decode()
            assert '"type":"error"' in text and "job_still_running" in text, text[-300:]
            continue
        assert response.status_code < 500 or (response.status_code == 504 and
                                               response.json()["error"]["code"] == "job_still_running"), (body, response.content)
        if response.status_code >= 400:
            assert_openai_error(response, response.status_code)


# --- erasure -----------------------------------------------------------------------------------------------
def test_deleting_a_response_erases_its_job_and_reading_it_afterwards_is_gone(api, chat_project, make_key, client_for,
                                                                              wait_s):
    job = queued_job(api, wait_s, metadata={"customer": "Ada Lovelace"})
    finish(job, ReviewState.APPROVED)
    assert api.get(f"{RESPONSES}/{rid(job)}").json()["output"][0]["content"][0]["text"].startswith("Returns")
    assert_openai_error(api.delete(f"{RESPONSES}/{rid(job)}"), 403, "permission_denied")  # jobs:read/write only
    assert Job.objects.get(pk=job.pk).erased_at is None

    owner_key = client_for(make_key(chat_project, ["jobs:read", "content:erase"]).raw)
    deleted = owner_key.delete(f"{RESPONSES}/{rid(job)}")
    assert deleted.status_code == 200, deleted.content
    assert deleted.json() == {"id": rid(job), "object": "response", "deleted": True}
    erased = Job.objects.get(pk=job.pk)
    assert erased.erased_at is not None and erased.input == {} and erased.metadata == {}  # metadata may name a person
    assert Output.objects.get(job=job).content == {
        "usage": {"prompt_tokens": 30, "completion_tokens": 9}}
    assert_openai_error(owner_key.get(f"{RESPONSES}/{rid(job)}"), 410, "job_erased")
    assert owner_key.delete(f"{RESPONSES}/{rid(job)}").status_code == 200  # again: the same answer, nothing more


def test_every_read_of_an_erased_response_says_it_was_erased(api, chat_project, make_key, client_for, wait_s):
    """A queued response erased (its job cancelled by the erasure): GET, its input items and a replay of its request
    say it was erased (410 job_erased), not that it was cancelled; a continuation names the erasure."""
    wait_s(0.01)
    key = {"HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex}
    job = Job.objects.get(pk=assert_openai_error(respond(api, headers=key), 504, "job_still_running")["details"]["job_id"])
    owner_key = client_for(make_key(chat_project, ["jobs:read", "jobs:write", "content:erase"]).raw)
    assert owner_key.delete(f"{RESPONSES}/{rid(job)}").status_code == 200
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert_openai_error(api.get(f"{RESPONSES}/{rid(job)}"), 410, "job_erased")
    assert_openai_error(api.get(f"{RESPONSES}/{rid(job)}/input_items"), 410, "job_erased")
    replay = assert_openai_error(respond(api, headers=key), 410, "job_erased")
    # whatever the body: a replay answering 422 to a wrong guess at the erased input would tell the right one
    assert assert_openai_error(respond(api, "Where is my other parcel?", headers=key), 410, "job_erased") == replay
    assert Job.objects.get(pk=job.pk).request_fingerprint == ""
    refused = assert_openai_error(respond(api, previous_response_id=rid(job)), 400, "previous_response_erased")
    assert "erased" in refused["message"] and refused["param"] == "previous_response_id"


def test_deleting_another_projects_or_an_unknown_response_is_404(chat_project, other_project, make_key, client_for):
    from tests.api.helpers import build_job

    theirs = build_job(other_project, plugin="chatbot", input={"messages": []})
    owner_key = client_for(make_key(chat_project, ["jobs:read", "content:erase"]).raw)
    for value in (rid(theirs), "resp_" + "0" * 32, "nonsense"):
        assert_openai_error(owner_key.delete(f"{RESPONSES}/{value}"), 404, "response_not_found")
    assert Job.objects.get(pk=theirs.pk).erased_at is None


def test_a_running_response_is_not_erased(api, chat_project, make_key, client_for, wait_s):
    job = queued_job(api, wait_s)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=timezone.now())
    owner_key = client_for(make_key(chat_project, ["jobs:read", "content:erase"]).raw)
    assert_openai_error(owner_key.delete(f"{RESPONSES}/{rid(job)}"), 409, "job_running")
    assert Job.objects.get(pk=job.pk).erased_at is None


def a_thread_of_two_responses(api, wait_s):
    from atelier_platform.conversations.services import place_reply

    first = queued_job(api, wait_s, instructions="Be brief.")
    finish(first, ReviewState.RELEASED)
    place_reply(first.outputs.get())
    second = queued_job(api, wait_s, question="And my refund?", previous_response_id=rid(first))
    finish(second, ReviewState.RELEASED, reply="Within a week.")
    place_reply(second.outputs.get())
    return first, second


def test_a_conversation_goes_on_without_an_erased_response_and_naming_it_is_refused(api, chat_project, make_key,
                                                                                     client_for, wait_s):
    first, second = a_thread_of_two_responses(api, wait_s)
    owner_key = client_for(make_key(chat_project, ["jobs:read", "content:erase"]).raw)
    assert owner_key.delete(f"{RESPONSES}/{rid(first)}").status_code == 200

    # the erased exchange (and the instructions it held) is not fed to the model, not even as empty turns; the same
    # instructions are not refused as "other" ones: the thread has none left, and keeps these from now on
    third = queued_job(api, wait_s, question="Thanks!", previous_response_id=rid(second), instructions="Be brief.")
    assert third.input["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "And my refund?"},
        {"role": "assistant", "content": "Within a week."}, {"role": "user", "content": "Thanks!"}]
    items = api.get(f"{RESPONSES}/{rid(third)}/input_items?order=asc").json()["data"]
    assert [item["content"][0]["text"] for item in items] == ["Be brief.", "And my refund?", "Within a week.", "Thanks!"]

    conversation_id = second.input["conversation_id"]
    erased = assert_openai_error(respond(api, previous_response_id=rid(first)), 400, "previous_response_erased",
                                 "previous_response_id")
    assert "was erased" in erased["message"] and conversation_id in erased["message"]
    assert erased["details"]["conversation_id"] == conversation_id
    assert Job.objects.count() == 3  # nothing submitted


def test_after_its_conversation_was_erased_continuing_it_is_a_clear_400(api, chat_project, make_key, client_for,
                                                                        wait_s):
    first, second = a_thread_of_two_responses(api, wait_s)
    owner_key = client_for(make_key(chat_project, ["jobs:read", "content:erase"]).raw)
    conversation_id = second.input["conversation_id"]
    assert owner_key.delete(f"/api/v1/conversations/{conversation_id}/").status_code == 204

    for previous in (first, second):
        erased = assert_openai_error(respond(api, previous_response_id=rid(previous)), 400, "previous_response_erased",
                                     "previous_response_id")
        assert "start a new conversation" in erased["message"] and erased["details"]["conversation_id"] is None
    body = {"model": "chatbot", "messages": [{"role": "user", "content": "Hi"}], "conversation_id": conversation_id}
    assert_openai_error(api.post("/v1/chat/completions", json.dumps(body), content_type="application/json"), 400,
                        "validation_error", "conversation_id")
    assert Job.objects.count() == 2


def test_an_erased_response_reads_as_gone_whatever_state_it_ended_in(api, chat_project, make_key, client_for, wait_s):
    queued = queued_job(api, wait_s, question="My number is 07700 900123")
    owner_key = client_for(make_key(chat_project, ["jobs:read", "content:erase"]).raw)
    assert owner_key.delete(f"{RESPONSES}/{rid(queued)}").status_code == 200
    assert Job.objects.get(pk=queued.pk).status == JobStatus.CANCELLED  # cancelled first, then erased
    # not a "cancelled" response, nor input items that say the model read nothing: gone
    assert_openai_error(api.get(f"{RESPONSES}/{rid(queued)}"), 410, "job_erased")
    assert_openai_error(api.get(f"{RESPONSES}/{rid(queued)}/input_items"), 410, "job_erased")
