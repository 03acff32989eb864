"""A client-side deadline on the queries of a web process, for a database that stops answering without refusing.

The connect timeout bounds connecting and the server's statement_timeout a query the server runs; neither helps when
the server (or a proxy, or the network) holds an open connection and never answers: a frozen PostgreSQL held requests
for as long as it was frozen. Here a thread checks the queries in flight every TICK_SECONDS and shuts down the
socket of one older than settings.DB_QUERY_DEADLINE_SECONDS (the statement timeout plus a margin, so the server
cancels first when it can): the blocked read returns, psycopg raises OperationalError, the request is answered 503
(crlsite/outages.py) and Django drops the broken connection. Installed on every new PostgreSQL connection of a process
that serves requests (by crlsite.outages.ServiceUnavailableMiddleware); workers keep their own long statements.
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time

from django.conf import settings
from django.db.backends.signals import connection_created

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25


def deadline_seconds() -> float:
    """settings.DB_QUERY_DEADLINE_SECONDS (0: no client-side deadline)."""
    return float(getattr(settings, "DB_QUERY_DEADLINE_SECONDS", 0) or 0)


class QueryDeadlines:
    """An execute wrapper that registers each query's socket and deadline, and the thread that enforces them."""

    def __init__(self, *, seconds: float, clock=time.monotonic):
        self.seconds, self._clock = seconds, clock
        self._inflight: dict[int, tuple[float, int]] = {}  # query -> (deadline, socket fd)
        self._ids = itertools.count()
        self.expired = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        fd = _socket_of(context["connection"])
        if fd is None:
            return execute(sql, params, many, context)
        self._ensure_thread()
        query = next(self._ids)
        self._inflight[query] = (self._clock() + self.seconds, fd)
        try:
            return execute(sql, params, many, context)
        finally:
            self._inflight.pop(query, None)

    def enforce(self) -> int:
        """Shut down the socket of every query past its deadline; returns how many."""
        now, cut = self._clock(), 0
        for query, (deadline, fd) in list(self._inflight.items()):
            if now < deadline or self._inflight.pop(query, None) is None:
                continue
            try:
                with socket.socket(fileno=os.dup(fd)) as sock:  # a duplicate: shutting it down ends the connection
                    sock.shutdown(socket.SHUT_RDWR)
                cut += 1
            except OSError:
                pass  # the query ended (and its socket closed) meanwhile
        if cut:
            self.expired += cut
            log.error("cut %d database quer%s that had no answer after %.1f s (DB_QUERY_DEADLINE_SECONDS): the "
                      "database is frozen or unreachable", cut, "y" if cut == 1 else "ies", self.seconds)
        return cut

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():  # also after a fork (gunicorn's workers)
                self._thread = threading.Thread(target=self._loop, name="query-deadlines", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            self.enforce()


def _socket_of(wrapper) -> int | None:
    """The socket of a PostgreSQL connection (psycopg 3), else None."""
    raw = getattr(wrapper, "connection", None)
    try:
        return raw.pgconn.socket if wrapper.vendor == "postgresql" and raw is not None else None
    except Exception:  # noqa: BLE001 - a closed connection has no socket
        return None


_deadlines: QueryDeadlines | None = None


def install() -> QueryDeadlines | None:
    """From now on, every new PostgreSQL connection of this process carries the deadline (None: it is off)."""
    global _deadlines
    if deadline_seconds() <= 0:
        return None
    if _deadlines is None:
        _deadlines = QueryDeadlines(seconds=deadline_seconds())
        connection_created.connect(_add_to_connection, dispatch_uid="crlsite.query_deadline")
    return _deadlines


def _add_to_connection(sender, connection, **kwargs) -> None:
    if connection.vendor == "postgresql" and _deadlines is not None and _deadlines not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _deadlines)
