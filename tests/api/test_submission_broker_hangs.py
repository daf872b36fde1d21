"""A job submitted while the broker hangs (Redis takes the connection and never answers): the request still
answers 201 with the queued job, the hung broker is not asked again on new connections (each time is another
socket timeout the submitter waits: two retries held a request about 21 s), and the sweeper sends the job's
message once the broker is back. The request's own transaction commits (as in production), so the publish
on commit happens inside the request. The hang guards only stop a test that would wait far too long."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from atelier_platform.celery_app import create_app
from atelier_platform.config import get_config
from atelier_platform.jobs import lifecycle, queueing
from atelier_platform.jobs.models import Job, JobStatus
from tests.platform.test_health import silent_server
from tests.support.hanging_redis import messages_for

pytestmark = pytest.mark.django_db(transaction=True)

JOBS = "/api/v1/jobs/"
GOOD = {"plugin": "reverse_text", "input": {"text": "hello"}}


def submit(api):
    return api.post(JOBS, json.dumps(GOOD), content_type="application/json")


def a_while_later():
    return timezone.now() + timedelta(seconds=get_config().job_requeue_after_s + 1)


@pytest.fixture
def broker_at(monkeypatch, atelier_config):
    """Publish jobs to the Redis broker at ``url``, through an app of the real settings (BROKER_URL: the rate
    limit's counters stay where REDIS_URL keeps them)."""

    def point(url: str):
        monkeypatch.setenv("BROKER_URL", url)
        atelier_config()  # read afresh
        monkeypatch.setattr(queueing, "app", create_app())

    return point


@pytest.mark.timeout(60, method="signal")
def test_a_job_submitted_while_the_broker_does_not_answer_is_answered_queued_and_sent_by_the_sweeper(
        api, broker_at, sent_messages, monkeypatch):
    """A web process that never reached the broker: its first publish waits out one answer, then gives up."""
    recording_app = queueing.app  # what sent_messages records, standing for a broker that answers
    with silent_server() as (host, port):
        broker_at(f"redis://{host}:{port}/7")
        response = submit(api)
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["status"] == "queued"
    assert Job.objects.get(pk=job["id"]).status == JobStatus.QUEUED
    assert sent_messages == []

    monkeypatch.setattr(queueing, "app", recording_app)  # the broker is back
    assert lifecycle.sweep(now=a_while_later())["republished"] == 1
    assert [message["args"] for message in sent_messages] == [[job["id"]]]


@pytest.mark.timeout(60, method="signal")
def test_a_broker_that_hangs_under_a_connected_web_process_is_not_asked_again_and_the_sweeper_sends_later(
        api, broker_at, hanging_redis):
    """The common case: the web process published before, and its pooled connection is open when Redis hangs.
    The publish waited out the socket timeout, then kombu's retry policy reconnected and asked again, twice
    (about 21 s in all before the 201). A publish that got no answer now gives up."""
    broker_at(hanging_redis.url)
    submitted = [submit(api).json()["id"]]  # Redis answers: the pool holds a connection that works
    try:
        assert messages_for(hanging_redis.direct_url, submitted[0], take=True) == 1

        hanging_redis.hang()
        response = submit(api)
        assert response.status_code == 201, response.content
        job = response.json()
        submitted.append(job["id"])
        assert job["status"] == "queued" and Job.objects.get(pk=job["id"]).status == JobStatus.QUEUED
        assert hanging_redis.connections_while_hung == 0  # no new connection, no second wait for an answer

        hanging_redis.restart()  # Redis is back; the connection the web process held is gone
        assert lifecycle.sweep(now=a_while_later())["republished"] == 2  # the first job too: no worker here
        assert messages_for(hanging_redis.direct_url, job["id"], take=False) == 1
    finally:
        hanging_redis.restart()
        for job_id in submitted:
            messages_for(hanging_redis.direct_url, job_id, take=True)
