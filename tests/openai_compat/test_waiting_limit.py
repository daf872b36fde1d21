"""The /v1/ endpoints cannot answer without waiting for their job, so each takes one of its web process's
wait slots (``ATELIER_MAX_WAITING_REQUESTS``) before it submits anything. With none free the call is refused,
503 ``server_busy`` (429 ``too_many_waiting_requests`` past the project's own share) in OpenAI's error shape,
with ``Retry-After``, and no job is created: nothing is left running for nobody.

Before, every chat completion held a gunicorn thread for up to ``ATELIER_OPENAI_WAIT_S`` (a stream for all of
its stream): 8 concurrent chat users took every thread of the Procfile's 2 processes x 4 threads.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.jobs import lifecycle, waiting
from atelier_platform.jobs.models import Job
from tests.openai_compat.test_chat_completions import ask, assert_openai_error, events_of
from tests.openai_compat.test_images import generate
from tests.support.wait_slots import no_slot_left_behind, until  # noqa: F401 (an autouse fixture)

pytestmark = pytest.mark.django_db
#: tests whose waiting calls run in threads, or whose streams are closed as a WSGI server closes them (which
#: closes the database connection, as at the end of every request): their rows must be committed
committed = pytest.mark.django_db(transaction=True)


def assert_refused_busy(response, setting="ATELIER_MAX_WAITING_REQUESTS", status=503,
                        code="server_busy") -> dict:
    error = assert_openai_error(response, status, code)
    assert error["type"] == ("server_error" if status == 503 else "rate_limit_error")
    assert setting + "=" in error["message"] and "Nothing was submitted" in error["message"]
    assert error["details"]["setting"] == setting
    assert response["Retry-After"] == str(waiting.WAIT_SLOT_RETRY_AFTER_S)
    assert response["x-should-retry"] == "true"  # nothing was submitted: a retry submits it once
    assert "X-Atelier-Job-Id" not in response
    return error


@committed
def test_past_the_limit_a_chat_completion_is_503_and_submits_nothing(api_key, client_for, chat_project, wait_s,
                                                                       atelier_config):
    atelier_config(max_waiting_requests=2)
    wait_s(30)  # no worker: the jobs stay queued until the test cancels them

    def waiting_call():
        try:
            return ask(client_for(api_key.raw))
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as server:
        calls = [server.submit(waiting_call) for _ in range(2)]
        until(lambda: waiting.wait_slots.in_use == 2)
        started = time.monotonic()
        assert_refused_busy(ask(client_for(api_key.raw)))
        stream = ask(client_for(api_key.raw), stream=True)
        assert not stream.streaming and stream["Content-Type"] == "application/json"  # refused before the stream
        assert_refused_busy(stream)
        assert time.monotonic() - started < 10  # before, the first waited its 30 s
        # the two that wait (a waiting call takes its slot before its job's row commits: wait for both rows); the
        # refused calls, answered already, made none
        until(lambda: Job.objects.count() >= 2)
        assert Job.objects.count() == 2
        for job in Job.objects.all():
            with transaction.atomic():
                lifecycle.cancel_job(job)
        for call in calls:
            assert_openai_error(call.result(timeout=30), 409, "job_cancelled")  # woken, and answered


@committed
def test_a_stream_holds_its_slot_until_it_ends_or_the_client_goes_away(api, chat_project, wait_s, atelier_config):
    atelier_config(max_waiting_requests=1)
    wait_s(30)
    stream = ask(api, stream=True)
    assert stream.status_code == 200 and stream.streaming
    assert waiting.wait_slots.in_use == 1  # held from before its job was submitted
    assert_refused_busy(ask(api))
    assert Job.objects.count() == 1
    assert next(iter(stream.streaming_content)).startswith(b"data: ")  # the client reads the first event...
    stream.close()  # ...and goes: the WSGI server closes the response, and the slot comes back
    assert waiting.wait_slots.in_use == 0

    wait_s(0.05)
    stream = ask(api, stream=True)
    assert waiting.wait_slots.in_use == 1
    events = events_of(stream)  # to its end: the wait runs out, the stream says so and ends
    assert events[-2]["error"]["code"] == "job_still_running"
    assert waiting.wait_slots.in_use == 0


def test_images_are_refused_before_their_job_when_every_slot_is_taken(api, image_project, atelier_config):
    atelier_config(max_waiting_requests=1)
    with waiting.take_wait_slot("another request", "test"):
        assert_refused_busy(generate(api, n=1))
    assert not Job.objects.exists()


@committed
def test_a_projects_share_is_429_and_leaves_slots_to_other_projects(api, chat_project, other_project, make_key,
                                                                     client_for, wait_s, atelier_config):
    atelier_config(max_waiting_requests=3, max_waiting_requests_per_project=1)
    wait_s(30)
    mine = ask(api, stream=True)
    assert mine.status_code == 200
    assert_refused_busy(ask(api), setting="ATELIER_MAX_WAITING_REQUESTS_PER_PROJECT", status=429,
                        code="too_many_waiting_requests")
    assert Job.objects.filter(project=chat_project).count() == 1
    set_plugin_enabled(other_project, "chatbot", True)
    theirs = ask(client_for(make_key(other_project).raw), stream=True)
    assert theirs.status_code == 200 and waiting.wait_slots.in_use == 2
    mine.close()
    theirs.close()


def test_an_error_inside_the_wait_gives_the_slot_back(api, chat_project, wait_s, atelier_config, monkeypatch):
    atelier_config(max_waiting_requests=1)
    wait_s(30)

    real_status = waiting._status

    def database_gone(job_id):
        raise RuntimeError("the database went away mid-wait")

    monkeypatch.setattr(waiting, "_status", database_gone)
    api.raise_request_exception = False
    assert ask(api).status_code == 500
    assert waiting.wait_slots.in_use == 0
    events = events_of(ask(api, stream=True))  # the stream says so in an event, and ends
    assert events[-2]["error"]["code"] == "internal_error"
    assert waiting.wait_slots.in_use == 0
    # The one slot is free: a call waits again.
    monkeypatch.setattr(waiting, "_status", real_status)
    wait_s(0.05)
    assert_openai_error(ask(api), 504, "job_still_running")


def test_a_refused_call_is_logged_below_error(api, chat_project, atelier_config, caplog):
    """A busy server is no fault to page an operator about at every refusal: logged once, as a warning."""
    atelier_config(max_waiting_requests=1)
    with waiting.take_wait_slot("another request", "test"), caplog.at_level("INFO"):
        assert_refused_busy(ask(api))
    assert not [record for record in caplog.records if record.levelno >= 40]
    assert [record.levelname for record in caplog.records if "server is busy" in record.getMessage()] == ["WARNING"]


def test_a_refusal_is_counted_in_the_metrics(api, chat_project, atelier_config):
    from django.test import Client

    atelier_config(max_waiting_requests=1)
    before = waiting.wait_slots.refused.get(("openai", "process_limit"), 0)
    with waiting.take_wait_slot("another request", "test"):
        assert_refused_busy(ask(api))
    metrics = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
    assert any(line.startswith("atelier_waiting_requests_refused_total{") and 'kind="openai"' in line
               and line.endswith(f" {before + 1}.0") for line in metrics.splitlines()), metrics


def test_the_openapi_description_names_the_refusals():
    import io

    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", "--format", "openapi-json", stdout=out)
    paths = json.loads(out.getvalue())["paths"]
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/images/generations"):
        responses = paths[path]["post"]["responses"]
        assert "server_busy" in responses["503"]["description"]
        assert "too_many_waiting_requests" in responses["429"]["description"]
