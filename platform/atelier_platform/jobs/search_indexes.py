"""Trigram indexes for the searches of a project's jobs and outputs (PostgreSQL only).

The searches match a piece of text anywhere in a column: the content library and ``GET /api/v1/outputs/?q=``
(``jobs.library.search``: ``Output.search_text``, ``Job.search_text``), the dashboard's jobs page (``Job.search_text``
and ``plugin_id``, case-insensitively). That is ``LIKE '%q%'``, which no B-tree serves: without these indexes every
search read all of the table. pg_trgm's GIN indexes (``gin_trgm_ops``) serve such patterns: PostgreSQL looks up the
rows that hold every three-character piece of ``q`` and checks only those (the check makes the answer exact, so
results are the same with or without an index). A query under 3 characters has no such piece: the planner reads the
table as before (``bench/search.py`` measures both).

They need the pg_trgm extension, which a database's owner may create (a trusted extension since PostgreSQL 13). Where
it is not there and cannot be created, the indexes are left out with a warning saying what to run: the searches work
the same, only slower, and the deploy goes on. SQLite (the embedded set-up) gets none: its LIKE has no such index.

They are not in the models' ``Meta.indexes`` (and so not in Django's migration state), on purpose: an index there
would be built on SQLite too, where it cannot be (SQLite rebuilds a table, indexes and all, from the state on any
later change of its columns), and it would be taken for present on a PostgreSQL without pg_trgm. Migration
``jobs.0011_search_trigram_indexes`` builds them; ``bench/search.py`` drops and rebuilds them to measure.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import DatabaseError, transaction

logger = logging.getLogger("atelier.jobs")


@dataclass(frozen=True)
class TrigramIndex:
    name: str
    table: str
    #: what is indexed, in SQL, as the searches' queries write it (the planner matches the expression as written)
    expression: str


SEARCH_INDEXES = (
    TrigramIndex("job_search_text_trgm", "jobs_job", "search_text"),
    TrigramIndex("output_search_text_trgm", "jobs_output", "search_text"),
    # the jobs page matches a plugin id too, case-insensitively: Django writes plugin_id__icontains as
    # UPPER("plugin_id"::text) LIKE UPPER('%q%'). Without this index, the OR with the prompt's match read every row.
    TrigramIndex("job_plugin_id_trgm", "jobs_job", "UPPER(plugin_id::text)"),
)

EXTENSION = "pg_trgm"


def create_statement(index: TrigramIndex, *, concurrently: bool) -> str:
    how = "CONCURRENTLY " if concurrently else ""
    column = index.expression if index.expression.isidentifier() else f"({index.expression})"
    return f'CREATE INDEX {how}IF NOT EXISTS "{index.name}" ON "{index.table}" USING gin ({column} gin_trgm_ops)'


def manual_steps() -> str:
    """What an operator runs to get the indexes afterwards, as a superuser or the database's owner."""
    return "; ".join([f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}",
                      *(create_statement(index, concurrently=True) for index in SEARCH_INDEXES)]) + ";"


def has_trigram_extension(connection) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_extension WHERE extname = %s", [EXTENSION])
        return cursor.fetchone() is not None


def create_trigram_extension(connection) -> bool:
    """Whether pg_trgm is there now: created if it was not and the database lets this role create it. A refusal
    (not permitted, not installed on the server) is a warning, not an error: the searches work without it."""
    if has_trigram_extension(connection):
        return True
    try:
        # a savepoint inside a transaction (a test's), a transaction of its own outside one: a refused
        # CREATE EXTENSION must not leave the connection's transaction aborted
        with transaction.atomic(using=connection.alias):
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
    except DatabaseError as error:
        logger.warning(
            "The search indexes were not built: the PostgreSQL extension %s could not be created (%s). Searches "
            "of jobs and outputs work, but read whole tables. To build them, run as a superuser or the database's "
            "owner: %s", EXTENSION, str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__,
            manual_steps())
        return False
    return True


def create_search_indexes(connection) -> bool:
    """Builds the indexes that are missing; whether they all exist afterwards (none on SQLite, or without pg_trgm).

    Outside a transaction (the migration is non-atomic) each is built ``CONCURRENTLY``: a big table is not locked
    against writes while its index is built, so jobs go on being submitted and finished during a deploy. Inside one
    (a test that migrates in its transaction) PostgreSQL refuses CONCURRENTLY, and a plain build is used."""
    if connection.vendor != "postgresql" or not create_trigram_extension(connection):
        return False
    concurrently = not connection.in_atomic_block
    for index in SEARCH_INDEXES:
        # a concurrent build that failed (cancelled, out of disk) leaves an invalid index, which IF NOT EXISTS
        # would take for the index: it is dropped and built again
        if _index_validity(connection, index.name) is False:
            _drop(connection, index, concurrently=concurrently)
        with connection.cursor() as cursor:
            cursor.execute(create_statement(index, concurrently=concurrently))
    return True


def drop_search_indexes(connection) -> None:
    """Drops the indexes (the extension stays: something else may use it)."""
    if connection.vendor != "postgresql":
        return
    for index in SEARCH_INDEXES:
        _drop(connection, index, concurrently=not connection.in_atomic_block)


def existing_search_indexes(connection) -> list[str]:
    """The names of the search indexes the database has, valid ones only, in ``SEARCH_INDEXES``' order."""
    if connection.vendor != "postgresql":
        return []
    names = [index.name for index in SEARCH_INDEXES]
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = ANY(%s) "
                       "AND c.relnamespace = current_schema()::regnamespace AND i.indisvalid", [names])
        found = {name for (name,) in cursor.fetchall()}
    return [name for name in names if name in found]


def _index_validity(connection, name: str) -> bool | None:
    """Whether the index named so in the current schema is valid; None when there is none."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace", [name])
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


def _drop(connection, index: TrigramIndex, *, concurrently: bool) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX {"CONCURRENTLY " if concurrently else ""}IF EXISTS "{index.name}"')
