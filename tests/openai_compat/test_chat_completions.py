"""POST /v1/chat/completions: OpenAI's shapes over chatbot jobs, and the review rule in every answer."""

from __future__ import annotations

import json
import uuid

import pytest
from django.utils import timezone

from atelier_platform.config import get_config
from atelier_platform.jobs.models import Job, JobStatus, Output, ReviewState
from atelier_platform.moderation.checks import replace_safety_checks
from tests.support.safety import WordCheck

pytestmark = pytest.mark.django_db
#: tests where a worker runs the job: its thread needs the request's rows committed
with_worker = pytest.mark.django_db(transaction=True)

CHAT = "/v1/chat/completions"


def ask(api, text="Where is my parcel?", headers=None, **fields):
    body = {"model": "chatbot", "messages": [{"role": "user", "content": text}], "max_tokens": 24, "seed": 7, **fields}
    return api.post(CHAT, json.dumps(body), content_type="application/json", **(headers or {}))


def reply_of(job_id) -> str:
    return Job.objects.get(pk=job_id).outputs.get().content["reply"]


def assert_openai_error(response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert {"message", "type", "param", "code"} <= set(error)
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


def events_of(response) -> list:
    """The data of each server-sent event: parsed JSON, or the string [DONE]; comments are skipped."""
    text = b"".join(response.streaming_content).decode()
    assert text.endswith("data: [DONE]\n\n")
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
        else:
            assert block == "" or block.startswith(":"), block
    return events


# --- the review rule -------------------------------------------------------------------------------------
@with_worker
def test_a_reply_pending_review_is_not_in_the_answer(api, chat_project, worker):
    response = ask(api)
    assert response.status_code == 200, response.content
    body = response.json()
    job_id = body["atelier"]["job_id"]
    assert response["X-Atelier-Job-Id"] == job_id
    assert body["object"] == "chat.completion" and body["model"] == "chatbot"
    assert body["id"] == "chatcmpl-" + job_id.replace("-", "")
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert "pending" in choice["message"]["content"] and "human review" in choice["message"]["content"]
    assert job_id in choice["message"]["content"] and f"/api/v1/jobs/{job_id}/" in choice["message"]["content"]
    assert body["atelier"] == {
        "job_id": job_id, "job_url": f"/api/v1/jobs/{job_id}/", "status": "succeeded", "review_state": "pending",
        "final": False, "sources": [], "conversation_id": body["atelier"]["conversation_id"],
        "notice": choice["message"]["content"],
    }
    reply = reply_of(job_id)
    assert len(reply) >= 8  # a real generated reply exists...
    assert reply not in response.content.decode()  # ...and is nowhere in the answer
    output = Job.objects.get(pk=job_id).outputs.get()
    assert body["usage"] == {"prompt_tokens": output.content["usage"]["prompt_tokens"],
                             "completion_tokens": output.content["usage"]["completion_tokens"],
                             "total_tokens": sum(output.content["usage"].values())}


@with_worker
def test_a_released_reply_is_the_answer(api, chat_project, worker, release_after_screening):
    release_after_screening(chat_project)
    response = ask(api, max_tokens=None, max_completion_tokens=12)
    assert response.status_code == 200, response.content
    body = response.json()
    job = Job.objects.get(pk=body["atelier"]["job_id"])
    output = job.outputs.get()
    assert output.review_state == ReviewState.RELEASED
    assert body["choices"][0]["message"]["content"] == output.content["reply"] != ""
    assert body["choices"][0]["finish_reason"] == output.content["finish_reason"]
    assert body["usage"]["completion_tokens"] == output.content["usage"]["completion_tokens"] <= 12
    assert body["atelier"]["final"] is True and body["atelier"]["review_state"] == "released"
    assert body["atelier"]["notice"] is None
    assert job.params["max_new_tokens"] == 12


def test_an_approved_reply_comes_back_with_its_sources_on_a_retry_with_the_same_idempotency_key(api, chat_project, wait_s):
    """No worker here: the first call times out (504, retry allowed: it has an Idempotency-Key);
    the job then finishes and a reviewer approves it; the retry replays the job and gets the reply."""
    wait_s(0.05)
    key = {"HTTP_IDEMPOTENCY_KEY": "ask-1"}
    first = ask(api, headers=key)
    error = assert_openai_error(first, 504, "job_still_running")
    assert error["type"] == "timeout_error" and first["x-should-retry"] == "true"
    job = Job.objects.get(pk=error["details"]["job_id"])
    assert job.status == JobStatus.QUEUED and error["details"]["job_url"] in error["message"]

    sources = [{"source_id": "en/returns", "chunk_id": "c1", "title": "Returns", "score": 0.8}]
    Output.objects.create(job=job, index=0, review_state=ReviewState.APPROVED, content={
        "reply": "Returns are accepted within 45 days.", "sources": sources, "finish_reason": "stop",
        "usage": {"prompt_tokens": 30, "completion_tokens": 9}, "conversation_id": job.input["conversation_id"]})
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())

    again = ask(api, headers=key)
    assert again.status_code == 200, again.content
    assert again["Idempotent-Replayed"] == "true"
    body = again.json()
    assert body["choices"][0]["message"]["content"] == "Returns are accepted within 45 days."
    assert body["atelier"]["sources"] == sources and body["atelier"]["review_state"] == "approved"
    assert body["usage"] == {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}
    assert Job.objects.count() == 1


def test_a_rejected_reply_is_withheld_with_finish_reason_content_filter(api, chat_project, wait_s):
    wait_s(0.05)
    key = {"HTTP_IDEMPOTENCY_KEY": "ask-2"}
    job = Job.objects.get(pk=assert_openai_error(ask(api, headers=key), 504)["details"]["job_id"])
    Output.objects.create(job=job, index=0, review_state=ReviewState.REJECTED, content={
        "reply": "SECRET UNREVIEWED WORDS", "sources": [], "finish_reason": "stop", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    response = ask(api, headers=key)
    assert response.status_code == 200
    assert "SECRET" not in response.content.decode()
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter" and "withheld" in choice["message"]["content"]


def test_a_timeout_without_idempotency_key_tells_the_client_not_to_retry(api, chat_project, wait_s):
    wait_s(0.05)
    response = ask(api)
    error = assert_openai_error(response, 504, "job_still_running")
    assert response["x-should-retry"] == "false"
    assert "Idempotency-Key" in error["message"]
    assert response["X-Atelier-Job-Id"] == error["details"]["job_id"]


# --- streaming -------------------------------------------------------------------------------------------
@with_worker
def test_a_stream_of_a_pending_reply_streams_the_notice_never_the_reply(api, chat_project, worker):
    response = ask(api, stream=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    events = events_of(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "chatbot" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    last = chunks[-1]
    job_id = last["atelier"]["job_id"]
    assert last["choices"][0]["finish_reason"] == "stop" and last["atelier"]["review_state"] == "pending"
    assert text == last["atelier"]["notice"] and f"/api/v1/jobs/{job_id}/" in text
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert reply_of(job_id) not in json.dumps(events, ensure_ascii=False)


@with_worker
def test_a_stream_of_a_released_reply_streams_it_in_pieces_then_usage(api, chat_project, worker, release_after_screening):
    release_after_screening(chat_project)
    response = ask(api, stream=True, stream_options={"include_usage": True}, max_tokens=40)
    events = events_of(response)
    chunks = events[:-1]
    usage_chunk, finish_chunk = chunks[-1], chunks[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["total_tokens"] > 0
    job = Job.objects.get(pk=finish_chunk["atelier"]["job_id"])
    reply = job.outputs.get().content["reply"]
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert "".join(pieces) == reply and len(pieces) > 1
    assert finish_chunk["choices"][0]["finish_reason"] in ("stop", "length") and finish_chunk["atelier"]["final"] is True
    assert usage_chunk["usage"]["completion_tokens"] == job.outputs.get().content["usage"]["completion_tokens"]


def test_a_stream_that_times_out_keeps_alive_then_ends_with_an_error_event(api, chat_project, wait_s, monkeypatch):
    wait_s(0.3)
    monkeypatch.setattr("atelier_platform.openai_compat.streaming.KEEPALIVE_S", 0.0)
    text = b"".join(ask(api, stream=True).streaming_content).decode()
    assert "\n\n: keep-alive\n\n" in text
    events = [json.loads(b[6:]) if b[6:] != "[DONE]" else "[DONE]" for b in text.split("\n\n") if b.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert events[-2]["error"]["code"] == "job_still_running"
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"


def test_a_stream_is_not_refused_for_its_accept_header(api, chat_project, wait_s):
    wait_s(0.05)
    response = ask(api, stream=True, headers={"HTTP_ACCEPT": "text/event-stream"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    list(response.streaming_content)


# --- mapping onto the job -----------------------------------------------------------------------------
def test_openai_fields_become_the_jobs_input_and_params(api, chat_project, wait_s):
    wait_s(0.01)
    response = api.post(CHAT, {
        "model": "chatbot",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Where is my parcel?", "name": "ann"},
        ],
        "max_tokens": 33, "temperature": 0.7, "top_p": 0.9, "seed": 5, "stop": "END", "n": 1, "user": "customer-9",
        "frequency_penalty": 0.5, "presence_penalty": 0, "use_knowledge": False, "top_k": 2, "priority": 8,
    }, format="json")
    job = Job.objects.get(pk=response.json()["error"]["details"]["job_id"])
    assert [m["role"] for m in job.input["messages"]] == ["system", "user", "assistant", "user"]
    assert job.input["messages"][1]["content"] == "Hello\nthere"
    assert job.input["use_knowledge"] is False and job.input["top_k"] == 2
    assert job.params == {"max_new_tokens": 33, "temperature": 0.7, "top_p": 0.9, "seed": 5, "stop": ["END"]}
    assert job.seed == 5 and job.priority == 8 and job.plugin_id == "chatbot"


# --- refusals ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "param", "code"), [
    ({"n": 2}, "n", "unsupported_value"),
    ({"temperature": "hot"}, "temperature", "invalid_value"),
    ({"temperature": "0.5"}, "temperature", "invalid_value"),
    ({"max_tokens": 100_000}, "max_tokens", "validation_error"),
    ({"max_completion_tokens": 0}, "max_completion_tokens", "validation_error"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "validation_error"),
    ({"stop": 7}, "stop", "invalid_value"),
    ({"stream": "yes"}, "stream", "invalid_value"),
    ({"seed": -1}, "seed", "validation_error"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "unsupported_parameter"),
    ({"response_format": {"type": "json_object"}}, "response_format", "unsupported_parameter"),
    ({"messages": []}, "messages", "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}, "messages", "validation_error"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role", "invalid_value"),
    ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "x"}]}, "messages.0.role", "unsupported_parameter"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
     "messages.0.content.0", "unsupported_parameter"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}, "messages.0.content.0.text", "invalid_value"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content", "validation_error"),
    ({"conversation_id": str(uuid.uuid4())}, "conversation_id", "validation_error"),
    ({"model": None}, "model", "invalid_value"),
])
def test_bad_requests_get_400_in_openais_error_shape(api, chat_project, fields, param, code):
    error = assert_openai_error(ask(api, **fields), 400, code, param)
    assert error["type"] == "invalid_request_error"
    assert not Job.objects.exists()


def test_a_missing_model_is_named(api, chat_project):
    response = api.post(CHAT, {"messages": [{"role": "user", "content": "hi"}]}, format="json")
    assert_openai_error(response, 400, "missing_required_parameter", "model")


def test_a_body_that_is_not_json_is_400(api, chat_project):
    response = api.post(CHAT, "{nope", content_type="application/json")
    error = assert_openai_error(response, 400, "malformed_json")
    assert error["type"] == "invalid_request_error"
    assert_openai_error(api.post(CHAT, "[1, 2]", content_type="application/json"), 400, "invalid_value")


def test_unknown_and_misplaced_models(api, chat_project, empty_plugin_registry):
    assert_openai_error(ask(api, model="gpt-4o"), 404, "model_not_found", "model")
    from atelier_plugins.image.plugin import ImagePlugin

    empty_plugin_registry.register(ImagePlugin)
    assert_openai_error(ask(api, model="image"), 400, "model_not_supported", "model")


def test_a_blocked_input_is_422_input_blocked(api, chat_project):
    replace_safety_checks([WordCheck()])
    error = assert_openai_error(ask(api, text="a violent request"), 422, "input_blocked")
    assert error["details"]["categories"] == ["violence"]
    assert Job.objects.get().status == JobStatus.BLOCKED


@with_worker
def test_a_failed_job_is_502_job_failed_and_not_retried(api, chat_project, worker, monkeypatch, tmp_path):
    monkeypatch.setattr(type(get_config()), "resolved_models_root", property(lambda self: tmp_path))  # no model there
    response = ask(api)
    error = assert_openai_error(response, 502, "job_failed")
    assert error["type"] == "server_error" and response["x-should-retry"] == "false"
    assert error["details"]["job_error"]["code"] == "model_not_found"


@with_worker
def test_a_cancelled_job_is_409(api, chat_project, monkeypatch):
    from atelier_platform.jobs import lifecycle

    def cancel_instead_of_running(name, args=None, **options):
        lifecycle.cancel_job(Job.objects.get(pk=args[0]))

    monkeypatch.setattr("atelier_platform.jobs.queueing.app.send_task", cancel_instead_of_running)
    response = ask(api)
    assert_openai_error(response, 409, "job_cancelled")
    assert response["x-should-retry"] == "false"


# --- access ------------------------------------------------------------------------------------------------
def test_chat_needs_the_jobs_write_scope(chat_project, make_key, client_for):
    reader = client_for(make_key(chat_project, scopes=["jobs:read"]).raw)
    error = assert_openai_error(ask(reader), 403, "permission_denied")
    assert error["type"] == "permission_error" and "jobs:write" in error["message"]


def test_chat_needs_a_key(chat_project, client_for):
    response = ask(client_for(None))
    error = assert_openai_error(response, 401, "not_authenticated")
    assert error["type"] == "authentication_error"
    bad = ask(client_for("atl_nope_nope"))
    assert_openai_error(bad, 401, "invalid_api_key")


def test_another_projects_key_sees_neither_the_model_nor_the_job(api, chat_project, other_project, make_key, client_for, wait_s):
    wait_s(0.01)
    key = {"HTTP_IDEMPOTENCY_KEY": "same-key"}
    mine = assert_openai_error(ask(api, headers=key), 504)["details"]["job_id"]
    theirs = client_for(make_key(other_project).raw)
    assert_openai_error(ask(theirs, headers=key), 404, "model_not_found")  # chatbot not enabled there
    from atelier_platform.catalog.services import set_plugin_enabled

    set_plugin_enabled(other_project, "chatbot", True)
    other_job = assert_openai_error(ask(theirs, headers=key), 504)["details"]["job_id"]
    assert other_job != mine  # the same Idempotency-Key in another project is another job
    assert theirs.get(f"/api/v1/jobs/{mine}/").status_code == 404


def test_a_refusal_to_retry_later_keeps_its_retry_after(api, chat_project, monkeypatch):
    """Limits and quotas refuse before anything is submitted: the client may retry, after Retry-After."""
    from atelier_platform.jobs.errors import JobServiceError

    class OverQuota(JobServiceError):
        status_code = 429
        code = "quota_exceeded"
        retry_after = 30

    def refuse(*args, **kwargs):
        raise OverQuota("The project used its monthly jobs.", details={"quota": "jobs"})

    monkeypatch.setattr("atelier_platform.openai_compat.services.submit_job", refuse)
    response = ask(api)
    error = assert_openai_error(response, 429, "quota_exceeded")
    assert error["type"] == "rate_limit_error" and error["details"] == {"quota": "jobs"}
    assert response["Retry-After"] == "30" and "x-should-retry" not in response


def test_a_job_still_running_is_logged_as_the_expected_answer_it_is_not_as_a_server_error(api, chat_project, wait_s, caplog):
    """An operator's error alerts must not fire on every long job a client chose to wait for: the 504 is the
    answer the client asked for (its wait ran out), logged once, below ERROR, with the job's id."""
    wait_s(0.05)
    with caplog.at_level("INFO"):
        response = ask(api)
    job_id = assert_openai_error(response, 504, "job_still_running")["details"]["job_id"]
    assert not [record for record in caplog.records if record.levelno >= 40], [r.getMessage() for r in caplog.records]
    logged = [record for record in caplog.records if job_id in record.getMessage()]
    assert len(logged) == 1 and logged[0].levelname == "WARNING" and "/v1/chat/completions" in logged[0].getMessage()


# --- erasure -----------------------------------------------------------------------------------------------
def test_a_replay_of_an_erased_jobs_key_is_the_same_410_whatever_the_body(api, chat_project, wait_s, make_key,
                                                                         client_for):
    """Kept, the hash of the erased request told the right guess at its messages (410) from a wrong one (422)."""
    wait_s(0.01)
    key = {"HTTP_IDEMPOTENCY_KEY": "ask-erased"}
    secret = "My card is 4929 1234 5678 9012"
    job_id = assert_openai_error(ask(api, secret, headers=key), 504, "job_still_running")["details"]["job_id"]
    assert_openai_error(ask(api, "My card is 4929 0000 0000 0000", headers=key), 422, "idempotency_key_reused")
    eraser = client_for(make_key(chat_project, ["jobs:read", "content:erase"]).raw)
    assert eraser.delete(f"/api/v1/jobs/{job_id}/").status_code == 204

    replays = [ask(api, text, headers=key, **fields) for text, fields in
               ((secret, {}), ("My card is 4929 0000 0000 0000", {}), (secret, {"temperature": 0.2}))]
    for replay in replays:
        assert_openai_error(replay, 410, "job_erased")
        assert replay.json() == replays[0].json() and replay["X-Atelier-Job-Id"] == job_id
    assert secret not in replays[0].content.decode()
    assert Job.objects.count() == 1 and Job.objects.get(pk=job_id).request_fingerprint == ""
