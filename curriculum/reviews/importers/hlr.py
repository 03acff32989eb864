"""Duolingo's half-life-regression traces (``p_recall, timestamp, delta, user_id, learning_language, ui_language,
lexeme_id, lexeme_string, history_seen, history_correct, session_seen, session_correct``).

``user_id`` -> learner, ``lexeme_id`` -> concept (named ``lexeme_string`` when created), ``timestamp`` (seconds
since 1970) -> time. One row is one session of ``session_seen`` exposures: it becomes ONE review, correct when at
least half the exposures were (``2 * session_correct >= session_seen``), with no grade and no response time.
``delta`` and ``history_*`` describe practice before the log and are not used: the state encoder reads the log
alone.
"""
from __future__ import annotations

from ...models import Concept
from .csvstream import INT32_MAX, FileReview, ReviewFileFormat, Row

NAME_LENGTH = Concept._meta.get_field("name").max_length


def parse(row: Row, learner: str, context: object = None) -> FileReview:
    seen = row.integer("session_seen", low=1, high=INT32_MAX)
    right = row.integer("session_correct", low=0, high=seen)
    return row.review(
        learner=row.text("user_id"),
        concept=row.text("lexeme_id"),
        concept_name=row.text("lexeme_string", required=False, max_length=10_000)[:NAME_LENGTH],
        reviewed_at=row.epoch_time("timestamp", unit_ms=1000),
        correct=2 * right >= seen,
    )


FORMAT = ReviewFileFormat(
    name="hlr",
    required=("p_recall", "timestamp", "delta", "user_id", "learning_language", "ui_language", "lexeme_id",
              "lexeme_string", "history_seen", "history_correct", "session_seen", "session_correct"),
    optional=(),
    learner_column="user_id",
    parse=parse,
    columns={"learner": "user_id", "concept": "lexeme_id", "reviewed_at": "timestamp", "correct": "session_correct"},
)
