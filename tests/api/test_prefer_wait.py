"""``Prefer: wait=N`` on submit and on fetch: the answer comes once the job has finished (no polling),
or after N seconds with the job as it is; a malformed preference is a 400 and creates nothing."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
from django.db import connection, transaction

from atelier_platform.catalog.registry import get_registry
from atelier_platform.config import get_config
from atelier_platform.jobs import lifecycle, waiting
from atelier_platform.jobs.models import Job, JobStatus
from atelier_workers.runtime import JobRunner, ModelCache
from tests.api.helpers import build_job

#: Tests where a thread finishes the job need its commits visible to the waiting request.
with_worker = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(monkeypatch):
    """Published jobs run in a thread, as a worker would run them, while the request waits."""
    threads: list[threading.Thread] = []

    def send_task(name, args=None, **options):
        def run():
            try:
                JobRunner(get_registry(), ModelCache("cpu")).run(args[0])
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        threads.append(thread)

    monkeypatch.setattr("atelier_platform.jobs.queueing.app.send_task", send_task)
    yield
    for thread in threads:
        thread.join(timeout=60)


def submit(api, prefer=None, sleep_s=0.3):
    headers = {"HTTP_PREFER": prefer} if prefer else {}
    return api.post("/api/v1/jobs/", {"plugin": "reverse_text", "input": {"text": "hello", "sleep_s": sleep_s}},
                    format="json", **headers)


@with_worker
def test_submit_with_prefer_wait_answers_with_the_finished_job(api, project, worker):
    response = submit(api, "wait=30")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert len(body["outputs"]) == 1
    assert response["Preference-Applied"] == "wait=30"
    assert response["Location"] == f"/api/v1/jobs/{body['id']}/"


@with_worker
def test_fetch_with_prefer_wait_returns_when_the_job_finishes(api, project, worker):
    job_id = submit(api, sleep_s=0.5).json()["id"]
    started = time.monotonic()
    response = api.get(f"/api/v1/jobs/{job_id}/", HTTP_PREFER="wait=30")
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert response["Preference-Applied"] == "wait=30"
    assert time.monotonic() - started < 20  # woke when the job finished, not at the end of the wait


def test_a_finished_job_is_answered_at_once_and_read_once(api, project, django_assert_max_num_queries):
    job = build_job(project, status=JobStatus.SUCCEEDED)
    started = time.monotonic()
    # The same reads as without the header: no look for a notice, no second read after it.
    with django_assert_max_num_queries(_reads_of_one_job(api, job)):
        response = api.get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER="wait=30")
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded"
    assert response["Preference-Applied"] == "wait=30"
    assert time.monotonic() - started < 5


def test_a_waited_fetch_reads_the_outputs_once_after_the_wait(api, project):
    from django.test.utils import CaptureQueriesContext

    job = build_job(project, status=JobStatus.QUEUED)  # no worker: the wait runs out
    with CaptureQueriesContext(connection) as reads:
        response = api.get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER="wait=1")
    assert response.status_code == 200 and response.json()["status"] == "queued"
    output_reads = [q for q in reads.captured_queries if 'FROM "jobs_output"' in q["sql"]]
    assert len(output_reads) == 1  # not once before the wait and again after it


def _reads_of_one_job(api, job) -> int:
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as reads:
        assert api.get(f"/api/v1/jobs/{job.pk}/").status_code == 200
    return len(reads)


def test_a_wait_that_runs_out_answers_with_the_job_as_it_is(api, project):
    # No worker: the job stays queued.
    response = submit(api, "wait=1")
    assert response.status_code == 201
    assert response.json()["status"] == "queued"
    assert response["Preference-Applied"] == "wait=1"


def test_without_a_wait_preference_the_answer_is_immediate(api, project):
    response = submit(api, "respond-async")
    assert response.status_code == 201
    assert response.json()["status"] == "queued"
    assert "Preference-Applied" not in response


@pytest.mark.parametrize("prefer", ["wait=0", "wait=61", "wait=abc", "wait=-3", "wait=1.5", "wait=\u0661", "respond-async, wait=9999"])
def test_a_malformed_wait_is_refused_and_creates_nothing(api, project, prefer):
    response = submit(api, prefer)
    assert response.status_code == 400
    assert "Prefer" in response.json()["error"]["details"]
    assert not Job.objects.exists()
    job = build_job(project, status=JobStatus.QUEUED)
    assert api.get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER=prefer).status_code == 400


def test_another_projects_job_is_404_even_when_waiting(api, other_project):
    job = build_job(other_project, status=JobStatus.QUEUED)
    started = time.monotonic()
    assert api.get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER="wait=30").status_code == 404
    assert time.monotonic() - started < 20  # refused before any wait


@with_worker
def test_a_job_deleted_while_waited_for_is_404_not_an_error(api, project):
    job = build_job(project, status=JobStatus.QUEUED)

    def delete_soon():
        try:
            time.sleep(0.3)
            Job.objects.filter(pk=job.pk).delete()
        finally:
            connection.close()

    deleter = threading.Thread(target=delete_soon)
    deleter.start()
    started = time.monotonic()
    response = api.get(f"/api/v1/jobs/{job.pk}/", HTTP_PREFER="wait=30")
    deleter.join()
    assert response.status_code == 404, response.content
    assert "deleted while the request waited" in response.json()["error"]["message"]
    assert time.monotonic() - started < 20  # the row read during the wait saw it gone


@with_worker
def test_a_waited_answer_is_the_job_as_it_finished_with_its_outputs(api, project, worker):
    body = submit(api, "wait=30", sleep_s=0.1).json()
    fetched = api.get(f"/api/v1/jobs/{body['id']}/").json()
    assert body == fetched  # read again after the wait: the same answer as a plain fetch afterwards
    assert body["project"] == project.slug and body["outputs"][0]["content"]["text"] == "olleh"


def fail_as_a_worker(job) -> None:
    claim = lifecycle.claim_job(str(job.pk), "test-worker")
    lifecycle.fail_job(str(job.pk), claim.token, "test", "finished by the test")


def assert_woken_when_another_process_finishes(job, finish=fail_as_a_worker, status: str = "failed") -> None:
    """A thread, standing for a worker (or a caller), finishes ``job`` after 0.5 s; the waiter must wake long
    before its 50 s."""
    def finish_soon():
        try:
            time.sleep(0.5)
            with transaction.atomic():
                finish(job)
        finally:
            connection.close()

    finisher = threading.Thread(target=finish_soon)
    finisher.start()
    started = time.monotonic()
    assert waiting.wait_until_finished(job.pk, 50)
    assert time.monotonic() - started < 30
    finisher.join()
    assert Job.objects.get(pk=job.pk).status == status


@pytest.mark.skipif(not get_config().redis_url, reason="the finish notice travels through Redis (set REDIS_URL)")
@with_worker
def test_the_finish_notice_wakes_a_waiter_at_once(project, monkeypatch):
    """With Redis, a waiter does not depend on rereading the row: with rereads 60 s apart it still wakes."""
    monkeypatch.setattr(waiting, "SAFETY_RECHECK_S", 60.0)
    job = build_job(project, status=JobStatus.QUEUED)
    assert_woken_when_another_process_finishes(job)


@pytest.fixture
def embedded_notices(monkeypatch, tmp_path):
    """Waiting as in the embedded set-up (no Redis), wherever this runs, with row reads 60 s apart: only
    a notice can wake a waiter in time."""
    embedded = get_config().model_copy(update={"redis_url": None})
    monkeypatch.setattr(waiting, "get_config", lambda: embedded)
    monkeypatch.setattr(waiting, "POLL_FIRST_S", 60.0)
    monkeypatch.setattr(waiting, "notice_folder", lambda: tmp_path / "job-notices")
    return tmp_path / "job-notices"


@with_worker
def test_without_redis_the_doorbell_wakes_a_waiter_at_once(project, embedded_notices):
    """The finishing commit rings the waiter's named pipe; the waiter takes its pipe away after."""
    job = build_job(project, status=JobStatus.QUEUED)
    assert_woken_when_another_process_finishes(job)
    assert (embedded_notices / str(job.pk)).exists()
    assert not (embedded_notices / "waiting" / str(job.pk)).exists()


@with_worker
def test_cancelling_a_queued_job_wakes_its_waiters(project, embedded_notices):
    """Before, only a worker's finish rang: a waiter on a job cancelled in the queue woke at its next reread."""
    job = build_job(project, status=JobStatus.QUEUED)
    assert_woken_when_another_process_finishes(job, finish=lifecycle.cancel_job, status="cancelled")


@with_worker
def test_without_a_doorbell_the_notice_file_wakes_a_waiter(project, embedded_notices, monkeypatch):
    """Where no named pipe can be made, the waiter looks for the notice file; the sweeper removes old notices."""
    monkeypatch.setattr(waiting, "_open_doorbell", lambda job_id: None)
    job = build_job(project, status=JobStatus.QUEUED)
    assert_woken_when_another_process_finishes(job)
    notice = embedded_notices / str(job.pk)
    assert notice.exists()
    assert waiting.forget_old_notices(now=time.time()) == 0  # still fresh
    assert waiting.forget_old_notices(now=time.time() + waiting.NOTICE_KEEP_S + 1) == 1
    assert not notice.exists()


def test_a_doorbell_whose_waiter_died_neither_blocks_the_ring_nor_stays(embedded_notices):
    job_id = uuid.uuid4()
    doorbell = waiting._Doorbell(job_id)
    for fd in doorbell._fds:  # the waiter's process is gone: its pipe has no reader any more
        os.close(fd)
    doorbell._fds = []
    started = time.monotonic()
    waiting._ring(job_id)  # refused at once (no reader), not blocked, not raised
    assert time.monotonic() - started < 1
    assert waiting.forget_old_notices(now=time.time()) == 0 and doorbell.path.exists()
    waiting.forget_old_notices(now=time.time() + waiting.NOTICE_KEEP_S + 1)
    assert not (embedded_notices / "waiting" / str(job_id)).exists()


def test_the_sweeper_leaves_the_doorbell_of_a_waiter_still_listening_however_old(embedded_notices):
    """An OpenAI-compatible request may wait an hour, longer than notices are kept."""
    job_id = uuid.uuid4()
    doorbell = waiting._Doorbell(job_id)
    try:
        waiting.forget_old_notices(now=time.time() + waiting.NOTICE_KEEP_S + 1)
        assert doorbell.path.exists() and not doorbell.rung_within(0.05)  # looking did not ring it
        waiting._ring(job_id)
        assert doorbell.rung_within(5)
    finally:
        doorbell.close()


def test_a_doorbell_is_made_though_the_jobs_last_other_waiter_takes_the_folder_away(embedded_notices, monkeypatch):
    job_id = uuid.uuid4()
    folder = embedded_notices / "waiting" / str(job_id)
    make_pipe = os.mkfifo
    raced = []

    def folder_gone_first(path, mode=0o666):
        if not raced:  # between this waiter's mkdir and mkfifo, the other waiter closes: rmdir of the empty folder
            raced.append(True)
            folder.rmdir()
        return make_pipe(path, mode)

    monkeypatch.setattr(waiting.os, "mkfifo", folder_gone_first)
    doorbell = waiting._Doorbell(job_id)
    try:
        assert raced and doorbell.path.exists()
        waiting._ring(job_id)
        assert doorbell.rung_within(5)
    finally:
        doorbell.close()


def test_a_doorbell_wakes_only_when_rung(embedded_notices):
    job_id = uuid.uuid4()
    doorbell = waiting._Doorbell(job_id)
    try:
        assert not doorbell.rung_within(0.05)  # its own writing end open: no hang-up reads as a ring
        waiting._ring(uuid.uuid4())  # another job's ring
        assert not doorbell.rung_within(0.05)
        waiting._ring(job_id)
        assert doorbell.rung_within(5)
    finally:
        doorbell.close()
    assert not doorbell.path.exists()


needs_redis = pytest.mark.skipif(not get_config().redis_url, reason="the finish notice travels through Redis (set REDIS_URL)")


def subscribed_connections(client) -> dict[str, int]:
    """This process's connections with channel or pattern subscriptions: {"channels": n, "patterns": m}. Of
    this process only: pub/sub is not per database, and another Atelier may share the server."""
    found = {"channels": 0, "patterns": 0}
    for entry in client.client_list():
        if entry.get("name") == waiting.listener_client_name():
            found["channels"] += int(entry.get("sub", 0)) > 0
            found["patterns"] += int(entry.get("psub", 0)) > 0
    return found


@needs_redis
@with_worker
def test_many_waiters_share_the_processs_one_subscription(project, monkeypatch):
    """No Redis connection or subscription per waiting request: one per process, however many wait."""
    from atelier_platform.redis_client import shared_redis

    monkeypatch.setattr(waiting, "SAFETY_RECHECK_S", 60.0)  # only a notice wakes them in time
    client = shared_redis(get_config().redis_url)
    jobs = [build_job(project, status=JobStatus.QUEUED) for _ in range(12)]
    woken: list[bool] = []

    def wait(job):
        try:
            woken.append(waiting.wait_until_finished(job.pk, 50))
        finally:
            connection.close()

    waiters = [threading.Thread(target=wait, args=(job,)) for job in jobs]
    for thread in waiters:
        thread.start()
    time.sleep(0.5)
    assert subscribed_connections(client) == {"channels": 0, "patterns": 1}
    for job in jobs:
        claim = lifecycle.claim_job(str(job.pk), "test-worker")
        lifecycle.fail_job(str(job.pk), claim.token, "test", "finished by the test")
    started = time.monotonic()
    for thread in waiters:
        thread.join(timeout=50)
    assert woken == [True] * 12 and time.monotonic() - started < 30
    assert waiting.finish_listener(client)._waiters == {}  # every waiter took its registration away


@needs_redis
@with_worker
def test_the_listener_subscribes_again_after_losing_its_connection(project, monkeypatch):
    from atelier_platform.redis_client import shared_redis

    monkeypatch.setattr(waiting, "SAFETY_RECHECK_S", 60.0)
    client = shared_redis(get_config().redis_url)
    listener = waiting.finish_listener(client)
    assert listener.wait_until_subscribed(5)
    for entry in client.client_list():  # this process's listener only: others may share the server
        if entry.get("name") == waiting.listener_client_name():
            client.client_kill_filter(_id=entry["id"])  # Redis restarted, a proxy dropped it...
    deadline = time.monotonic() + 30
    while subscribed_connections(client)["patterns"] != 1 or not listener.wait_until_subscribed(0.1):
        assert time.monotonic() < deadline, "the listener did not subscribe again"
        time.sleep(0.05)
    assert_woken_when_another_process_finishes(build_job(project, status=JobStatus.QUEUED))


@with_worker
def test_while_redis_cannot_be_reached_waiters_read_the_row(project, monkeypatch):
    """No subscription to be had: the listener keeps trying in the background, and a waiter reads the
    job's row at growing intervals (5 to 250 ms) instead; it still answers once the job finishes."""
    import redis

    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=1, socket_connect_timeout=1)
    monkeypatch.setattr(waiting, "shared_redis", lambda url: unreachable)
    monkeypatch.setattr(waiting, "FIRST_SUBSCRIBE_WAIT_S", 0.2)
    monkeypatch.setattr(waiting, "SAFETY_RECHECK_S", 60.0)  # a subscribed waiter's reread: not what wakes this one
    assert_woken_when_another_process_finishes(build_job(project, status=JobStatus.QUEUED))
    assert not waiting.finish_listener(unreachable).wait_until_subscribed(0)
