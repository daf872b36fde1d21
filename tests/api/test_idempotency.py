"""Idempotency-Key: replay, conflict, and a duplicate that arrives while the first request still runs."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from atelier_platform.jobs import submission
from atelier_platform.jobs.models import Job
from atelier_platform.knowledge.models import KnowledgeDocument
from atelier_platform.moderation.models import ReviewItem
from atelier_platform.usage.models import IdempotencyRecord, IdempotencyState
from tests.api.helpers import assert_envelope

JOBS = "/api/v1/jobs/"
GOOD = {"plugin": "reverse_text", "input": {"text": "hello"}}


def lock(project, scope: str, key: str, body_fingerprint: str, *, seconds: float = 60) -> IdempotencyRecord:
    now = timezone.now()
    return IdempotencyRecord.objects.create(project=project, scope=scope, key=key, fingerprint=body_fingerprint,
                                            locked_until=now + timedelta(seconds=seconds), expires_at=now + timedelta(hours=1))


def job_fingerprint(body) -> str:
    return submission.fingerprint(submission.JobRequest(body["plugin"], body["input"], body.get("params", {}), body.get("priority", 5)))


@pytest.mark.django_db
class TestInFlight:
    def test_duplicate_while_the_first_runs_gets_409_with_retry_after(self, api, project):
        lock(project, submission.SINGLE_SCOPE, "order-1", job_fingerprint(GOOD))
        response = api.post(JOBS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
        error = assert_envelope(response, 409, "idempotency_in_flight")
        assert response["Retry-After"] == "1" and error["details"] == {"idempotency_key": "order-1"}
        assert Job.objects.count() == 0

    def test_other_body_under_a_key_in_flight_is_a_conflict(self, api, project):
        lock(project, submission.SINGLE_SCOPE, "order-1", job_fingerprint(GOOD))
        other = {**GOOD, "input": {"text": "other"}}
        assert_envelope(api.post(JOBS, other, format="json", HTTP_IDEMPOTENCY_KEY="order-1"), 422, "idempotency_key_reused")

    def test_a_dead_holders_lock_expires_and_is_taken_over(self, api, project):
        stale = lock(project, submission.SINGLE_SCOPE, "order-1", job_fingerprint(GOOD), seconds=-1)
        response = api.post(JOBS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="order-1")
        assert response.status_code == 201
        assert not IdempotencyRecord.objects.filter(pk=stale.pk).exists()  # released by the new holder

    def test_the_lock_is_gone_after_success_and_after_failure(self, api):
        assert api.post(JOBS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="a").status_code == 201
        assert api.post(JOBS, {**GOOD, "input": {"text": ""}}, format="json", HTTP_IDEMPOTENCY_KEY="b").status_code == 400
        assert IdempotencyRecord.objects.count() == 0
        # after the failure, the fixed request goes through under the same key
        assert api.post(JOBS, {**GOOD, "input": {"text": "fixed"}}, format="json", HTTP_IDEMPOTENCY_KEY="b").status_code == 201

    def test_batch_in_flight(self, api, project):
        body = {"jobs": [GOOD]}
        requests = [submission.JobRequest("reverse_text", GOOD["input"], {}, 5)]
        lock(project, submission.BATCH_SCOPE, "batch-1", submission.batch_fingerprint(requests))
        assert_envelope(api.post(f"{JOBS}batch/", body, format="json", HTTP_IDEMPOTENCY_KEY="batch-1"), 409, "idempotency_in_flight")

    def test_keys_are_per_endpoint_and_per_project(self, api, project, other_project):
        lock(project, submission.BATCH_SCOPE, "k", "0" * 64)
        lock(other_project, submission.SINGLE_SCOPE, "k", job_fingerprint(GOOD))
        assert api.post(JOBS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201

    def test_expired_answers_are_swept(self, api, project):
        old = lock(project, submission.BATCH_SCOPE, "old", "0" * 64)
        IdempotencyRecord.objects.filter(pk=old.pk).update(state=IdempotencyState.COMPLETED, expires_at=timezone.now() - timedelta(seconds=1))
        assert api.post(JOBS, GOOD, format="json", HTTP_IDEMPOTENCY_KEY="new").status_code == 201
        assert not IdempotencyRecord.objects.filter(pk=old.pk).exists()


@pytest.mark.django_db
def test_one_key_on_the_jobs_api_and_on_the_openai_routes_is_two_requests(api, project, empty_plugin_registry,
                                                                           atelier_config):
    """The key was the job row's across endpoints: the chat call with a key used on /jobs/ answered 422,
    and a /jobs/ call whose body matched a chat call's job replayed it."""
    from atelier_plugins.chatbot.plugin import ChatbotPlugin

    from atelier_platform.catalog.services import set_plugin_enabled

    empty_plugin_registry.register(ChatbotPlugin)
    set_plugin_enabled(project, "chatbot", True)
    atelier_config(openai_wait_s=0.05)  # no worker here: the chat call answers 504 with its job's id
    chat_body = {"model": "chatbot", "messages": [{"role": "user", "content": "hi"}]}
    jobs_body = {"plugin": "chatbot", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    assert api.post(JOBS, jobs_body, format="json", HTTP_IDEMPOTENCY_KEY="order-42").status_code == 201
    chat = api.post("/v1/chat/completions", chat_body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert chat.status_code == 504 and Job.objects.count() == 2, chat.content
    again = api.post("/v1/chat/completions", chat_body, format="json", HTTP_IDEMPOTENCY_KEY="order-42")
    assert again["X-Atelier-Job-Id"] == chat["X-Atelier-Job-Id"] and Job.objects.count() == 2  # replayed on its own route
    other_way = api.post("/v1/chat/completions", chat_body, format="json", HTTP_IDEMPOTENCY_KEY="k-7")
    fresh = api.post(JOBS, jobs_body, format="json", HTTP_IDEMPOTENCY_KEY="k-7")  # a chat call's key on /jobs/
    assert fresh.status_code == 201 and fresh.json()["id"] != other_way["X-Atelier-Job-Id"] and Job.objects.count() == 4


@pytest.mark.django_db
def test_a_batch_retried_days_later_still_gets_its_first_jobs(api, project, monkeypatch):
    """Its answer expired after 24 hours, and the same retry then created every job again; a single job's
    key, kept on its row, never expires."""
    body = {"jobs": [GOOD, {"plugin": "reverse_text", "input": {"text": "again"}}]}
    first = api.post(f"{JOBS}batch/", body, format="json", HTTP_IDEMPOTENCY_KEY="nightly-1")
    assert first.status_code == 201
    three_days_later = timezone.now() + timedelta(days=3)
    monkeypatch.setattr("atelier_platform.usage.idempotency.timezone.now", lambda: three_days_later)
    again = api.post(f"{JOBS}batch/", body, format="json", HTTP_IDEMPOTENCY_KEY="nightly-1")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert [job["id"] for job in again.json()["jobs"]] == [job["id"] for job in first.json()["jobs"]]
    assert Job.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_real_concurrent_duplicate_is_told_to_wait_then_replayed(api, monkeypatch):
    """Two processes' worth of requests, for real: the first is held inside screening while the duplicate arrives."""
    entered, release = threading.Event(), threading.Event()
    real_screen = submission._screen

    def slow_screen(project, prepared, policy=None):
        if prepared.input.get("text") == "slow":
            entered.set()
            assert release.wait(10)
        return real_screen(project, prepared, policy)

    monkeypatch.setattr(submission, "_screen", slow_screen)
    body = {**GOOD, "input": {"text": "slow"}}
    first: dict = {}

    def send_first():
        try:
            first["response"] = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="concurrent-1")
        finally:
            connection.close()

    thread = threading.Thread(target=send_first)
    thread.start()
    try:
        assert entered.wait(10)
        duplicate = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="concurrent-1")
        assert_envelope(duplicate, 409, "idempotency_in_flight")
        assert duplicate["Retry-After"] == "1"
    finally:
        release.set()
        thread.join(10)
    assert first["response"].status_code == 201
    again = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="concurrent-1")
    assert again.status_code == 200 and again.json()["id"] == first["response"].json()["id"]
    assert Job.objects.count() == 1


@pytest.mark.django_db
class TestOtherCreatingEndpoints:
    def test_review_decision_replays_instead_of_conflicting(self, project, make_key, client_for, make_job, make_output):
        output = make_output(make_job(project))
        item = ReviewItem.objects.create(output=output, project=project)
        reviewer = client_for(make_key(project, ["reviews:read", "reviews:write"]).raw)
        assert reviewer.post(f"/api/v1/reviews/{item.pk}/claim/").status_code == 200
        url = f"/api/v1/reviews/{item.pk}/decision/"
        first = reviewer.post(url, {"action": "approve"}, format="json", HTTP_IDEMPOTENCY_KEY="decide-1")
        again = reviewer.post(url, {"action": "approve"}, format="json", HTTP_IDEMPOTENCY_KEY="decide-1")
        assert first.status_code == 200 and again.status_code == 200 and again["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert_envelope(reviewer.post(url, {"action": "approve"}, format="json"), 409, "review_decided")
        assert_envelope(reviewer.post(url, {"action": "reject", "reason": "other"}, format="json", HTTP_IDEMPOTENCY_KEY="decide-1"),
                        422, "idempotency_key_reused")

    def test_knowledge_document_with_a_key(self, owner_api, sent_messages):
        body = {"source_id": "faq", "title": "FAQ", "content": "Questions."}
        first = owner_api.post("/api/v1/knowledge/documents/", body, format="json", HTTP_IDEMPOTENCY_KEY="doc-1")
        again = owner_api.post("/api/v1/knowledge/documents/", body, format="json", HTTP_IDEMPOTENCY_KEY="doc-1")
        assert first.status_code == 201 and again.status_code == 201 and again["Idempotent-Replayed"] == "true"
        assert KnowledgeDocument.objects.count() == 1

    @pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
    def test_bad_keys_everywhere(self, owner_api, key):
        for path, body in (("/api/v1/jobs/batch/", {"jobs": [GOOD]}), ("/api/v1/api-keys/", {}),
                           ("/api/v1/knowledge/documents/", {"source_id": "a", "title": "A", "content": "a"})):
            assert_envelope(owner_api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key), 400, "validation_error")
