"""The harness itself: a stack must not pass for ready when it is not, and must leave nothing behind
(processes, databases) when a step of its set-up fails."""

from __future__ import annotations

import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.e2e import stack as stack_module
from tests.e2e.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


class AlwaysHealthy(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def foreign_server():
    """Another program's HTTP server, answering 200 to everything: what the stack's port may have become
    between ``free_port()`` closing it and gunicorn binding it (another stack of a parallel run, say)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), AlwaysHealthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def web_only(stack: Stack) -> Stack:
    """The stack's real gunicorn; no migrations, no worker, and a stand-in for beat (only the web's
    readiness is in question, and the real ones would cost this shared machine CPU for nothing)."""
    spawn = stack._spawn
    stack.manage = lambda *args, **kwargs: None
    stack.start_worker = lambda *args, **kwargs: None
    stack._spawn = lambda name, command: spawn(name, command if name == "web" else
                                                [sys.executable, "-c", "import time; time.sleep(120)"])
    return stack


def test_a_port_taken_by_another_server_is_not_taken_for_a_ready_web(foreign_server, tmp_path):
    stack = web_only(Stack("embedded", tmp_path))
    stack.port = foreign_server.server_address[1]
    try:
        with pytest.raises((RuntimeError, TimeoutError)):
            stack.start()
        assert all(process.poll() is not None for process in stack.processes.values())  # stopped on the way out
    finally:
        stack.stop()


def test_a_stack_leaves_the_users_gunicorn_control_socket_alone(monkeypatch, tmp_path):
    """Gunicorn's control socket is one per user by default: a stack must not take (and on stopping,
    delete) the one of the user's running gunicorn, such as a `make run` on the same machine."""
    home = tmp_path / "home"
    theirs = home / ".gunicorn" / "gunicorn.ctl"  # stands for another gunicorn's live socket
    theirs.parent.mkdir(parents=True)
    theirs.write_text("")
    monkeypatch.setenv("HOME", str(home))
    stack = web_only(Stack("embedded", tmp_path / "stack"))
    try:
        stack.start()
    finally:
        stack.stop()
    assert theirs.exists()


needs_postgres = pytest.mark.skipif(stack_module.postgres_and_redis_from_env() is None,
                                    reason="set DATABASE_URL=postgres://... and REDIS_URL=redis://... (as CI does)")


def databases_named(admin_url: str, name: str) -> list[str]:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname = %s", (name,))]


def drop(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def known_database_name(monkeypatch):
    """The stack's database gets a name this test knows (its constructor may fail before it returns)."""
    hex_ = "feedc0ffee" + "0" * 22
    monkeypatch.setattr(stack_module.uuid, "uuid4", lambda: types.SimpleNamespace(hex=hex_))
    name = f"atelier_e2e_{hex_[:10]}"
    admin_url = stack_module.postgres_and_redis_from_env()[0]
    yield name
    drop(admin_url, name)  # whatever the outcome, nothing of this test stays


@needs_postgres
def test_a_stack_whose_redis_is_unreachable_leaves_no_database(known_database_name, monkeypatch, tmp_path):
    admin_url = stack_module.postgres_and_redis_from_env()[0]
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(Exception, match="(?i)connect"):
        Stack("postgres_redis", tmp_path)
    assert databases_named(admin_url, known_database_name) == []


@needs_postgres
def test_a_stack_stopped_while_redis_is_unreachable_still_drops_its_database(known_database_name, tmp_path):
    admin_url = stack_module.postgres_and_redis_from_env()[0]
    stack = Stack("postgres_redis", tmp_path)
    assert databases_named(admin_url, known_database_name) == [known_database_name]
    stack.env["REDIS_URL"] = "redis://127.0.0.1:1/9"  # Redis gone by the time the stack stops
    with pytest.raises(Exception, match="(?i)connect"):
        stack.stop()
    assert databases_named(admin_url, known_database_name) == []
