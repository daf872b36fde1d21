"""The Celery app's settings against the design's guarantees: a publish never hangs the web thread that
submits a job, and a broker that goes away for a moment loses no job's work."""

from __future__ import annotations

import threading
import warnings
import time
from types import SimpleNamespace

import pytest
from celery.worker.consumer.consumer import Consumer
from celery.worker.state import active_requests

from atelier_platform.celery_app import RUN_JOB_TASK, create_app
from tests.platform.test_health import silent_server


@pytest.fixture
def app_with_broker(monkeypatch, atelier_config):
    def make(url: str):
        monkeypatch.setenv("REDIS_URL", url)
        atelier_config()  # read afresh
        return create_app()

    return make


def test_a_publish_to_a_broker_that_does_not_answer_gives_up_within_seconds(app_with_broker):
    """The submission's own thread publishes (on commit). A Redis that took the connection and never answered
    held it for good: the API never gave its 201, and the sweeper never got to send the message later."""
    outcome = []

    def publish():
        try:
            app.send_task(RUN_JOB_TASK, args=["job-id"], queue="cpu", retry=False)
            outcome.append("sent")
        except Exception as exc:  # noqa: BLE001 - what the caller (jobs.queueing) catches and logs
            outcome.append(type(exc).__name__)

    with silent_server() as (host, port):
        app = app_with_broker(f"redis://{host}:{port}/7")
        started = time.monotonic()
        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        thread.join(15)
        seconds, answered = time.monotonic() - started, list(outcome)  # before the server lets it go
    # a hang guard (the 15 s join), not a timing threshold: a publish that never gives up has no outcome
    assert answered and answered != ["sent"], f"the publish was still waiting after {seconds:.0f} s"


def test_a_broker_connection_lost_mid_job_leaves_the_job_running(app_with_broker):
    """With ``worker_cancel_long_running_tasks_on_connection_loss`` Celery terminates the pool process of
    every unacknowledged task when the broker connection drops (a Redis restart, a failover): the batch in
    hand was lost with its loaded models, its jobs run again after the sweeper noticed (an attempt each; a
    job on its last attempt failed ``worker_lost``). Left running, the batch is stored, and its message,
    delivered again later, finds the jobs done (the claim)."""
    from atelier_workers.tasks import run_job

    app = app_with_broker("redis://127.0.0.1:6379/7")
    terminated = []

    class RunningJob:  # a request of the worker's (``celery.worker.request.Request``) as the consumer sees it
        task = run_job
        acknowledged = False

        def cancel(self, pool, **_options):
            terminated.append(pool)  # what Request.cancel does: SIGTERM the pool process running it

    running_job = RunningJob()
    assert running_job.task.acks_late  # the job's message is not acknowledged while it runs
    consumer = SimpleNamespace(app=app, connection=None, pool="the worker's pool", qos_global=None,
                               prefetch_multiplier=1, max_prefetch_count=1, initial_prefetch_count=1)
    active_requests.add(running_job)
    try:
        with warnings.catch_warnings():  # Celery's notice that 6.0 cancels them unless told not to
            warnings.simplefilter("ignore")
            Consumer.on_connection_error_after_connected(consumer, ConnectionError("Connection closed by server."))
    finally:
        active_requests.discard(running_job)
    assert terminated == []
