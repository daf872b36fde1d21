"""The least any job costs on this stack, for bench/overhead.py: the floor under Atelier's overhead.

DESIGN.md's path of one request fixes what a job must go through, whatever does it: an HTTP request,
a job row saved, the work enqueued once that row has committed, a worker that claims the row (so that
nothing runs twice), the output stored in the row, a finish notice, and the result read from the row
by the request that waits for it. This module is that path and nothing else, on the tools Atelier runs
on: Django under gunicorn (the same worker and thread counts), PostgreSQL with persistent connections
(without Atelier's health check), Celery on Redis, Redis publish/subscribe (one listener per process, as
Atelier's). No authentication, validation, screening, review, audit, conversations, webhooks, DRF or ORM:
each step is one plain SQL statement in autocommit, the cheapest Django allows. Its "model" reverses a
string. Its Celery worker is ``--pool solo``, like the bare round trip's. Its times are the database's
clock (the same host's).

Its time from submit to result, set beside the bare Celery round trip in the same run, says how much
of the round trip's multiple any implementation of that path pays before it adds a feature; what
Atelier adds above the floor is the price of its features and of its code.

One module is the Django settings, the URL conf, the WSGI application (``job_floor:application``)
and the Celery app (``-A job_floor``): ``DJANGO_SETTINGS_MODULE=job_floor`` makes Django import this
module (already importing) as its settings. Its database and Redis come from ``FLOOR_DATABASE_URL``
and ``FLOOR_REDIS_URL``; ``create_table`` makes its one table.
"""

from __future__ import annotations

import json
import os
import threading
import uuid

import dj_database_url
import redis
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "job_floor")

# --- Django settings: nothing installed, no middleware ---------------------------------------------
SECRET_KEY = "bench-job-floor-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "job_floor"
USE_TZ = True
DATABASE_URL = os.environ.get("FLOOR_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/job_floor")
# Persistent connections, as Atelier's; no health check (Atelier's SELECT 1 before a request's or a task's
# first statement, which finds a connection the server dropped): one round trip fewer each time.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=None, conn_health_checks=False)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

RUN_TASK = "job_floor.run"
QUEUE = "job_floor"
CHANNEL_PREFIX = "job-floor-finished:"
WAIT_S = 60.0

TABLE = """CREATE TABLE IF NOT EXISTS floor_job (
    id uuid PRIMARY KEY, status text NOT NULL, input jsonb NOT NULL, output jsonb,
    created_at timestamptz NOT NULL, started_at timestamptz, finished_at timestamptz)"""

REDIS_URL = os.environ.get("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0")
notices = redis.Redis.from_url(REDIS_URL)
app = Celery("job_floor", broker=REDIS_URL)
# CELERY_DB_REUSE_MAX, as Atelier's app sets it: else Celery's Django fix-up closes the database connection
# before and after every task, and each claim would wait for a new one.
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True, task_acks_late=True,
                worker_prefetch_multiplier=1, task_default_queue=QUEUE, worker_hijack_root_logger=False,
                CELERY_DB_REUSE_MAX=1000)


def create_table() -> None:
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute(TABLE)


def _json(value):
    """Django loads jsonb as text (its JSONField parses it); a bare psycopg would give the object."""
    return json.loads(value) if isinstance(value, str) else value


@app.task(name=RUN_TASK)
def run(job_id: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        # The claim: only a queued row is taken, so a message delivered twice runs the job once.
        cursor.execute("UPDATE floor_job SET status = 'running', started_at = clock_timestamp() "
                       "WHERE id = %s AND status = 'queued' RETURNING input", [job_id])
        claimed = cursor.fetchone()
        if claimed is None:
            return
        output = {"text": _json(claimed[0])["text"][::-1]}
        cursor.execute("UPDATE floor_job SET status = 'succeeded', output = %s, finished_at = clock_timestamp() "
                       "WHERE id = %s", [json.dumps(output), job_id])
    notices.publish(CHANNEL_PREFIX + job_id, "finished")  # after the commit (autocommit): the row says so


class _FinishListener:
    """This process's one subscription to every job's finish notice, as Atelier's web has (``jobs/waiting.py``):
    a request registers for its job and waits on an event, with no Redis connection or subscription of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, threading.Event] = {}
        self._subscription = notices.pubsub()
        self._subscription.psubscribe(CHANNEL_PREFIX + "*")
        self._subscription.get_message(timeout=5.0)  # the subscription's confirmation: notices reach it from now on
        threading.Thread(target=self._run, name="job-floor-listener", daemon=True).start()

    def register(self, job_id: str) -> threading.Event:
        event = threading.Event()
        with self._lock:
            self._waiters[job_id] = event
        return event

    def unregister(self, job_id: str) -> None:
        with self._lock:
            self._waiters.pop(job_id, None)

    def _run(self) -> None:
        for message in self._subscription.listen():
            if message["type"] == "pmessage":
                with self._lock:
                    event = self._waiters.get(message["channel"].decode()[len(CHANNEL_PREFIX):])
                if event is not None:
                    event.set()


_listener: _FinishListener | None = None
_listener_lock = threading.Lock()


def listener() -> _FinishListener:
    global _listener
    with _listener_lock:
        if _listener is None:
            _listener = _FinishListener()
        return _listener


def submit(request):
    """POST {"input": {"text": ...}}: the job's row, its result once it has finished (a request that waits)."""
    from django.db import connection
    from django.http import JsonResponse

    job_id = str(uuid.uuid4())
    data = json.loads(request.body)
    finished = listener().register(job_id)  # before the work is sent: its notice cannot be missed
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO floor_job (id, status, input, created_at) "
                           "VALUES (%s, 'queued', %s, clock_timestamp())", [job_id, json.dumps(data["input"])])
        app.send_task(RUN_TASK, args=[job_id], queue=QUEUE)  # the row has committed (autocommit)
        if not finished.wait(WAIT_S):
            return JsonResponse({"id": job_id, "status": "timed out"}, status=504)
    finally:
        listener().unregister(job_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT status, output, created_at, started_at, finished_at FROM floor_job WHERE id = %s",
                       [job_id])
        status, output, *times = cursor.fetchone()
    return JsonResponse({"id": job_id, "status": status, "output": _json(output),
                         **{name: value.isoformat() for name, value in zip(("created_at", "started_at", "finished_at"),
                                                                            times)}})


def _urlpatterns():
    from django.urls import path
    from django.views.decorators.csrf import csrf_exempt

    return [path("jobs/", csrf_exempt(submit))]


urlpatterns = _urlpatterns()


def __getattr__(name: str):
    """``application``, the WSGI entry point gunicorn asks for; made on first use, so that the Celery worker,
    which imports this module too, never builds it."""
    if name == "application":
        from django.core.wsgi import get_wsgi_application

        globals()["application"] = get_wsgi_application()
        return globals()["application"]
    raise AttributeError(name)
