"""The FSRS optimizer's review CSV: ``card_id, review_rating, review_time, review_duration`` (+ optional
``review_state``), one learner's reviews.

``card_id`` -> concept; ``review_rating`` 1-4 -> grade (1 = wrong); ``review_time`` in milliseconds since 1970
or ISO 8601 with a zone; ``review_duration`` (ms, may be empty) -> response time. A ``review_rating`` of 0 is a
manual entry (rescheduling, a reset), not an answer: the optimizer's own Anki export keeps only ratings 1-4
(open-spaced-repetition/fsrs-optimizer, ``Optimizer.anki_extract``: ``ease BETWEEN 1 AND 4``), so such rows
are skipped and counted. ``card_id`` and a millisecond ``review_time`` rewritten by a spreadsheet (``1.69E+12``,
``1690000000000.0``, digit groups) are refused naming the line and column. A negative ``review_duration`` (the
clock went back) keeps the review, stored without a duration and counted (csvstream's Row.duration_ms).
"""
from __future__ import annotations

from ..fields import MAX_GRADE, MIN_GRADE
from .csvstream import FileReview, ReviewFileFormat, Row


def parse(row: Row, learner: str, context: object = None) -> FileReview | None:
    rating = row.integer("review_rating", low=0, high=MAX_GRADE, expected=f"{MIN_GRADE}-{MAX_GRADE}")
    when = row.epoch_time("review_time", unit_ms=1, iso=True)
    item = row.identifier("card_id")
    duration, negative = row.duration_ms("review_duration")
    if rating == 0:
        return None
    return row.review(learner=learner, concept=item, reviewed_at=when, correct=rating > MIN_GRADE, grade=rating,
                      response_time_ms=duration, negative_duration=negative)


FORMAT = ReviewFileFormat(
    name="fsrs",
    required=("card_id", "review_rating", "review_time", "review_duration"),
    optional=("review_state",),
    learner_column=None,
    parse=parse,
    columns={"concept": "card_id", "reviewed_at": "review_time", "grade": "review_rating", "correct": "review_rating",
             "response_time_ms": "review_duration"},
)
