"""The database connection a request or a task starts with: kept while it is good, replaced when the
server dropped it, and checked without a round trip while the server has said nothing.

Between requests (and Celery tasks) Django calls ``close_old_connections``; the first query after it
runs the health check. These tests take those steps in that order, on the real PostgreSQL.
"""

from __future__ import annotations

import tempfile
import time

import psycopg
import pytest
from django.db import close_old_connections, connection

from atelier_platform.accounts.models import Project

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="about a database server's connections (DATABASE_URL=postgres://...)"),
]


def server_connection() -> psycopg.Connection:
    """A connection of the test's own beside Django's, to the same server, as an administrator's would be."""
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def backend_pid() -> int:
    return connection.connection.info.backend_pid


def wait_until_gone(admin: psycopg.Connection, pid: int) -> None:
    for _ in range(200):
        if admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0] == 0:
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {pid} still there after 2 s")


class WireLog:
    """What Django's connection sends the server (libpq's protocol trace), while inside ``with``."""

    def __enter__(self) -> "WireLog":
        self._file = tempfile.TemporaryFile()
        connection.connection.pgconn.trace(self._file.fileno())
        connection.connection.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        return self

    def __exit__(self, *exc_info) -> None:
        connection.connection.pgconn.untrace()
        self._file.seek(0)
        self.lines = self._file.read().decode().splitlines()
        self._file.close()

    def sent_queries(self) -> list[str]:
        """The statements sent, simple (Query) or extended (Parse)."""
        return [line for line in self.lines if line.startswith("F\t") and ("\tQuery\t" in line or "\tParse\t" in line)]


def test_a_connection_the_server_dropped_is_replaced_before_the_next_request_uses_it():
    Project.objects.create(slug="kept", name="Kept")
    close_old_connections()  # the request ends
    dropped = backend_pid()
    with server_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [dropped])
        wait_until_gone(admin, dropped)

    close_old_connections()  # the next request starts
    assert Project.objects.get(slug="kept").name == "Kept"
    assert backend_pid() != dropped


def test_a_good_connection_is_kept_and_its_first_query_costs_no_extra_round_trip():
    Project.objects.create(slug="kept", name="Kept")
    kept = backend_pid()
    close_old_connections()
    close_old_connections()  # the next request starts

    with WireLog() as wire:
        assert Project.objects.filter(slug="kept").count() == 1

    assert backend_pid() == kept
    sent = wire.sent_queries()
    assert len(sent) == 1 and '"accounts_project"' in sent[0], sent  # the request's own query, and nothing before it


def test_a_connection_with_something_to_read_gets_the_full_check_and_is_kept_when_good():
    """A NOTIFY waiting on the socket is not a drop: the check asks the server, and the connection stays."""
    with connection.cursor() as cursor:
        cursor.execute("LISTEN atelier_health_test")
    kept = backend_pid()
    close_old_connections()
    with server_connection() as admin:
        admin.execute("NOTIFY atelier_health_test")
    time.sleep(0.05)

    close_old_connections()  # the next request starts
    with WireLog() as wire:
        assert Project.objects.count() == 0

    assert backend_pid() == kept
    assert any("SELECT 1" in line for line in wire.sent_queries()), wire.lines
