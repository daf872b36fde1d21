"""bench/job_floor.py, the least job path bench/overhead.py sets beside Atelier's: it must really do what a job
must (a row, a claim, a stored output, a notice, a reread), or its time would flatter the floor."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from tests.e2e.stack import postgres_and_redis_from_env

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(180),
    pytest.mark.skipif(postgres_and_redis_from_env() is None, reason="the job floor runs on PostgreSQL and Redis"),
]


def rows(floor) -> list[tuple]:
    import psycopg

    with psycopg.connect(floor.env["FLOOR_DATABASE_URL"]) as connection:
        return connection.execute("SELECT id, status, output, started_at, finished_at FROM floor_job "
                                  "ORDER BY created_at").fetchall()


def database_exists(admin_url: str, name: str) -> bool:
    import psycopg

    with psycopg.connect(admin_url) as connection:
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


@pytest.fixture
def floor():
    from overhead import JobFloor

    database_url, redis_url = postgres_and_redis_from_env()
    stack = SimpleNamespace(admin_database_url=database_url, database_name=f"atelier_e2e_{uuid.uuid4().hex[:10]}",
                            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "REDIS_URL": redis_url})
    floor = JobFloor(stack)
    yield floor
    floor.stop()


def test_a_floor_job_goes_through_its_row_the_broker_and_the_worker_and_a_duplicate_message_runs_it_once(floor):
    from celery import Celery

    assert floor.round_trip() > 0  # raises unless the answer is the finished row with the reversed text
    ready = len(rows(floor))  # start-up's jobs
    floor.round_trip()
    (job_id, status, output, started, finished), = rows(floor)[ready:]
    assert status == "succeeded" and output == {"text": "roolf"} and started <= finished

    # The broker delivers the same job again: the claim takes only a queued row, so nothing runs twice.
    sender = Celery(broker=floor.env["FLOOR_REDIS_URL"])
    sender.send_task("job_floor.run", args=[str(job_id)], queue="job_floor")
    floor.round_trip()  # one worker, one queue in order: the duplicate has been handled before this job ran
    again = {row[0]: row for row in rows(floor)}[job_id]
    assert again[3:] == (started, finished)
    assert len(rows(floor)) == ready + 2


def test_a_stopped_floor_leaves_no_process_and_no_database():
    from overhead import JobFloor

    database_url, redis_url = postgres_and_redis_from_env()
    name = f"atelier_e2e_{uuid.uuid4().hex[:10]}"
    floor = JobFloor(SimpleNamespace(admin_database_url=database_url, database_name=name,
                                     env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "REDIS_URL": redis_url}))
    processes = [psutil.Process(p.pid) for p in (floor.web, floor.worker)]
    processes += [child for process in processes for child in process.children(recursive=True)]
    assert database_exists(database_url, floor.database)
    floor.stop()
    assert not database_exists(database_url, floor.database)
    assert not [process for process in processes if process.is_running() and process.status() != psutil.STATUS_ZOMBIE]
