"""The columnar bulk writer of reviews: synthetic cohorts (and benchmarks) write millions of rows at once, by
PostgreSQL's binary COPY or by ``bulk_create`` elsewhere. Rows are checked by the same rules as every other route
(curriculum.reviews.validation.check_review_columns) and their times kept to the millisecond, as a review's
identity is; serving state is not updated (bulk-written reviews are training data)."""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from functools import partial

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from ..models import Concept, Curriculum, Learner, ReviewLog
from .chunked import ChunkedWrite
from .validation import check_review_columns

REVIEW_WRITE_ROWS = 50_000  # rows per COPY block / bulk_create round, and per progress report (SQLite's chunked
# writes: at most chunked.SQLITE_CHUNK_ROWS, each block a transaction)


def _now() -> dt.datetime:
    return timezone.now()


def create_learners(*, external_ids: list[str]) -> np.ndarray:
    """Create new learners; their database ids, int64, in the order given."""
    objs = Learner.objects.bulk_create([Learner(external_id=e) for e in external_ids], batch_size=5000)
    if all(o.pk is not None for o in objs):
        return np.array([o.pk for o in objs], dtype=np.int64)
    ids = dict(Learner.objects.filter(external_id__in=external_ids).values_list("external_id", "pk"))
    return np.array([ids[e] for e in external_ids], dtype=np.int64)


def write_reviews(
    *, curriculum_id: int, learner_ids: np.ndarray, concept_ids: np.ndarray, t: np.ndarray, correct: np.ndarray,
    grade: np.ndarray, response_time_ms: np.ndarray, source: str, batch: str, method: str = "auto",
    check_keys_once: bool = True, on_rows: Callable[[int], None] | None = None, chunks: ChunkedWrite | None = None,
    before_commit: Callable[[int], None] | None = None,
) -> int:
    """Insert review rows given as columns (database ids, t in epoch seconds, grade 1-4 and response_time_ms
    >= 0 on every row, as the simulator makes them), in blocks of REVIEW_WRITE_ROWS, in one transaction; or, given
    ``chunks`` (an entered curriculum.reviews.chunked.ChunkedWrite) that is chunked (SQLite), each block (of at most
    ``chunks.rows``) in a transaction of its own, which ``chunks`` undoes when the write stops early.
    ``before_commit(rows)`` is called once every row is written, in the transaction that commits the last of them
    (e.g. a job recording its end, so that its status and its last rows commit together).

    ``method``: "copy" (PostgreSQL's binary COPY FROM STDIN, the fast path), "bulk_create", or "auto" (COPY
    where the database is PostgreSQL). Serving state (LearnerState) is not updated: bulk-written reviews are
    training data. ``on_rows(rows_so_far)`` is called after each block.

    ``check_keys_once`` (COPY only): PostgreSQL checks each foreign key with a trigger per row, which is most
    of a bulk load's time (three lookups per review). Where the database role may set
    ``session_replication_role`` (a superuser, or ``GRANT SET ON PARAMETER session_replication_role``), the
    keys are instead checked once per distinct value, under the same FOR KEY SHARE locks the triggers take
    (held until commit), and the COPY runs without the per-row triggers. Other roles get the triggers.

    Raises curriculum.reviews.validation.ReviewValidationError (naming the first bad row's index and field)
    before writing anything when a row breaks the review rules; IntegrityError when a row repeats a stored
    review's identity (learner, concept, time to the millisecond, outcome).
    """
    if method == "auto":
        method = "copy" if connection.vendor == "postgresql" else "bulk_create"
    check_review_columns(t=t, correct=correct, grade=grade, response_time_ms=response_time_ms)
    t = np.floor(np.asarray(t, dtype=np.float64) * 1000.0 + 1e-3) / 1000.0  # to the ms (the 1 us: float error)
    n = len(learner_ids)
    created_at = _now()
    chunked = chunks is not None and chunks.chunked
    block_rows = min(REVIEW_WRITE_ROWS, chunks.rows) if chunked and chunks.rows else REVIEW_WRITE_ROWS
    with contextlib.nullcontext() if chunked else transaction.atomic():
        if method == "copy":
            per_key = check_keys_once and can_check_keys_once()
            if per_key:
                _lock_referenced_rows(curriculum_id=curriculum_id, learner_ids=learner_ids, concept_ids=concept_ids)
            write = partial(_copy_block, skip_row_triggers=per_key)
        else:
            write = {"bulk_create": _bulk_create_block}[method]
        start = 0
        for end in [*range(block_rows, n, block_rows), n]:
            last = end == n
            with chunks.chunk() if chunked else contextlib.nullcontext():
                if end > start:
                    part = slice(start, end)
                    write(
                        curriculum_id=curriculum_id, learner_ids=learner_ids[part], concept_ids=concept_ids[part],
                        t=t[part], correct=correct[part], grade=grade[part], response_time_ms=response_time_ms[part],
                        source=source, batch=batch, created_at=created_at,
                    )
                if last:
                    if on_rows and n:
                        on_rows(n)
                    if before_commit:
                        before_commit(n)
            if on_rows and not last:  # (chunked: after the block committed)
                on_rows(end)
            start = end
    return n


def can_check_keys_once() -> bool:
    """Whether this database role may run a COPY without the per-row foreign-key triggers (see write_reviews)."""
    with connection.cursor() as cursor:
        if connection.pg_version >= 150000:
            cursor.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
        else:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
    return bool(row and row[0])


def _lock_referenced_rows(*, curriculum_id: int, learner_ids: np.ndarray, concept_ids: np.ndarray) -> None:
    """The foreign-key triggers' check, once per distinct key: each referenced row must exist, and stays locked
    FOR KEY SHARE until commit so that nobody deletes it meanwhile. Raises IntegrityError naming the column."""
    wanted = {
        "curriculum_id": (Curriculum, [int(curriculum_id)]),
        "concept_id": (Concept, np.unique(concept_ids).tolist()),
        "learner_id": (Learner, np.unique(learner_ids).tolist()),
    }
    with connection.cursor() as cursor:
        for column, (model, ids) in wanted.items():
            cursor.execute(f"SELECT id FROM {model._meta.db_table} WHERE id = ANY(%s) FOR KEY SHARE", [ids])
            found = {row[0] for row in cursor.fetchall()}
            if len(found) != len(ids):
                missing = sorted(set(ids) - found)[:5]
                raise IntegrityError(f"{ReviewLog._meta.db_table}.{column}: no {model.__name__} with id {missing}")


_PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z, PostgreSQL's timestamp origin
_PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_PGCOPY_TRAILER = b"\xff\xff"


def _copy_block(
    *, curriculum_id, learner_ids, concept_ids, t, correct, grade, response_time_ms, source, batch, created_at,
    skip_row_triggers: bool = False,
) -> None:
    """One COPY ... FROM STDIN (FORMAT BINARY): every row has the same layout, so NumPy lays out the whole
    block as one structured array (no per-row Python, no text parsing on the server)."""
    source_b, batch_b = source.encode(), batch.encode()
    fields = [("n", ">i2")]
    for name, kind in (("learner", ">i8"), ("curriculum", ">i8"), ("concept", ">i8"), ("reviewed", ">i8"),
                       ("correct", "u1"), ("grade", ">i2"), ("rt", ">i4"), ("source", f"S{len(source_b)}"),
                       ("batch", f"S{len(batch_b)}"), ("created", ">i8")):
        fields += [(f"{name}_len", ">i4"), (name, kind)]
    rows = np.empty(len(learner_ids), dtype=np.dtype(fields))
    rows["n"] = 10
    for name, _ in fields[1::2]:
        rows[name] = rows.dtype[name.removesuffix("_len")].itemsize
    rows["learner"], rows["curriculum"], rows["concept"] = learner_ids, curriculum_id, concept_ids
    rows["reviewed"] = np.round((t - _PG_EPOCH_S) * 1e6).astype(np.int64)
    rows["correct"], rows["grade"], rows["rt"] = correct, grade, response_time_ms
    rows["source"], rows["batch"] = source_b, batch_b
    rows["created"] = round((created_at.timestamp() - _PG_EPOCH_S) * 1e6)
    table = ReviewLog._meta.db_table
    columns = "learner_id, curriculum_id, concept_id, reviewed_at, correct, grade, response_time_ms, source, batch, created_at"
    with connection.cursor() as cursor:
        if skip_row_triggers:  # keys checked by _lock_referenced_rows; only this statement runs without triggers
            cursor.execute("SET LOCAL session_replication_role = replica")
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(_PGCOPY_HEADER + rows.tobytes() + _PGCOPY_TRAILER)
        if skip_row_triggers:  # (a failed COPY rolls the transaction back, and the SET LOCAL with it)
            cursor.execute("SET LOCAL session_replication_role = origin")


def _bulk_create_block(*, curriculum_id, learner_ids, concept_ids, t, correct, grade, response_time_ms, source, batch, created_at) -> None:
    times = [dt.datetime.fromtimestamp(s, tz=dt.timezone.utc) for s in t.tolist()]
    rows = [
        ReviewLog(
            learner_id=learner, curriculum_id=curriculum_id, concept_id=concept, reviewed_at=when, correct=ok,
            grade=g, response_time_ms=rt, source=source, batch=batch, created_at=created_at,
        )
        for learner, concept, when, ok, g, rt in zip(
            learner_ids.tolist(), concept_ids.tolist(), times, correct.tolist(), grade.tolist(), response_time_ms.tolist()
        )
    ]
    ReviewLog.objects.bulk_create(rows, batch_size=5000)
