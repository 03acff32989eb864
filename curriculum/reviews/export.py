"""Export of stored reviews as the FSRS optimizer's CSV (``card_id, review_rating, review_time, review_duration``),
one learner's reviews of one curriculum in time order, as text lines for a streamed response. Imported back into the
same curriculum with the fsrs format and the same learner, it gives the same reviews (curriculum.reviews.importers.fsrs;
concept keys as written: csvstream's Row.identifier) for every review stored with a grade; a review stored without
one comes back graded 3 or 1, which is another review (its identity includes the grade: curriculum.reviews.store)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from ..models import Curriculum, Learner, ReviewLog

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
HEADER = ("card_id", "review_rating", "review_time", "review_duration")


def fsrs_csv_lines(*, curriculum: Curriculum, learner: Learner, chunk_size: int = 2000) -> Iterator[str]:
    """CSV lines (header first, then one per review in (time, id) order), read from the database in chunks.

    ``card_id`` is the concept key, ``review_rating`` the grade 1-4 (a review stored without a grade, as HLR
    sessions are, is written 3 when correct and 1 when not: the FSRS optimizer needs a rating), ``review_time``
    milliseconds since 1970 (a review's identity keeps milliseconds), ``review_duration`` the response time in
    ms (empty when unknown).
    """
    yield ",".join(HEADER) + "\r\n"
    rows = (
        ReviewLog.objects.filter(curriculum=curriculum, learner=learner).order_by("reviewed_at", "id")
        .values_list("concept__key", "grade", "correct", "reviewed_at", "response_time_ms")
        .iterator(chunk_size=chunk_size)
    )
    for key, grade, correct, at, duration in rows:
        rating = grade if grade else (3 if correct else 1)
        ms = (at - EPOCH) // dt.timedelta(milliseconds=1)  # exact (no float rounding)
        yield f"{_csv_field(key)},{rating},{ms},{'' if duration is None else duration}\r\n"


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\r\n') or value != value.strip():
        return '"' + value.replace('"', '""') + '"'
    return value
