"""What the platform adds to a job: the time from HTTP submit to the result visible through the API,
minus the model's own time, against a bare Celery task round trip on the same broker, same run.

    .venv/bin/python bench/overhead.py [--runs 20]

Both paths run on one machine, one at a time, at idle: Atelier's web, worker and beat (embedded
broker and SQLite, or PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set), and a
bare Celery worker with a no-op task and a result backend on the same broker. The job is the
chatbot plugin on the tiny benchmark model (4 M parameters, 8 new tokens); the model's own time is the
``generate_seconds`` the worker records in each output's provenance. A client gets the result
two ways, both measured: one request with ``Prefer: wait`` (answered when the job finishes), and
submit then poll ``GET /jobs/{id}/`` every 5 ms. The three are measured in turns (a waited job, a
polled job, a round trip, and again), so that a host whose speed drifts weighs on all alike, with
pauses of 200-220 ms drawn at random: a fixed pause would lock each measurement to the same phase
of the broker's polling, so that every one paid the same share of a poll.

The round trip's times fall in steps (the worker's broker poll and the client's 5 ms result poll), so
its median jumps from one step to the next between runs of the same code; the means move less.
Both are printed.

On PostgreSQL + Redis, a third path is measured in the same turns: the least job path (``job_floor.py``),
what any implementation of DESIGN.md's path of one request pays before it adds a feature (HTTP, a job row,
enqueue on commit, a claim, the output stored, a finish notice, the row read back; plain SQL, no checks).
Its multiple of the round trip is the part of the bar no code of ours can win back; Atelier's overhead as
a multiple of it is what its features and code cost above that.

Where the overhead goes, for the waited jobs, from the times the platform stores on each job (web,
worker and client share one clock): from the client's send to the job's row (``created_at``: HTTP,
authentication, validation, input screening); from the row to its claim (``started_at``: commit,
broker message, the worker taking it); from the claim to the finish, less the model
(``finished_at``: the batch's company, output screening, storing); from the finish to the answer at
the client (commit, finish notice, reread, serialising, HTTP). Medians of each, so they need not
add up to the median total exactly.

What each costs the machine's CPU, per job and per round trip: the CPU seconds (user and system) the
operating system counts for each part around each waited job and each round trip, from just before it
to the end of the pause after it (so that work done after the answer, such as webhook events, counts):
Atelier's web and worker processes, the database and broker servers, the client; the bare worker,
broker and client. Means of each part, not medians: CPU is a cost, and the periodic work a process
does (heartbeats, beat) is paid by whichever jobs it falls beside. On Linux each process's CPU clock
is read to the nanosecond (``clock_getcpuclockid``); elsewhere the operating system's counters, which
count in 10 ms ticks, so only the mean of many readings means anything there.

Prints a table, then as its last line one JSON object with ``overhead_ratio`` (median overhead with
``Prefer: wait`` / median round trip), ``overhead_ratio_mean`` (the same with means),
``overhead_ratio_polling``, ``overhead_breakdown_ms``, ``cpu_ms_per_job``, ``bare_celery_cpu_ms``, and
``job_floor_ms``, ``job_floor_ratio`` (its median / the round trip's), ``overhead_over_floor`` and
``job_floor_cpu_ms``, ``job_floor_breakdown_ms`` (null on the embedded set-up).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from batching import build_bench_model  # noqa: E402
from platform_stack import WEB_WORKERS, ApiClient, start_stack  # noqa: E402


class BareCelery:
    """A bare Celery worker with a no-op task on the stack's broker, and a client process that sends it
    one task and waits for the result each time it is asked (``round_trip``)."""

    CLIENT = (
        "import sys, time\n"
        "from celery_ping import ping\n"
        "ping.delay().get(timeout=60, interval=0.005)  # worker up, connections warm\n"
        "print('ready', flush=True)\n"
        "for _ in sys.stdin:\n"
        "    started = time.perf_counter()\n"
        "    ping.delay().get(timeout=60, interval=0.005)\n"
        "    print(time.perf_counter() - started, flush=True)\n"
    )

    def __init__(self, stack) -> None:
        env = {**stack.env, "PYTHONPATH": f"{REPO}:{REPO / 'bench'}"}
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_ping", "worker", "--pool", "solo", "-Q", "bench_ping",
             "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
            env=env, cwd=REPO / "bench", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self.client = None
        try:
            self.client = subprocess.Popen([sys.executable, "-c", self.CLIENT], env=env, cwd=REPO / "bench",
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            if self.client.stdout.readline().strip() != "ready":
                raise RuntimeError("the bare Celery client did not start")
        except BaseException:
            self.stop()  # the caller gets no BareCelery to stop: the worker would outlive the bench
            raise

    def round_trip(self) -> float:
        self.client.stdin.write("\n")
        self.client.stdin.flush()
        return float(self.client.stdout.readline())

    def stop(self) -> None:
        for process in (self.client, self.worker):
            if process is None:
                continue
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class JobFloor:
    """``job_floor.py``'s least job path (see there), served like Atelier's web (gunicorn, the same worker and
    thread counts) with a ``--pool solo`` Celery worker, on a database of its own beside the stack's and the
    stack's Redis. PostgreSQL + Redis only: the question it answers is that set-up's (the embedded one meets
    the bar). ``round_trip`` submits one job and waits for its result, as a client of Atelier does with
    ``Prefer: wait``."""

    def __init__(self, stack) -> None:
        import requests

        from tests.e2e.stack import free_port

        parts = urlsplit(stack.admin_database_url)
        self.admin_url = stack.admin_database_url
        self.database = f"{stack.database_name}_floor"
        self.url = f"http://127.0.0.1:{free_port()}/jobs/"
        self.env = {"PATH": stack.env["PATH"], "HOME": stack.env["HOME"], "PYTHONPATH": str(REPO / "bench"),
                    "DJANGO_SETTINGS_MODULE": "job_floor", "FLOOR_REDIS_URL": stack.env["REDIS_URL"],
                    "FLOOR_DATABASE_URL": urlunsplit(parts._replace(path=f"/{self.database}"))}
        self.web = self.worker = None
        self.session = requests.Session()
        self.logs = Path(tempfile.mkdtemp(prefix="atelier-bench-floor-"))
        self._database("CREATE DATABASE")
        try:
            subprocess.run([sys.executable, "-c", "import job_floor; job_floor.create_table()"], env=self.env,
                           cwd=REPO / "bench", check=True, capture_output=True, timeout=60)
            self.web = self._spawn([sys.executable, "-m", "gunicorn", "job_floor:application", "--bind",
                                    self.url.split("/")[2], "--workers", str(WEB_WORKERS), "--threads", "4",
                                    "--no-control-socket"])
            self.worker = self._spawn([sys.executable, "-m", "celery", "-A", "job_floor", "worker", "--pool", "solo",
                                       "-Q", "job_floor", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"])
            self._wait_until_ready()
        except BaseException:
            self.stop()  # the caller gets no JobFloor to stop
            raise

    def _database(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'{statement} "{self.database}"' + (" WITH (FORCE)" if "DROP" in statement else ""))

    def _spawn(self, command: list[str]) -> subprocess.Popen:
        log = open(self.logs / f"{len(list(self.logs.iterdir()))}-{command[2]}.log", "w")  # gunicorn, celery
        with log:
            return subprocess.Popen(command, env=self.env, cwd=REPO / "bench", stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}" for path in sorted(self.logs.iterdir()))

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                self.round_trip()  # a job through: web, broker, worker and database all answer
                return
            except Exception:
                if time.monotonic() > deadline or any(p.poll() is not None for p in (self.web, self.worker)):
                    raise RuntimeError(f"the job floor's web and worker did not start:\n{self._logs()}") from None
                time.sleep(0.2)

    def cpu_meter(self) -> "CpuMeter":
        """Its parts' CPU, as ``cpu_meters`` reads Atelier's: web, worker, the database and broker servers, the client."""
        return CpuMeter({"web": with_children(self.web), "worker": with_children(self.worker),
                         "database": named("postgres", "postgresql"), "broker": named("redis-server"),
                         "client": this_process})

    def round_trip(self) -> float:
        return self.timed_job()[0]

    def timed_job(self) -> tuple[float, list[float]]:
        """One job: its seconds from submit to result, and those of each of ``STAGES`` (its model takes no time)."""
        sent, started = time.time(), time.perf_counter()
        response = self.session.post(self.url, json={"input": {"text": "floor"}}, timeout=30)
        elapsed, answered = time.perf_counter() - started, time.time()
        job = response.json()
        if response.status_code != 200 or job.get("status") != "succeeded" or job.get("output") != {"text": "roolf"}:
            raise RuntimeError(f"the job floor answered {response.status_code}: {response.text[:200]}")
        return elapsed, stage_times(sent, answered, {**job, "outputs": [{"provenance": {"generate_seconds": 0.0}}]})

    def stop(self) -> None:
        self.session.close()
        for process in (self.web, self.worker):
            if process is None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._database("DROP DATABASE IF EXISTS")
        shutil.rmtree(self.logs, ignore_errors=True)


def _precise_cpu_clock() -> Callable[[int], float] | None:
    """A process's CPU seconds (all its threads, user and system) to the nanosecond, by its pid: Linux's
    per-process CPU clock, through the C library. None where there is none."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.clock_getcpuclockid
    except (OSError, AttributeError):
        return None

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    def seconds(pid: int) -> float:
        clock, now = ctypes.c_int(), Timespec()
        if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) or libc.clock_gettime(clock, ctypes.byref(now)):
            raise ProcessLookupError(pid)
        return now.tv_sec + now.tv_nsec / 1e9

    try:
        seconds(os.getpid())
    except ProcessLookupError:
        return None
    return seconds


PRECISE_CPU_SECONDS = _precise_cpu_clock()


class CpuMeter:
    """CPU seconds (user and system) spent by named groups of processes between two readings.

    ``groups`` maps a part's name to a function that lists its processes (``psutil.Process``) now: a
    process's children are listed afresh each time (pool processes, database backends come and go).
    A process that started between two readings counts from zero; one that ended is not counted.
    ``first``: the part read first after a measurement and last before one (this process: its own
    reading of the others would otherwise count as its work).
    """

    def __init__(self, groups: dict, first: str = "client") -> None:
        self.groups, self.first = groups, first

    def _seconds(self, process) -> float:
        if PRECISE_CPU_SECONDS is not None:
            try:
                return PRECISE_CPU_SECONDS(process.pid)
            except ProcessLookupError:
                pass
        times = process.cpu_times()
        return times.user + times.system

    def read(self, *, after: bool) -> dict[str, dict[int, float]]:
        import psutil

        names = sorted(self.groups, key=lambda name: (name != self.first) if after else (name == self.first))
        reading: dict[str, dict[int, float]] = {}
        for name in names:
            seconds = {}
            for process in self.groups[name]():
                try:
                    seconds[process.pid] = self._seconds(process)
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            reading[name] = seconds
        return {name: reading[name] for name in self.groups}

    @staticmethod
    def spent(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        return {name: sum(max(0.0, seconds - before.get(name, {}).get(pid, 0.0)) for pid, seconds in pids.items())
                for name, pids in after.items()}


def with_children(*popens) -> Callable[[], list]:
    """The processes started as ``popens`` (subprocess.Popen) and all their descendants, as they are now."""
    import psutil

    def processes() -> list:
        found = []
        for popen in popens:
            if popen is None or popen.poll() is not None:
                continue
            try:
                parent = psutil.Process(popen.pid)
                found += [parent, *parent.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        return found
    return processes


def named(*names: str) -> Callable[[], list]:
    """Every process of this machine whose program is one of ``names`` (the database and broker servers)."""
    import psutil

    def processes() -> list:
        return [process for process in psutil.process_iter(["name"]) if process.info["name"] in names]
    return processes


def this_process() -> list:
    import psutil

    return [psutil.Process(os.getpid())]


def cpu_meters(stack, bare: BareCelery) -> tuple[CpuMeter, CpuMeter]:
    """One meter for Atelier's parts (web, worker, database, broker, client), one for the bare round trip's."""
    workers = [process for name, process in stack.processes.items() if name.startswith("worker")]
    servers = {"database": named("postgres", "postgresql"), "broker": named("redis-server")} \
        if stack.backend == "postgres_redis" else {}
    platform = CpuMeter({"web": with_children(stack.processes["web"]), "worker": with_children(*workers),
                         **servers, "client": this_process})
    baseline = CpuMeter({"worker": with_children(bare.worker), **({"broker": servers["broker"]} if servers else {}),
                         "client": with_children(bare.client)})
    return platform, baseline


#: Untimed turns of each path before the timed ones.
WARM_UP_RUNS = 5


def pause() -> None:
    """Idle between measurements, for a random 200-220 ms (see the module's docstring)."""
    time.sleep(random.uniform(0.2, 0.22))


#: The parts of a waited job's overhead (see the module's docstring), in the order a job meets them.
STAGES = (
    ("submit -> job row", "HTTP, authentication, validation, input screening"),
    ("job row -> claimed", "commit, broker message, the worker taking it"),
    ("claimed -> finished, less the model", "company, output screening, storing"),
    ("finished -> answer at the client", "commit, finish notice, reread, HTTP"),
)


def stage_times(sent: float, answered: float, job: dict) -> list[float]:
    """The seconds of each of ``STAGES`` for one waited job: ``sent`` and ``answered`` are the client's
    wall-clock times (``time.time()``), the rest the times the platform stored on the job."""
    created, started, finished = (datetime.fromisoformat(job[name]).timestamp()
                                  for name in ("created_at", "started_at", "finished_at"))
    model = job["outputs"][0]["provenance"]["generate_seconds"]
    return [created - sent, started - created, finished - started - model, answered - finished]


def measure(client: ApiClient, bare: BareCelery, runs: int, meters: tuple[CpuMeter, CpuMeter],
            floor: JobFloor | None = None) -> dict[str, list]:
    """In turns, so that a host whose speed drifts weighs on all alike: one job with ``Prefer: wait`` (one
    request answered when the job finishes), one job submitted then polled with ``GET /jobs/{id}/`` every
    5 ms, one bare Celery round trip. The model's own time of each job is its ``generate_seconds``. The
    CPU each part spent is read around the waited jobs and the round trips (``meters``)."""
    platform_meter, bare_meter = meters
    data = {"messages": [{"role": "user", "content": "Where is my parcel?"}], "use_knowledge": False}
    params = {"max_new_tokens": 8, "seed": 0}
    client.wait(client.submit("chatbot", data, params), timeout=600)  # the model loaded
    # Every path a few times untimed: each process's first requests open connections and fill caches.
    for _ in range(WARM_UP_RUNS):
        client.submit_and_wait("chatbot", data, params)
        client.wait(client.submit("chatbot", data, params))
        bare.round_trip()
        if floor is not None:
            floor.round_trip()
    times: dict[str, list] = {name: [] for name in ("waited", "waited_model", "polled", "polled_model", "ping", "stages",
                                                    "cpu", "ping_cpu", "floor", "floor_stages", "floor_cpu")}
    floor_meter = floor.cpu_meter() if floor is not None else None
    for _ in range(runs):
        for polling in (False, True):
            cpu_before = None if polling else platform_meter.read(after=False)
            sent, started = time.time(), time.perf_counter()
            job = client.wait(client.submit("chatbot", data, params)) if polling else client.submit_and_wait("chatbot", data, params)
            elapsed, answered = time.perf_counter() - started, time.time()
            name = "polled" if polling else "waited"
            times[name].append(elapsed)
            if not polling:
                times["stages"].append(stage_times(sent, answered, job))
            times[f"{name}_model"].append(job["outputs"][0]["provenance"]["generate_seconds"])
            pause()
            if not polling:
                times["cpu"].append(CpuMeter.spent(cpu_before, platform_meter.read(after=True)))
        cpu_before = bare_meter.read(after=False)
        times["ping"].append(bare.round_trip())
        pause()
        times["ping_cpu"].append(CpuMeter.spent(cpu_before, bare_meter.read(after=True)))
        if floor is not None:
            cpu_before = floor_meter.read(after=False)
            elapsed, stages = floor.timed_job()
            times["floor"].append(elapsed)
            times["floor_stages"].append(stages)
            pause()
            times["floor_cpu"].append(CpuMeter.spent(cpu_before, floor_meter.read(after=True)))
    return times


def mean_cpu_ms(readings: list[dict[str, float]]) -> dict[str, float]:
    """Each part's mean CPU milliseconds over ``readings`` (see the module's docstring: not medians), and ``total``."""
    if not readings:
        return {}
    parts = {name: round(statistics.mean(reading.get(name, 0.0) for reading in readings) * 1000, 1)
             for name in readings[0]}
    return {**parts, "total": round(statistics.mean(sum(reading.values()) for reading in readings) * 1000, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    models_root = Path(tempfile.mkdtemp(prefix="atelier-bench-models-"))
    try:
        build_bench_model(models_root / "demo" / "chat-lm", "tiny")  # the model's own time is subtracted anyway
        stack = start_stack(models_root, ATELIER_DEVICE="cpu")
        bare = floor = None
        try:
            client = ApiClient(stack)
            bare = BareCelery(stack)
            floor = JobFloor(stack) if stack.backend == "postgres_redis" else None
            times = measure(client, bare, args.runs, cpu_meters(stack, bare), floor)
        finally:
            for part in (floor, bare):
                if part is not None:
                    part.stop()
            stack.stop()
    finally:
        shutil.rmtree(models_root, ignore_errors=True)
    waited_totals, waited_model, polled_totals, polled_model, pings = (
        times["waited"], times["waited_model"], times["polled"], times["polled_model"], times["ping"])
    ms = lambda values: round(statistics.median(values) * 1000, 1)  # noqa: E731
    # Nearest rank: the smallest value that 90 % of the runs do not exceed (index ceil(0.9 n) - 1).
    p90 = lambda values: round(sorted(values)[math.ceil(len(values) * 0.9) - 1] * 1000, 1)  # noqa: E731
    waited = [total - own for total, own in zip(waited_totals, waited_model)]
    polled = [total - own for total, own in zip(polled_totals, polled_model)]
    ping = statistics.median(pings)
    figures = {
        "backend": stack.backend, "runs": args.runs,
        "submit_to_result_ms": ms(waited_totals), "model_ms": ms(waited_model), "overhead_ms": ms(waited),
        "overhead_p90_ms": p90(waited),
        "polling_submit_to_result_ms": ms(polled_totals), "polling_overhead_ms": ms(polled),
        "bare_celery_round_trip_ms": ms(pings),
        "bare_celery_round_trip_mean_ms": round(statistics.mean(pings) * 1000, 1),
        "overhead_mean_ms": round(statistics.mean(waited) * 1000, 1),
        "overhead_ratio": round(statistics.median(waited) / ping, 2),
        "overhead_ratio_mean": round(statistics.mean(waited) / statistics.mean(pings), 2),
        "overhead_ratio_polling": round(statistics.median(polled) / ping, 2),
        "overhead_breakdown_ms": {label: ms([stages[index] for stages in times["stages"]])
                                  for index, (label, _) in enumerate(STAGES)},
        # CPU per waited job (the model's own work included, in the worker) and per bare round trip
        "cpu_ms_per_job": mean_cpu_ms(times["cpu"]),
        "bare_celery_cpu_ms": mean_cpu_ms(times["ping_cpu"]),
        # The least job path (job_floor.py), PostgreSQL + Redis only: its time, its multiple of the round trip,
        # and Atelier's overhead as a multiple of it.
        "job_floor_ms": ms(times["floor"]) if times["floor"] else None,
        "job_floor_ratio": round(statistics.median(times["floor"]) / ping, 2) if times["floor"] else None,
        "overhead_over_floor": round(statistics.median(waited) / statistics.median(times["floor"]), 2)
        if times["floor"] else None,
        "job_floor_cpu_ms": mean_cpu_ms(times["floor_cpu"]) or None,
        "job_floor_breakdown_ms": {label: ms([stages[index] for stages in times["floor_stages"]])
                                   for index, (label, _) in enumerate(STAGES)} if times["floor_stages"] else None,
    }
    print(f"one chatbot job at idle, {stack.backend} broker and database, medians of {args.runs} runs")
    print(f"{'':44}{'Prefer: wait':>14}{'polling 5 ms':>14}")
    print(f"{'HTTP submit -> result visible (ms)':44}{figures['submit_to_result_ms']:>14}{figures['polling_submit_to_result_ms']:>14}")
    print(f"{'  of which the model, generate (ms)':44}{figures['model_ms']:>14}{ms(polled_model):>14}")
    print(f"{'  platform overhead (ms)':44}{figures['overhead_ms']:>14}{figures['polling_overhead_ms']:>14}")
    print(f"{'  p90 overhead (ms)':44}{figures['overhead_p90_ms']:>14}{p90(polled):>14}")
    print(f"{'bare Celery task round trip, baseline (ms)':44}{figures['bare_celery_round_trip_ms']:>14}")
    print(f"{'overhead / baseline':44}{'x' + str(figures['overhead_ratio']):>14}{'x' + str(figures['overhead_ratio_polling']):>14}"
          "   (needs <= 3)")
    print(f"{'means: overhead (ms), round trip (ms), ratio':44}{figures['overhead_mean_ms']:>14}"
          f"{figures['bare_celery_round_trip_mean_ms']:>14}{'x' + str(figures['overhead_ratio_mean']):>8}")
    if figures["job_floor_ms"] is not None:
        print(f"{'the least job path, job_floor.py (ms)':44}{figures['job_floor_ms']:>14}"
              f"{'x' + str(figures['job_floor_ratio']):>14}   (of the round trip)")
        print(f"{'overhead / least job path':44}{'x' + str(figures['overhead_over_floor']):>14}")
    floor_stages = figures["job_floor_breakdown_ms"]
    print("\nwhere the overhead goes, Prefer: wait (medians, ms)" + ("; the least job path's beside it" if floor_stages else ""))
    for label, what in STAGES:
        beside = f"{floor_stages[label]:>8}" if floor_stages else ""
        print(f"  {label:42}{figures['overhead_breakdown_ms'][label]:>8}{beside}   {what}")
    cpu, bare_cpu = figures["cpu_ms_per_job"], figures["bare_celery_cpu_ms"]
    if cpu:
        print(f"\nCPU spent, means, ms (the job's worker includes the model's {figures['model_ms']} ms of generation, "
              "on as many cores as it uses)")
        floor_cpu = figures["job_floor_cpu_ms"] or {}
        print(f"{'':44}{'a waited job':>14}{'a round trip':>14}" + (f"{'a floor job':>14}" if floor_cpu else ""))
        for name in ("web", "worker", "database", "broker", "client", "total"):
            if name in cpu or name in bare_cpu:
                print(f"{'  ' + name:44}{cpu.get(name, '-'):>14}{bare_cpu.get(name, '-'):>14}"
                      + (f"{floor_cpu.get(name, '-'):>14}" if floor_cpu else ""))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
