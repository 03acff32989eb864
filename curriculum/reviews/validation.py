"""The one validation of a review, whatever route it comes by (the API, a file import, synthetic generation).

Field rules (a rule added here applies to every route; the fields, their types and bounds are declared in
curriculum/reviews/fields.py):

* learner: the client system's id, a string (an integer is read as its decimal string); trimmed; normalised to
  Unicode NFC (normalise_id); non-empty; at most MAX_ID_LENGTH characters; no control characters (Unicode
  category Cc) and no bidirectional-override or isolate characters (they make an id display as another one).
* concept: a non-empty key of at most MAX_ID_LENGTH characters, normalised to Unicode NFC.
* reviewed_at (and a recommendation's ``at``): an aware date-time, ISO 8601 / RFC 3339 with a zone (``Z``,
  ``+00:00``, ``+0530``; ``T`` or a space; lower-case ``t`` and ``z`` as RFC 3339 section 5.6 allows; a decimal
  fraction of the second of any length, read to the microsecond; ordinal and week dates, 24:00, a leap second
  23:59:60 UTC kept as 23:59:59.999; parse_aware_datetime), not before EARLIEST
  (1990-01-01Z) and not more than ``CRL_REVIEW_FUTURE_TOLERANCE_SECONDS`` (default 300) after the server clock;
  kept to the millisecond (a review's identity is (learner, concept, time to the millisecond, outcome)).
* correct: true or false; grade: optional, MIN_GRADE to MAX_GRADE (1-4, Anki's Again/Hard/Good/Easy), 1 exactly
  when wrong.
* response_time_ms: optional, 0 to MAX_RESPONSE_TIME_MS (2**31 - 1) milliseconds.
* idempotency_key: optional, a non-empty string of at most MAX_ID_LENGTH characters.
* recommendation_id: optional, a UUID in its canonical text form (any case, hyphens optional as Python's UUID
  reads it): the recommendation this review answers; not looked up (the log is written off the request path).

Errors are one type, ReviewValidationError, whose ``errors`` list ``{"field", "message"}`` plus where the
review came from (``index`` in an API batch, ``line`` in a file), so each route names the item and field.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .fields import EARLIEST, FIELD_NAMES, MAX_GRADE, MAX_ID_LENGTH, MAX_RESPONSE_TIME_MS, MIN_GRADE

DEFAULT_FUTURE_TOLERANCE_S = 300.0
# Bidirectional embedding, override and isolate controls, and the directional marks.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class ReviewValidationError(ValueError):
    """Reviews were refused; ``errors`` lists ``{"index" or "line"?, "field", "message"}`` per problem."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        where = f"item {first['index']}: " if "index" in first else f"line {first['line']}: " if "line" in first else ""
        super().__init__(f"{where}{first['field']}: {first['message']}{more}")

    @classmethod
    def of(cls, field: str, message: str) -> ReviewValidationError:
        return cls([{"field": field, "message": message}])

    def at(self, **location: Any) -> ReviewValidationError:
        """The same errors, naming where the review came from (``index=`` or ``line=``)."""
        return type(self)([{**location, **e} for e in self.errors])


class IdempotencyConflict(ReviewValidationError):
    """An idempotency key already stands for a different review (HTTP 409); nothing was stored."""


def _now() -> dt.datetime:
    """The server clock the future bound is measured from (a seam: tests move it)."""
    return timezone.now()


def future_tolerance() -> dt.timedelta:
    return dt.timedelta(seconds=float(getattr(settings, "CRL_REVIEW_FUTURE_TOLERANCE_SECONDS", DEFAULT_FUTURE_TOLERANCE_S)))


def latest_allowed() -> dt.datetime:
    """The latest review time accepted now."""
    return _now() + future_tolerance()


# ----------------------------------------------------------------------------------------------- fields
def normalise_id(text: str) -> str:
    """``text`` in Unicode Normalization Form C (Unicode Standard Annex #15, ``unicodedata.normalize``): one id
    however the client's platform encodes it ("José" with a precomposed é, as Windows and most keyboards write it,
    or as e + a combining acute accent, as macOS file names do). NFC, not NFKC: compatibility characters (ﬁ, ²,
    full-width letters) are other characters, kept as sent (W3C's Character Model, "normalization for string
    matching")."""
    return unicodedata.normalize("NFC", text)


# The forms of ISO 8601 / RFC 3339 that datetime.fromisoformat does not read, rewritten to ones it does:
# an ordinal date (ISO 8601 "2026-005", basic "2026005": year and day of the year),
_ORDINAL_DATE = re.compile(r"^(\d{4})(?:-(\d{3})|(\d{3})(?=T))(?=[T ]|$)")
# a leap second (RFC 3339 section 5.6 time-second 60, section 5.7: 23:59:60 UTC, at another local minute with an
# offset), and ISO 8601's end of a day, 24:00 (ISO 8601-1:2019/Amd 1:2022; not RFC 3339).
_LEAP_SECOND = re.compile(r"([T ]\d{2}(:?)\d{2}\2)60(?:[.,]\d+)?(?=[Z+-]|$)")
_END_OF_DAY = re.compile(r"([T ])24((?:(?P<sep>:?)00(?:(?P=sep)00(?:[.,]0+)?)?)?)(?=[Z+-]|$)")
# a zone offset's minutes (after the time): Python reads "+10:75" as +11:15; ISO 8601 and RFC 3339 have 00-59
_OFFSET_MINUTES = re.compile(r"[T ][^+-]*[+-]\d{2}:?(\d{2})(?::?\d{2}(?:\.\d+)?)?$")


def _impossible_part(error: ValueError) -> str:
    """What Python's datetime found impossible in a well-formed date-time, in a client's words: its own message
    ("day is out of range for month", "month must be in 1..12", "year 0 is out of range") or, for an offset of a day
    or more, the offset's range."""
    message = str(error)
    if message.startswith("offset must be a timedelta"):
        return "the zone's offset must be less than 24 hours (-23:59 to +23:59)"
    return message


def _fromisoformat_reason(text: str) -> str | None:
    """Why ``datetime.fromisoformat`` refuses ``text`` when it is well formed but impossible (its own message, as
    ``_impossible_part`` words it); None when it is malformed (or read)."""
    try:
        dt.datetime.fromisoformat(text)
    except ValueError as exc:
        return None if str(exc).startswith("Invalid isoformat string") else _impossible_part(exc)
    return None


def parse_aware_datetime(value: Any) -> dt.datetime:
    """An ISO 8601 / RFC 3339 date-time string (or datetime) with a zone; ValueError saying what was expected
    otherwise. Python's ``datetime.fromisoformat`` (through Django's ``parse_datetime``) reads ISO 8601's extended
    and basic forms, week dates, ``Z``, offsets with or without a colon (or hours only) and a fraction of any length
    (kept to the microsecond); the string is upper-cased first, as RFC 3339 section 5.6 allows ``t`` and ``z`` (an
    ISO date-time's only letters are T, Z and W). Read here as well: the minus sign U+2212 in an offset (ISO 8601's
    own sign; the hyphen is its ASCII stand-in), ordinal dates (``2026-005T09:00Z``), ISO 8601's ``24:00`` (the
    end of the day: 00:00 of the next), and a leap second, ``23:59:60Z`` (RFC 3339 section 5.7; ``15:59:60-08:00``
    is the same second), kept as 23:59:59.999 UTC, the last millisecond of the day before the next (Python and
    PostgreSQL have no second 60, and a review's time is kept to the millisecond). A second 60 anywhere but the
    last UTC minute of a day is refused."""
    if isinstance(value, str):
        text = value.strip().upper().replace("\u2212", "-")
        leap = _LEAP_SECOND.search(text)
        end_of_day = _END_OF_DAY.search(text)
        text = _LEAP_SECOND.sub(r"\g<1>59", text)
        text = _END_OF_DAY.sub(r"\g<1>00\g<2>", text)
        ordinal = _ORDINAL_DATE.match(text)
        impossible = None
        try:
            if ordinal:
                year, day = int(ordinal.group(1)), int(ordinal.group(2) or ordinal.group(3))
                if not 1 <= day <= (366 if dt.date(year, 12, 31).timetuple().tm_yday == 366 else 365):
                    raise ValueError("no such day of the year")
                text = (dt.date(year, 1, 1) + dt.timedelta(days=day - 1)).isoformat() + text[ordinal.end():]
            parsed = parse_datetime(text)
            if parsed is None:  # Django's pattern reads the extended form only: the basic one's reason, if any
                impossible = _fromisoformat_reason(text)
        except ValueError as exc:  # well formed but impossible, e.g. month 13: say which part
            parsed, impossible = None, _impossible_part(exc)
        offset = _OFFSET_MINUTES.search(text)
        if parsed is not None and offset and int(offset.group(1)) > 59:
            impossible = "the zone's offset minutes must be 00 to 59"
        if impossible:
            raise ValueError(f"{value!r} is not a date-time that exists: {impossible}")
        if parsed is None:
            raise ValueError(f"expected an ISO 8601 date-time with a zone, got {value!r}")
        if end_of_day:
            try:
                parsed += dt.timedelta(days=1)
            except OverflowError:  # 9999-12-31T24:00 is year 10000
                raise ValueError(f"{value!r} is not a date-time that exists: past the year 9999") from None
        if leap and parsed.tzinfo is not None:
            try:
                utc = parsed.astimezone(dt.timezone.utc)
            except OverflowError:  # e.g. 0001-01-01T00:59:60+01:00 is in year 0 in UTC, 9999-12-31T23:59:60-01:00 in 10000
                raise ValueError(f"the date-time {value!r} is out of range in UTC") from None
            if (utc.hour, utc.minute, utc.second) != (23, 59, 59):
                raise ValueError(f"a leap second (second 60) is 23:59:60 UTC, got {value!r}")
            parsed = parsed.replace(microsecond=999_000)
        value = parsed
    if not isinstance(value, dt.datetime):
        raise ValueError(f"expected an ISO 8601 date-time with a zone, got {type(value).__name__}")
    if timezone.is_naive(value):
        raise ValueError("the date-time has no zone; add one, e.g. 'Z' or '+02:00'")
    try:
        value.astimezone(dt.timezone.utc)  # stored in UTC: e.g. year 1 at +01:00 is before year 1 there
    except OverflowError:
        raise ValueError(f"the date-time {value.isoformat()} is out of range in UTC") from None
    return value


def check_time(value: Any, *, field: str = "reviewed_at", hint: str = "") -> dt.datetime:
    """An aware date-time between EARLIEST and the server clock plus the tolerance, truncated to the millisecond.

    Raises ReviewValidationError naming ``field``; ``hint`` is appended to a bound's message (e.g. "wrong unit?").
    """
    try:
        when = parse_aware_datetime(value)
    except ValueError as exc:
        raise ReviewValidationError.of(field, str(exc)) from None
    suffix = f": {hint}" if hint else ""
    if when < EARLIEST:
        raise ReviewValidationError.of(
            field, f"expected a time from {EARLIEST.year} on, got {when.isoformat()}{suffix}")
    latest = latest_allowed()
    if when > latest:
        raise ReviewValidationError.of(
            field,
            f"expected a time no later than the server clock plus {future_tolerance().total_seconds():.0f} s "
            f"({latest.astimezone(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}), got {when.isoformat()}{suffix}",
        )
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def check_learner_id(value: Any, *, field: str = "learner") -> str:
    """A learner id, trimmed; ReviewValidationError naming ``field`` unless it keeps to the rules (see module)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ReviewValidationError.of(field, "this field is required (a non-blank learner id)")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ReviewValidationError.of(field, "expected a learner id string (or an integer)")
    text = normalise_id(str(value).strip())
    if len(text) > MAX_ID_LENGTH:
        raise ReviewValidationError.of(field, f"expected a learner id of at most {MAX_ID_LENGTH} characters, got {len(text)}")
    if text.isascii() and text.isprintable():  # U+0020-U+007E only: no control or bidirectional character
        return text
    for ch in text:
        if unicodedata.category(ch) == "Cc" or ch in _BIDI_CONTROLS:
            raise ReviewValidationError.of(
                field, f"expected a learner id without control or bidirectional-override characters, found U+{ord(ch):04X}"
            )
    return text


def check_concept_key(value: Any, *, field: str = "concept") -> str:
    """A concept key in NFC (normalise_id); ReviewValidationError naming ``field`` unless it keeps to the rules."""
    if value is None or value == "":
        raise ReviewValidationError.of(field, "this field is required")
    if not isinstance(value, str) or len(normalise_id(value)) > MAX_ID_LENGTH:
        raise ReviewValidationError.of(field, f"expected a concept key string of at most {MAX_ID_LENGTH} characters")
    return normalise_id(value)


GRADE_MESSAGE = f"expected an integer from {MIN_GRADE} to {MAX_GRADE}"
RESPONSE_TIME_MESSAGE = f"expected an integer number of milliseconds from 0 to {MAX_RESPONSE_TIME_MS:,}"


def check_outcome(correct: Any, grade: Any) -> tuple[bool, int | None]:
    """(correct, grade) agreeing with each other: grade 1 exactly when wrong."""
    if correct is None:
        raise ReviewValidationError.of("correct", "this field is required (true or false)")
    if not isinstance(correct, bool):
        raise ReviewValidationError.of("correct", "expected true or false")
    if grade is None:
        return correct, None
    if isinstance(grade, bool) or not isinstance(grade, int) or not MIN_GRADE <= grade <= MAX_GRADE:
        raise ReviewValidationError.of("grade", GRADE_MESSAGE)
    if (grade == MIN_GRADE) == correct:
        raise ReviewValidationError.of(
            "grade", f"grade {grade} contradicts correct={str(correct).lower()} (1 means wrong, 2-4 right)"
        )
    return correct, grade


def check_response_time(value: Any, *, field: str = "response_time_ms") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RESPONSE_TIME_MS:
        raise ReviewValidationError.of(field, RESPONSE_TIME_MESSAGE)
    return value


def check_idempotency_key(value: Any) -> str | None:
    if value is None:
        return None
    # a key of only whitespace is as good as no key: refused like "" (it would make every such review one)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH:
        raise ReviewValidationError.of("idempotency_key", f"expected a non-blank string of at most {MAX_ID_LENGTH} characters")
    return value


def check_recommendation_id(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        if not isinstance(value, str) or len(value) > 36:
            raise ValueError
        return uuid.UUID(value)
    except ValueError:
        raise ReviewValidationError.of("recommendation_id", "expected a UUID, the recommendation_id of a "
                                       "recommendation (e.g. '1f0c2a34-5b6d-4e7f-8a9b-0c1d2e3f4a5b')") from None


# ----------------------------------------------------------------------------------------------- review
@dataclass(frozen=True)
class ReviewFields:
    """A review's fields after validation (curriculum and concept still keys: each route resolves them)."""

    learner: str
    concept: str
    reviewed_at: dt.datetime
    correct: bool
    grade: int | None
    response_time_ms: int | None
    idempotency_key: str | None
    recommendation_id: uuid.UUID | None = None


def validate_review(
    *, learner: Any, concept: Any, reviewed_at: Any, correct: Any, grade: Any = None, response_time_ms: Any = None,
    idempotency_key: Any = None, recommendation_id: Any = None, time_hint: str = "",
) -> ReviewFields:
    """Every field rule of a review (see the module); raises ReviewValidationError listing each field at fault."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    checks = (
        ("learner", lambda: check_learner_id(learner)),
        ("concept", lambda: check_concept_key(concept)),
        ("reviewed_at", lambda: check_time(reviewed_at, hint=time_hint)),
        ("outcome", lambda: check_outcome(correct, grade)),
        ("response_time_ms", lambda: check_response_time(response_time_ms)),
        ("idempotency_key", lambda: check_idempotency_key(idempotency_key)),
        ("recommendation_id", lambda: check_recommendation_id(recommendation_id)),
    )
    for name, check in checks:
        try:
            values[name] = check()
        except ReviewValidationError as exc:
            errors.extend(exc.errors)
    if errors:
        raise ReviewValidationError(errors)
    correct, grade = values["outcome"]
    return ReviewFields(
        values["learner"], values["concept"], values["reviewed_at"], correct, grade, values["response_time_ms"],
        values["idempotency_key"], values["recommendation_id"],
    )


def check_review_item(item: Any) -> ReviewFields:
    """One API review object (a mapping of fields.REVIEW_FIELDS); curriculum is checked by the caller, who
    resolves it."""
    if not isinstance(item, Mapping):
        raise ReviewValidationError.of("item", "expected an object")
    errors: list[dict[str, Any]] = []
    if item.get("reviewed_at") in (None, ""):
        errors.append({"field": "reviewed_at", "message": "this field is required"})
    unknown = sorted(set(item) - FIELD_NAMES)
    errors.extend({"field": name, "message": "unknown field"} for name in unknown[:1])
    try:
        fields = validate_review(
            learner=item.get("learner"), concept=item.get("concept"), reviewed_at=item.get("reviewed_at"),
            correct=item.get("correct"), grade=item.get("grade"), response_time_ms=item.get("response_time_ms"),
            idempotency_key=item.get("idempotency_key"), recommendation_id=item.get("recommendation_id"),
        )
    except ReviewValidationError as exc:
        errors.extend(e for e in exc.errors if not (e["field"] == "reviewed_at" and item.get("reviewed_at") in (None, "")))
        raise ReviewValidationError(errors) from None
    if errors:
        raise ReviewValidationError(errors)
    return fields


# ---------------------------------------------------------------------------------------------- columns
def check_review_columns(*, t: np.ndarray, correct: np.ndarray, grade: np.ndarray, response_time_ms: np.ndarray) -> None:
    """The same rules on columns (the bulk writer's input: t float64 epoch seconds, grade 1-4, response time
    >= 0 on every row); raises ReviewValidationError naming the first bad row (``index``) and field."""
    earliest, latest = EARLIEST.timestamp(), latest_allowed().timestamp()
    checks = (
        ("reviewed_at", ~np.isfinite(t) | (t < earliest) | (t > latest),
         f"expected a time from {EARLIEST.year} to the server clock plus the tolerance"),
        ("grade", (grade < MIN_GRADE) | (grade > MAX_GRADE), GRADE_MESSAGE),
        ("grade", (grade == MIN_GRADE) == correct.astype(bool), "grade contradicts correct (1 means wrong, 2-4 right)"),
        ("response_time_ms", (response_time_ms < 0) | (response_time_ms > MAX_RESPONSE_TIME_MS),
         RESPONSE_TIME_MESSAGE),
    )
    for field, bad, message in checks:
        if bad.any():
            index = int(np.argmax(bad))
            raise ReviewValidationError([{"index": index, "field": field, "message": message}])
