"""The foreground runner of `make run`: one Ctrl-C stops every process, gracefully."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

GRACEFUL = (
    "import signal, sys, time\n"
    "def bye(*_):\n"
    "    time.sleep(1.5)  # finish the work in hand\n"
    "    print('{name} stopped cleanly', flush=True); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, bye)\n"
    "print('{name} up', flush=True)\n"
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
