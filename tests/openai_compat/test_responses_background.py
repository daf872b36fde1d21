"""``background: true`` on POST /v1/responses and POST /v1/responses/{id}/cancel: the call answers at once with the
queued response (its job submitted, nothing waited for), GET follows the job to its end under the review rule every
response follows, and cancelling stops a background response that has not finished, as OpenAI's background mode."""

from __future__ import annotations

import json
import uuid

import pytest
from django.utils import timezone
from openai.types.responses import Response as OpenAIResponse

from atelier_platform.jobs import waiting
from atelier_platform.jobs.models import Job, JobStatus, Output, ReviewState
from tests.api.helpers import build_job
from tests.openai_compat.test_chat_completions import assert_openai_error
from tests.openai_compat.test_responses import RESPONSES, finish, queued_job, respond, rid, sse_events, strictly
from tests.openai_compat.test_waiting_limit import assert_refused_busy
from tests.support.wait_slots import no_slot_left_behind  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.django_db
with_worker = pytest.mark.django_db(transaction=True)


@pytest.fixture
def never_waits(monkeypatch):
    """A background call must not wait for its job: any wait fails the test."""
    def waited(*args, **kwargs):
        raise AssertionError("a background call waited for its job")

    monkeypatch.setattr("atelier_platform.openai_compat.services.wait_for_job", waited)
    monkeypatch.setattr("atelier_platform.openai_compat.services.watch_job", waited)


def in_background(api, headers=None, **fields) -> tuple[dict, Job]:
    response = respond(api, background=True, headers=headers, **fields)
    assert response.status_code == 200, response.content
    return strictly(OpenAIResponse, response.json()), Job.objects.get(pk=response["X-Atelier-Job-Id"])


def cancel(client, value: str):
    return client.post(f"{RESPONSES}/{value}/cancel")


def retrieved(api, job) -> dict:
    response = api.get(f"{RESPONSES}/{rid(job)}")
    assert response.status_code == 200, response.content
    return strictly(OpenAIResponse, response.json())


# --- creating in the background --------------------------------------------------------------------------------
def test_a_background_call_answers_at_once_with_the_queued_response(api, chat_project, never_waits):
    body, job = in_background(api, metadata={"order": "A-17"}, temperature=0.5)
    assert job.status == JobStatus.QUEUED and job.background is True
    assert body["id"] == rid(job) and body["object"] == "response" and body["status"] == "queued"
    assert body["background"] is True and body["output"] == [] and body["usage"] is None and body["completed_at"] is None
    assert body["metadata"] == {"order": "A-17"} and body["temperature"] == 0.5 and body["max_output_tokens"] == 24
    assert body["atelier"]["job_id"] == str(job.pk) and body["atelier"]["review_state"] is None
    assert body["atelier"]["final"] is False and body["atelier"]["status"] == "queued"
    assert retrieved(api, job) == body  # creating and retrieving give the same object


def test_a_background_call_takes_no_wait_slot(api, chat_project, atelier_config, never_waits):
    """Nothing waits for a background job, so a server whose every wait slot is taken still takes one."""
    atelier_config(max_waiting_requests=1)
    with waiting.take_wait_slot("another request", "test"):
        assert_refused_busy(respond(api))
        body, job = in_background(api)
    assert body["status"] == "queued" and Job.objects.get() == job


def test_a_background_response_is_followed_to_its_end_under_the_review_rule(api, chat_project, never_waits):
    _, job = in_background(api)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=timezone.now())
    running = retrieved(api, job)
    assert running["status"] == "in_progress" and running["background"] is True and running["output"] == []

    output = finish(job, ReviewState.PENDING, reply="SECRET UNREVIEWED WORDS")
    pending = retrieved(api, job)
    assert pending["status"] == "completed" and pending["background"] is True
    assert "pending human review" in pending["output"][0]["content"][0]["text"] and pending["atelier"]["final"] is False
    assert "SECRET" not in json.dumps(pending)

    Output.objects.filter(pk=output.pk).update(review_state=ReviewState.REJECTED)
    rejected = retrieved(api, job)
    assert rejected["status"] == "incomplete" and rejected["incomplete_details"] == {"reason": "content_filter"}
    assert "SECRET" not in json.dumps(rejected)

    Output.objects.filter(pk=output.pk).update(review_state=ReviewState.APPROVED)
    approved = retrieved(api, job)
    assert approved["status"] == "completed" and approved["atelier"]["final"] is True
    assert approved["output"][0]["content"][0]["text"] == "SECRET UNREVIEWED WORDS"


def test_a_background_job_that_failed_is_a_failed_response(api, chat_project, never_waits):
    _, job = in_background(api)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error_code="model_not_found", error_message="gone",
                                         finished_at=timezone.now())
    failed = retrieved(api, job)
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error" and failed["background"] is True


def test_an_idempotency_key_replays_a_background_response_as_it_stands_now(api, chat_project, never_waits):
    key = {"HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex}
    first, job = in_background(api, headers=key, metadata={"order": "A-17"})
    assert first["status"] == "queued"
    finish(job, ReviewState.APPROVED)
    again = respond(api, background=True, headers=key, metadata={"order": "A-17"})
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    replayed = strictly(OpenAIResponse, again.json())
    assert replayed["id"] == first["id"] and replayed["status"] == "completed" and replayed["background"] is True
    assert replayed["output"][0]["content"][0]["text"] == "Returns are accepted within 45 days."
    # the same key with other metadata, or without background, is another request
    assert_openai_error(respond(api, background=True, headers=key, metadata={"order": "B-2"}), 422,
                        "idempotency_key_reused")
    assert_openai_error(respond(api, headers=key, metadata={"order": "A-17"}), 422, "idempotency_key_reused")
    assert Job.objects.count() == 1


def test_background_is_for_the_chatbot_only(api, chat_project, empty_plugin_registry):
    from atelier_plugins.image.plugin import ImagePlugin

    empty_plugin_registry.register(ImagePlugin)
    assert_openai_error(respond(api, background=True, model="image"), 400, "model_not_supported", "model")
    assert_openai_error(respond(api, background=True, model="gpt-5"), 404, "model_not_found", "model")
    assert not Job.objects.exists()


@pytest.mark.parametrize("value", ["yes", 1, [], {}])
def test_background_must_be_a_flag(api, chat_project, value):
    assert_openai_error(respond(api, background=value), 400, "invalid_value", "background")
    assert not Job.objects.exists()


@with_worker
def test_a_background_stream_streams_as_usual_and_its_response_is_a_background_one(api, chat_project, worker):
    response = respond(api, background=True, stream=True, metadata={"order": "A-17"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    events = sse_events(response)
    assert [e["type"] for e in events][:2] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] == "response.completed"
    job = Job.objects.get()
    assert job.background is True
    for event in (events[0], events[-1]):
        assert event["response"]["background"] is True and event["response"]["metadata"] == {"order": "A-17"}
    assert events[-1]["response"] == retrieved(api, job)


@pytest.mark.parametrize("key", [None, "stream-key-1"])
def test_a_background_stream_whose_wait_runs_out_says_to_poll_the_response_not_to_retry(api, chat_project, wait_s,
                                                                                         key):
    """The response exists and goes on in the background: its client follows it by id (GET /v1/responses/{id}), as any
    background response. A retry, even with the same Idempotency-Key, would only wait again; the message said so."""
    wait_s(0.05)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else None
    events = sse_events(respond(api, background=True, stream=True, headers=headers))
    job = Job.objects.get()
    last = events[-1]
    assert last["type"] == "error" and last["code"] == "job_still_running"
    message = last["message"]
    assert f"GET {RESPONSES}/{rid(job)}" in message and "Idempotency-Key" not in message
    assert f"POST {RESPONSES}/{rid(job)}/cancel" in message and str(job.pk) in message
    assert last["error"]["details"] == {"job_id": str(job.pk), "job_url": f"/api/v1/jobs/{job.pk}/",
                                        "response_id": rid(job)}
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED  # it goes on: nothing was cancelled


def test_a_stream_not_in_the_background_still_says_to_retry_with_the_same_key(api, chat_project, wait_s):
    """A stream that was not asked to run in the background keeps its answer: the retry with the same
    Idempotency-Key waits for the same job again."""
    wait_s(0.05)
    last = sse_events(respond(api, stream=True, headers={"HTTP_IDEMPOTENCY_KEY": "stream-key-2"}))[-1]
    assert last["code"] == "job_still_running" and "Retrying with the same Idempotency-Key" in last["message"]
    assert "poll" not in last["message"] and "response_id" not in last["error"]["details"]


# --- cancelling ------------------------------------------------------------------------------------------------
def test_cancelling_a_queued_background_response_cancels_its_job_and_again_answers_the_same(api, chat_project):
    _, job = in_background(api, metadata={"order": "A-17"})
    cancelled = cancel(api, rid(job))
    assert cancelled.status_code == 200, cancelled.content
    body = strictly(OpenAIResponse, cancelled.json())
    assert body["id"] == rid(job) and body["status"] == "cancelled" and body["background"] is True
    assert body["output"] == [] and body["metadata"] == {"order": "A-17"} and body["completed_at"] is not None
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert retrieved(api, job) == body
    again = cancel(api, rid(job))  # OpenAI: cancelling twice answers the cancelled response again
    assert again.status_code == 200 and again.json() == body


def test_cancelling_a_running_background_response_stops_its_worker_and_it_reads_cancelled(api, chat_project):
    _, job = in_background(api)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, started_at=timezone.now())
    cancelled = cancel(api, rid(job))
    assert cancelled.status_code == 200, cancelled.content
    body = strictly(OpenAIResponse, cancelled.json())
    assert body["status"] == "cancelled" and body["completed_at"] is None and body["atelier"]["status"] == "running"
    stopping = Job.objects.get(pk=job.pk)  # its worker stops at its next step, and stores nothing
    assert stopping.status == JobStatus.RUNNING and stopping.cancel_requested_at is not None
    assert retrieved(api, job)["status"] == "cancelled"
    assert cancel(api, rid(job)).json()["status"] == "cancelled"
    Job.objects.filter(pk=job.pk).update(status=JobStatus.CANCELLED, finished_at=timezone.now())
    assert retrieved(api, job)["completed_at"] is not None


@pytest.mark.parametrize(("review_state", "finish_reason", "status"), [
    (ReviewState.APPROVED, "stop", "completed"),
    (ReviewState.PENDING, "stop", "completed"),
    (ReviewState.APPROVED, "length", "incomplete"),
    (ReviewState.REJECTED, "stop", "incomplete"),
])
def test_a_finished_response_cannot_be_cancelled(api, chat_project, review_state, finish_reason, status):
    _, job = in_background(api)
    finish(job, review_state, finish_reason=finish_reason)
    before = retrieved(api, job)
    error = assert_openai_error(cancel(api, rid(job)), 400, "response_finished")
    assert error["type"] == "invalid_request_error" and error["details"]["status"] == status
    assert status in error["message"] and "Returns are accepted" not in error["message"]
    assert retrieved(api, job) == before and Job.objects.get(pk=job.pk).cancel_requested_at is None


def test_a_failed_response_cannot_be_cancelled(api, chat_project):
    _, job = in_background(api)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.FAILED, error_code="plugin_error", finished_at=timezone.now())
    assert assert_openai_error(cancel(api, rid(job)), 400, "response_finished")["details"]["status"] == "failed"


def test_only_a_background_response_is_cancelled_here(api, chat_project, wait_s):
    """OpenAI cancels background responses only; a call that waited (and answered 504) left its job to the jobs API."""
    job = queued_job(api, wait_s)
    assert job.background is False
    error = assert_openai_error(cancel(api, rid(job)), 400, "response_not_background")
    assert f"/api/v1/jobs/{job.pk}/cancel/" in error["message"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


def test_another_projects_or_an_unknown_response_is_not_found(api, chat_project, other_project):
    theirs = build_job(other_project, plugin="chatbot", status=JobStatus.QUEUED, background=True,
                       input={"messages": [{"role": "user", "content": "hi"}]})
    for value in (rid(theirs), "resp_" + "0" * 32, "nonsense", str(theirs.pk)):
        assert_openai_error(cancel(api, value), 404, "response_not_found")
        assert_openai_error(api.get(f"{RESPONSES}/{value}"), 404, "response_not_found")
    assert Job.objects.get(pk=theirs.pk).status == JobStatus.QUEUED
    reverse = build_job(chat_project, status=JobStatus.QUEUED, background=True)  # not a chatbot job: no response
    assert_openai_error(cancel(api, rid(reverse)), 404, "response_not_found")


def test_cancelling_needs_jobs_write(api, chat_project, make_key, client_for):
    _, job = in_background(api)
    reader = client_for(make_key(chat_project, scopes=["jobs:read"]).raw)
    assert_openai_error(cancel(reader, rid(job)), 403, "permission_denied")
    assert_openai_error(cancel(client_for(None), rid(job)), 401, "not_authenticated")
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    writer = client_for(make_key(chat_project, scopes=["jobs:write"]).raw)
    assert cancel(writer, rid(job)).status_code == 200


def test_cancelling_an_erased_response_says_it_was_erased(api, chat_project, make_key, client_for):
    _, job = in_background(api)
    eraser = client_for(make_key(chat_project, ["jobs:read", "content:erase"]).raw)
    assert eraser.delete(f"{RESPONSES}/{rid(job)}").status_code == 200
    assert_openai_error(cancel(api, rid(job)), 410, "job_erased")


def test_a_cancel_with_a_body_or_a_query_is_still_a_cancel(api, chat_project):
    _, job = in_background(api)
    odd = api.post(f"{RESPONSES}/{rid(job)}/cancel?x=1", "[1, {\"a\": null}]", content_type="application/json")
    assert odd.status_code == 200 and odd.json()["status"] == "cancelled"
    assert_openai_error(api.get(f"{RESPONSES}/{rid(job)}/cancel"), 405)
