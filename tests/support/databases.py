"""Marks for tests about what only a database server does (row locks another session waits on, ``pg_stat_activity``,
``SET lock_timeout``): they run where DATABASE_URL names PostgreSQL, as in CI, and are skipped on the embedded SQLite
of a fresh machine's `make test`, which has one writer at a time and no such locks to wait on."""

from __future__ import annotations

import pytest
from django.db import connection

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="about PostgreSQL's row locks between sessions (set DATABASE_URL=postgres://... to run it)",
)
