"""Anki's ``revlog`` table as CSV (``id, cid, usn, ease, ivl, lastIvl, factor, time, type``), one learner's
collection: ``cid`` -> concept, ``id`` (ms since 1970) -> time, ``ease`` 1-4 -> grade, ``time`` (ms) -> response
time. Only memory events are reviews; every other row is skipped and counted.

What each revlog ``type`` means for memory (Anki's ``RevlogReviewKind``, ankitects/anki rslib/src/revlog/mod.rs;
the FSRS optimizer's filter, open-spaced-repetition/fsrs-optimizer ``Optimizer.anki_extract``: ``ease BETWEEN 1
AND 4 AND (type != 3 OR factor != 0)``):

* 0 learn, 1 review, 2 relearn: an answer (``ease`` 1-4) is a review; ``ease`` 0 is not an answer.
* 3 filtered (cram): with rescheduling on (``factor`` != 0) the answer counts as a review; with rescheduling off
  (``factor`` 0) it is cramming/previewing (Anki's ``is_cramming``), which Anki, fsrs-rs and the optimizer leave
  out of memory: skipped.
* 4 manual: not an answer. With ``factor`` 0 it is a card reset ("Forget", Anki's ``is_reset``): the card starts
  again as new, so its rows before its last reset are skipped too (Anki's FSRS ignores the entries before a
  reset, rslib/src/scheduler/fsrs/params.rs). With ``factor`` != 0 ("set due date") only the row is skipped.
* 5 rescheduled (newer Anki): not an answer, skipped.

A negative ``time`` (the clock went back while the card was shown, e.g. at a daylight-saving change) keeps the
review, stored without a duration and counted (csvstream's Row.duration_ms).

``id`` and ``cid`` are integers (milliseconds since 1970): a file a spreadsheet saved, with them rewritten as
``1.69E+12``, ``1690000000000.0`` or digit groups, is refused naming the line and column (csvstream's
spreadsheet_rewritten): read as numbers they would collapse reviews onto one instant and cards onto one concept.
"""
from __future__ import annotations

from collections.abc import Iterator

from ..fields import MAX_GRADE, MIN_GRADE
from .csvstream import INT32_MAX, FileReview, ReviewFileFormat, Row

LEARN, REVIEW, RELEARN, FILTERED, MANUAL, RESCHEDULED = range(6)
MS_TIME = "a time in milliseconds"


def _kind(row: Row) -> tuple[int, int, int]:
    return (
        row.integer("type", low=0, high=5),
        row.integer("ease", low=0, high=MAX_GRADE),
        row.integer("factor", low=0, high=INT32_MAX, required=False) or 0,
    )


def prescan(rows: Iterator[Row]) -> dict[str, int]:
    """Card id -> the ``id`` (ms) of its last reset: the card's earlier rows are not its memory."""
    resets: dict[str, int] = {}
    for row in rows:
        kind, _, factor = _kind(row)
        if kind == MANUAL and factor == 0:
            card, at = row.identifier("cid"), row.integer("id", low=0, high=2**63 - 1, exact=MS_TIME)
            resets[card] = max(at, resets.get(card, at))
    return resets


def parse(row: Row, learner: str, resets: dict[str, int]) -> FileReview | None:
    kind, ease, factor = _kind(row)
    when = row.epoch_time("id", unit_ms=1)
    item = row.identifier("cid")
    response_time_ms, negative = row.duration_ms("time")
    if ease == 0 or kind in (MANUAL, RESCHEDULED) or (kind == FILTERED and factor == 0):
        return None
    if item in resets and row.integer("id", low=0, high=2**63 - 1, exact=MS_TIME) < resets[item]:
        return None  # before the card's last reset
    return row.review(learner=learner, concept=item, reviewed_at=when, correct=ease > MIN_GRADE, grade=ease,
                      response_time_ms=response_time_ms, negative_duration=negative)


FORMAT = ReviewFileFormat(
    name="anki",
    required=("id", "cid", "usn", "ease", "ivl", "lastIvl", "factor", "time", "type"),
    optional=(),
    learner_column=None,
    parse=parse,
    columns={"concept": "cid", "reviewed_at": "id", "grade": "ease", "correct": "ease", "response_time_ms": "time"},
    prescan=prescan,
)
