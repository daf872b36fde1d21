"""A job submitted while the broker hangs (Redis takes the connection and never answers): the request still
answers 201 with the queued job, the hung broker is not asked again on new connections (each time is another
socket timeout the submitter waits: two retries held a request about 21 s), and the sweeper sends the job's
message once the broker is back. The request's own transaction commits (as in production), so the publish
on commit happens inside the request. The hang guards only stop a test that would wait far too long."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.utils import timezone

from atelier_platform.celery_app import create_app
from atelier_platform.config import get_config
from atelier_platform.jobs import lifecycle, queueing
from atelier_platform.jobs.models import Job, JobStatus
from tests.platform.test_health import silent_server

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


class HangingRedis:
    """A proxy to a real Redis that can hang as a Redis does: once ``hang()`` is called, the connections it
    holds get no answer and new ones are taken and never answered (``connections_while_hung`` counts them).
    ``restart()`` closes every connection, as a restarted Redis does, and answers again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.hung = threading.Event()
        self.connections_while_hung = 0
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:  # closed
                return
            with self.lock:
                self.sockets.append(client)
                if self.hung.is_set():
                    self.connections_while_hung += 1
                    continue  # taken, never answered
                upstream = socket.create_connection(self.upstream)
                self.sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                while self.hung.is_set():  # what comes in while hung is held, never answered
                    time.sleep(0.05)
                target.sendall(data)

    def _close_connections(self) -> None:
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def hang(self) -> None:
        self.hung.set()

    def restart(self) -> None:
        self._close_connections()  # what was held while hung goes with them
        self.hung.clear()

    def close(self) -> None:
        self.listener.close()
        self._close_connections()
        self.hung.clear()


@pytest.fixture
def hanging_redis():
    """A ``HangingRedis`` in front of the Redis of ``REDIS_URL``; its ``url`` leads through it, to the same
    database, and ``direct_url`` is ``REDIS_URL``."""
    redis_url = get_config().redis_url
    if not redis_url or urlsplit(redis_url).scheme != "redis":
        pytest.skip("needs a real Redis: set REDIS_URL=redis://host:port/db")
    parts = urlsplit(redis_url)
    proxy = HangingRedis((parts.hostname, parts.port or 6379))
    host, port = proxy.address
    proxy.url, proxy.direct_url = urlunsplit(parts._replace(netloc=f"{host}:{port}")), redis_url
    try:
        yield proxy
    finally:
        proxy.close()


def messages_for(redis_url: str, job_id: str, *, take: bool) -> int:
    """How many messages of the cpu queue (any priority) carry ``job_id``; ``take`` removes them."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        found = 0
        for key in client.scan_iter(match="cpu*"):
            if client.type(key) != b"list":
                continue
            for message in client.lrange(key, 0, -1):
                if job_id.encode() in message:
                    found += 1
                    if take:
                        client.lrem(key, 0, message)
        return found
    finally:
        client.close()


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
