"""All-or-nothing bulk writes of reviews that let other writers in on SQLite: the synthetic generation job's
(curriculum/reviews/bulk.py's ``write_reviews``) and the file importer's (curriculum/reviews/importers/service.py).

PostgreSQL (MVCC, row locks) runs the whole write in ONE transaction: nobody waits on it, and a failure rolls all of
it back. SQLite has one writer at a time, and a transaction opened with BEGIN IMMEDIATE holds that lock from its
start: a write of a minute kept every other writer (the job's own heartbeat with its progress, the operator's cancel,
a live review post) waiting, and each gave up after the connection's timeout (30 s: "database is locked"). So on
SQLite each chunk of the write commits in a short transaction of its own (SQLITE_CHUNK_ROWS rows), the lock is left
free for a moment after at most SQLITE_HOLD_SECONDS of writing (SQLite's busy handler is not fair: a waiter polls
every 100 ms at most, and a writer that begins again right after its commit keeps the lock for as long as it writes),
and when the write stops early (any exception: a failure, a cancel, a lost job) what its committed chunks wrote is
deleted again (``undo``) before the exception goes on. All or nothing still, as seen once the write has ended; while
it runs, readers see its chunks as they commit. Inside an enclosing transaction (a caller's, a test's) the write is
one transaction on SQLite too.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType

from django.db import connection, transaction

from ..models import ReviewLog

log = logging.getLogger(__name__)

SQLITE_CHUNK_ROWS = 5_000  # rows a chunk commits on SQLite (about 0.4 s of bulk_create)
SQLITE_HOLD_SECONDS = 1.0  # writing at most this long before the lock is left free...
SQLITE_PAUSE_SECONDS = 0.12  # ...this long (more than the busy handler's longest sleep, 100 ms)


class PartialWriteLeft(Exception):
    """A chunked write stopped and what its committed chunks wrote could not be deleted: it is still stored."""


class _Pacer:
    """Leaves SQLite's write lock free for SQLITE_PAUSE_SECONDS after each SQLITE_HOLD_SECONDS of chunks held it (a
    gap as long between two chunks, e.g. reading the next part of a file, counts as such a pause)."""

    def __init__(self) -> None:
        self.held = 0.0
        self.free_since = time.monotonic()
        self.began = 0.0

    def begin(self) -> None:
        self.began = time.monotonic()
        if self.began - self.free_since >= SQLITE_PAUSE_SECONDS:
            self.held = 0.0

    def end(self) -> None:
        now = time.monotonic()
        self.held += now - self.began
        if self.held >= SQLITE_HOLD_SECONDS:
            time.sleep(SQLITE_PAUSE_SECONDS)
            self.held, now = 0.0, time.monotonic()
        self.free_since = now

    @contextlib.contextmanager
    def chunk(self) -> Iterator[None]:
        self.begin()
        yield
        self.end()


class ChunkedWrite:
    """One all-or-nothing bulk write: ``with ChunkedWrite(undo=...) as write:`` and each part of the work in
    ``with write.chunk():``.

    PostgreSQL, or within an enclosing transaction: the with-block is one transaction (``chunk`` adds nothing; an
    exception rolls everything back; ``undo`` is not called). SQLite otherwise (``chunked``): each ``chunk`` is a
    transaction of its own, committed at its end; ``guard()`` is called first in it (after its BEGIN IMMEDIATE: no
    other writer until the commit) and may raise to stop before the chunk writes, e.g. for a job that is no longer
    running; the lock is left free now and then (_Pacer); when an exception leaves the
    with-block after a chunk committed, ``undo()`` deletes what was committed, and the exception goes on
    (PartialWriteLeft, from it, when ``undo`` fails: its message names ``what`` is left). ``rows``: the rows a chunk
    should hold (None: no limit, one transaction anyway)."""

    def __init__(self, *, undo: Callable[[], None], guard: Callable[[], None] | None = None,
                 what: str = "the reviews written") -> None:
        self.undo, self.guard, self.what = undo, guard, what
        self.chunked = False
        self.rows: int | None = None
        self.committed = False  # a chunk has committed (there is something to undo)
        self._atomic: transaction.Atomic | None = None
        self._pacer = _Pacer()

    def __enter__(self) -> ChunkedWrite:
        self.chunked = connection.vendor == "sqlite" and not connection.in_atomic_block
        if self.chunked:
            self.rows = SQLITE_CHUNK_ROWS
        else:
            self._atomic = transaction.atomic()
            self._atomic.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        if self._atomic is not None:
            return bool(self._atomic.__exit__(exc_type, exc, tb))
        if exc_type is not None and self.committed:
            try:
                self.undo()
            except Exception as undo_error:
                log.exception("could not remove %s after the write stopped", self.what)
                raise PartialWriteLeft(
                    f"the write stopped ({type(exc).__name__}: {exc}) and {self.what} could not be removed "
                    f"({type(undo_error).__name__}: {undo_error}): they are still stored"
                ) from exc
        return False

    @contextlib.contextmanager
    def chunk(self) -> Iterator[None]:
        """One part of the write: its own short transaction on SQLite (see the class)."""
        if not self.chunked:
            yield
            return
        with self._pacer.chunk():
            with transaction.atomic():
                if self.guard is not None:
                    self.guard()
                yield
            self.committed = True


def delete_reviews(*, batch: str, id_ranges: Sequence[Sequence[int]] | None = None,
                   rows: int = SQLITE_CHUNK_ROWS) -> int:
    """Delete the reviews of ``batch`` (only those whose id is in one of ``id_ranges``, ``[first, last]`` pairs,
    when given: a batch tag may be shared, as an import's is), ``rows`` at a time, each part in a short transaction
    (paced as a chunked write's), and empty the stored serving state of every learner concerned in the same
    transaction (an empty state is rebuilt from the history when read; a live review folded in meanwhile may have
    built it from the rows deleted here). Returns how many were deleted."""
    from ..learner_state_rebuild import invalidate_states

    pacer = _Pacer()
    deleted = 0
    reviews = ReviewLog.objects.filter(batch=batch)
    for part in ([reviews] if id_ranges is None else
                 [reviews.filter(pk__gte=first, pk__lte=last) for first, last in id_ranges]):
        while True:
            with pacer.chunk(), transaction.atomic():
                found = list(part.order_by("pk").values_list("pk", "curriculum_id", "learner_id")[:rows])
                if found:
                    ReviewLog.objects.filter(pk__in=[pk for pk, _, _ in found]).delete()
                    learners: dict[int, set[int]] = defaultdict(set)
                    for _, curriculum_id, learner_id in found:
                        learners[curriculum_id].add(learner_id)
                    for curriculum_id, ids in learners.items():
                        invalidate_states(curriculum_id=curriculum_id, learner_ids=sorted(ids))
            deleted += len(found)
            if len(found) < rows:
                break
    return deleted


def id_ranges(ids: Sequence[int], ranges: list[list[int]] | None = None) -> list[list[int]]:
    """``ranges`` (``[first, last]`` pairs, ascending and apart) with ``ids`` added: consecutive ids make one range."""
    ranges = [list(r) for r in ranges or []]
    for pk in sorted(ids):
        if ranges and ranges[-1][0] <= pk <= ranges[-1][1]:
            continue
        if ranges and pk == ranges[-1][1] + 1:
            ranges[-1][1] = pk
        else:
            ranges.append([pk, pk])
    return ranges
