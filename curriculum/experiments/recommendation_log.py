"""The recommendation log's writer: served recommendations are queued in memory and stored in batches by a
background thread, so that logging never slows nor blocks serving (and a database outage never fails a request).

`submit` appends to a bounded buffer and returns at once; a full buffer (``RECOMMENDATION_LOG_MAX_BUFFERED`` rows:
the database is down or slower than the traffic) drops the new row, counts it (`RecommendationLogWriter.dropped`)
and logs a warning at the first drop and every 1000th. The thread stores up to ``_BATCH`` rows per write
(`store`: PostgreSQL's COPY, one ``bulk_create`` elsewhere), every ``_INTERVAL_S`` seconds or as soon as a batch is
full; a failed write is logged and its rows go back to the buffer's front (as many as fit) for the next try. The
buffer is flushed at interpreter exit. Rows are `LogRow` tuples (a RecommendationLog instance is accepted too):
serving builds one per answer, and a model instance costs about 9 us to build and 21 us to insert by
``bulk_create``, a tuple 1 us and 5 us by COPY (bench/batch_profile.py: 30 of about 150 ms of CPU per 1,000
learners before).
``RECOMMENDATION_LOG_ENABLED=0`` turns logging off (recommendations still carry a recommendation_id).

One writer per process (`writer()`), started lazily, and again in a forked child (gunicorn forks after import).
Tests swap in `SynchronousRecommendationLogWriter` (tests/conftest.py): a thread of its own would not see a test's
uncommitted transaction.
"""
from __future__ import annotations

import atexit
import datetime as dt
import functools
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction

from ..models import RecommendationLog

logger = logging.getLogger(__name__)

_BATCH = 500  # rows per write
_INTERVAL_S = 0.5  # the longest a row waits in the buffer while the database answers
_WARN_EVERY = 1000  # drops between two warnings


class LogRow(NamedTuple):
    """One recommendation log row as the writer queues it: RecommendationLog's concrete columns, in the model's
    order, by attribute name (foreign keys as ids; tests/curriculum/experiments/test_recommendation_log.py checks
    the two agree)."""

    id: uuid.UUID
    curriculum_id: int
    learner: str
    policy_id: int | None
    concept: str
    candidates: int
    propensity: float
    exploration: str
    arm_id: int | None
    served: bool
    at: dt.datetime
    offered: str | None = None  # offered_text's; None: not recorded


def offered_text(positions: Iterable[int] | None) -> str:
    """The ``offered`` column for a request's candidate concepts: their positions (int, in the curriculum's concept
    order) comma-separated, e.g. "0,3,4"; "" for None (the request named no candidates: every concept)."""
    return "" if positions is None else ",".join(str(int(p)) for p in positions)


def offered_positions(text: str) -> tuple[int, ...] | None:
    """``offered_text``'s inverse: the positions offered, or None for "" (every concept). ValueError naming the
    column for text that is not comma-separated whole numbers. (A null column, not recorded, is the caller's.)"""
    if text == "":
        return None
    try:
        return tuple(int(p) for p in text.split(","))
    except ValueError:
        raise ValueError(f"offered: expected positions separated by commas, e.g. 0,3,4, got {text[:40]!r}") from None


def as_row(row: LogRow | RecommendationLog) -> LogRow:
    """``row`` as a LogRow (a RecommendationLog instance read field by field; its defaults as the model sets them)."""
    if isinstance(row, LogRow):
        return row
    return LogRow(*(getattr(row, name) for name in LogRow._fields))


def store(rows: list[LogRow]) -> None:
    """Insert ``rows`` in the default database, all or none (in a savepoint of the caller's transaction, which a
    failure leaves usable): on PostgreSQL by one COPY (psycopg's ``Cursor.copy``), elsewhere by ``bulk_create``.
    Raises the database's error."""
    if not rows:
        return
    with transaction.atomic():
        _insert(rows)


def _insert(rows: list[LogRow]) -> None:
    if connection.vendor == "postgresql":  # psycopg 3 (a dependency), as curriculum/reviews/bulk.py's COPY
        with connection.cursor() as cursor, cursor.cursor.copy(_copy_statement()) as copy:
            for row in rows:
                copy.write_row(row)
        return
    RecommendationLog.objects.bulk_create([RecommendationLog(**row._asdict()) for row in rows])


@functools.cache
def _copy_statement() -> str:
    """``COPY <table> (<LogRow's columns>) FROM STDIN`` for PostgreSQL, built once from the model."""
    quote = connection.ops.quote_name
    column = {field.attname: field.column for field in RecommendationLog._meta.concrete_fields}
    columns = ", ".join(quote(column[name]) for name in LogRow._fields)
    return f"COPY {quote(RecommendationLog._meta.db_table)} ({columns}) FROM STDIN"


class RecommendationLogWriter:
    """A bounded in-memory buffer of unsaved recommendation log rows (LogRow) and the thread that stores them.

    ``max_buffered``: the most rows held (default: the setting ``RECOMMENDATION_LOG_MAX_BUFFERED``); ``dropped``:
    rows refused because the buffer was full, since the writer was made; ``written``: rows stored."""

    def __init__(self, *, max_buffered: int | None = None, interval_s: float = _INTERVAL_S, batch: int = _BATCH):
        self.max_buffered = int(max_buffered if max_buffered is not None else settings.RECOMMENDATION_LOG_MAX_BUFFERED)
        if self.max_buffered < 1:
            raise ValueError("RECOMMENDATION_LOG_MAX_BUFFERED: expected at least 1 row")
        self.interval_s, self.batch = interval_s, batch
        self.dropped = self.written = 0
        self._rows: deque[LogRow] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._busy = 0  # rows taken by the thread and not yet stored or put back
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closing = False

    # ------------------------------------------------------------------------------------------ request path
    def submit(self, rows: Iterable[LogRow | RecommendationLog]) -> int:
        """Queue ``rows`` for storing; never blocks on the database. Returns how many were queued (the rest were
        dropped: the buffer was full)."""
        rows = [as_row(row) for row in rows]
        if not rows or not settings.RECOMMENDATION_LOG_ENABLED:
            return 0
        self._ensure_thread()
        with self._lock:
            room = max(self.max_buffered - len(self._rows) - self._busy, 0)
            taken, dropped = rows[:room], len(rows) - min(room, len(rows))
            self._rows.extend(taken)
            full = len(self._rows) >= self.batch
            before, self.dropped = self.dropped, self.dropped + dropped
        if dropped and (before == 0 or before // _WARN_EVERY != self.dropped // _WARN_EVERY):
            logger.warning("recommendation log buffer full (%d rows): %d recommendations dropped so far "
                           "(is the database down or slower than the traffic?)", self.max_buffered, self.dropped)
        if full:
            self._wake.set()
        return len(taken)

    # ------------------------------------------------------------------------------------------ the thread
    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
                return
            if self._pid != os.getpid():  # a forked child: the parent's rows are the parent's to write
                self._rows.clear()
                self._busy = 0
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="recommendation-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while not self._closing:
                self._wake.wait(self.interval_s)
                self._wake.clear()
                self._write_pending()
        finally:
            connections.close_all()  # this thread's own connections (Django's are per thread)

    def _write_pending(self) -> None:
        """Store what the buffer holds, a batch at a time; on an error put the batch back and stop until the next
        wake-up."""
        while True:
            with self._lock:
                batch = [self._rows.popleft() for _ in range(min(self.batch, len(self._rows)))]
                self._busy = len(batch)
            if not batch:
                with self._lock:
                    self._idle.notify_all()
                return
            try:
                close_old_connections()
                store(batch)
            except Exception:
                logger.exception("cannot store %d recommendation log rows; retrying later", len(batch))
                connections.close_all()
                with self._lock:
                    self._busy = 0
                    room = max(self.max_buffered - len(self._rows), 0)
                    self._rows.extendleft(reversed(batch[:room]))
                    self.dropped += len(batch) - min(room, len(batch))
                    self._idle.notify_all()
                return
            with self._lock:
                self._busy = 0
                self.written += len(batch)

    # ------------------------------------------------------------------------------------------ flushing
    def pending(self) -> int:
        """Rows queued or being written."""
        with self._lock:
            return len(self._rows) + self._busy

    def flush(self, *, timeout: float = 5.0) -> bool:
        """Wake the thread and wait up to ``timeout`` seconds until the buffer is empty (True) or a write failed
        (False; the rows stay queued)."""
        if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
            return self.pending() == 0
        self._wake.set()
        with self._lock:
            return self._idle.wait_for(lambda: not self._rows and not self._busy, timeout=timeout)

    def close(self, *, timeout: float = 5.0) -> None:
        """Flush, then stop the thread (at interpreter exit) and wait up to ``timeout`` seconds for it to end (its
        database connection closed)."""
        self.flush(timeout=timeout)
        self._closing = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)


class SynchronousRecommendationLogWriter:
    """The writer's interface, storing at once in the caller's thread and transaction (tests; a management command
    that must see its rows). A failed write is logged, never raised: logging must not fail a recommendation."""

    dropped = 0

    def __init__(self) -> None:
        self.written = 0

    def submit(self, rows: Iterable[LogRow | RecommendationLog]) -> int:
        rows = [as_row(row) for row in rows]
        if not rows or not settings.RECOMMENDATION_LOG_ENABLED:
            return 0
        try:
            store(rows)
        except Exception:
            logger.exception("cannot store %d recommendation log rows", len(rows))
            return 0
        self.written += len(rows)
        return len(rows)

    def pending(self) -> int:
        return 0

    def flush(self, *, timeout: float = 5.0) -> bool:
        return True

    def close(self, *, timeout: float = 5.0) -> None:
        return None


_writer: RecommendationLogWriter | SynchronousRecommendationLogWriter | None = None


def writer() -> RecommendationLogWriter | SynchronousRecommendationLogWriter:
    """This process's writer (made on first use)."""
    global _writer
    if _writer is None:
        _writer = RecommendationLogWriter()
        atexit.register(lambda: _writer is not None and _writer.close())
    return _writer


def set_writer(new: RecommendationLogWriter | SynchronousRecommendationLogWriter | None):
    """Replace this process's writer (None: a fresh background one on next use); returns the previous one."""
    global _writer
    previous, _writer = _writer, new
    return previous
