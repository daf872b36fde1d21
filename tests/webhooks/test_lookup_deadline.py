"""The DNS lookup of a webhook's host is part of the attempt, within the attempt's one time limit."""

from __future__ import annotations

import socket
import threading

import pytest

from atelier_platform.webhooks import delivery, targets
from atelier_platform.webhooks.models import DeliveryStatus

pytestmark = pytest.mark.django_db

#: How long the fake resolver waits before giving up as glibc does (timeout x attempts x nameservers):
#: longer than any attempt here may take, so an attempt that waited for it is seen to have waited.
RESOLVER_GIVES_UP_AFTER_S = 20


class DeadNameserver:
    """``socket.getaddrinfo`` for names whose nameserver does not answer: the call blocks until the test
    releases it (or the resolver gives up), then fails as glibc does. Other names resolve as before."""

    def __init__(self, real):
        self.real = real
        self.hosts: set[str] = set()
        self.asked: list[str] = []
        self.released = threading.Event()
        self.gave_up = threading.Event()  # set when a blocked lookup returned to its caller

    def __call__(self, host, port, *args, **kwargs):
        if host not in self.hosts:
            return self.real(host, port, *args, **kwargs)
        self.asked.append(host)
        try:
            self.released.wait(RESOLVER_GIVES_UP_AFTER_S)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        finally:
            self.gave_up.set()


@pytest.fixture
def dead_nameserver(monkeypatch, resolve_as):
    """Names resolve (``resolve_as``) while the endpoint is saved; ``dead_nameserver.hosts`` then stop answering."""
    from atelier_platform.webhooks.targets import socket as targets_socket

    dead = DeadNameserver(targets_socket.getaddrinfo)
    monkeypatch.setattr("atelier_platform.webhooks.targets.socket.getaddrinfo", dead)
    yield dead
    dead.released.set()  # the lookup threads left behind finish now


@pytest.mark.timeout(120, method="signal")
def test_an_unanswered_lookup_ends_the_attempt_as_timed_out_and_it_is_retried(
        emit, project, receiver, resolve_as, endpoint_for, dead_nameserver, webhook_config):
    """The lookup ran before the attempt's deadline started: a dead nameserver held the worker for its
    whole timeout (10-30 s), and the attempt was then logged as refused, not as timed out."""
    resolve_as("hooks.example", ["127.0.0.1"])
    endpoint_for(project, f"http://hooks.example:{receiver.port}/in")
    dead_nameserver.hosts.add("hooks.example")
    webhook_config(webhooks_timeout_s=1)
    [row] = emit(project)

    assert delivery.attempt(str(row.pk)) == "retrying"

    assert dead_nameserver.asked == ["hooks.example"]
    assert not dead_nameserver.gave_up.is_set(), "the attempt waited for the resolver to give up"
    row.refresh_from_db()
    expected = "Timed out after 1 s: the DNS lookup of 'hooks.example' got no answer."
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == (DeliveryStatus.PENDING, 1, None, expected)
    assert row.next_attempt_at is not None  # the usual retry schedule
    [logged] = row.attempt_log.all()
    assert (logged.number, logged.status_code, logged.error) == (1, None, expected)
    assert receiver.requests == []


@pytest.mark.timeout(120, method="signal")
def test_lookups_left_waiting_on_the_resolver_are_bounded(
        emit, project, receiver, resolve_as, endpoint_for, dead_nameserver, webhook_config, monkeypatch):
    """Each unanswered lookup leaves its thread waiting for the resolver: a process starts no more than
    a few of them, and an attempt that finds them all waiting times out without asking the resolver."""
    monkeypatch.setattr(targets, "_lookups", targets._LookupThreads(1))
    resolve_as("hooks.example", ["127.0.0.1"])
    endpoint_for(project, f"http://hooks.example:{receiver.port}/in")
    dead_nameserver.hosts.add("hooks.example")
    webhook_config(webhooks_timeout_s=1)
    first, second = emit(project, key="a")[0], emit(project, key="b")[0]

    assert delivery.attempt(str(first.pk)) == "retrying"
    assert delivery.attempt(str(second.pk)) == "retrying"

    assert dead_nameserver.asked == ["hooks.example"]  # no second thread stuck beside the first
    second.refresh_from_db()
    assert second.last_error == ("Timed out after 1 s: the DNS lookup of 'hooks.example' could not start "
                                 "(1 earlier lookup is still waiting for the resolver).")
    assert not dead_nameserver.gave_up.is_set()


def test_a_host_given_as_an_address_is_not_held_up_by_waiting_lookups(emit, project, receiver, endpoint_for,
                                                                      webhook_config, monkeypatch):
    """An address is its own answer: it needs no lookup thread, so lookups all waiting cannot stop it."""
    endpoint_for(project, receiver.url)  # http://127.0.0.1:port/...
    monkeypatch.setattr(targets, "_lookups", targets._LookupThreads(0))  # no lookup can start
    webhook_config(webhooks_timeout_s=1)
    [row] = emit(project)
    assert delivery.attempt(str(row.pk)) == "succeeded"
    assert len(receiver.requests) == 1


@pytest.mark.timeout(120, method="signal")
def test_saving_an_endpoint_whose_nameserver_does_not_answer_is_a_503_within_the_attempt_limit(
        project, make_key, client_for, dead_nameserver, webhook_config):
    """Saving checks the URL's addresses too: the lookup held the web request for the resolver's whole
    timeout (10-30 s), then answered 400 "cannot be resolved", as if the URL were wrong."""
    api = client_for(make_key(project, ["webhooks:manage"]).raw)
    dead_nameserver.hosts.add("hooks.example")
    webhook_config(webhooks_timeout_s=1)

    response = api.post("/api/v1/webhooks/", {"url": "https://hooks.example/in"}, format="json")

    assert not dead_nameserver.gave_up.is_set(), "the request waited for the resolver to give up"
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["code"] == "dns_lookup_timeout"
    assert error["message"] == ("The DNS lookup of 'hooks.example' got no answer within 1 s; nothing was saved. "
                                "Try again, or check the host name.")
    assert response["Retry-After"] == "5"
    assert not project.webhook_endpoints.exists()
