"""The one reader of stored reviews in (learner, time) order: columnar chunks with bounded memory, for
extraction, calibration and a learner's history (curriculum.learner_states.history)."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from django.db import connection

from ..models import Concept, Curriculum, ReviewLog

REVIEW_CHUNK_ROWS = 50_000


def _epoch_seconds_sql() -> str:
    if connection.vendor == "postgresql":
        return "EXTRACT(EPOCH FROM r.reviewed_at)::float8"
    if connection.vendor == "sqlite":
        # Django stores SQLite date-times as UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'. julianday's double (days)
        # is exact to ~40 us only, so whole seconds come from it (rounded) and the microseconds from the text:
        # the result is the float nearest the stored time, as on PostgreSQL.
        return (
            "(ROUND((julianday(substr(r.reviewed_at, 1, 19)) - 2440587.5) * 86400.0)"
            " + COALESCE(CAST(substr(r.reviewed_at, 21, 6) AS INTEGER), 0) / 1000000.0)"
        )
    raise NotImplementedError(f"review extraction does not support the {connection.vendor} database")


def iter_review_chunks(
    *, curriculum: Curriculum | int, chunk_size: int = REVIEW_CHUNK_ROWS, learner_id: int | None = None,
    learner_ids: Sequence[int] | None = None, with_ids: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Stream a curriculum's reviews in (learner, time, id) order as columnar chunks, with bounded memory.

    Each chunk: learner int64 (database id), concept int64 (position = action index), t float64 (epoch
    seconds), correct bool, grade int8 (0 when unknown); with ``with_ids`` also id int64 (the ReviewLog id).
    A learner may continue into the next chunk. ``curriculum`` is a Curriculum or its id; ``learner_id``
    limits the stream to one learner (the history a serving state is rebuilt from), ``learner_ids`` to several
    (their histories in one query; a few hundred at a time).
    """
    curriculum_id = curriculum if isinstance(curriculum, int) else curriculum.pk
    positions = dict(Concept.objects.filter(curriculum_id=curriculum_id).values_list("id", "position"))
    ids = np.fromiter(positions.keys(), dtype=np.int64, count=len(positions))
    order = np.argsort(ids)
    ids_sorted = ids[order]
    pos_sorted = np.fromiter(positions.values(), dtype=np.int64, count=len(positions))[order]
    where, params = "r.curriculum_id = %s", [curriculum_id]
    if learner_id is not None:
        where, params = where + " AND r.learner_id = %s", params + [learner_id]
    if learner_ids is not None:
        if not learner_ids:
            return
        where += f" AND r.learner_id IN ({', '.join(['%s'] * len(learner_ids))})"
        params += [int(i) for i in learner_ids]
    sql = (
        f"SELECT r.learner_id, r.concept_id, {_epoch_seconds_sql()}, r.correct, COALESCE(r.grade, 0), r.id "
        f"FROM {ReviewLog._meta.db_table} r WHERE {where} ORDER BY r.learner_id, r.reviewed_at, r.id"
    )
    # A server-side cursor on PostgreSQL: rows arrive in chunks instead of the whole result at once.
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while True:
            rows = cursor.fetchmany(chunk_size)
            if not rows:
                return
            learner, concept_id, t, correct, grade, review_id = zip(*rows)
            concept_ids = np.asarray(concept_id, dtype=np.int64)
            chunk = {
                "learner": np.asarray(learner, dtype=np.int64),
                "concept": pos_sorted[np.searchsorted(ids_sorted, concept_ids)],
                "t": np.asarray(t, dtype=np.float64),
                "correct": np.asarray(correct, dtype=bool),
                "grade": np.asarray(grade, dtype=np.int8),
            }
            if with_ids:
                chunk["id"] = np.asarray(review_id, dtype=np.int64)
            yield chunk
