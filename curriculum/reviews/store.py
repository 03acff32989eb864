"""The one idempotent store of reviews: validated reviews -> ReviewLog rows and the learners' serving state.

Used by the API (``record_reviews``) and by the file importers (``store_reviews``, a batch at a time).

A review's identity is (learner, concept, time to the millisecond, outcome = correct and grade), the same on
every route and enforced by the database (``review_natural_identity``): a review already stored, or twice in
one call, is counted as a duplicate and stored once. An idempotency key names one review: a key already stored
(or used earlier in the call) for a review with another identity is a conflict (IdempotencyConflict, HTTP
409), and nothing is stored.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, transaction

from ..models import Concept, Curriculum, Learner, ReviewLog
from .fields import check_curriculum_key
from .validation import IdempotencyConflict, ReviewFields, ReviewValidationError, check_review_item

MAX_BATCH = 1000  # reviews per API request


@dataclass(frozen=True)
class NewReview:
    """A validated review tied to its curriculum and concept; ``where`` names its origin in errors
    (``{"index": i}`` for an API item, ``{"line": n}`` for a file row)."""

    curriculum: Curriculum
    concept: Concept
    fields: ReviewFields
    where: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordResult:
    created: int
    duplicates: int
    reviews: list[ReviewLog] = field(default_factory=list, repr=False, compare=False)
    stored: list[NewReview] = field(default_factory=list, repr=False, compare=False)  # what each of ``reviews`` came from


Identity = tuple[int, int, dt.datetime, bool, int]  # learner id, concept id, time (ms), correct, grade or 0


def _identity(learner_id: int, concept_id: int, at: dt.datetime, correct: bool, grade: int | None) -> Identity:
    return (learner_id, concept_id, at, bool(correct), grade or 0)


# ------------------------------------------------------------------------------------------------- the API
def record_reviews(
    *, items: Iterable[Mapping[str, Any]], source: str = ReviewLog.Source.LIVE, batch: str = ""
) -> RecordResult:
    """Validate every item, then store all of them or none (duplicates counted, not stored again).

    Items: ``{"curriculum", "learner", "concept", "correct", "grade"?, "reviewed_at", "response_time_ms"?,
    "idempotency_key"?}``. Raises ReviewValidationError naming the item index and field, IdempotencyConflict
    when a key stands for another review.
    """
    items = list(items)
    if not items:
        return RecordResult(created=0, duplicates=0)
    if len(items) > MAX_BATCH:
        raise ReviewValidationError([{"index": MAX_BATCH, "field": "items", "message": f"at most {MAX_BATCH} reviews per batch"}])
    valid = _resolve(items)
    return store_reviews(reviews=valid, source=source, batch=batch)


def _resolve(items: list[Any]) -> list[NewReview]:
    """Field rules per item, then curricula and concepts looked up; every problem of every item listed."""
    curriculum_keys = {i["curriculum"] for i in items if isinstance(i, Mapping) and _is_key(i.get("curriculum"))}
    curricula = {c.key: c for c in Curriculum.objects.filter(key__in=curriculum_keys)}
    concepts: dict[tuple[int, str], Concept] = {
        (c.curriculum_id, c.key): c
        for c in Concept.objects.filter(curriculum__in=curricula.values()).only("id", "key", "curriculum_id", "position")
    }
    errors: list[dict[str, Any]] = []
    valid: list[NewReview] = []
    for index, item in enumerate(items):
        problems: list[dict[str, Any]] = []
        curriculum = concept = None
        if isinstance(item, Mapping):
            curriculum = curricula.get(item.get("curriculum")) if _is_key(item.get("curriculum")) else None
            if not item.get("curriculum"):
                problems.append({"field": "curriculum", "message": "this field is required"})
            elif not _is_key(item["curriculum"]):
                problems.append({"field": "curriculum", "message": _key_problem(item["curriculum"])})
            elif curriculum is None:
                problems.append({"field": "curriculum", "message": f"unknown curriculum {item['curriculum']!r}"})
        try:
            fields = check_review_item(item)
        except ReviewValidationError as exc:
            problems.extend(exc.errors)
            fields = None
        if fields is not None and curriculum is not None:
            concept = concepts.get((curriculum.id, fields.concept))
            if concept is None:
                problems.append({"field": "concept", "message": f"unknown concept {fields.concept!r} in curriculum {curriculum.key!r}"})
        if problems:
            errors.extend({"index": index, **p} for p in problems)
        else:
            valid.append(NewReview(curriculum, concept, fields, {"index": index}))
    if errors:
        raise ReviewValidationError(errors)
    return valid


def _key_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as a curriculum key (curriculum.reviews.fields.check_curriculum_key), or None."""
    try:
        check_curriculum_key(value)
    except ValueError as exc:
        return str(exc)
    return None


def _is_key(value: Any) -> bool:
    return _key_problem(value) is None


# ----------------------------------------------------------------------------------------------- the store
def store_reviews(
    *, reviews: Sequence[NewReview], source: str, batch: str, apply_state: bool = True
) -> RecordResult:
    """Store validated reviews, all or none, in one (nested) transaction; duplicates are counted, not stored.

    ``apply_state``: fold the new rows into the learners' serving state (curriculum.learner_states.apply_reviews);
    an importer passes False and rebuilds each learner's state once at the end. Raises IdempotencyConflict.
    """
    # A concurrent writer may store the same review or key between our check and our insert: check again.
    for attempt in range(3):
        try:
            with transaction.atomic():
                return _store(reviews, source=source, batch=batch, apply_state=apply_state)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _store(reviews: Sequence[NewReview], *, source: str, batch: str, apply_state: bool) -> RecordResult:
    from ..learner_states import apply_reviews  # the serving state is kept in step with the log

    existing = {l.external_id: l for l in Learner.objects.filter(external_id__in={r.fields.learner for r in reviews})}
    known = [r for r in reviews if r.fields.learner in existing]
    stored: set[Identity] = set()
    if known:
        stored = {
            _identity(*row)
            for row in ReviewLog.objects.filter(
                learner_id__in={existing[r.fields.learner].pk for r in known},
                reviewed_at__in={r.fields.reviewed_at for r in known},
            ).values_list("learner_id", "concept_id", "reviewed_at", "correct", "grade")
        }
    keys = {r.fields.idempotency_key for r in reviews if r.fields.idempotency_key}
    keyed: dict[str, tuple[Identity | None, str]] = {
        key: (_identity(*rest), f"learner id {rest[0]}")
        for key, *rest in ReviewLog.objects.filter(idempotency_key__in=keys).values_list(
            "idempotency_key", "learner_id", "concept_id", "reviewed_at", "correct", "grade"
        )
    }

    def identity_of(r: NewReview) -> tuple:
        learner = existing.get(r.fields.learner)
        # a learner not stored yet has no id: the external id stands in (it cannot match a stored review)
        return (
            learner.pk if learner else ("new", r.fields.learner), r.concept.pk, r.fields.reviewed_at,
            r.fields.correct, r.fields.grade or 0,
        )

    conflicts: list[dict[str, Any]] = []
    fresh: list[NewReview] = []
    seen: set[tuple] = set()
    for r in reviews:
        identity = identity_of(r)
        key = r.fields.idempotency_key
        if key:
            if key in keyed and keyed[key][0] != identity:
                conflicts.append({
                    **r.where, "field": "idempotency_key",
                    "message": f"the key {key!r} is already used for another review (another learner, concept, time "
                    "or outcome); use a new key for a new review",
                })
                continue
            keyed.setdefault(key, (identity, ""))
        if identity in stored or identity in seen:
            continue
        seen.add(identity)
        fresh.append(r)
    if conflicts:
        raise IdempotencyConflict(conflicts)

    missing = [Learner(external_id=e) for e in dict.fromkeys(r.fields.learner for r in fresh) if e not in existing]
    if missing:
        Learner.objects.bulk_create(missing, batch_size=1000, ignore_conflicts=True)
        existing.update(
            {l.external_id: l for l in Learner.objects.filter(external_id__in=[m.external_id for m in missing])}
        )
    rows = [
        ReviewLog(
            learner=existing[r.fields.learner], curriculum=r.curriculum, concept=r.concept,
            reviewed_at=r.fields.reviewed_at, correct=r.fields.correct, grade=r.fields.grade,
            response_time_ms=r.fields.response_time_ms, source=source, batch=batch,
            idempotency_key=r.fields.idempotency_key, recommendation_id=r.fields.recommendation_id,
        )
        for r in fresh
    ]
    ReviewLog.objects.bulk_create(rows, batch_size=1000)
    if apply_state:
        apply_reviews(reviews=rows)
    return RecordResult(created=len(rows), duplicates=len(reviews) - len(rows), reviews=rows, stored=fresh)
