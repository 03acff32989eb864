"""Per-learner serving state, kept in step with the review log: what a recommendation reads in O(1).

A `LearnerState` row holds one learner's `training.rl.encoder.EncodedLearnerState` for one curriculum, encoded
with the active policy's encoder (or the default one while no policy is active), and the identity of that
encoding (`curriculum.state_specs`): a state stored under another identity is rebuilt from the history. Reviews
are folded in as they are recorded; a review that sorts before the newest one applied (a late review) rebuilds
the state from the full history, so the result is always the one `from_history` gives, whatever the order reviews
arrived in. Bulk rebuilds (after a promotion, around an import) are learner_state_rebuild.py's; every writer
locks the rows through `locked_states`, in one order.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from training.rl.encoder import EncodedLearnerState

from .models import LearnerState, ReviewLog
from .selectors import serving_spec
from .state_specs import StateSpec


@dataclass(frozen=True)
class _Review:
    """A review as the encoder sees it."""

    at: dt.datetime
    id: int | None
    position: int
    correct: bool
    grade: int

    @property
    def order(self) -> tuple[float, int]:
        return (self.at.timestamp(), self.id)


def _observe(state: EncodedLearnerState, reviews: Iterable[_Review], *, spec: StateSpec) -> tuple[float, int] | None:
    """Apply reviews (in order); return the order key of the last one the encoder saw."""
    last = None
    for r in reviews:
        # a concept added after the policy was trained is outside its action space: the encoder cannot see it
        if r.position < spec.num_concepts:
            state.observe(concept=r.position, t=r.at.timestamp(), correct=r.correct, grade=r.grade)
            last = r.order
    return last


def history(*, learner_id: int, curriculum_id: int) -> list[_Review]:
    """A learner's reviews of one curriculum in (time, id) order."""
    return _histories(curriculum_id=curriculum_id, learner_id=learner_id).get(learner_id, [])


def histories(*, learner_ids: Sequence[int], curriculum_id: int) -> dict[int, list[_Review]]:
    """Several learners' reviews of one curriculum, each in (time, id) order, read HISTORY_BATCH learners per query
    (a learner without reviews is absent)."""
    found: dict[int, list[_Review]] = {}
    for start in range(0, len(learner_ids), HISTORY_BATCH):
        found.update(_histories(curriculum_id=curriculum_id, learner_ids=learner_ids[start:start + HISTORY_BATCH]))
    return found


HISTORY_BATCH = 500  # learners per history query


def _histories(*, curriculum_id: int, **which) -> dict[int, list[_Review]]:
    from .reviews.reader import iter_review_chunks

    found: dict[int, list[_Review]] = defaultdict(list)
    for chunk in iter_review_chunks(curriculum=curriculum_id, with_ids=True, **which):
        for learner, t, pk, position, correct, grade in zip(
            chunk["learner"].tolist(), chunk["t"].tolist(), chunk["id"].tolist(), chunk["concept"].tolist(),
            chunk["correct"].tolist(), chunk["grade"].tolist(),
        ):
            found[learner].append(_Review(dt.datetime.fromtimestamp(t, tz=dt.timezone.utc), pk, position, correct, grade))
    return dict(found)


def state_from_history(reviews: Iterable[_Review], *, spec: StateSpec) -> tuple[EncodedLearnerState, tuple[float, int] | None]:
    """A state built from a learner's full history, and the order key of its newest review."""
    state = spec.new_state()
    return state, _observe(state, reviews, spec=spec)


def apply_reviews(*, reviews: Sequence[ReviewLog]) -> None:
    """Fold newly stored reviews into their learners' states; call inside the transaction that stored them.

    The state rows are locked (`select_for_update`, in a fixed order) so concurrent batches for one learner
    apply one after the other; a batch that does not extend the newest applied review rebuilds from history,
    which then holds every committed review and this transaction's own.

    The cost does not grow with the number of learners in queries: learners without a state row (new learners)
    get theirs computed from their histories (read in one query) and inserted with it; states to rebuild read
    their histories together. What remains per learner is the UPDATE of a state that changed.
    """
    groups: dict[tuple[int, int], list[_Review]] = defaultdict(list)
    for row in reviews:
        groups[(row.curriculum_id, row.learner_id)].append(
            _Review(row.reviewed_at, row.pk, row.concept.position, row.correct, row.grade or 0)
        )
    by_curriculum: dict[int, list[int]] = defaultdict(list)
    for curriculum_id, learner_id in sorted(groups):
        by_curriculum[curriculum_id].append(learner_id)

    for curriculum_id, learner_ids in by_curriculum.items():
        spec = serving_spec(curriculum_id=curriculum_id)
        now = timezone.now()
        inserted = _insert_missing_states(curriculum_id=curriculum_id, learner_ids=learner_ids, spec=spec, now=now)
        rows = list(locked_states(curriculum_id=curriculum_id, learner_ids=learner_ids))
        # A row another writer inserted first (or changed since) does not hold what this one computed: fold into it.
        changed = [row for row in rows if not _holds(row, inserted.get(row.learner_id))]
        rebuild = [row for row in changed if not _fold(row, groups[(curriculum_id, row.learner_id)], spec=spec)]
        found = histories(learner_ids=[row.learner_id for row in rebuild], curriculum_id=curriculum_id)
        for row in rebuild:
            _take_history(row, found.get(row.learner_id, []), spec=spec)
        for row in changed:
            save_state(row, now=now)


def _insert_missing_states(*, curriculum_id: int, learner_ids: Sequence[int], spec: StateSpec,
                           now: dt.datetime) -> dict[int, LearnerState]:
    """Insert, with their states built from the history (this transaction's reviews included), the rows of the
    learners (in increasing id order) that have none yet; returns them by learner id. A row inserted meanwhile by
    another writer wins (ON CONFLICT DO NOTHING): the caller sees that it does not hold these states."""
    have = set(LearnerState.objects.filter(curriculum_id=curriculum_id, learner_id__in=learner_ids)
               .values_list("learner_id", flat=True))
    missing = [learner_id for learner_id in learner_ids if learner_id not in have]
    found = histories(learner_ids=missing, curriculum_id=curriculum_id)
    rows = {}
    for learner_id in missing:
        rows[learner_id] = row = LearnerState(learner_id=learner_id, curriculum_id=curriculum_id, updated_at=now)
        _take_history(row, found.get(learner_id, []), spec=spec)
    LearnerState.objects.bulk_create(list(rows.values()), batch_size=500, ignore_conflicts=True)
    return rows


def _holds(row: LearnerState, inserted: LearnerState | None) -> bool:
    """Whether the locked ``row`` is the one this writer inserted (same counters and newest review applied)."""
    return inserted is not None and (row.review_count, row.newest_review_at, row.data.get("last_review")) == (
        inserted.review_count, inserted.newest_review_at, inserted.data.get("last_review"))


def locked_states(*, curriculum_id: int, learner_ids: Iterable[int]) -> QuerySet[LearnerState]:
    """These learners' LearnerState rows in one curriculum, locked (``select_for_update``) in learner order when the
    query runs, inside the caller's transaction. Every writer of the rows locks them through here: one order, so
    a review batch and a bulk rebuild never wait on each other in a circle."""
    return (LearnerState.objects.select_for_update()
            .filter(curriculum_id=curriculum_id, learner_id__in=learner_ids).order_by("learner_id"))


def create_missing_states(*, curriculum_id: int, learner_ids: Sequence[int]) -> None:
    """An empty LearnerState row for each of these learners (ids in increasing order, so that two writers cannot
    wait on each other's inserts) that has none yet, so that every row exists to be locked."""
    LearnerState.objects.bulk_create(
        [LearnerState(learner_id=l, curriculum_id=curriculum_id) for l in learner_ids], ignore_conflicts=True
    )


def save_state(row: LearnerState, *, now: dt.datetime) -> None:
    """Store the row's state and counters, stamped `now` (the caller holds the row's lock)."""
    # one UPDATE per row: bulk_update's CASE over large JSON values costs more than the round trips
    LearnerState.objects.filter(pk=row.pk).update(
        data=row.data, history_states=row.history_states, review_count=row.review_count,
        newest_review_at=row.newest_review_at, updated_at=now,
    )


def _fold(row: LearnerState, new: list[_Review], *, spec: StateSpec) -> bool:
    """Fold ``new`` into the row's state when they extend it (True); False when the state must be rebuilt from the
    full history instead (a late review, no state yet, or one encoded for another policy)."""
    state = spec.load(row.data, row.history_states)
    last = tuple(row.data["last_review"]) if state is not None and row.data.get("last_review") else None
    # rows without ids (a database that returns none from bulk_create) cannot be placed in (time, id) order
    placeable = all(r.id is not None for r in new)
    new = sorted(new, key=lambda r: r.order) if placeable else new
    if placeable and state is not None and (last is None or new[0].order > last):
        last = _observe(state, new, spec=spec) or last
        row.review_count += len(new)
        # the stored newest can be later: reviews of concepts outside the encoder do not move `last`
        newest = new[-1].at
        row.newest_review_at = newest if row.newest_review_at is None else max(row.newest_review_at, newest)
        row.data, row.history_states = spec.stored(state, last_review=last)
        return True
    return False  # a late review, no state yet, or one encoded for another policy: the full history is the truth


def rebuild_state(row: LearnerState, *, spec: StateSpec) -> None:
    """The row's state, counters included, from the learner's full history in `spec`'s encoding."""
    _take_history(row, history(learner_id=row.learner_id, curriculum_id=row.curriculum_id), spec=spec)


def _take_history(row: LearnerState, reviews: list[_Review], *, spec: StateSpec) -> None:
    """The row's state and counters from ``reviews``, the learner's full history in (time, id) order."""
    state, last = state_from_history(reviews, spec=spec)
    row.review_count = len(reviews)
    row.newest_review_at = reviews[-1].at if reviews else None
    row.data, row.history_states = spec.stored(state, last_review=last)
