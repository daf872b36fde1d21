"""A Redis that hangs as a Redis does (takes connections, never answers), in front of the real one: for the
tests of what a hung broker does to a publish. ``hanging_redis`` is a fixture for every test (tests/conftest.py)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from atelier_platform.config import get_config


class HangingRedis:
    """A proxy to a real Redis that can hang as a Redis does: once ``hang()`` is called, the connections it
    holds get no answer and new ones are taken and never answered (``connections_while_hung`` counts them).
    ``restart()`` closes every connection, as a restarted Redis does, and answers again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.hung = threading.Event()
        self.connections_while_hung = 0
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:  # closed
                return
            with self.lock:
                self.sockets.append(client)
                if self.hung.is_set():
                    self.connections_while_hung += 1
                    continue  # taken, never answered
                upstream = socket.create_connection(self.upstream)
                self.sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                while self.hung.is_set():  # what comes in while hung is held, never answered
                    time.sleep(0.05)
                target.sendall(data)

    def _close_connections(self) -> None:
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.sockets.clear()

    def hang(self) -> None:
        self.hung.set()

    def restart(self) -> None:
        self._close_connections()  # what was held while hung goes with them
        self.hung.clear()

    def close(self) -> None:
        self.listener.close()
        self._close_connections()
        self.hung.clear()


@pytest.fixture
def hanging_redis():
    """A ``HangingRedis`` in front of the Redis of ``REDIS_URL``; its ``url`` leads through it, to the same
    database, and ``direct_url`` is ``REDIS_URL``."""
    redis_url = get_config().redis_url
    if not redis_url or urlsplit(redis_url).scheme != "redis":
        pytest.skip("needs a real Redis: set REDIS_URL=redis://host:port/db")
    parts = urlsplit(redis_url)
    proxy = HangingRedis((parts.hostname, parts.port or 6379))
    host, port = proxy.address
    proxy.url, proxy.direct_url = urlunsplit(parts._replace(netloc=f"{host}:{port}")), redis_url
    try:
        yield proxy
    finally:
        proxy.close()


def messages_for(redis_url: str, job_id: str, *, take: bool, queue: str = "cpu") -> int:
    """How many messages of ``queue`` (any priority) carry ``job_id``; ``take`` removes them."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        found = 0
        for key in client.scan_iter(match=f"{queue}*"):
            if client.type(key) != b"list":
                continue
            for message in client.lrange(key, 0, -1):
                if job_id.encode() in message:
                    found += 1
                    if take:
                        client.lrem(key, 0, message)
        return found
    finally:
        client.close()
