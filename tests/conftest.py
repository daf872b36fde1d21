from __future__ import annotations

import pytest
from atelier_sdk import PluginRegistry
from rest_framework.test import APIClient

from atelier_platform.accounts.services import issue_api_key
from atelier_platform.catalog.registry import replace_registry
from atelier_platform.catalog.services import set_plugin_enabled
from atelier_platform.config import get_config
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.support.plugins import GpuEcho, ReverseText

pytest_plugins = ["tests.support.hanging_redis", "tests.support.parallel_runs"]  # a fixture; the test processes' share


@pytest.fixture(scope="session", autouse=True)
def own_redis_database_kept_from_stacks():
    """This run's Redis database (REDIS_URL) is marked in use for the whole session, so that no end-to-end stack
    of another run or benchmark on this machine takes it (and reads this run's messages, or flushes them);
    tests/e2e/stack.py says how."""
    import os

    from django.conf import settings

    from tests.e2e.stack import share_redis_database

    redis_url = os.environ.get("REDIS_URL", "")
    if settings.TEST_REDIS_DATABASE_LOCK is not None:  # a test process of an xdist run: it claimed its own (tests/settings.py)
        yield
        return
    try:
        lock = share_redis_database(redis_url) if redis_url.startswith("redis://") else None
    except RuntimeError as error:  # a stack uses it: this run's tests would see its messages, and it theirs
        pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)
    yield
    if lock is not None:
        os.close(lock)


@pytest.fixture(scope="session", autouse=True)
def flush_test_database_by_delete():
    """On PostgreSQL, empty the tables after a transactional test (``django_db(transaction=True)``) with DELETE
    rather than Django's one TRUNCATE of every table: the TRUNCATE took about 0.17 s (a new file for each of
    some 30 tables and their indexes, made durable at commit), DELETE of the few rows a test leaves about
    0.015 s, for each of the suite's few hundred transactional tests. The tables end as empty either way: Django's
    foreign keys are DEFERRABLE INITIALLY DEFERRED and the flush runs in one transaction, so the order of the
    DELETEs does not matter. A flush that resets sequences or cascades goes on as Django does it."""
    from django.db import connection

    if connection.vendor != "postgresql":
        yield
        return
    import time

    from django.db import IntegrityError
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return [f"{style.SQL_KEYWORD('DELETE')} {style.SQL_KEYWORD('FROM')} {style.SQL_FIELD(self.quote_name(table))};"
                for table in tables]

    execute = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        # A closing browser page may still write as the test ends (the review queue gives its item back as it
        # goes away): a row it adds while the DELETEs run fails their foreign-key check at commit. Once its
        # request has committed, the flush goes through.
        for attempt in range(5):
            try:
                return execute(self, sql_list)
            except IntegrityError:
                if attempt == 4:
                    raise
                time.sleep(0.1)

    patch = pytest.MonkeyPatch()
    patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
    patch.setattr(DatabaseOperations, "execute_sql_flush", execute_sql_flush)
    try:
        yield
    finally:
        patch.undo()


@pytest.fixture(autouse=True)
def no_rate_limit_counts_from_before():
    """Each test starts with no request counted against anyone (``usage.window_counts``: the API's rate limit, failed
    sign-ins). The counters are named by what repeats from one test database to the next (``user:1:user0``, the
    address 127.0.0.1, a username) and live two minutes in Redis: a run on the Redis database of a run just before it
    found its first person limited already, and a test found the counts of the test before it."""
    from atelier_platform.redis_client import shared_redis
    from atelier_platform.usage.window_counts import REDIS_PREFIX

    config = get_config()
    client = shared_redis(config.redis_url)
    if client is not None:
        left = list(client.scan_iter(match=f"{REDIS_PREFIX}*", count=1000))
        if left:
            client.delete(*left)
    folder = config.data_dir.resolve() / "ratelimit"
    if folder.is_dir():
        for path in folder.iterdir():
            path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def empty_plugin_registry():
    """No plugin is installed unless a test asks for one."""
    registry = PluginRegistry()
    replace_registry(registry)
    yield registry
    replace_registry(None)


@pytest.fixture(autouse=True)
def no_safety_checks():
    """No safety check runs unless a test installs one."""
    from atelier_platform.moderation.checks import replace_safety_checks

    from atelier_platform.moderation.screening import forget_blocklists

    replace_safety_checks([])
    forget_blocklists()
    yield
    replace_safety_checks(None)


@pytest.fixture(autouse=True)
def sent_messages(monkeypatch):
    """Messages the code under test published; unit tests never touch a real broker."""
    sent = []

    def record(name, args=None, **options):
        sent.append({"task": name, "args": args, **options})

    monkeypatch.setattr("atelier_platform.jobs.queueing.app.send_task", record)
    return sent


@pytest.fixture
def run_exports(sent_messages, django_capture_on_commit_callbacks):
    """Run the published export messages as a worker of the exports queue would (the real task, in this process),
    until none is left. Returns the task's outcomes."""
    from atelier_platform.celery_app import RUN_EXPORT_TASK
    from atelier_platform.exports.tasks import run_export

    def run() -> list[str]:
        outcomes = []
        while message := next((m for m in sent_messages if m["task"] == RUN_EXPORT_TASK), None):
            sent_messages.remove(message)
            assert message["queue"] == "exports"  # a worker of their own: never ahead of a sweep
            with django_capture_on_commit_callbacks(execute=True):
                outcomes.append(run_export.apply(args=message["args"], throw=True).get())
        return outcomes

    return run


@pytest.fixture
def reverse_plugin(empty_plugin_registry):
    empty_plugin_registry.register(ReverseText)
    empty_plugin_registry.register(GpuEcho)
    return ReverseText


@pytest.fixture
def project(db, reverse_plugin):
    project = ProjectFactory()
    set_plugin_enabled(project, "reverse_text", True)
    set_plugin_enabled(project, "gpu_reverse", True)
    return project


@pytest.fixture
def other_project(db, reverse_plugin):
    project = ProjectFactory()
    set_plugin_enabled(project, "reverse_text", True)
    return project


@pytest.fixture
def atelier_config(monkeypatch):
    """Set ATELIER_* variables for this test; the cached configuration is read afresh."""

    def configure(**values):
        for name, value in values.items():
            monkeypatch.setenv(f"ATELIER_{name.upper()}", str(value))
        get_config.cache_clear()

    yield configure
    get_config.cache_clear()  # the variables are restored after this; the next read sees them


@pytest.fixture
def make_key():
    def make(project, scopes=("jobs:read", "jobs:write")):
        return issue_api_key(project, scopes=list(scopes))

    return make


@pytest.fixture
def api_key(project, make_key):
    return make_key(project)


@pytest.fixture
def client_for():
    def make(raw_key: str | None = None) -> APIClient:
        client = APIClient()
        if raw_key:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make


@pytest.fixture
def api(api_key, client_for) -> APIClient:
    return client_for(api_key.raw)


@pytest.fixture
def member(db):
    def make(project, role):
        return MembershipFactory(project=project, user=UserFactory(), role=role).user

    return make
