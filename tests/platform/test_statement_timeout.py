"""A runaway query must not hold a web thread and its connection for good: PostgreSQL stops a web process's
statement after ATELIER_DATABASE_STATEMENT_TIMEOUT_S, and the API says so in its JSON envelope. Workers, beat
and manage.py commands (migrations, indexing) keep running theirs. The settings are the real ones, read in a
fresh process where the process's kind matters."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from atelier_platform.config import ConfigurationError, get_config

REPO = Path(__file__).resolve().parents[2]
VARIABLE = "ATELIER_DATABASE_STATEMENT_TIMEOUT_S"

needs_postgresql = pytest.mark.skipif(connection.vendor != "postgresql",
                                      reason="a statement timeout is PostgreSQL's (set DATABASE_URL=postgres://...)")

#: Runs a query longer than the tiny timeout the test sets, in a process started as PROBE_PROGRAM.
PROBE = textwrap.dedent(
    """
    import os, sys
    sys.argv[0] = os.environ.get("PROBE_PROGRAM") or sys.argv[0]
    os.environ["DJANGO_SETTINGS_MODULE"] = "atelier_platform.settings"
    import django
    django.setup()
    from django.db import OperationalError, connection
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.5)")
    except OperationalError as error:
        print("STOPPED", getattr(error.__cause__, "sqlstate", None))
    else:
        print("FINISHED")
    """
)


def database_url_of_the_test_database() -> str:
    """The URL of the database this test session created (it exists; DATABASE_URL's own name may not)."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def run_in_a_fresh_process(command: list[str], tmp_path, **environment: str) -> str:
    env = {**os.environ, "ATELIER_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO), **environment}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the test process's (tests.settings); the probe names its own
    finished = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout.strip().splitlines()[-1]


# --- the variable -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "0.0004", "thirty", "inf", "100000"])
def test_a_statement_timeout_that_cannot_work_names_its_variable(environment, value):
    """0.0004 s would be 0 ms to PostgreSQL: no limit at all, silently."""
    environment(**{VARIABLE: value})
    with pytest.raises(ConfigurationError, match=VARIABLE):
        get_config()


@pytest.mark.parametrize("value,milliseconds", [(None, 30_000), ("0", 0), ("0.05", 50), ("2.5", 2500)])
def test_the_statement_timeout_is_30_s_unless_set_and_0_turns_it_off(environment, monkeypatch, value, milliseconds):
    monkeypatch.delenv(VARIABLE, raising=False)
    environment(**({VARIABLE: value} if value is not None else {}))
    assert get_config().database_statement_timeout_ms == milliseconds


def test_sqlite_connections_get_no_statement_timeout(tmp_path):
    probe = "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'atelier_platform.settings'; " \
            "from django.conf import settings; print(sorted(settings.DATABASES['default']['OPTIONS']))"
    options = run_in_a_fresh_process([sys.executable, "-c", probe], tmp_path,
                                     DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", **{VARIABLE: "5"})
    assert options == str(sorted(["timeout", "transaction_mode", "init_command"]))


# --- on the real PostgreSQL, by the kind of process ----------------------------------------------------------

@needs_postgresql
@pytest.mark.django_db
@pytest.mark.parametrize("program,outcome", [
    ("", "STOPPED 57014"),  # python -c: a web process, a script
    (str(REPO / ".venv" / "bin" / "gunicorn"), "STOPPED 57014"),
    (str(REPO / ".venv" / "bin" / "celery"), "FINISHED"),  # worker, beat
    (str(Path(__import__("celery").__file__).parent / "__main__.py"), "FINISHED"),  # python -m celery
])
def test_postgresql_stops_a_web_processs_long_statement_and_lets_a_workers_run(tmp_path, program, outcome):
    result = run_in_a_fresh_process([sys.executable, "-c", PROBE], tmp_path, PROBE_PROGRAM=program,
                                    DATABASE_URL=database_url_of_the_test_database(), **{VARIABLE: "0.1"})
    assert result == outcome


@needs_postgresql
@pytest.mark.django_db
def test_a_manage_py_command_runs_its_long_statements(tmp_path):
    """migrate's DDL on a large table, the commands that index knowledge bases: cut off, they fail halfway."""
    query = "from django.db import connection; connection.cursor().execute('SELECT pg_sleep(0.5)'); print('FINISHED')"
    result = run_in_a_fresh_process([sys.executable, "manage.py", "shell", "-c", query], tmp_path,
                                    DATABASE_URL=database_url_of_the_test_database(), **{VARIABLE: "0.1"})
    assert result == "FINISHED"


def test_0_gives_web_processes_no_statement_timeout(tmp_path):
    probe = "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'atelier_platform.settings'; " \
            "from django.conf import settings; print(settings.DATABASES['default']['OPTIONS'].get('options'))"
    options = run_in_a_fresh_process([sys.executable, "-c", probe], tmp_path,
                                     DATABASE_URL="postgres://atelier@db.example.com:5432/atelier", **{VARIABLE: "0"})
    assert options == "None"


# --- what the API answers ----------------------------------------------------------------------------------

@pytest.fixture
def statement_timeout_of_100_ms():
    """This test's connection stops statements after 100 ms, as a web process's does after its limit."""
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 100")
    yield
    with connection.cursor() as cursor:
        cursor.execute("RESET statement_timeout")


def slow_queries():
    """Every query of this thread first sleeps past the statement timeout: a runaway query."""

    def sleep_first(execute, sql, params, many, context):
        execute("SELECT pg_sleep(1)", None, False, context)
        return execute(sql, params, many, context)

    return connection.execute_wrapper(sleep_first)


@needs_postgresql
@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the stopped query ends no test transaction
@pytest.mark.parametrize("path", ["/api/v1/jobs/", "/v1/models"])
def test_a_request_whose_query_the_database_stopped_gets_a_json_503_that_says_so(
        api_key, statement_timeout_of_100_ms, path):
    client = APIClient(raise_request_exception=False)  # as a server answers: no exception reaches the client
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.raw}")
    with slow_queries():
        response = client.get(path)
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == "database_timeout"
    assert "statement time limit" in error["message"]
    if path.startswith("/v1/"):  # the OpenAI client must not resend a request whose job may be saved
        assert response["x-should-retry"] == "false"
