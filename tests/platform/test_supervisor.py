"""The foreground runner of `make run`: one Ctrl-C stops every process, gracefully."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]

GRACEFUL = (
    "import signal, sys, time\n"
    "def bye(*_):\n"
    "    time.sleep(1.5)  # finish the work in hand\n"
    "    print('{name} stopped cleanly', flush=True); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "print('{name} up', flush=True)\n"
    "while True: time.sleep(0.1)\n"
)
#: stops at once on SIGTERM, and says its pid when up
QUICK = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "print('{name} up', os.getpid(), flush=True)\n"
    "while True: time.sleep(0.1)\n"
)


def procfile(tmp_path: Path, entries: dict[str, str]) -> Path:
    lines = []
    for name, code in entries.items():
        script = tmp_path / f"{name}.py"
        script.write_text(code.format(name=name))
        lines.append(f"{name}: {sys.executable} {script}")
    path = tmp_path / "Procfile"
    path.write_text("\n".join(lines) + "\n")
    return path


def start(path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "atelier_platform.supervisor", str(path), "--grace", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def wait_for(process: subprocess.Popen, text: str, lines: list[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if text in line:
            return
    raise AssertionError(f"never saw {text!r}: {lines}")


def test_ctrl_c_lets_every_process_finish_then_exits(tmp_path):
    process = start(procfile(tmp_path, {"web": GRACEFUL, "worker": GRACEFUL}))
    lines: list[str] = []
    wait_for(process, "worker up", lines)
    wait_for(process, "web up", lines) if not any("web up" in l for l in lines) else None
    process.send_signal(signal.SIGINT)
    output = "".join(lines) + process.communicate(timeout=20)[0]
    assert process.returncode == 0
    assert "web stopped cleanly" in output and "worker stopped cleanly" in output


def test_a_process_that_dies_stops_the_others(tmp_path):
    crash = "import sys, time\nprint('{name} up', flush=True)\ntime.sleep(0.5)\nsys.exit(3)\n"
    process = start(procfile(tmp_path, {"web": GRACEFUL, "worker": crash}))
    output = process.communicate(timeout=30)[0]
    assert process.returncode == 1
    assert "worker exited with status 3" in output and "web stopped cleanly" in output


def pids_of_started(process: subprocess.Popen, count: int) -> list[int]:
    pids: list[int] = []
    deadline = time.monotonic() + 20
    while len(pids) < count and time.monotonic() < deadline:
        line = process.stdout.readline()
        if " up " in line:
            pids.append(int(line.split()[-1]))
    assert len(pids) == count, pids
    return pids


def still_running(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def kill(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
def test_a_closed_terminal_stops_every_process(tmp_path, stop_signal):
    """SIGHUP (the terminal closed, the SSH session lost) killed the supervisor alone: the processes, in
    sessions of their own, never heard it and ran on with nobody to stop them."""
    process = start(procfile(tmp_path, {"web": QUICK, "worker": QUICK}))
    pids = pids_of_started(process, 2)
    try:
        process.send_signal(stop_signal)
        process.wait(timeout=20)
        assert still_running(pids) == []
    finally:
        kill(pids)


def test_sigterm_to_make_run_stops_every_process(tmp_path):
    """`kill <make>` (a process manager, `timeout make run`): make signals its recipe's shell, which did not
    hand itself over to the supervisor (the line began with an assignment), so the shell died alone and
    web, worker and beat ran on with no parent."""
    recipe = next(line for line in (REPO / "Makefile").read_text().splitlines() if "atelier_platform.supervisor" in line)
    (tmp_path / ".venv").symlink_to(REPO / ".venv")
    procfile(tmp_path, {"web": QUICK, "worker": QUICK})
    (tmp_path / "Makefile").write_text(f"PORT ?= 8000\nVENV := .venv\nBIN := $(VENV)/bin\nrun:\n{recipe}\n")
    make = subprocess.Popen(["make", "-s", "run"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO / "platform")},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pids = pids_of_started(make, 2)
    supervisors = [psutil.Process(pid).ppid() for pid in pids]
    try:
        make.send_signal(signal.SIGTERM)
        make.wait(timeout=20)
        deadline = time.monotonic() + 10
        while still_running(pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert still_running(pids) == []
    finally:
        kill(pids + supervisors)


def test_a_ctrl_c_while_the_processes_start_stops_them_all(tmp_path):
    """The stop read the processes while the start still added to them: it crashed, the ones started after
    it were never stopped, and the supervisor waited for them for good, deaf to further Ctrl-Cs."""
    process = start(procfile(tmp_path, {name: QUICK for name in ("web", "worker", "worker_cpu", "beat")}))
    supervisor = psutil.Process(process.pid)
    started: list[int] = []
    try:
        for line in iter(process.stdout.readline, ""):
            if "started web" in line:
                break
        process.send_signal(signal.SIGINT)
        started = [child.pid for child in supervisor.children(recursive=True)]
        output = process.communicate(timeout=20)[0]
        # every process it started, whenever the Ctrl-C came, has stopped with it
        started += [int(match.group(1)) for match in re.finditer(r" up (\d+)$", output, re.M)]
        assert process.returncode == 0 and still_running(started) == []
    finally:
        try:
            started += [child.pid for child in supervisor.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
        kill(started)
        if process.poll() is None:
            process.kill()
