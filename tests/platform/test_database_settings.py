"""What the settings give a PostgreSQL connection: a server that takes the connection and never answers
must not hold a web thread or a worker for good. The real settings module, in a fresh process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytest.importorskip("psycopg")

PROBE = textwrap.dedent(
    """
    import os, time, django
    os.environ["DJANGO_SETTINGS_MODULE"] = "atelier_platform.settings"
    django.setup()
    from django.db import connection
    started = time.monotonic()
    try:
        connection.ensure_connection()
    except Exception as error:
        print(f"GAVE-UP {type(error).__name__} after {time.monotonic() - started:.1f} s")
    else:
        print("CONNECTED")
    """
)


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never says a word, as a hung server does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_connecting_to_a_postgresql_that_never_answers_gives_up_within_seconds(silent_server, tmp_path):
    env = {**os.environ, "DATABASE_URL": f"postgres://atelier@127.0.0.1:{silent_server}/atelier",
           "ATELIER_DATA_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    env.pop("REDIS_URL", None)
    started = time.monotonic()
    try:
        probe = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True,
                               timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("connecting to a silent server was still waiting after 20 s")
    assert "GAVE-UP OperationalError" in probe.stdout, (probe.stdout, probe.stderr[-2000:])
    assert time.monotonic() - started < 20
