"""Django's PostgreSQL backend with a health check that costs no round trip while the server is silent.

With ``CONN_HEALTH_CHECKS``, Django sends ``SELECT 1`` before the first query of every request and of
every Celery task, so that a persistent connection the server has dropped (a restart, a failover,
``idle_session_timeout``, an administrator's ``pg_terminate_backend``) is replaced instead of failing
the request. That is a statement for the server and a round trip for every request and every task:
``bench/overhead.py`` counted about 2 ms of the web's CPU per waited job for it (14.5 -> 12 ms), and some
of the database's. (Its latency at idle hardly changed: the first statement of a request pays for waking
the server's backend, whichever statement it is.)

A server that drops a connection says so on its socket: it sends its last error (FATAL) and closes,
and either leaves the socket readable. An idle connection whose socket has nothing to read, and that
libpq still holds as good, has not been dropped by the server; only then is the ``SELECT 1`` skipped.
Anything readable (a drop, or an asynchronous message such as a NOTIFY) gets Django's own check. A
peer gone silent without closing (a dead host, a cut route) is found by neither check at once: the
TCP keepalives set in ``settings.py`` close such a connection within about a minute, and libpq then
holds it as bad.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if (self.connection is not None and self.health_check_enabled and not self.health_check_done
                and not self.pool and self._server_has_said_nothing()):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _server_has_said_nothing(self) -> bool:
        """Whether this connection is idle, held good by libpq, and has nothing waiting on its socket."""
        connection = self.connection
        try:
            if connection.closed or connection.pgconn.status != pq.ConnStatus.OK:
                return False
            if connection.info.transaction_status != pq.TransactionStatus.IDLE:
                return False
            return not _readable_now(connection.fileno())
        except (OSError, ValueError, self.Database.Error):
            return False


def _readable_now(fd: int) -> bool:
    """Whether ``fd`` has data or an end of file to read, without waiting (poll: no limit on fd numbers,
    where select refuses those above 1023)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)
