"""A worker keeps its database connection from one task to the next (a new PostgreSQL connection
costs about 10 ms, a new SQLite one about 1 ms, paid before every job's claim when Celery's Django
fix-up closes it each time)."""

from __future__ import annotations

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from atelier_platform.celery_app import app
from atelier_platform.tasking import _recycle_connections, atelier_task


@atelier_task("tests.database_connection_in_use")
def database_connection_in_use(task):
    connection.ensure_connection()
    return connection.connection


@pytest.mark.django_db(transaction=True)
def test_the_worker_keeps_a_healthy_connection_between_tasks():
    fixup = DjangoWorkerFixup(app)
    used = []
    for _ in range(5):  # as a worker runs five tasks: the fix-up's hooks around our task
        fixup.on_task_prerun(sender=database_connection_in_use)
        used.append(database_connection_in_use())
        fixup.on_task_postrun(sender=database_connection_in_use)
    assert connection.settings_dict["CONN_MAX_AGE"] is None  # PostgreSQL and the embedded SQLite alike
    assert all(conn is used[0] for conn in used)


@pytest.mark.django_db(transaction=True)
def test_a_broken_connection_is_replaced_before_the_next_task():
    if connection.vendor == "sqlite":
        pytest.skip("a SQLite connection is a local file handle: no server can drop it (CI runs this on PostgreSQL)")
    connection.ensure_connection()
    opened = connection.connection
    connection.errors_occurred = True  # as after an OperationalError
    opened.close()  # and the server side is gone
    _recycle_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert connection.connection is not opened
