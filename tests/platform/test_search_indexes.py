"""The trigram indexes of the searches of jobs and outputs (``jobs.search_indexes``, migration jobs 0011): built on
PostgreSQL, read by the searches' plans, left out with a warning where pg_trgm cannot be created, none on SQLite;
the searches find the same with them and without."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from atelier_frontend.views import _filtered_jobs, job_search
from atelier_platform.jobs import library, search_indexes
from atelier_platform.jobs.models import Job, Output
from tests.api.helpers import build_output

REPO = Path(__file__).resolve().parents[2]
INDEX_NAMES = ["job_search_text_trgm", "output_search_text_trgm", "job_plugin_id_trgm"]
BEFORE, WITH_INDEXES = ("jobs", "0010_job_erasure"), ("jobs", "0011_search_trigram_indexes")

on_postgresql = pytest.mark.skipif(os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")) is False,
                                   reason="pg_trgm's indexes are PostgreSQL's")


def pg_indexes() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s)", [INDEX_NAMES])
        return dict(cursor.fetchall())


def migrate_to(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def chat(reply: str) -> dict:
    return {"reply": reply, "sources": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "finish_reason": "stop", "conversation_id": None}


def searched_job(project, prompt: str, reply: str, review_state: str = "approved") -> Output:
    job = Job.objects.create(project=project, plugin_id="chatbot", plugin_version="1.0.0", resource_class="cpu",
                             input={"messages": [{"role": "user", "content": prompt}]}, params={}, seed=1,
                             status="succeeded")
    return build_output(job, content=chat(reply), review_state=review_state)


@pytest.fixture
def no_trigram_extension(monkeypatch):
    """A server that refuses pg_trgm: the migration asks for an extension it has not got, which PostgreSQL refuses
    with an error as it refuses a role the right to create one."""
    monkeypatch.setattr(search_indexes, "EXTENSION", "pg_trgm_not_on_this_server")


@on_postgresql
@pytest.mark.django_db
def test_after_migrate_postgresql_has_a_trigram_index_on_each_searched_column():
    found = pg_indexes()
    assert sorted(found) == sorted(INDEX_NAMES)
    assert "USING gin (search_text gin_trgm_ops)" in found["job_search_text_trgm"]
    assert "ON public.jobs_output USING gin (search_text gin_trgm_ops)" in found["output_search_text_trgm"]
    # as Django writes plugin_id__icontains, so that the planner matches it
    assert "USING gin (upper((plugin_id)::text) gin_trgm_ops)" in found["job_plugin_id_trgm"]
    assert search_indexes.existing_search_indexes(connection) == [index.name for index in search_indexes.SEARCH_INDEXES]


@on_postgresql
@pytest.mark.django_db
def test_the_searches_read_the_trigram_indexes(project):
    """Before, the library's and the API's search matched the output's text OR its job's prompt in one condition over
    both tables, which no index serves: every search read all of the project's outputs, index or not."""
    for n in range(300):
        searched_job(project, f"question {n} about the weather", f"answer {n} about the sun")
    searched_job(project, "where is my kintsugi bowl", "it ships monday")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")
        cursor.execute("ANALYZE jobs_output")
        # a few hundred rows are cheaper to read whole, or in order: whether a plan can read the index is checked here
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
    library_plan = library.final_outputs(project, library.LibraryFilters(q="kintsugi")).explain()
    assert "output_search_text_trgm" in library_plan and "job_search_text_trgm" in library_plan, library_plan
    # the jobs page's search (a project's few rows are found faster by its project: the search's own condition here)
    jobs_plan = Job.objects.filter(job_search("Kintsugi")).explain()
    assert "job_search_text_trgm" in jobs_plan and "job_plugin_id_trgm" in jobs_plan, jobs_plan


@pytest.mark.django_db
def test_the_searches_find_the_same_with_the_indexes_and_without(project, other_project, monkeypatch):
    """The index only narrows what PostgreSQL checks: two letters (no trigram), words of Chinese, a plugin's name and
    a withheld output (whose text is never searched) give what a full read gives, and the library's two ways of
    searching (a few matches by their ids, many tested newest first) find the same. (On SQLite: the same searches.)"""
    coat = searched_job(project, "A warm coat for winter", "Our Café coat is warm")
    refund = searched_job(project, "退货政策是什么", "请在三十天内退货")
    secret = searched_job(project, "tell me", "the secret recipe", review_state="blocked")
    pending = searched_job(project, "what about the coat", "not yet", review_state="pending")
    searched_job(other_project, "A warm coat for winter", "Our Café coat is warm")
    queries = ["coat", "CAFÉ", "co", "退货", "退货政策", "secret", "recipe", "tell", "chatbot", "CHAT", "nothing here"]

    def found() -> dict:
        outputs = Output.objects.filter(job__project=project)
        return {q: (sorted(str(o.pk) for o in library.search(outputs, q)),
                    sorted(str(j.pk) for j in _filtered_jobs(project, {"status": "", "plugin": "", "q": q,
                                                                      "purpose": "request"})))
                for q in queries}

    with_indexes = found()
    monkeypatch.setattr(library, "FEW_MATCHES", 0)  # every word "common": each output tested, newest first
    assert found() == with_indexes
    monkeypatch.undo()
    search_indexes.drop_search_indexes(connection)  # in the test's transaction: back at its end
    assert search_indexes.existing_search_indexes(connection) == []
    assert found() == with_indexes
    assert with_indexes["coat"][0] == sorted([str(coat.pk), str(pending.pk)])
    assert with_indexes["退货"][0] == [str(refund.pk)]
    assert with_indexes["secret"][0] == [] and with_indexes["tell"][0] == [str(secret.pk)]  # its prompt is found
    assert len(with_indexes["CHAT"][1]) == 4  # the jobs page finds a plugin by its name


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_without_pg_trgm_the_migration_warns_builds_nothing_and_the_deploy_goes_on(project, no_trigram_extension,
                                                                                  caplog, monkeypatch):
    migrate_to(BEFORE)
    try:
        assert pg_indexes() == {}
        with caplog.at_level(logging.WARNING, logger="atelier.jobs"):
            migrate_to(WITH_INDEXES)
        assert MigrationExecutor(connection).loader.applied_migrations.get(WITH_INDEXES) is not None
        assert pg_indexes() == {}
        [warning] = [record for record in caplog.records if record.name == "atelier.jobs"]
        assert warning.levelno == logging.WARNING
        message = warning.getMessage()
        assert "pg_trgm_not_on_this_server could not be created" in message and "work, but read whole tables" in message
        assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "job_search_text_trgm" ON "jobs_job"' in message  # what to run
        # the searches work as before, once the later migrations (a job's later columns) are in, still without indexes
        migrate_to_latest()
        assert pg_indexes() == {}
        output = searched_job(project, "a kintsugi bowl", "ships monday")
        assert list(library.search(Output.objects.all(), "KINTSUGI")) == [output]
        assert list(_filtered_jobs(project, {"status": "", "plugin": "", "q": "kintsugi", "purpose": "request"})) \
            == [output.job]
    finally:
        monkeypatch.undo()
        migrate_to_latest()
        search_indexes.create_search_indexes(connection)  # the indexes for the tests after this one
    assert sorted(pg_indexes()) == sorted(INDEX_NAMES)


@on_postgresql
@pytest.mark.django_db
def test_a_refused_extension_leaves_the_callers_transaction_usable(project, no_trigram_extension):
    """Inside a transaction (a test's, a migration run in one) the refusal is rolled back to a savepoint: before, the
    transaction would be aborted and every later statement refused."""
    search_indexes.drop_search_indexes(connection)
    assert search_indexes.create_search_indexes(connection) is False
    assert Job.objects.count() == 0  # still usable


@on_postgresql
@pytest.mark.django_db
def test_an_index_left_invalid_by_a_failed_concurrent_build_is_built_again():
    """A concurrent build that was cancelled or failed leaves an invalid index of the name: IF NOT EXISTS alone took
    it for the index, and the searches went on reading whole tables."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not cursor.fetchone()[0]:
            pytest.skip("marking an index invalid needs a superuser")
        cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'job_search_text_trgm'::regclass")
    assert "job_search_text_trgm" not in search_indexes.existing_search_indexes(connection)
    assert search_indexes.create_search_indexes(connection) is True
    assert "job_search_text_trgm" in search_indexes.existing_search_indexes(connection)


def test_the_migrations_apply_on_sqlite_and_build_no_trigram_index(tmp_path):
    """The embedded set-up: SQLite has no GIN index, and the migration does nothing there."""
    database = tmp_path / "atelier.sqlite3"
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("ATELIER_", "DJANGO_")) and name not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")}
    env.update({"DATABASE_URL": f"sqlite:///{database}", "ATELIER_DATA_DIR": str(tmp_path / "data"),
                "SECRET_KEY": "test-only-" + "x" * 50})
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(database) as db:
        applied = {name for (name,) in db.execute("SELECT name FROM django_migrations WHERE app = 'jobs'")}
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert WITH_INDEXES[1] in applied and "0012_newest_outputs_and_evaluation_jobs_indexes" in applied
    assert not indexes & set(INDEX_NAMES)
    assert {"output_newest", "job_project_evaluations"} <= indexes  # the B-tree ones, plainly


@on_postgresql
@pytest.mark.django_db
def test_the_library_reads_a_rare_words_matches_by_id_and_tests_a_common_ones_newest_first(project, monkeypatch):
    """Collecting every match of a common word read a good part of both tables (1.5 s on bench/search.py's 200,000
    jobs, against 0.2 s before the indexes); testing the newest outputs one by one fills a page of it at once, and
    reads all of them for a rare word."""
    monkeypatch.setattr(library, "FEW_MATCHES", 3)
    for n in range(4):
        searched_job(project, f"my order {n}", "on its way")
    rare = searched_job(project, "a kintsugi bowl", "on its way")
    outputs = Output.objects.filter(job__project=project)
    assert "UNION" in str(library.search(outputs, "kintsugi").query)
    assert "UNION" not in str(library.search(outputs, "order").query)  # 4 prompts: more than 3
    assert "UNION" not in str(library.search(outputs, "bo").query)  # no trigram: nothing for an index to find
    assert list(library.search(outputs, "Kintsugi")) == [rare]
    search_indexes.drop_search_indexes(connection)
    assert "UNION" not in str(library.search(outputs, "kintsugi").query)  # without the indexes: one read, as before


@pytest.mark.django_db
@pytest.mark.parametrize(("model", "columns", "partial"), [(Output, ["created_at", "id"], False),
                                                           (Job, ["project_id", "created_at"], True)])
def test_the_library_order_and_the_evaluation_jobs_have_an_index(model, columns, partial):
    """Without output_newest each page of the library and of GET /outputs/, searched or not, sorted all of a project's
    outputs (200 ms at 200,000); without job_project_evaluations the jobs page read every job of the project to find
    there were no evaluation jobs (100 ms at 200,000)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    assert any(found["index"] and found["columns"] == columns for found in constraints.values()), constraints


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_the_btree_indexes_are_built_concurrently_and_an_invalid_one_is_built_again():
    from django.test.utils import CaptureQueriesContext

    before, after = WITH_INDEXES, ("jobs", "0012_newest_outputs_and_evaluation_jobs_indexes")
    migrate_to(before)
    try:
        with connection.cursor() as cursor:  # what a failed CREATE INDEX CONCURRENTLY leaves behind
            cursor.execute('CREATE INDEX "output_newest" ON "jobs_output" ("created_at")')
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            superuser = cursor.fetchone()[0]
            if superuser:
                cursor.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'output_newest'::regclass")
            else:
                cursor.execute('DROP INDEX "output_newest"')
        with CaptureQueriesContext(connection) as captured:
            migrate_to(after)
        statements = "\n".join(query["sql"] for query in captured.captured_queries)
        assert 'CREATE INDEX CONCURRENTLY "output_newest" ON "jobs_output" ("created_at" DESC, "id" DESC)' in statements
        assert 'CREATE INDEX CONCURRENTLY "job_project_evaluations"' in statements
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_indexdef('output_newest'::regclass), indisvalid FROM pg_index "
                           "WHERE indexrelid = 'output_newest'::regclass")
            definition, valid = cursor.fetchone()
        assert valid and '(created_at DESC, id DESC)' in definition
    finally:
        migrate_to_latest()


@on_postgresql
@pytest.mark.django_db(transaction=True)
def test_a_migration_that_stopped_half_way_runs_again():
    """0012 is not atomic: when its second index failed (a cancelled deploy, out of disk), the first stayed built and
    the migration unrecorded. Run again, it tried to build the first once more and failed on "already exists", at
    every deploy after, until someone dropped the index by hand."""
    before, after = WITH_INDEXES, ("jobs", "0012_newest_outputs_and_evaluation_jobs_indexes")
    migrate_to(before)
    try:
        with connection.cursor() as cursor:  # the first index built, the second never was
            cursor.execute('CREATE INDEX "job_project_evaluations" ON "jobs_job" ("project_id", "created_at" DESC) '
                           "WHERE \"purpose\" = 'evaluation'")
        migrate_to(after)
        assert MigrationExecutor(connection).loader.applied_migrations.get(after) is not None
        with connection.cursor() as cursor:
            cursor.execute("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                           "WHERE c.relname = ANY(%s) AND i.indisvalid", [["job_project_evaluations", "output_newest"]])
            assert sorted(name for (name,) in cursor.fetchall()) == ["job_project_evaluations", "output_newest"]
    finally:
        migrate_to_latest()
