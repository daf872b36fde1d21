"""One Redis client (and its connection pool) per process, shared by the parts that talk to Redis
directly: the finish notices (``jobs.waiting``) and the rate-limit counters (``usage.window_counts``)."""

from __future__ import annotations

import threading

_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def shared_redis(url: str | None):
    """The client for ``url`` (the configured ``REDIS_URL``), or None without one (the embedded set-up)."""
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        import redis

        with _clients_lock:
            client = _clients.setdefault(url, redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2))
    return client
