"""``/readyz`` answers within seconds and names the part that is down, whatever the database and the broker
do: refuse connections, or accept them and never answer (a hung server, a half-open connection)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from django.db import OperationalError, connections

from atelier_platform.celery_app import create_app

pytestmark = pytest.mark.django_db

#: What an orchestrator's probe waits for an answer (Kubernetes: 1 s by default; most set a few).
PROBE_PATIENCE_S = 5.0


@contextlib.contextmanager
def silent_server():
    """A TCP port that accepts connections and never answers: a hung Redis or PostgreSQL. Its address."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()
    finally:
        stop.set()
        thread.join()
        for sock in [*accepted, listener]:  # a client still waiting gets its end of file now
            sock.close()


def answer_within(client, path: str, seconds: float):
    """The response to GET ``path``, or None when none came within ``seconds`` (the request goes on)."""
    responses = []
    thread = threading.Thread(target=lambda: responses.append(client.get(path)), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(seconds)
    return (responses[0] if responses else None), time.monotonic() - started


@pytest.fixture
def broker_at(monkeypatch, atelier_config):
    """Make the web process's broker the Redis at ``host:port``."""

    def point(host: str, port: int):
        monkeypatch.setenv("REDIS_URL", f"redis://{host}:{port}/7")
        atelier_config()  # read afresh
        monkeypatch.setattr("atelier_platform.health.app", create_app())

    return point


@pytest.mark.parametrize("down", ["refusing", "silent"])
def test_readyz_names_a_broker_that_is_down_within_seconds(client, broker_at, down):
    """A Redis that accepted the connection and never answered held the probe's web thread for good."""
    with silent_server() as (host, port):
        broker_at(host, port) if down == "silent" else broker_at("127.0.0.1", 1)
        response, seconds = answer_within(client, "/readyz", PROBE_PATIENCE_S)
    assert response is not None, f"/readyz gave no answer in {seconds:.1f} s"
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "ok" and checks["broker"].startswith("broker")
    assert seconds < 3.5


def test_readyz_names_a_database_that_does_not_answer_within_seconds(client):
    """A database that takes the query and never answers held the probe's web thread for good."""
    released = threading.Event()
    wrapper_class = type(connections["default"])  # every thread's connection, the probe's own included
    real_cursor = wrapper_class.cursor

    def hung_cursor(self, *args, **kwargs):
        released.wait(60)
        raise OperationalError("server closed the connection unexpectedly")

    wrapper_class.cursor = hung_cursor
    try:
        response, seconds = answer_within(client, "/readyz", PROBE_PATIENCE_S)
        again, seconds_again = answer_within(client, "/readyz", PROBE_PATIENCE_S)  # the first check still hangs
    finally:
        released.set()
        wrapper_class.cursor = real_cursor
    assert response is not None, f"/readyz gave no answer in {seconds:.1f} s"
    assert response.status_code == 503 and response.json()["checks"]["database"].startswith("database")
    assert response.json()["checks"]["broker"] == "ok"
    assert again is not None and again.status_code == 503 and seconds_again < 3.5
