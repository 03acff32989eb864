"""Review-log files -> ReviewLog: the FSRS optimizer's CSV, Anki's revlog table as CSV, Duolingo's half-life-regression CSV.

One service, ``import_review_file``, used by ``manage.py import_reviewlogs`` and the admin upload form.

Formats (the header line names the columns; their order is free; the format is detected from it unless given):

* ``fsrs``: ``card_id, review_rating, review_time, review_duration`` (+ optional ``review_state``), one learner's
  reviews (``--learner``). ``card_id`` -> concept; ``review_rating`` 1-4 -> grade (1 = wrong); ``review_time`` in
  milliseconds since 1970 or ISO 8601 with a zone; ``review_duration`` (ms, may be empty) -> response time.
* ``anki``: Anki's ``revlog`` table (``id, cid, usn, ease, ivl, lastIvl, factor, time, type``), one learner's
  collection (``--learner``). ``cid`` -> concept; ``id`` (ms since 1970) -> time; ``ease`` 1-4 -> grade;
  ``time`` (ms) -> response time. Rows with ``ease`` 0 are not answers (manual rescheduling, cramming without
  rescheduling) and are skipped and counted.
* ``hlr``: Duolingo's half-life-regression traces (``p_recall, timestamp, delta, user_id, learning_language,
  ui_language, lexeme_id, lexeme_string, history_seen, history_correct, session_seen, session_correct``).
  ``user_id`` -> learner, ``lexeme_id`` -> concept (named ``lexeme_string`` when created), ``timestamp``
  (seconds since 1970) -> time. One row is one session of ``session_seen`` exposures: it becomes ONE review,
  correct when at least half the exposures were (``2 * session_correct >= session_seen``), with no grade and
  no response time. ``delta`` and ``history_*`` describe practice before the log and are not used: the state
  encoder reads the log alone.

Grades: 1 means wrong, 2-4 right (Anki's Again/Hard/Good/Easy). Concepts are created as needed in first-seen
order at the curriculum's next positions; learners are created as needed; the curriculum too.

Safety: the file is streamed (the csv module over a text stream, never read whole) and every row is validated
as it is read; rows are written with ``bulk_create`` in batches of ``batch_size`` inside ONE transaction that
also holds the curriculum's row lock, so a bad row anywhere rolls the whole file back (imports nothing) and
its error names the file, line and column. Concurrent imports into one curriculum wait for each other. The
serving state (``LearnerState``) of each learner in the file is rebuilt once, at the end, in the same transaction.
Each review gets a deterministic ``idempotency_key`` (``sha256(format, curriculum, learner, item, time in ms,
outcome)[:40]``), so re-importing a file adds nothing and counts its rows as duplicates.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.text import slugify

from .learner_states import apply_reviews
from .models import Concept, Curriculum, LearnerState, ReviewLog
from .services import ensure_concepts, get_or_create_learners

BATCH_SIZE = 5000
STATE_CHUNK = 500  # learners whose serving state is rebuilt together at the end
HEAD_BYTES = 1 << 16  # the part of the file that names its import batch
MAX_ID_LENGTH = 200  # Learner.external_id, Concept.key
_EARLIEST = dt.datetime(1990, 1, 1, tzinfo=dt.timezone.utc)
_LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class ImportFileError(ValueError):
    """A file that cannot be imported (nothing was stored); the message names the file, line and column."""

    def __init__(self, filename: str, message: str, *, line: int | None = None, column: str | None = None):
        self.filename, self.line, self.column, self.detail = filename, line, column, message
        where = "".join([f", line {line}" if line else "", f", column {column}" if column else ""])
        super().__init__(f"{filename}{where}: {message}")


@dataclass(frozen=True)
class ImportResult:
    format: str
    curriculum: str
    batch: str
    rows: int  # data rows read
    created: int
    duplicates: int  # rows whose review was already stored (an earlier import, or twice in this file)
    skipped: int  # rows that are not reviews (Anki's ease 0)
    learners: int  # distinct learners in the file
    concepts_created: int


@dataclass(frozen=True)
class _Review:
    """One validated row, before it is tied to database rows."""

    learner: str
    item: str
    item_name: str
    time_ms: int
    correct: bool
    grade: int | None
    response_time_ms: int | None
    outcome: str  # what the idempotency key says about the outcome


class _Row:
    """One CSV row with typed, validating accessors whose errors name the line and column."""

    def __init__(self, *, filename: str, line: int, columns: dict[str, int], values: list[str]):
        self.filename, self.line, self._columns, self._values = filename, line, columns, values

    def error(self, column: str, message: str) -> ImportFileError:
        return ImportFileError(self.filename, message, line=self.line, column=column)

    def text(self, column: str, *, required: bool = True, max_length: int = MAX_ID_LENGTH) -> str:
        index = self._columns.get(column)
        value = self._values[index].strip() if index is not None else ""
        if required and not value:
            raise self.error(column, "expected a value, got an empty field")
        if len(value) > max_length:
            raise self.error(column, f"expected at most {max_length} characters, got {len(value)}")
        return value

    def integer(self, column: str, *, low: int, high: int, required: bool = True) -> int | None:
        value = self.text(column, required=required)
        if not value:
            return None
        try:
            number = int(value)
        except ValueError:
            try:  # pandas writes integer columns with missing values as floats: "1234.0"
                as_float = float(value)
            except ValueError:
                as_float = float("nan")
            if not as_float.is_integer():
                raise self.error(column, f"expected an integer from {low} to {high}, got {value!r}") from None
            number = int(as_float)
        if not low <= number <= high:
            raise self.error(column, f"expected {low}-{high}, got {value!r}")
        return number

    def epoch_time_ms(self, column: str, *, unit_ms: int, iso: bool = False) -> int:
        """Milliseconds since 1970 from a number in units of ``unit_ms`` ms (or ISO 8601 with a zone when ``iso``)."""
        value = self.text(column)
        unit = "milliseconds" if unit_ms == 1 else "seconds"
        try:
            when = _EPOCH + dt.timedelta(milliseconds=float(value) * unit_ms)
        except (ValueError, OverflowError):
            if not iso:
                raise self.error(column, f"expected {unit} since 1970, got {value!r}") from None
            try:
                when = parse_datetime(value)
            except ValueError:  # well formed but impossible, e.g. month 13
                when = None
            if when is None:
                raise self.error(column, f"expected {unit} since 1970 or an ISO 8601 date-time, got {value!r}") from None
            if when.tzinfo is None:
                raise self.error(column, f"the date-time {value!r} has no zone; add one, e.g. 'Z' or '+02:00'") from None
        if not _EARLIEST <= when < _LATEST:
            raise self.error(
                column, f"expected {unit} since 1970 between 1990 and 2100, got {value!r} ({when:%Y-%m-%d}): wrong unit?"
            )
        return round((when - _EPOCH) / dt.timedelta(milliseconds=1))


def _fsrs_review(row: _Row, learner: str) -> _Review:
    grade = row.integer("review_rating", low=1, high=4)
    return _Review(
        learner=learner,
        item=row.text("card_id"),
        item_name="",
        time_ms=row.epoch_time_ms("review_time", unit_ms=1, iso=True),
        correct=grade > 1,
        grade=grade,
        response_time_ms=row.integer("review_duration", low=0, high=2**31 - 1, required=False),
        outcome=str(grade),
    )


def _anki_review(row: _Row, learner: str) -> _Review | None:
    ease = row.integer("ease", low=0, high=4)
    time_ms = row.epoch_time_ms("id", unit_ms=1)
    item = row.text("cid")
    response_time_ms = row.integer("time", low=0, high=2**31 - 1, required=False)
    if ease == 0:
        return None
    return _Review(learner, item, "", time_ms, ease > 1, ease, response_time_ms, str(ease))


def _hlr_review(row: _Row, learner: str) -> _Review:
    seen = row.integer("session_seen", low=1, high=2**31 - 1)
    right = row.integer("session_correct", low=0, high=seen)
    return _Review(
        learner=row.text("user_id"),
        item=row.text("lexeme_id"),
        item_name=row.text("lexeme_string", required=False, max_length=10_000)[: Concept._meta.get_field("name").max_length],
        time_ms=row.epoch_time_ms("timestamp", unit_ms=1000),
        correct=2 * right >= seen,
        grade=None,
        response_time_ms=None,
        outcome=f"{right}/{seen}",
    )


@dataclass(frozen=True)
class ReviewFileFormat:
    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    learner_column: str | None  # None: the whole file is one learner's, named by --learner
    parse: Callable[[_Row, str], _Review | None]  # None: a row that is not a review (skipped)

    def describe(self) -> str:
        optional = f" (optional: {', '.join(self.optional)})" if self.optional else ""
        return f"{self.name}: {', '.join(self.required)}{optional}"


FORMATS: dict[str, ReviewFileFormat] = {
    f.name: f
    for f in (
        ReviewFileFormat("fsrs", ("card_id", "review_rating", "review_time", "review_duration"), ("review_state",), None, _fsrs_review),
        ReviewFileFormat("anki", ("id", "cid", "usn", "ease", "ivl", "lastIvl", "factor", "time", "type"), (), None, _anki_review),
        ReviewFileFormat(
            "hlr",
            ("p_recall", "timestamp", "delta", "user_id", "learning_language", "ui_language", "lexeme_id",
             "lexeme_string", "history_seen", "history_correct", "session_seen", "session_correct"),
            (),
            "user_id",
            _hlr_review,
        ),
    )
}


def detect_format(header: list[str]) -> ReviewFileFormat | None:
    """The format whose columns the header shares most (at least two); the formats' columns are disjoint."""
    names = set(header)
    scored = sorted(((len(names & set(f.required)), f.name) for f in FORMATS.values()), reverse=True)
    best, name = scored[0]
    return FORMATS[name] if best >= 2 else None


# -------------------------------------------------------------------------------------------- reading
class _CountingReader(io.RawIOBase):
    """The source's bytes, after the already-read ``head``, counting what has been read (for progress)."""

    def __init__(self, source: BinaryIO, head: bytes):
        self._source, self._head, self.bytes_read = source, memoryview(head), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
        else:
            data = self._source.read(len(buffer))
            n = len(data)
            buffer[:n] = data
        self.bytes_read += n
        return n


def _size_of(fileobj: BinaryIO) -> int | None:
    size = getattr(fileobj, "size", None)
    if isinstance(size, int):
        return size
    try:
        return os.fstat(fileobj.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return None


def _header(records: Iterator[list[str]], *, filename: str, fmt: ReviewFileFormat | None) -> tuple[ReviewFileFormat, list[str]]:
    header = next(records, None)
    if header is None:
        expected = fmt.describe() if fmt else "; ".join(f.describe() for f in FORMATS.values())
        raise ImportFileError(filename, f"the file is empty; expected a header line with the columns of {expected}", line=1)
    header = [h.strip() for h in header]
    if len(header) == 1:
        for delimiter, label in ((";", "semicolon"), ("\t", "tab"), ("|", "bar")):
            if delimiter in header[0]:
                guess = fmt or detect_format([h.strip() for h in header[0].split(delimiter)])
                expected = guess.describe() if guess else "; ".join(f.describe() for f in FORMATS.values())
                raise ImportFileError(
                    filename,
                    f"the header is one column {header[0][:120]!r}: the file looks {label}-separated; "
                    f"expected comma-separated columns of {expected}",
                    line=1,
                )
    if fmt is None:
        fmt = detect_format(header)
        if fmt is None:
            raise ImportFileError(
                filename,
                f"cannot tell the format from the header {', '.join(header)[:200]!r}; expected the columns of "
                + "; or ".join(f.describe() for f in FORMATS.values()) + " (or name the format)",
                line=1,
            )
    missing = [c for c in fmt.required if c not in header]
    if missing:
        raise ImportFileError(
            filename,
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; expected the columns of {fmt.describe()}",
            line=1,
        )
    return fmt, header


def _records(reader, *, filename: str) -> Iterator[list[str]]:
    """The CSV records, blank lines left out; bytes that are not UTF-8 arrive as lone surrogates (checked per row)."""
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(filename, f"not valid CSV: {exc}", line=reader.line_num) from exc
        if values and values != [""]:
            yield values


def _rows(records: Iterator[list[str]], reader, *, filename: str, header: list[str]) -> Iterator[_Row]:
    columns = {name: i for i, name in reversed(list(enumerate(header)))}  # a repeated column: the first one
    for values in records:
        if len(values) != len(header):
            raise ImportFileError(
                filename, f"expected {len(header)} comma-separated fields as in the header, got {len(values)}",
                line=reader.line_num,
            )
        try:
            "".join(values).encode()
        except UnicodeEncodeError:
            bad = next(i for i, v in enumerate(values) if _not_utf8(v))
            raise ImportFileError(filename, "not UTF-8 text", line=reader.line_num, column=header[bad]) from None
        yield _Row(filename=filename, line=reader.line_num, columns=columns, values=values)


def _not_utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


# -------------------------------------------------------------------------------------------- writing
class _BatchWriter:
    """Ties validated reviews to learners and concepts and stores them, a batch at a time, in the caller's transaction."""

    def __init__(self, *, curriculum: Curriculum, fmt: ReviewFileFormat, batch: str):
        self.curriculum, self.fmt, self.batch = curriculum, fmt, batch
        self.concepts: dict[str, Concept] = {c.key: c for c in Concept.objects.filter(curriculum=curriculum).only("id", "key", "position")}
        self.learners: dict[str, int] = {}
        self.created = self.duplicates = self.concepts_created = 0
        self._first_review: dict[int, ReviewLog] = {}  # learner id -> a review created for them (see finish)

    def key(self, review: _Review) -> str:
        parts = (self.fmt.name, self.curriculum.key, review.learner, review.item, str(review.time_ms), review.outcome)
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]

    def write(self, reviews: list[_Review]) -> None:
        new_items = {r.item: r.item_name for r in reviews if r.item not in self.concepts}
        if new_items:
            created = ensure_concepts(curriculum=self.curriculum, concept_keys=new_items)
            named = [created[k] for k, name in new_items.items() if name]
            for concept in named:
                concept.name = new_items[concept.key]
            Concept.objects.bulk_update(named, ["name"], batch_size=1000)
            self.concepts.update({k: created[k] for k in new_items})
            self.concepts_created += len(new_items)
        new_learners = [r.learner for r in reviews if r.learner not in self.learners]
        if new_learners:
            self.learners.update({k: v.id for k, v in get_or_create_learners(external_ids=new_learners).items()})

        keyed = {}
        for review in reviews:
            keyed.setdefault(self.key(review), review)  # the same review twice in a file is stored once
        stored = set(ReviewLog.objects.filter(idempotency_key__in=list(keyed)).values_list("idempotency_key", flat=True))
        rows = [
            ReviewLog(
                learner_id=self.learners[r.learner],
                curriculum=self.curriculum,
                concept=self.concepts[r.item],
                reviewed_at=_EPOCH + dt.timedelta(milliseconds=r.time_ms),
                correct=r.correct,
                grade=r.grade,
                response_time_ms=r.response_time_ms,
                source=ReviewLog.Source.IMPORTED,
                batch=self.batch,
                idempotency_key=key,
            )
            for key, r in keyed.items()
            if key not in stored
        ]
        ReviewLog.objects.bulk_create(rows, batch_size=1000)
        for row in rows:
            self._first_review.setdefault(row.learner_id, row)
        self.created += len(rows)
        self.duplicates += len(reviews) - len(rows)

    def finish(self) -> None:
        """Rebuild the serving state of every learner in the file from the full history, once, at the end.

        Folding batch by batch would rebuild a learner at each batch that goes back in time for them (a file sorted
        by card) or adds concepts (the default encoder covers all of them): quadratic in a long history. A state
        with no data is rebuilt from the history, which holds this transaction's reviews too.
        """
        learners = list(self._first_review.items())
        for start in range(0, len(learners), STATE_CHUNK):
            chunk = dict(learners[start : start + STATE_CHUNK])
            LearnerState.objects.filter(curriculum=self.curriculum, learner_id__in=list(chunk)).update(data={})
            apply_reviews(reviews=list(chunk.values()))


# -------------------------------------------------------------------------------------------- service
def import_review_file(
    *,
    path: str | Path | None = None,
    fileobj: BinaryIO | None = None,
    filename: str | None = None,
    curriculum_key: str,
    format: str | None = None,
    learner: str | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportResult:
    """Import one review-log file (``path``, or a binary ``fileobj`` named ``filename``) into a curriculum.

    All or nothing: raises ImportFileError (naming the file, line and column) and stores nothing when any row is
    bad. ``format`` is one of FORMATS (detected from the header when None); ``learner`` names the learner of a
    format without a learner column (fsrs, anki). ``on_progress(bytes_read, total_bytes or None)`` is called
    after each batch.
    """
    if (path is None) == (fileobj is None):
        raise ValueError("pass exactly one of path and fileobj")
    if path is not None:
        with open(path, "rb") as fh:
            return import_review_file(
                fileobj=fh, filename=filename or Path(path).name, curriculum_key=curriculum_key, format=format,
                learner=learner, on_progress=on_progress, batch_size=batch_size,
            )
    filename = filename or Path(getattr(fileobj, "name", "") or "upload").name
    fmt = _choose_format(format, filename=filename)
    if not curriculum_key or slugify(curriculum_key) != curriculum_key:
        raise ImportFileError(filename, f"curriculum: expected a key of letters, digits, '-' or '_', got {curriculum_key!r}")
    learner = (learner or "").strip() or None
    if learner is not None and len(learner) > MAX_ID_LENGTH:
        raise ImportFileError(filename, f"learner: expected at most {MAX_ID_LENGTH} characters, got {len(learner)}")

    total = _size_of(fileobj)
    head = fileobj.read(HEAD_BYTES)
    batch = "import:" + hashlib.sha256(filename.encode() + b"\0" + head).hexdigest()[:16]
    counter = _CountingReader(fileobj, head)
    text = io.TextIOWrapper(io.BufferedReader(counter, HEAD_BYTES), encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.reader(text, strict=True)
    records = _records(reader, filename=filename)
    try:
        fmt, header = _header(records, filename=filename, fmt=fmt)
        if fmt.learner_column is None and learner is None:
            raise ImportFileError(filename, f"a {fmt.name} file holds one learner's reviews: name the learner (--learner ID)")
        if fmt.learner_column is not None and learner is not None:
            raise ImportFileError(
                filename, f"a {fmt.name} file names its learners in the {fmt.learner_column} column: do not name a learner"
            )
        return _import_rows(
            _rows(records, reader, filename=filename, header=header),
            fmt=fmt, curriculum_key=curriculum_key, learner=learner or "", batch=batch, batch_size=batch_size,
            progress=(lambda: on_progress(counter.bytes_read, total)) if on_progress else (lambda: None),
        )
    finally:
        text.detach()  # leave the caller's file open


def _choose_format(name: str | None, *, filename: str) -> ReviewFileFormat | None:
    if name is None or name == "":
        return None
    if name not in FORMATS:
        raise ImportFileError(filename, f"format: expected one of {', '.join(FORMATS)}, got {name!r}")
    return FORMATS[name]


def _import_rows(
    rows: Iterator[_Row], *, fmt: ReviewFileFormat, curriculum_key: str, learner: str, batch: str, batch_size: int,
    progress: Callable[[], None],
) -> ImportResult:
    count = skipped = 0
    learners: set[str] = set()
    with transaction.atomic():
        curriculum, _ = Curriculum.objects.get_or_create(key=curriculum_key, defaults={"name": curriculum_key})
        # Held to the end: concept positions stay dense, and imports into one curriculum run one after the other.
        curriculum = Curriculum.objects.select_for_update().get(pk=curriculum.pk)
        writer = _BatchWriter(curriculum=curriculum, fmt=fmt, batch=batch)
        pending: list[_Review] = []
        for row in rows:
            count += 1
            review = fmt.parse(row, learner)
            if review is None:
                skipped += 1
                continue
            learners.add(review.learner)
            pending.append(review)
            if len(pending) >= batch_size:
                writer.write(pending)
                pending = []
                progress()
        if pending:
            writer.write(pending)
        writer.finish()
    progress()
    return ImportResult(
        format=fmt.name, curriculum=curriculum.key, batch=batch, rows=count, created=writer.created,
        duplicates=writer.duplicates, skipped=skipped, learners=len(learners), concepts_created=writer.concepts_created,
    )
