"""The import service: a review-log file (FSRS optimizer CSV, Anki revlog CSV, Duolingo HLR CSV) -> reviews,
through the one validation and the one store (curriculum.reviews.validation, curriculum.reviews.store).

Used by ``manage.py import_reviewlogs`` and the admin upload form. The header names the columns (their order is
free) and the format is detected from it unless given. Grades: 1 means wrong, 2-4 right. Concepts are created
as needed in first-seen order at the curriculum's next positions; learners and the curriculum too.

All or nothing: rows are validated as they are read and stored a batch at a time inside ONE transaction that
holds the curriculum's row lock, so a bad row anywhere rolls the whole file back and its error names the file,
line and column. A review already stored (by any route: the API, this or another file, another format) or twice
in the file is a duplicate (its identity: learner, concept, time to the millisecond, outcome), so a second import
adds nothing. Rows that are not memory events (see each format) are skipped and counted. The serving state of
each learner in the file is rebuilt once, at the end, in the same transaction.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.db import transaction
from django.utils.text import slugify

from ...learner_states import apply_reviews
from ...models import Concept, Curriculum, LearnerState, ReviewLog
from ...services import ensure_concepts
from ..store import NewReview, store_reviews
from ..validation import ReviewValidationError, check_learner_id, validate_review
from . import anki, fsrs, hlr
from .csvstream import HEAD_BYTES, CsvRows, FileReview, ImportFileError, ReviewFileFormat, Row, check_encoding, size_of

__all__ = ["BATCH_SIZE", "FORMATS", "ImportFileError", "ImportResult", "detect_format", "import_review_file"]

BATCH_SIZE = 5000
STATE_CHUNK = 500  # learners whose serving state is rebuilt together at the end
FORMATS: dict[str, ReviewFileFormat] = {f.name: f for f in (fsrs.FORMAT, anki.FORMAT, hlr.FORMAT)}


@dataclass(frozen=True)
class ImportResult:
    format: str
    curriculum: str
    batch: str
    rows: int  # data rows read
    created: int
    duplicates: int  # rows whose review was already stored (by any route), or twice in this file
    skipped: int  # rows that are not memory events (see the format's module)
    learners: int  # distinct learners in the file's reviews
    concepts_created: int


def detect_format(header: list[str]) -> ReviewFileFormat | None:
    """The format whose columns the header shares most (at least two); the formats' columns are disjoint."""
    names = set(header)
    scored = sorted(((len(names & set(f.required)), f.name) for f in FORMATS.values()), reverse=True)
    best, name = scored[0]
    return FORMATS[name] if best >= 2 else None


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
    after each batch. A format with a first pass (anki) reads the file twice: ``fileobj`` must be seekable.
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
    if learner is not None and str(learner).strip():
        try:
            learner = check_learner_id(learner)
        except ReviewValidationError as exc:
            raise ImportFileError(filename, f"learner: {exc.errors[0]['message']}") from None
    else:
        learner = None

    total = size_of(fileobj)
    start = fileobj.tell() if fileobj.seekable() else None
    head = fileobj.read(HEAD_BYTES)
    check_encoding(head, filename=filename)
    batch = "import:" + hashlib.sha256(filename.encode() + b"\0" + head).hexdigest()[:16]
    stream = CsvRows(fileobj, filename=filename, head=head)
    try:
        records = stream.records()
        fmt = stream.read_header(records, fmt=fmt, formats=FORMATS, detect=detect_format)
        if fmt.learner_column is None and learner is None:
            raise ImportFileError(filename, f"a {fmt.name} file holds one learner's reviews: name the learner (--learner ID)")
        if fmt.learner_column is not None and learner is not None:
            raise ImportFileError(
                filename, f"a {fmt.name} file names its learners in the {fmt.learner_column} column: do not name a learner"
            )
        context = None
        if fmt.prescan is not None:
            if start is None:
                raise ImportFileError(filename, f"a {fmt.name} file is read twice: pass a seekable file")
            context = fmt.prescan(stream.rows(records))
            stream.close()
            fileobj.seek(start)
            stream = CsvRows(fileobj, filename=filename, head=fileobj.read(HEAD_BYTES))
            records = stream.records()
            stream.read_header(records, fmt=fmt, formats=FORMATS, detect=detect_format)
        counter = stream.counter
        return _import_rows(
            stream.rows(records), fmt=fmt, context=context, curriculum_key=curriculum_key, learner=learner or "",
            batch=batch, batch_size=batch_size, filename=filename,
            progress=(lambda: on_progress(counter.bytes_read, total)) if on_progress else (lambda: None),
        )
    finally:
        stream.close()


def _choose_format(name: str | None, *, filename: str) -> ReviewFileFormat | None:
    if name is None or name == "":
        return None
    if name not in FORMATS:
        raise ImportFileError(filename, f"format: expected one of {', '.join(FORMATS)}, got {name!r}")
    return FORMATS[name]


def _import_rows(
    rows: Iterator[Row], *, fmt: ReviewFileFormat, context: object, curriculum_key: str, learner: str, batch: str,
    batch_size: int, filename: str, progress: Callable[[], None],
) -> ImportResult:
    count = skipped = 0
    learners: set[str] = set()
    with transaction.atomic():
        curriculum, _ = Curriculum.objects.get_or_create(key=curriculum_key, defaults={"name": curriculum_key})
        # Held to the end: concept positions stay dense, and imports into one curriculum run one after the other.
        curriculum = Curriculum.objects.select_for_update().get(pk=curriculum.pk)
        writer = _BatchWriter(curriculum=curriculum, fmt=fmt, batch=batch, filename=filename)
        pending: list[FileReview] = []
        for row in rows:
            count += 1
            review = fmt.parse(row, learner, context)
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


class _BatchWriter:
    """Validates a batch of file reviews by the one rule set, ties them to concepts, and stores them through the
    one store, in the caller's transaction."""

    def __init__(self, *, curriculum: Curriculum, fmt: ReviewFileFormat, batch: str, filename: str):
        self.curriculum, self.fmt, self.batch, self.filename = curriculum, fmt, batch, filename
        self.concepts: dict[str, Concept] = {
            c.key: c for c in Concept.objects.filter(curriculum=curriculum).only("id", "key", "position", "curriculum_id")
        }
        self.created = self.duplicates = self.concepts_created = 0
        self._first_review: dict[int, ReviewLog] = {}  # learner id -> a review created for them (see finish)

    def _validate(self, review: FileReview):
        try:
            return validate_review(
                learner=review.learner, concept=review.item, reviewed_at=review.reviewed_at, correct=review.correct,
                grade=review.grade, response_time_ms=review.response_time_ms,
            )
        except ReviewValidationError as exc:
            field = exc.errors[0]["field"]
            raise ImportFileError(
                self.filename, exc.errors[0]["message"], line=review.line, column=self.fmt.columns.get(field, field)
            ) from None

    def write(self, reviews: list[FileReview]) -> None:
        fields = [self._validate(r) for r in reviews]
        new_items = {f.concept: r.item_name for f, r in zip(fields, reviews) if f.concept not in self.concepts}
        if new_items:
            created = ensure_concepts(curriculum=self.curriculum, concept_keys=new_items)
            named = [created[k] for k, name in new_items.items() if name]
            for concept in named:
                concept.name = new_items[concept.key]
            Concept.objects.bulk_update(named, ["name"], batch_size=1000)
            self.concepts.update({k: created[k] for k in new_items})
            self.concepts_created += len(new_items)
        result = store_reviews(
            reviews=[
                NewReview(self.curriculum, self.concepts[f.concept], f, {"line": r.line}) for f, r in zip(fields, reviews)
            ],
            source=ReviewLog.Source.IMPORTED, batch=self.batch, apply_state=False,
        )
        for row in result.reviews:
            self._first_review.setdefault(row.learner_id, row)
        self.created += result.created
        self.duplicates += result.duplicates

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
