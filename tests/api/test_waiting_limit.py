"""A web process lets at most ``ATELIER_MAX_WAITING_REQUESTS`` requests wait for their jobs at once, so that
waiting requests never take every thread: ``/healthz`` and every other request keep being served. Past the
limit ``Prefer: wait`` is ignored (RFC 7240): the answer comes at once, with the job as it is and no
``Preference-Applied``.

Before, each ``Prefer: wait`` held a gunicorn thread for its whole wait: 12 waits from one API key on the
Procfile's 2 processes x 4 threads kept ``/healthz`` unanswered for 13.5 s. The tests run the real views and
the real waiting code; a pool of 4 threads stands for one gunicorn process of the shipped ``--threads 4``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction
from django.test import Client

from atelier_platform.jobs import lifecycle, waiting
from atelier_platform.jobs.models import Job, JobStatus
from tests.api.helpers import build_job
from tests.support.wait_slots import no_slot_left_behind, until  # noqa: F401 (an autouse fixture)

#: The waiting requests run in threads: they need the test's rows committed, as a web process would.
pytestmark = pytest.mark.django_db(transaction=True)

#: Threads of one web process as the Procfile, the Dockerfile and docker-compose.yml start gunicorn.
SHIPPED_THREADS = 4


def in_a_thread_of_the_server(request):
    """``request()`` as a web thread serves it: with its own database connection, closed after."""
    def serve():
        try:
            return request()
        finally:
            connection.close()

    return serve


def finish(job) -> None:
    """Cancel the queued job, as a caller would: its waiters wake at once."""
    with transaction.atomic():
        lifecycle.cancel_job(job)


def timed(request):
    started = time.monotonic()
    response = request()
    return response, time.monotonic() - started


def test_past_the_limit_a_wait_is_answered_at_once_with_the_job_as_it_is(api_key, client_for, project, atelier_config):
    atelier_config(max_waiting_requests=2)
    job = build_job(project, status=JobStatus.QUEUED)  # no worker: it finishes when the test cancels it
    url = f"/api/v1/jobs/{job.pk}/"

    def wait(seconds: int):
        return timed(lambda: client_for(api_key.raw).get(url, HTTP_PREFER=f"wait={seconds}"))

    with ThreadPoolExecutor(max_workers=3) as server:
        waiters = [server.submit(in_a_thread_of_the_server(lambda: wait(30))) for _ in range(2)]
        until(lambda: waiting.wait_slots.in_use == 2)
        # The third finds no slot: answered at once, as if it had not asked to wait.
        third, seconds = server.submit(in_a_thread_of_the_server(lambda: wait(15))).result(timeout=30)
        assert seconds < 7  # before, it waited its 15 s like the others
        assert third.status_code == 200, third.content
        assert third.json()["status"] == "queued" and third.json()["id"] == str(job.pk)
        assert "Preference-Applied" not in third
        assert waiting.wait_slots.in_use == 2  # the two still wait
        finish(job)
        for waiter in waiters:
            response, seconds = waiter.result(timeout=30)
            assert seconds < 20  # woken by the cancel, not at the end of their 30 s
            assert response.status_code == 200 and response.json()["status"] == "cancelled"
            assert response["Preference-Applied"] == "wait=30"
    # The slots came back: a wait is honoured again.
    other = build_job(project, status=JobStatus.QUEUED)
    response = client_for(api_key.raw).get(f"/api/v1/jobs/{other.pk}/", HTTP_PREFER="wait=1")
    assert response["Preference-Applied"] == "wait=1" and response.json()["status"] == "queued"


def test_a_submit_past_the_limit_is_created_and_answered_at_once(api_key, client_for, project, atelier_config):
    atelier_config(max_waiting_requests=1)
    held = build_job(project, status=JobStatus.QUEUED)
    with ThreadPoolExecutor(max_workers=1) as server:
        waiter = server.submit(in_a_thread_of_the_server(
            lambda: client_for(api_key.raw).get(f"/api/v1/jobs/{held.pk}/", HTTP_PREFER="wait=30")))
        until(lambda: waiting.wait_slots.in_use == 1)
        response, seconds = timed(lambda: client_for(api_key.raw).post(
            "/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "hello"}}, format="json", HTTP_PREFER="wait=15"))
        assert seconds < 7
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "queued" and "Preference-Applied" not in response
        assert response["Location"] == f"/api/v1/jobs/{response.json()['id']}/"
        finish(held)
        assert waiter.result(timeout=30)["Preference-Applied"] == "wait=30"
    assert Job.objects.count() == 2


def test_a_finished_job_is_answered_with_preference_applied_even_when_every_slot_is_taken(
        api_key, client_for, project, atelier_config):
    """Nothing to wait for: the wait is as good as honoured, with or without a slot (as before)."""
    atelier_config(max_waiting_requests=1)
    held, done = build_job(project, status=JobStatus.QUEUED), build_job(project, status=JobStatus.SUCCEEDED)
    with ThreadPoolExecutor(max_workers=1) as server:
        waiter = server.submit(in_a_thread_of_the_server(
            lambda: client_for(api_key.raw).get(f"/api/v1/jobs/{held.pk}/", HTTP_PREFER="wait=30")))
        until(lambda: waiting.wait_slots.in_use == 1)
        response = client_for(api_key.raw).get(f"/api/v1/jobs/{done.pk}/", HTTP_PREFER="wait=5")
        assert response.json()["status"] == "succeeded" and response["Preference-Applied"] == "wait=5"
        finish(held)
        waiter.result(timeout=30)


def test_healthz_and_reads_are_served_while_one_key_waits_on_every_thread(api_key, client_for, project):
    """The reported freeze, on one process of the shipped gunicorn (4 threads) with the default limit: 12
    waiting requests from one key, then /healthz, a plain read and a submit, each answered promptly."""
    job = build_job(project, status=JobStatus.QUEUED)
    url = f"/api/v1/jobs/{job.pk}/"
    with ThreadPoolExecutor(max_workers=SHIPPED_THREADS) as server:  # gunicorn's gthread: a queue and 4 threads
        started = time.monotonic()
        waits = [server.submit(in_a_thread_of_the_server(lambda: client_for(api_key.raw).get(url, HTTP_PREFER="wait=15")))
                 for _ in range(12)]
        health = server.submit(in_a_thread_of_the_server(lambda: Client().get("/healthz")))
        read = server.submit(in_a_thread_of_the_server(lambda: client_for(api_key.raw).get(url)))
        submit = server.submit(in_a_thread_of_the_server(lambda: client_for(api_key.raw).post(
            "/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "hi"}}, format="json")))
        for future, status in ((health, 200), (read, 200), (submit, 201)):
            assert future.result(timeout=60).status_code == status
        # Before, /healthz came after the first four waits had run out (15 s), and so did the read and the submit.
        assert time.monotonic() - started < 7
        assert waiting.wait_slots.in_use == 2  # two still wait; the ten others were answered at once
        until(lambda: sum(future.done() for future in waits) == 10)
        at_once = [future.result() for future in waits if future.done()]
        assert all("Preference-Applied" not in response and response.json()["status"] == "queued" for response in at_once)
        finish(job)
        answers = [future.result(timeout=30) for future in waits]
    waited = [response for response in answers if "Preference-Applied" in response]
    assert len(waited) == 2 and all(response.json()["status"] == "cancelled" for response in waited)


def test_an_error_inside_the_wait_gives_the_slot_back(api_key, client_for, project, atelier_config, monkeypatch):
    atelier_config(max_waiting_requests=1)
    job = build_job(project, status=JobStatus.QUEUED)
    real_status = waiting._status

    def database_gone(job_id):
        raise RuntimeError("the database went away mid-wait")

    monkeypatch.setattr(waiting, "_status", database_gone)
    client = client_for(api_key.raw)
    client.raise_request_exception = False
    for _ in range(3):
        assert client.get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER="wait=5").status_code == 500
        assert waiting.wait_slots.in_use == 0
    monkeypatch.setattr(waiting, "_status", real_status)
    response = client.get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER="wait=1")
    assert response.status_code == 200 and response["Preference-Applied"] == "wait=1"  # the one slot is free


def test_a_projects_share_leaves_slots_to_other_projects(api_key, client_for, project, other_project, make_key,
                                                         atelier_config):
    atelier_config(max_waiting_requests=3, max_waiting_requests_per_project=1)
    mine, theirs = build_job(project, status=JobStatus.QUEUED), build_job(other_project, status=JobStatus.QUEUED)
    their_key = make_key(other_project)
    with ThreadPoolExecutor(max_workers=2) as server:
        waiter = server.submit(in_a_thread_of_the_server(
            lambda: client_for(api_key.raw).get(f"/api/v1/jobs/{mine.pk}/", HTTP_PREFER="wait=30")))
        until(lambda: waiting.wait_slots.in_use == 1)
        # This project's second wait is past its share: answered at once...
        response, seconds = timed(lambda: client_for(api_key.raw).get(f"/api/v1/jobs/{mine.pk}/", HTTP_PREFER="wait=15"))
        assert seconds < 7 and "Preference-Applied" not in response
        # ...while another project still waits.
        theirs_waiting = server.submit(in_a_thread_of_the_server(
            lambda: client_for(their_key.raw).get(f"/api/v1/jobs/{theirs.pk}/", HTTP_PREFER="wait=30")))
        until(lambda: waiting.wait_slots.in_use == 2)
        finish(mine)
        finish(theirs)
        assert waiter.result(timeout=30)["Preference-Applied"] == "wait=30"
        assert theirs_waiting.result(timeout=30)["Preference-Applied"] == "wait=30"


def test_the_metrics_show_the_waiting_requests_and_the_refusals(api_key, client_for, project, atelier_config):
    atelier_config(max_waiting_requests=1)
    job = build_job(project, status=JobStatus.QUEUED)
    refused_before = waiting.wait_slots.refused.get(("prefer_wait", "process_limit"), 0)
    with ThreadPoolExecutor(max_workers=1) as server:
        waiter = server.submit(in_a_thread_of_the_server(
            lambda: client_for(api_key.raw).get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER="wait=30")))
        until(lambda: waiting.wait_slots.in_use == 1)
        assert "Preference-Applied" not in client_for(api_key.raw).get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER="wait=5")
        metrics = Client(REMOTE_ADDR="127.0.0.1").get("/metrics").content.decode()
        finish(job)
        waiter.result(timeout=30)
    lines = metrics.splitlines()
    assert any(line.startswith("atelier_waiting_requests{") and line.endswith(" 1.0") for line in lines), metrics
    assert any(line.startswith("atelier_waiting_requests_limit{") and line.endswith(" 1.0") for line in lines)
    assert any(line.startswith("atelier_waiting_requests_refused_total{") and 'kind="prefer_wait"' in line
               and 'reason="process_limit"' in line and line.endswith(f" {refused_before + 1}.0") for line in lines)


def test_a_web_process_warns_when_the_limit_leaves_it_no_free_thread(atelier_config, monkeypatch, caplog):
    atelier_config(max_waiting_requests=4)
    monkeypatch.setattr("sys.argv", [".venv/bin/gunicorn", "atelier_platform.wsgi", "--workers", "2", "--threads", "4"])
    with caplog.at_level("INFO", logger="atelier.jobs"):
        waiting.check_waiting_limit()
    assert "ATELIER_MAX_WAITING_REQUESTS=4 is not below this web process's 4 threads" in caplog.text
    caplog.clear()
    atelier_config(max_waiting_requests=2)
    with caplog.at_level("INFO", logger="atelier.jobs"):
        waiting.check_waiting_limit()
    assert [record.levelname for record in caplog.records] == ["INFO"]
    assert "at most 2 requests of this web process wait" in caplog.text and "of its 4 threads" in caplog.text
