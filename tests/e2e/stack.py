"""A whole Atelier installation in subprocesses: web (gunicorn), Celery worker, beat.

Each stack has its own data directory and database (a fresh PostgreSQL database and a
Redis database number no other live stack uses, or the embedded SQLite + file-system broker), so
what a test sees is what an operator would see.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

REPO = Path(__file__).resolve().parents[2]

FAST_TIMINGS = {
    "ATELIER_JOB_HEARTBEAT_S": "0.3",
    "ATELIER_JOB_STALE_AFTER_S": "3",
    "ATELIER_JOB_REQUEUE_AFTER_S": "4",
    "ATELIER_SWEEP_INTERVAL_S": "1",
    "ATELIER_BROKER_VISIBILITY_TIMEOUT_S": "10",
    "ATELIER_RETRY_BACKOFF_BASE_S": "0.5",
    "ATELIER_WORKER_LOST_AFTER_S": "3",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_and_redis_from_env() -> tuple[str, str] | None:
    database_url, redis_url = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")) and redis_url.startswith("redis://"):
        return database_url, redis_url
    return None


# --- a Redis database of each stack's own -------------------------------------------------------------
# Stacks once all used Redis database 9 and flushed it on starting: two at once on one machine (two test runs, a
# run beside a benchmark, whose stacks are these) read each other's queues and "job finished" notices and
# flushed each other's data. Now each takes a number no other live stack uses, and flushes only that one.
#
# Who uses which number is kept in lock files held with flock(2), not in Redis (a key set with NX and an expiry,
# refreshed while the stack lives): the kernel lets a flock go when the last process holding it ends, however it
# ends (a SIGKILLed pytest included), with nothing to refresh and no expiry that a paused or starved process
# (this is a busy 2-core machine) could outlive while it still uses the database. The stack's processes inherit
# the lock (``_spawn``), so the number stays taken while any of them runs, such as a worker left behind by a
# run that was killed outright. What it cannot see: users on other machines of the same Redis.
REDIS_LOCK_DIR = Path("/tmp")  # not $TMPDIR: runs with different ones must still see each other's locks
# Set in every database a stack takes (and gone with the flush when it stops): a database that holds it and
# whose lock is free is what a stack that died left behind, and may be flushed; one with data and no marker
# belongs to someone else and is never taken.
STACK_MARKER = "atelier-e2e:stack"


def redis_database_number(redis_url: str) -> int:
    from redis.connection import parse_url

    return int(parse_url(redis_url).get("db", 0))


def _lock_redis_database(redis_url: str, number: int, *, shared: bool) -> int | None:
    """The lock file of database ``number`` of the Redis at ``redis_url``, locked (``shared``: by any number of
    holders, as test runs mark their own database; else by this one alone, as a stack takes one); None if it
    is taken. Closing the descriptor lets it go."""
    parts = urlsplit(redis_url)
    path = REDIS_LOCK_DIR / f"atelier-e2e-redis-{parts.hostname}-{parts.port or 6379}-db{number}.lock"
    descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access
    try:
        fcntl.flock(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def claim_redis_database(redis_url: str, numbers=None) -> tuple[str, int]:
    """Take a database of the Redis at ``redis_url`` that no other live stack or test run on this machine uses
    and that holds no one else's data; empty it. Returns its URL and the lock descriptor that holds it (close
    it to give the database back). ``numbers``: those to try, in order (default: all but 0, from the top).
    Never the database ``redis_url`` names itself: the caller's own (a test run's REDIS_URL)."""
    import redis

    if numbers is None:
        client = redis.Redis.from_url(redis_url)
        try:
            count = int(client.config_get("databases")["databases"])
        except redis.ResponseError:  # CONFIG refused (a managed Redis): Redis's default
            count = 16
        finally:
            client.close()
        # Not 0: every client that names no database uses it (a `make run` on this Redis, say).
        numbers = range(count - 1, 0, -1)
    numbers = list(numbers)
    own = redis_database_number(redis_url)
    taken, theirs = [], []
    for number in numbers:
        if number == own:
            continue
        lock = _lock_redis_database(redis_url, number, shared=False)
        if lock is None:
            taken.append(number)
            continue
        url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{number}"))
        client = redis.Redis.from_url(url)
        try:
            if client.dbsize() and not client.exists(STACK_MARKER):
                theirs.append(number)
                os.close(lock)
                continue
            client.flushdb()  # empty, or what a stack that died left there
            client.set(STACK_MARKER, f"pid {os.getpid()}")
        except BaseException:
            os.close(lock)
            raise
        finally:
            client.close()
        return url, lock
    raise RuntimeError(
        f"no free Redis database for an end-to-end stack at {urlsplit(redis_url).netloc} (tried {numbers}, "
        f"not {own}, REDIS_URL's own): {taken or 'none'} in use by stacks or test runs on this machine, "
        f"{theirs or 'none'} holding someone else's data. Stop a stack, flush a database no one uses, or give "
        f"Redis more databases (`databases` in redis.conf)."
    )


def share_redis_database(redis_url: str) -> int:
    """Mark the database ``redis_url`` names as in use (a test run's own) while the returned lock descriptor is
    open, so that no stack, of this run or another, takes it; any number of runs may share it."""
    lock = _lock_redis_database(redis_url, redis_database_number(redis_url), shared=True)
    if lock is None:
        raise RuntimeError(f"REDIS_URL ({redis_url}) names a Redis database that an end-to-end stack running on "
                           f"this machine uses: give the tests another one")
    return lock


#: the folders the project's packages live in (pyproject.toml's ``packages.find``)
SOURCE_FOLDERS = ("platform", "plugins", "workers", "frontend")


class Stack:
    def __init__(self, backend: str, root: Path) -> None:
        self.backend = backend
        self.root = root
        self.run_log = root / "runs.log"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.database_name: str | None = None
        self.admin_database_url: str | None = None
        self.redis_lock: int | None = None  # holds this stack's Redis database (claim_redis_database)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", str(root)),
            # this checkout's packages ahead of any the environment installed (an editable install made from another
            # checkout of the project, such as a worktree's shared .venv): the stack runs the code under test
            "PYTHONPATH": os.pathsep.join([*(str(REPO / folder) for folder in SOURCE_FOLDERS), str(REPO)]),
            "DJANGO_SETTINGS_MODULE": "atelier_platform.settings",
            "SECRET_KEY": "e2e-secret-key-0123456789-0123456789-0123456789",
            "ATELIER_DATA_DIR": str(root / "data"),
            "ATELIER_EXTRA_PLUGINS": "tests.support.plugins:ReverseText,tests.support.plugins:GpuEcho,"
                                     "tests.support.plugins:QuickLimit,tests.support.plugins:BatchProbe",
            "ATELIER_TEST_RUN_LOG": str(self.run_log),
            "ATELIER_TEST_BATCH_LOG": str(root / "batches.log"),
            "ATELIER_WORKER_REPORT_S": "0.5",
            # Tests and benches poll jobs every few milliseconds: a limit they never reach, so the
            # counters still run (in the cache the web processes share) without refusing anything.
            "ATELIER_RATE_LIMIT_PER_MINUTE": "1000000",
            **FAST_TIMINGS,
        }
        if backend == "postgres_redis":
            database_url, redis_url = postgres_and_redis_from_env()
            self.admin_database_url = database_url
            self.database_name = f"atelier_e2e_{uuid.uuid4().hex[:10]}"
            self._create_database()
            try:
                parts = urlsplit(database_url)
                self.env["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{self.database_name}"))
                self.env["REDIS_URL"], self.redis_lock = claim_redis_database(redis_url)
            except BaseException:
                # The caller gets no Stack to stop: the database would outlive the run.
                self._drop_database()
                raise

    # --- set-up and tear-down --------------------------------------------------------------
    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_database_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.database_name}"')

    def _drop_database(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_database_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database_name}" WITH (FORCE)')

    def _give_back_redis(self) -> None:
        if self.redis_lock is None:
            return  # given back already (a second stop): the database may be another stack's by now
        import redis

        try:
            client = redis.Redis.from_url(self.env["REDIS_URL"])
            try:
                client.flushdb()
            finally:
                client.close()
        finally:
            os.close(self.redis_lock)
            self.redis_lock = None

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            env=self.env, cwd=REPO, capture_output=True, text=True, check=check, timeout=120,
        )

    def python(self, code: str) -> subprocess.CompletedProcess:
        setup = "import django; django.setup()\n"
        return subprocess.run(
            [sys.executable, "-c", setup + code], env=self.env, cwd=REPO, capture_output=True, text=True, check=True, timeout=60
        )

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        # The lock of the stack's Redis database goes with each process: the database stays taken while any of
        # them lives, even past this one (killed outright, it could not stop them).
        keep = (self.redis_lock,) if self.redis_lock is not None else ()
        process = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, pass_fds=keep)
        self.processes[name] = process
        return process

    def log_of(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _wait_for_log(self, name: str, marker: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log_of(name):
                return
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{self.log_of(name)[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready after {timeout}s:\n{self.log_of(name)[-3000:]}")

    def start(self, worker_concurrency: int = 2, web_workers: int = 1) -> "Stack":
        """Migrate, then start web, beat and a worker; a stack that fails to start is stopped (its
        processes, its database), so that nothing of it outlives the caller."""
        try:
            return self._start(worker_concurrency, web_workers)
        except BaseException:
            self.stop()
            raise

    def _start(self, worker_concurrency: int, web_workers: int) -> "Stack":
        self.manage("migrate", "--noinput", "-v0")
        # No control socket: gunicorn's default is one per user (~/.gunicorn/gunicorn.ctl), which each
        # stack would take from any other gunicorn of that user (a `make run`, another stack) and delete
        # when it stops.
        self._spawn("web", [sys.executable, "-m", "gunicorn", "atelier_platform.wsgi", "--bind", f"127.0.0.1:{self.port}",
                            "--workers", str(web_workers), "--threads", "4", "--no-control-socket"])
        self._spawn("beat", [sys.executable, "-m", "celery", "-A", "atelier_platform.celery_app", "beat", "-l", "INFO"])
        self.start_worker(worker_concurrency)
        # Our gunicorn holds the port before /healthz counts: free_port() let the port go, and another
        # program may have bound it since; its answers must not pass for this stack's.
        self._wait_for_log("web", f"Listening at: {self.url} ")
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            # Gunicorn's master listens before its workers have loaded the app (and the safety checks'
            # models): a first request may wait past its timeout instead of being refused.
            except (requests.ConnectionError, requests.Timeout):
                pass
            if self.processes["web"].poll() is not None:
                raise RuntimeError(f"web exited early:\n{self.log_of('web')[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"web not ready:\n{self.log_of('web')[-3000:]}")
            time.sleep(0.2)
        return self

    def start_worker(self, concurrency: int = 2) -> None:
        index = sum(1 for name in self.processes if name.startswith("worker"))
        name = f"worker{index}"
        self._spawn(name, [
            sys.executable, "-m", "celery", "-A", "atelier_platform.celery_app", "worker",
            "--queues", "gpu,cpu,platform,exports", "--concurrency", str(concurrency), "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ])
        self._wait_for_log(name, " ready.")
        self.current_worker = name
        self.current_worker_concurrency = concurrency

    def ensure_worker(self, concurrency: int = 2) -> None:
        """A running worker of this concurrency: the current one where it is such, else a new one in its place
        (a test before may have left one of another concurrency, or none). Tests that need the usual worker ask
        for it here, rather than each test that changed it starting another one that the next test may stop."""
        process = self.processes.get(getattr(self, "current_worker", ""))
        if process is not None and process.poll() is None:
            if self.current_worker_concurrency == concurrency:
                return
            self.stop_worker()
        self.start_worker(concurrency)

    def kill_worker(self) -> None:
        """Kill the current worker and its pool processes at once, the way a crashed host loses them."""
        process = self.processes[self.current_worker]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_worker(self) -> None:
        """Stop the current worker as an orchestrator would: SIGTERM to its main process."""
        process = self.processes[self.current_worker]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)

    def stop(self, *, graceful: bool = True) -> None:
        """Stop every process, then drop the database. ``graceful=False`` kills them at once: for a stack whose
        tests are over, where nothing looks at how it stops (a worker's warm shutdown alone takes 3 to 7 s)."""
        try:
            # SIGTERM to each main process, as `make run`'s supervisor and an orchestrator send it: a signal to
            # the whole group also reached a worker's pool processes, which Celery then started again to run
            # what it had prefetched, and the worker took 10 to 20 s (past this wait, to a SIGKILL) to stop.
            for process in self.processes.values():
                if graceful and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in self.processes.values():
                try:
                    process.wait(timeout=20 if graceful else 0)
                except subprocess.TimeoutExpired:
                    pass
                try:
                    os.killpg(process.pid, signal.SIGKILL)  # what did not stop, and any pool process left behind
                except ProcessLookupError:
                    pass
                process.wait(timeout=20)
        finally:
            # The database goes whatever failed before: neither a stuck process nor an unreachable
            # Redis may leave it behind.
            if self.database_name:
                try:
                    self._give_back_redis()
                finally:
                    self._drop_database()

    # --- what a client does ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def batches(self) -> list[list[str]]:
        """Every ``generate`` call of the batch probe plugin: the job ids it got, in order."""
        path = self.root / "batches.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def runs_of(self, job_id: str) -> int:
        if not self.run_log.exists():
            return 0
        return self.run_log.read_text().split().count(job_id)
