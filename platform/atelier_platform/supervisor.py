"""Run the processes of a Procfile in the foreground; one Ctrl-C stops them all, gracefully.

``python -m atelier_platform.supervisor Procfile`` (what ``make run`` does). Each process runs in
its own session, so the terminal's Ctrl-C reaches only this supervisor, which then sends SIGTERM
to every process and waits for them: a Celery worker finishes the job in hand (a warm shutdown
takes several seconds, longer than generic process managers wait before SIGKILL). A process
that dies on its own stops the others too, and the exit status says so. A closed terminal (SIGHUP)
or a SIGQUIT stops them as a Ctrl-C does: the processes, in sessions of their own, would not hear it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

COLOURS = ["\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m"]
RESET = "\033[0m"
LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


def read_procfile(path: Path) -> list[tuple[str, str]]:
    entries = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        if not match:
            raise SystemExit(f"{path}: cannot read line {raw!r}; expected 'name: command'")
        entries.append((match.group(1), match.group(2)))
    return entries


class Supervisor:
    def __init__(self, entries: list[tuple[str, str]], grace_s: float) -> None:
        self.entries = entries
        self.grace_s = grace_s
        self.processes: dict[str, subprocess.Popen] = {}
        # start() adds to ``processes`` while a signal's stop() may already read them
        self.processes_lock = threading.Lock()
        self.stopping = threading.Event()
        self.width = max(len(name) for name, _ in entries)
        self.colour = sys.stdout.isatty()
        self.print_lock = threading.Lock()

    def say(self, name: str, text: str, index: int = 0) -> None:
        prefix = f"{name:<{self.width}} | "
        if self.colour:
            prefix = COLOURS[index % len(COLOURS)] + prefix + RESET
        with self.print_lock:
            sys.stdout.write(prefix + text + "\n")
            sys.stdout.flush()

    def _pump(self, name: str, index: int, process: subprocess.Popen) -> None:
        for line in iter(process.stdout.readline, b""):
            self.say(name, line.decode(errors="replace").rstrip(), index)

    def start(self) -> None:
        for index, (name, command) in enumerate(self.entries):
            with self.processes_lock:
                if self.stopping.is_set():  # stopped while starting: start no more
                    return
                # sh -c expands ${PORT:-8000} as a Procfile author expects
                process = subprocess.Popen(
                    ["/bin/sh", "-c", f"exec {command}"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                )
                self.processes[name] = process
            threading.Thread(target=self._pump, args=(name, index, process), daemon=True).start()
            self.say("supervisor", f"started {name} (pid {process.pid}): {shlex.split(command)[0]}")

    def started(self) -> list[tuple[str, subprocess.Popen]]:
        with self.processes_lock:
            return list(self.processes.items())

    def stop(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.say("supervisor", f"stopping; waiting up to {self.grace_s:.0f} s for running work to finish")
        started = self.started()  # after ``stopping``: start() launches nothing more
        for _, process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for name, process in started:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("supervisor", f"{name} did not stop in time; killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def run(self) -> int:
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(stop_signal, lambda *_: self.stopping.is_set() or threading.Thread(target=self.stop).start())
        self.start()
        failed = None
        while not self.stopping.is_set():
            for name, process in self.started():
                if process.poll() is not None:
                    failed = (name, process.returncode)
                    break
            if failed:
                self.say("supervisor", f"{failed[0]} exited with status {failed[1]}; stopping the others")
                self.stop()
                break
            time.sleep(0.2)
        while any(p.poll() is None for _, p in self.started()):
            time.sleep(0.1)
        return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("procfile", type=Path, nargs="?", default=Path("Procfile"))
    parser.add_argument("--grace", type=float, default=60.0, help="seconds to wait after SIGTERM before SIGKILL")
    args = parser.parse_args(argv)
    return Supervisor(read_procfile(args.procfile), args.grace).run()


if __name__ == "__main__":
    sys.exit(main())
