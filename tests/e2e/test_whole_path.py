"""One request's whole path on real processes, and the faults a job platform must survive.

Runs on the embedded default (SQLite + file-system broker) always, and on PostgreSQL + Redis
when DATABASE_URL and REDIS_URL name them (as in CI).
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.e2e.stack import Stack, postgres_and_redis_from_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

BACKENDS = [
    "embedded",
    pytest.param(
        "postgres_redis",
        marks=pytest.mark.skipif(
            postgres_and_redis_from_env() is None,
            reason="set DATABASE_URL=postgres://... and REDIS_URL=redis://... to run on PostgreSQL and Redis",
        ),
    ),
]


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request, tmp_path_factory):
    stack = Stack(request.param, tmp_path_factory.mktemp(request.param))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop(graceful=False)  # the tests are over: how it stops is not in question here


@pytest.fixture(scope="module")
def api_key(stack) -> str:
    result = stack.manage("create_api_key", "--project", "e2e", "--create-project")
    key = result.stdout.strip()
    assert result.stdout == key + "\n" and key.startswith("atl_")
    return key


class Client:
    def __init__(self, stack: Stack, key: str) -> None:
        self.stack = stack
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def submit(self, plugin: str = "reverse_text", priority: int = 5, **input_fields) -> dict:
        response = self.session.post(
            f"{self.stack.url}/api/v1/jobs/",
            json={"plugin": plugin, "input": {"text": "hello world", **input_fields}, "priority": priority},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, job_id: str) -> dict:
        response = self.session.get(f"{self.stack.url}/api/v1/jobs/{job_id}/", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.1)
        raise AssertionError(
            f"job {job_id} still {job['status']} after {timeout}s\n"
            + "\n".join(f"--- {n}\n{self.stack.log_of(n)[-2500:]}" for n in self.stack.processes)
        )


@pytest.fixture
def client(stack, api_key) -> Client:
    return Client(stack, api_key)


@pytest.fixture
def usual_worker(stack) -> None:
    """The stack's usual worker (concurrency 2) is running: a test before may have left one of concurrency 1, or
    none. Tests that stop the worker first do without it, so that none restarts a worker the next one stops."""
    stack.ensure_worker()


@pytest.mark.usefixtures("usual_worker")
def test_a_job_travels_the_whole_path(client):
    job = client.submit(copies=2)
    assert job["status"] == "queued"
    done = client.wait(job["id"], {"succeeded", "failed"})
    assert done["status"] == "succeeded", done["error"]
    assert [o["content"] for o in done["outputs"]] == [{"text": "dlrow olleh", "characters": 11}] * 2
    assert {o["review_state"] for o in done["outputs"]} == {"pending"}
    assert done["attempts"] == 1 and done["progress"]["fraction"] == 1.0
    listed = client.session.get(f"{client.stack.url}/api/v1/jobs/", timeout=10).json()["results"]
    assert listed[0]["id"] == job["id"]


@pytest.mark.usefixtures("usual_worker")
def test_prefer_wait_answers_with_the_finished_job_across_processes(client):
    """The worker process finishes the job; the web process, waiting on the Redis notice (or rereading
    the row in the embedded set-up), answers the submit itself with the result."""
    response = client.session.post(
        f"{client.stack.url}/api/v1/jobs/", json={"plugin": "reverse_text", "input": {"text": "hello world", "sleep_s": 0.5}},
        headers={"Prefer": "wait=60"}, timeout=90,
    )
    assert response.status_code == 201, response.text
    assert response.headers["Preference-Applied"] == "wait=60"
    job = response.json()
    assert job["status"] == "succeeded"
    assert [o["content"] for o in job["outputs"]] == [{"text": "dlrow olleh", "characters": 11}]
    fetched = client.session.get(f"{client.stack.url}/api/v1/jobs/{job['id']}/", headers={"Prefer": "wait=5"}, timeout=30)
    assert fetched.status_code == 200 and fetched.json()["status"] == "succeeded"


def test_readiness_sees_database_and_broker(stack):
    body = requests.get(f"{stack.url}/readyz", timeout=10).json()
    assert body == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


@pytest.mark.usefixtures("usual_worker")
def test_cancel_stops_a_running_job(client):
    job = client.submit(sleep_s=20)
    client.wait(job["id"], {"running"})
    response = client.session.post(f"{client.stack.url}/api/v1/jobs/{job['id']}/cancel/", timeout=10)
    assert response.status_code == 200 and response.json()["cancel_requested"] is True
    done = client.wait(job["id"], {"cancelled", "succeeded", "failed"}, timeout=15)
    assert done["status"] == "cancelled" and done["outputs"] == []


@pytest.mark.usefixtures("usual_worker")
def test_worker_killed_mid_job_still_completes_exactly_once(stack, client):
    job = client.submit(sleep_s=3, copies=2)
    deadline = time.monotonic() + 30
    while not (client.get(job["id"])["progress"] or {}).get("fraction"):
        assert time.monotonic() < deadline, "job never made progress"
        time.sleep(0.05)
    stack.kill_worker()
    assert client.get(job["id"])["status"] == "running"  # the row still believes in the dead worker
    stack.start_worker()
    done = client.wait(job["id"], {"succeeded", "failed"}, timeout=90)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 2
    assert len(done["outputs"]) == 2  # one set of outputs, though the work started twice
    assert stack.runs_of(job["id"]) == 2


@pytest.mark.usefixtures("usual_worker")
def test_the_same_message_delivered_twice_yields_one_set_of_outputs(stack, client):
    job = client.submit(sleep_s=1)
    stack.python(
        "from atelier_platform.jobs.queueing import publish_run_job\n"
        f"assert publish_run_job('{job['id']}', queue='cpu', priority=5, time_limit_s=60)\n"
    )
    done = client.wait(job["id"], {"succeeded", "failed"})
    deadline = time.monotonic() + 20
    worker_log = lambda: stack.log_of(stack.current_worker)  # noqa: E731
    while f"job {job['id']} is not queued" not in worker_log():
        assert time.monotonic() < deadline, "the duplicate message never reached a worker"
        time.sleep(0.1)
    assert done["status"] == "succeeded" and len(client.get(job["id"])["outputs"]) == 1
    assert stack.runs_of(job["id"]) == 1


def test_a_job_whose_message_was_lost_is_brought_back_by_the_sweeper(stack, client):
    stack.stop_worker()
    job = client.submit()
    purged = stack.python(
        "from atelier_platform.celery_app import app\n"
        "with app.connection_for_write() as conn:\n"
        "    print(conn.default_channel.queue_purge('cpu'))\n"
    )
    assert int(purged.stdout.strip()) >= 1  # the message is gone from the broker
    stack.start_worker()
    done = client.wait(job["id"], {"succeeded", "failed"}, timeout=60)
    assert done["status"] == "succeeded" and done["attempts"] == 1
    assert stack.runs_of(job["id"]) == 1


@pytest.mark.usefixtures("usual_worker")
def test_time_limit_of_the_plugin_is_enforced(client):
    job = client.submit(plugin="quick_limit", sleep_s=10)
    done = client.wait(job["id"], {"succeeded", "failed"}, timeout=30)
    assert done["status"] == "failed" and done["error"]["code"] == "time_limit"
    assert "2 s" in done["error"]["message"] and done["outputs"] == []


@pytest.mark.usefixtures("usual_worker")
def test_the_time_limit_holds_even_where_the_plugin_catches_it(client):
    """Celery's soft limit is an exception raised inside the plugin; one whose own ``except Exception``
    takes it for a passing error must not turn it into retries."""
    job = client.submit(plugin="quick_limit", sleep_s=10, catch_everything=True)
    done = client.wait(job["id"], {"succeeded", "failed"}, timeout=30)
    assert (done["status"], done["error"]["code"], done["attempts"]) == ("failed", "time_limit", 1)


def test_urgent_jobs_overtake_waiting_ones(stack, client):
    stack.stop_worker()
    # Different sizes cannot share a batch, so each job starts on its own.
    waiting = [client.submit("batch_probe", priority=1, text=f"low {i}", size=i) for i in (2, 3, 4)]
    urgent = client.submit("batch_probe", priority=9, text="urgent", size=1)
    stack.start_worker(concurrency=1)
    jobs = [client.wait(job["id"], {"succeeded"}) for job in [*waiting, urgent]]
    order = [job["input"]["text"] for job in sorted(jobs, key=lambda job: job["started_at"])]
    assert order[0] == "urgent", order


def test_jobs_waiting_together_run_as_one_batch(stack, client):
    stack.stop_worker()
    jobs = [client.submit("batch_probe", text=f"together {n}") for n in range(6)]
    stack.start_worker(concurrency=1)
    done = [client.wait(job["id"], {"succeeded", "failed"}) for job in jobs]
    ids = {job["id"] for job in jobs}
    assert {job["status"] for job in done} == {"succeeded"}
    assert all(set(job["outputs"][0]["content"]["batch"]) == ids for job in done)
    assert [batch for batch in stack.batches() if set(batch) & ids] == [[job["id"] for job in jobs]]


def test_sigterm_finishes_the_batch_in_hand_and_leaves_the_rest_queued(stack, client):
    stack.stop_worker()
    size = 8  # the batch probe's max_batch_size
    jobs = [client.submit("batch_probe", text=f"term {n}", sleep_s=2) for n in range(size + 3)]
    stack.start_worker(concurrency=1)
    deadline = time.monotonic() + 30
    while sum(client.get(job["id"])["status"] == "running" for job in jobs) < size:
        assert time.monotonic() < deadline, "the first batch never started"
        time.sleep(0.05)
    stack.stop_worker()  # SIGTERM: a warm shutdown
    states = [client.get(job["id"]) for job in jobs]
    finished = [job for job in states if job["status"] == "succeeded"]
    waiting = [job for job in states if job["status"] == "queued"]
    assert len(finished) == size and len(waiting) == 3, [job["status"] for job in states]
    assert all(job["attempts"] == 0 for job in waiting)
    stack.start_worker()
    for job in waiting:
        assert client.wait(job["id"], {"succeeded", "failed"})["status"] == "succeeded"
    ran = [job_id for batch in stack.batches() for job_id in batch]
    assert all(ran.count(job["id"]) == 1 for job in jobs)  # nothing ran twice


def test_worker_killed_mid_batch_loses_no_job_and_duplicates_none(stack, client):
    stack.stop_worker()
    jobs = [client.submit("batch_probe", text=f"interrupted {n}", sleep_s=3) for n in range(5)]
    stack.start_worker(concurrency=1)
    deadline = time.monotonic() + 30
    while not all((client.get(job["id"])["progress"] or {}).get("fraction") for job in jobs):
        assert time.monotonic() < deadline, "the batch never made progress"
        time.sleep(0.05)
    stack.kill_worker()
    stack.start_worker()
    done = [client.wait(job["id"], {"succeeded", "failed"}, timeout=90) for job in jobs]
    assert {job["status"] for job in done} == {"succeeded"}
    assert all(job["attempts"] == 2 and len(job["outputs"]) == 1 for job in done)
    ran = [job_id for batch in stack.batches() for job_id in batch]
    assert all(ran.count(job["id"]) == 2 for job in jobs)  # the killed batch, then once more


def test_workers_report_their_state(stack, client):
    key = stack.manage("create_api_key", "--project", "e2e", "--scopes", "admin").stdout.strip()

    def workers_when(done) -> list[dict]:
        deadline = time.monotonic() + 60  # a worker's start imports torch and transformers: slow on a busy machine
        while True:
            workers = requests.get(f"{stack.url}/api/v1/workers/", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
            if done(workers):
                return workers
            assert time.monotonic() < deadline, [(w["name"], w["state"]) for w in workers]
            time.sleep(0.2)

    def live(workers) -> set[str]:
        return {w["name"] for w in workers if w["state"] in ("ready", "busy")}

    # A worker stopped cleanly and one killed, made here: a test run alone (-k) has no earlier ones.
    stack.stop_worker()
    known = {w["name"] for w in workers_when(lambda workers: True)}
    stack.start_worker()
    workers_when(lambda workers: live(workers) - known)  # it has reported in: its loss can be seen
    stack.kill_worker()
    stack.start_worker()
    workers = workers_when(lambda workers: live(workers) and {"stopped", "lost"} <= {w["state"] for w in workers})
    assert {w["state"] for w in workers} <= {"ready", "busy", "stopped", "lost", "starting"}
    metrics = requests.get(f"{stack.url}/metrics", timeout=10).text
    assert "atelier_queue_depth" in metrics and "atelier_batch_size_bucket" in metrics
