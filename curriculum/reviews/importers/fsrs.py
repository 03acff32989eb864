"""The FSRS optimizer's review CSV: ``card_id, review_rating, review_time, review_duration`` (+ optional
``review_state``), one learner's reviews.

``card_id`` -> concept; ``review_rating`` 1-4 -> grade (1 = wrong); ``review_time`` in milliseconds since 1970
or ISO 8601 with a zone; ``review_duration`` (ms, may be empty) -> response time. A ``review_rating`` of 0 is a
manual entry (rescheduling, a reset), not an answer: the optimizer's own Anki export keeps only ratings 1-4
(open-spaced-repetition/fsrs-optimizer, ``Optimizer.anki_extract``: ``ease BETWEEN 1 AND 4``), so such rows
are skipped and counted.
"""
from __future__ import annotations

from .csvstream import FileReview, ReviewFileFormat, Row


def parse(row: Row, learner: str, context: object = None) -> FileReview | None:
    rating = row.integer("review_rating", low=0, high=4, expected="1-4")
    when = row.epoch_time("review_time", unit_ms=1, iso=True)
    item = row.text("card_id")
    duration = row.integer("review_duration", low=0, high=2**31 - 1, required=False)
    if rating == 0:
        return None
    return FileReview(row.line, learner, item, "", when, rating > 1, rating, duration)


FORMAT = ReviewFileFormat(
    name="fsrs",
    required=("card_id", "review_rating", "review_time", "review_duration"),
    optional=("review_state",),
    learner_column=None,
    parse=parse,
    columns={"concept": "card_id", "reviewed_at": "review_time", "grade": "review_rating", "correct": "review_rating",
             "response_time_ms": "review_duration"},
)
