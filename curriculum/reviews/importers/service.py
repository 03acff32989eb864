"""The import service: a review-log file (FSRS optimizer CSV, Anki revlog CSV, Duolingo HLR CSV) -> reviews,
through the one validation and the one store (curriculum.reviews.validation, curriculum.reviews.store).

Used by ``manage.py import_reviewlogs`` and the admin upload form. The header names the columns (their order is
free) and the format is detected from it unless given. Grades: 1 means wrong, 2-4 right. Concepts are created
as needed in first-seen order at the curriculum's next positions; learners and the curriculum too.

All or nothing, without blocking live review posts: the whole file is read and validated first, writing nothing
(a bad row anywhere stores nothing; its error names the file, line and column; a dry run stops here). Then the
curriculum, its new concepts and the new learners are committed in short transactions of their own (live posts
cannot refer to them before they exist), and every review is stored, a batch at a time, inside ONE transaction
that takes no lock on the curriculum row, on learners or on learner states until its very end: imports into one
curriculum are serialised by a PostgreSQL advisory lock instead, which nothing else waits on. At the end the
stored serving states of the file's learners are recomputed (without locks) and written under row locks held only
from there to the commit (curriculum.learner_state_rebuild.refresh_states); learners without one get theirs
after the commit, in small transactions (rebuild_states). A review already stored (by
any route: the API, this or another file, another format) or twice in the file is a duplicate (its identity:
learner, concept, time to the millisecond, outcome: correct and grade, so a review stored without a grade, as hlr
sessions are, and the same one with a grade are two), so a second import adds nothing. Rows that are not memory
events (see each format) are skipped and counted. On SQLite, which has one writer at a time, the reviews are stored
a batch per transaction instead, so that other writers (the job's heartbeat, an operator's cancel, live posts) get in
between batches, and the batches stored are deleted again when the import stops before its end
(curriculum/reviews/chunked.py); the target is PostgreSQL.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.db import connection, transaction

from ...learner_state_rebuild import invalidate_states, rebuild_states, refresh_states
from ...models import Concept, Curriculum, Learner, ReviewLog
from ...services import ensure_concepts
from ..chunked import ChunkedWrite, delete_reviews, id_ranges
from ..fields import check_curriculum_key
from ..store import NewReview, store_reviews
from ..validation import ReviewValidationError, check_learner_id
from . import anki, fsrs, hlr
from .csvstream import (HEAD_BYTES, CsvRows, FileReview, ImportFileError, ReviewFileFormat, check_encoding, check_utf8,
                        size_of)

__all__ = ["BATCH_SIZE", "FORMATS", "ImportFileError", "ImportResult", "check_file_head", "check_learner_rule",
           "detect_format", "import_review_file"]

BATCH_SIZE = 5000
IMPORT_LOCK_NAMESPACE = 0x1C0  # PostgreSQL advisory lock (namespace, curriculum id): one import per curriculum
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
    new_concepts: tuple[str, ...] = ()  # their keys, in the order they were (or, in a dry run, would be) added
    dry_run: bool = False
    # reviews created whose duration was negative (the clock went back): stored without one; in a dry run, the
    # file's reviews with one (duplicates are found on import)
    negative_durations: int = 0
    notes: tuple[str, ...] = ()  # sentences for the operator about what was read differently (summary_notes)


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
    dry_run: bool = False,
    on_progress: Callable[[str, int, int | None], None] | None = None,
    batch_size: int = BATCH_SIZE,
    on_chunk_stored: Callable[[str, list[list[int]]], None] | None = None,
) -> ImportResult:
    """Import one review-log file (``path``, or a seekable binary ``fileobj`` named ``filename``) into a curriculum.

    All or nothing: the whole file is read and validated first (raises ImportFileError naming the file, line and
    column, and stores nothing, when any row is bad); ``dry_run`` stops there and returns the counts and the
    concepts the import would add (``created`` and ``duplicates`` are then 0: duplicates are found on import).
    Otherwise the reviews are stored in one transaction that takes no lock a live review post waits on (on SQLite a
    batch per transaction, deleted again if the import stops: see the module docstring). ``format`` is one of
    FORMATS (detected from the header when None); ``learner`` names the learner of a format without a learner
    column (fsrs, anki). ``on_progress(phase, bytes_read, total_bytes or None)`` is called after each batch, with
    phase "validating" then "storing"; it may raise (e.g. a cancelled job) to stop: nothing is then stored.
    ``on_chunk_stored(batch, id_ranges)`` (SQLite only) is called in the transaction of each batch of reviews, with
    the ``[first, last]`` id ranges of every review this import has created so far, e.g. to record them where a
    process that outlives this one can delete them (it may raise to roll the batch back and stop).
    """
    if (path is None) == (fileobj is None):
        raise ValueError("pass exactly one of path and fileobj")
    if path is not None:
        with open(path, "rb") as fh:
            return import_review_file(
                fileobj=fh, filename=filename or Path(path).name, curriculum_key=curriculum_key, format=format,
                learner=learner, dry_run=dry_run, on_progress=on_progress, batch_size=batch_size,
                on_chunk_stored=on_chunk_stored,
            )
    filename = filename or Path(getattr(fileobj, "name", "") or "upload").name
    fmt = _choose_format(format, filename=filename)
    try:
        check_curriculum_key(curriculum_key)
    except ValueError as exc:
        raise ImportFileError(filename, f"curriculum: {exc}") from None
    if learner is not None and str(learner).strip():
        try:
            learner = check_learner_id(learner)
        except ReviewValidationError as exc:
            raise ImportFileError(filename, f"learner: {exc.errors[0]['message']}", field="learner") from None
    else:
        learner = None
    if not fileobj.seekable():
        raise ImportFileError(filename, "the file is read twice (validated, then stored): pass a seekable file")
    existing = Curriculum.objects.filter(key=curriculum_key).first()
    known = frozenset(Concept.objects.filter(curriculum=existing).values_list("key", flat=True)) if existing else frozenset()
    reader = _FileReader(fileobj, filename=filename, fmt=fmt, learner=learner, known_keys=known)
    progress = on_progress or (lambda phase, done, total: None)

    # 1. Validate every row: nothing is written, no lock is taken.
    new_concepts: dict[str, str] = {}  # key -> name, in first-seen order
    learners: set[str] = set()
    rows = skipped = negative_durations = 0
    for review in reader.reviews(progress=lambda done: progress("validating", done, reader.total), every=batch_size):
        rows += 1
        if review is None:
            skipped += 1
            continue
        fields = review.fields
        negative_durations += review.negative_duration
        learners.add(fields.learner)
        if fields.concept not in known and fields.concept not in new_concepts:
            new_concepts[fields.concept] = review.concept_name
    summary = dict(format=reader.fmt.name, curriculum=curriculum_key, batch=reader.batch, rows=rows, skipped=skipped,
                   learners=len(learners), concepts_created=len(new_concepts), new_concepts=tuple(new_concepts),
                   negative_durations=negative_durations,
                   notes=summary_notes(negative_durations=negative_durations, dry_run=dry_run))
    if dry_run:
        return ImportResult(created=0, duplicates=0, dry_run=True, **summary)

    # 2. What live posts may see at once (they cannot refer to it before): the curriculum, its new concepts and
    #    the new learners, each in a short transaction of its own.
    curriculum = _ensure_structure(curriculum_key=curriculum_key, new_concepts=new_concepts)
    _ensure_learners(learners)
    # 3. The reviews, all or nothing: on PostgreSQL in one transaction without row locks on shared rows; on SQLite a
    #    chunk (a batch) at a time, deleted again if the import stops (curriculum/reviews/chunked.py).
    writer = _BatchWriter(curriculum=curriculum, batch=reader.batch)
    with ChunkedWrite(undo=writer.undo, what=f"the reviews it had stored (batch {reader.batch})") as write:
        if connection.vendor == "postgresql":  # one import per curriculum at a time, without locking its row
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [IMPORT_LOCK_NAMESPACE, curriculum.pk])
        writer.invalidate = write.chunked
        if write.chunked:  # in the transaction of each batch: what is stored so far
            writer.on_stored = on_chunk_stored
        pending: list[NewReview] = []
        for review in reader.reviews(progress=lambda done: progress("storing", done, reader.total), every=batch_size):
            if review is None:
                continue
            concept = writer.concepts[review.fields.concept]
            pending.append(NewReview(curriculum, concept, review.fields, {"line": review.line}))
            if review.negative_duration:
                writer.negative_lines.add(review.line)
            if len(pending) >= batch_size:
                with write.chunk():
                    writer.write(pending)
                pending = []
        if pending:
            with write.chunk():
                writer.write(pending)
        progress("updating learner states", reader.total or 0, reader.total)
        if write.chunked:  # their states were emptied chunk by chunk: rebuilt below
            later = sorted(writer.learner_ids)
        else:  # stored states brought up to date (computed unlocked, written under short row locks held to the commit)
            later = refresh_states(curriculum_id=curriculum.pk, learner_ids=sorted(writer.learner_ids))
    # 4. States of learners that had none (and of every learner of a huge file, or of a chunked write, emptied above:
    #    until rebuilt, a recommendation rebuilds an empty state from the history: correct, O(history)), in short
    #    transactions.
    rebuild_states(curriculum_id=curriculum.pk, learner_ids=later)
    # the note counts the reviews stored without a duration: not a duplicate's (stored before, or once in the file)
    summary.update(negative_durations=writer.negative_durations,
                   notes=summary_notes(negative_durations=writer.negative_durations))
    return ImportResult(created=writer.created, duplicates=writer.duplicates, dry_run=False, **summary)


def summary_notes(*, negative_durations: int, dry_run: bool = False) -> tuple[str, ...]:
    """What an import's summary tells the operator besides its counts (the command's output, the job's page); a dry
    run's says what an import would do, as it stores nothing."""
    notes = []
    if negative_durations:
        reviews = "review" if negative_durations == 1 else "reviews"
        stored = "would be stored" if dry_run else "stored"
        notes.append(f"{negative_durations} {reviews} had a negative duration (clock went back): {stored} without a "
                     "duration")
    return tuple(notes)


def check_learner_rule(fmt: ReviewFileFormat, *, learner: str | None, filename: str,
                       learner_option: str = "--learner ID") -> None:
    """A format without a learner column (fsrs, anki) needs the learner named, one with it (hlr) refuses one.
    Raises ImportFileError with ``field="learner"``; ``learner_option`` says where to name it (the command's
    option, or the admin form's field)."""
    if fmt.learner_column is None and learner is None:
        raise ImportFileError(filename, f"an {fmt.name} file holds one learner's reviews and has no learner column: "
                                        f"name the learner whose reviews they are ({learner_option})", field="learner")
    if fmt.learner_column is not None and learner is not None:
        raise ImportFileError(filename, f"an {fmt.name} file names its learners in the {fmt.learner_column} column: "
                                        f"leave the learner empty", field="learner")


def check_file_head(*, fileobj: BinaryIO, filename: str, format: str | None = None, learner: str | None = None,
                    learner_option: str = "--learner ID") -> ReviewFileFormat:
    """What can be told from a review file's first bytes, before it is stored: the encoding (UTF-8 throughout the
    first HEAD_BYTES, check_utf8), the header (its delimiter, the format it names, no missing or repeated column)
    and the learner rule (check_learner_rule). Reads at most HEAD_BYTES and the header (at most
    csvstream.HEADER_MAX_CHARS) and puts ``fileobj`` back where it was. Returns the format; raises
    ImportFileError (its ``field``: "format" or "learner" when that input is the one to change, else None)."""
    fmt = _choose_format(format, filename=filename)
    if learner is not None and str(learner).strip():
        try:
            learner = check_learner_id(learner)
        except ReviewValidationError as exc:
            raise ImportFileError(filename, f"learner: {exc.errors[0]['message']}", field="learner") from None
    else:
        learner = None
    start = fileobj.tell()
    try:
        head = fileobj.read(HEAD_BYTES)
        check_encoding(head, filename=filename)
        check_utf8(head, filename=filename)
        fileobj.seek(start)
        stream = CsvRows(fileobj, filename=filename, head=fileobj.read(HEAD_BYTES))
        try:
            fmt = stream.read_header(stream.records(), fmt=fmt, formats=FORMATS, detect=detect_format)
        finally:
            stream.close()
        check_learner_rule(fmt, learner=learner, filename=filename, learner_option=learner_option)
        return fmt
    finally:
        fileobj.seek(start)


def _choose_format(name: str | None, *, filename: str) -> ReviewFileFormat | None:
    if name is None or name == "":
        return None
    if name not in FORMATS:
        raise ImportFileError(filename, f"format: expected one of {', '.join(FORMATS)}, got {name!r}", field="format")
    return FORMATS[name]


class _FileReader:
    """Reads a review file as often as needed (validation, storage; anki's first pass), from its start each time."""

    def __init__(self, fileobj: BinaryIO, *, filename: str, fmt: ReviewFileFormat | None, learner: str | None,
                 known_keys: frozenset[str] = frozenset()):
        self.fileobj, self.filename, self.learner, self.known_keys = fileobj, filename, learner, known_keys
        self.start = fileobj.tell()
        self.total = size_of(fileobj)
        head = fileobj.read(HEAD_BYTES)
        check_encoding(head, filename=filename)
        self.batch = "import:" + hashlib.sha256(filename.encode() + b"\0" + head).hexdigest()[:16]
        self.context: object = None
        with self._rows(fmt) as (self.fmt, rows):
            check_learner_rule(self.fmt, learner=learner, filename=filename)
            if self.fmt.prescan is not None:
                self.context = self.fmt.prescan(rows)

    @contextlib.contextmanager
    def _rows(self, fmt: ReviewFileFormat | None, counter: list | None = None):
        self.fileobj.seek(self.start)
        stream = CsvRows(self.fileobj, filename=self.filename, head=self.fileobj.read(HEAD_BYTES))
        try:
            records = stream.records()
            fmt = stream.read_header(records, fmt=fmt, formats=FORMATS, detect=detect_format)
            if counter is not None:
                counter.append(stream.counter)
            yield fmt, stream.rows(records, review_columns=fmt.columns, known_keys=self.known_keys)
        finally:
            stream.close()

    def reviews(self, *, progress: Callable[[int], None], every: int) -> Iterator[FileReview | None]:
        """The validated review of each data row (None for a skipped row). Raises ImportFileError."""
        counters: list = []
        with self._rows(self.fmt, counters) as (fmt, rows):
            for n, row in enumerate(rows, 1):
                yield fmt.parse(row, self.learner or "", self.context)
                if n % every == 0:
                    progress(counters[0].bytes_read)
            progress(counters[0].bytes_read)


def _ensure_structure(*, curriculum_key: str, new_concepts: dict[str, str]) -> Curriculum:
    """The curriculum (created if missing) and its new concepts, in one short transaction under its row lock."""
    with transaction.atomic():
        curriculum, _ = Curriculum.objects.get_or_create(key=curriculum_key, defaults={"name": curriculum_key})
        if new_concepts:
            curriculum = Curriculum.objects.select_for_update().get(pk=curriculum.pk)  # dense positions
            created = ensure_concepts(curriculum=curriculum, concept_keys=new_concepts)
            named = [created[k] for k, name in new_concepts.items() if name and created[k].name != name]
            for concept in named:
                concept.name = new_concepts[concept.key]
            Concept.objects.bulk_update(named, ["name"], batch_size=1000)
    return curriculum


def _ensure_learners(external_ids: set[str]) -> None:
    """Learners the file names that are not stored yet (committed at once, so live posts never wait on them)."""
    ids = sorted(external_ids)
    for start in range(0, len(ids), 5000):
        part = ids[start : start + 5000]
        with transaction.atomic():
            have = set(Learner.objects.filter(external_id__in=part).values_list("external_id", flat=True))
            Learner.objects.bulk_create(
                [Learner(external_id=e) for e in part if e not in have], batch_size=1000, ignore_conflicts=True
            )


class _BatchWriter:
    """Stores batches of validated file reviews through the one store, in the caller's transaction; keeps the ids of
    the reviews it created (``id_ranges``) so that ``undo`` can delete them (a chunked write on SQLite)."""

    def __init__(self, *, curriculum: Curriculum, batch: str):
        self.batch = batch
        self.curriculum_id = curriculum.pk
        self.invalidate = False  # empty the stored states of each batch's learners (a chunked write: each commits)
        self.on_stored: Callable[[str, list[list[int]]], None] | None = None  # called after each batch (chunked)
        self.id_ranges: list[list[int]] = []  # [first, last] ids of the reviews created (by this transaction too)
        self.committed_ranges: list[list[int]] = []  # ... of those committed (what undo deletes)
        self.concepts: dict[str, Concept] = {
            c.key: c for c in Concept.objects.filter(curriculum=curriculum).only("id", "key", "position", "curriculum_id")
        }
        self.created = self.duplicates = self.negative_durations = 0
        self.learner_ids: set[int] = set()  # learners with a review created by this import
        self.negative_lines: set[int] = set()  # lines of the reviews to write whose duration was negative

    def write(self, reviews: list[NewReview]) -> None:
        result = store_reviews(reviews=reviews, source=ReviewLog.Source.IMPORTED, batch=self.batch, apply_state=False)
        learner_ids = {row.learner_id for row in result.reviews}
        self.learner_ids.update(learner_ids)
        ranges = self.id_ranges = id_ranges([row.pk for row in result.reviews], self.id_ranges)
        transaction.on_commit(lambda: setattr(self, "committed_ranges", ranges))
        if self.invalidate and learner_ids:  # committed with this batch: the stored states would miss its reviews
            invalidate_states(curriculum_id=self.curriculum_id, learner_ids=sorted(learner_ids))
        if self.on_stored is not None:
            self.on_stored(self.batch, ranges)
        self.created += result.created
        self.duplicates += result.duplicates
        if self.negative_lines:
            self.negative_durations += sum(r.where["line"] in self.negative_lines for r in result.stored)

    def undo(self) -> None:
        """Delete the reviews this import created (a chunked write that stopped), emptying their learners' states."""
        delete_reviews(batch=self.batch, id_ranges=self.committed_ranges)
