"""Fixtures for webhook tests: a real HTTP receiver, fast settings, and a worker run in-process."""

from __future__ import annotations

import http.server
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import pytest

from atelier_platform.celery_app import DELIVER_WEBHOOK_TASK
from atelier_platform.config import get_config
from atelier_platform.webhooks import services


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records what it receives and answers as told."""

    host: str
    port: int
    requests: list[ReceivedRequest] = field(default_factory=list)
    #: what to answer to the next requests, in order: a status code, or (status, seconds to wait first)
    script: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks/atelier?source=test"

    def answer(self, *steps) -> None:
        self.script.extend(steps)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (the timeout tests) is expected here


@pytest.fixture
def start_receiver():
    """Start receivers: plain HTTP, or HTTPS with a given server-side TLS context."""
    servers = []

    def start(tls: ssl.SSLContext | None = None) -> Receiver:
        state = Receiver(host="127.0.0.1", port=0)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                state.requests.append(ReceivedRequest(self.path, dict(self.headers.items()), body))
                step = state.script.pop(0) if state.script else 200
                status, wait = step if isinstance(step, tuple) else (step, 0)
                if wait:
                    time.sleep(wait)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                answer = f"answered {status}".encode()
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        server = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        state.port = server.server_address[1]
        # shutdown() waits out serve_forever's poll: its default of 0.5 s was half a second of every test's teardown
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(start_receiver) -> Receiver:
    """An HTTP receiver on 127.0.0.1 (tests allow private targets to reach it)."""
    return start_receiver()


@pytest.fixture
def webhook_config(monkeypatch):
    """Set ATELIER_* variables for this test; the cached configuration is read afresh."""

    def configure(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"ATELIER_{name.upper()}", str(value).lower() if isinstance(value, bool) else str(value))
        get_config.cache_clear()

    yield configure
    get_config.cache_clear()  # the variables are restored after this; the next read sees them


@pytest.fixture(autouse=True)
def fast_webhooks(webhook_config):
    """Retries within milliseconds, so tests see a whole schedule; loopback stays refused unless a test allows it."""
    webhook_config(webhooks_retry_schedule_s="0.05,0.1", webhooks_timeout_s=2, webhooks_disable_after_failures=3,
                   webhooks_allow_private_targets=False)


@pytest.fixture
def private_targets(webhook_config):
    webhook_config(webhooks_allow_private_targets=True)


@pytest.fixture
def resolve_as(monkeypatch):
    """Make host names resolve to chosen addresses (no DNS needed), as getaddrinfo answers."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in table:
            return [
                (socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (address, port, 0, 0) if ":" in address else (address, port))
                for address in table[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr("atelier_platform.webhooks.targets.socket.getaddrinfo", fake)
    return table.__setitem__


@pytest.fixture
def deliver_all(sent_messages, django_capture_on_commit_callbacks):
    """Run the published delivery messages as a worker would (the real task, in this process),
    waiting out each message's countdown, until none is left. Returns the task outcomes."""
    from atelier_platform.webhooks.tasks import deliver_webhook

    def run(max_messages: int = 50) -> list[str]:
        outcomes = []
        for _ in range(max_messages):
            message = next((m for m in sent_messages if m["task"] == DELIVER_WEBHOOK_TASK), None)
            if message is None:
                return outcomes
            sent_messages.remove(message)
            assert message["queue"] == "platform"
            time.sleep(message.get("countdown") or 0)
            with django_capture_on_commit_callbacks(execute=True):
                outcomes.append(deliver_webhook.apply(args=message["args"], throw=True).get())
        raise AssertionError("deliveries kept publishing messages")

    return run


@pytest.fixture
def endpoint_for(private_targets, django_capture_on_commit_callbacks):
    """An endpoint created through the service, as the API does."""

    def make(project, url, **options):
        with django_capture_on_commit_callbacks(execute=True):
            return services.create_endpoint(project, "user:test", url=url, **options)

    return make


@pytest.fixture
def emit(django_capture_on_commit_callbacks):
    """services.emit, with its commit callbacks run (they publish the delivery messages)."""

    def run(project, event_type="job.succeeded", key="job-1", data=None):
        with django_capture_on_commit_callbacks(execute=True):
            return services.emit(project, event_type, data or {"job": {"id": key}}, event_key=key)

    return run
