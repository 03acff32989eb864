"""Per-learner serving state, kept in step with the review log: what a recommendation reads in O(1).

A `LearnerState` row holds one learner's `training.rl.encoder.EncodedLearnerState` for one curriculum, encoded
with the active policy's encoder (or the default one while no policy is active), and the identity of that
encoding (`curriculum.state_specs`): a state stored under another identity is rebuilt from the history. Reviews
are folded in as they are recorded; a review that sorts before the newest one applied (a late review) rebuilds
the state from the full history, so the result is always the one `from_history` gives, whatever the order reviews
arrived in.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction
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
    from .reviews.reader import iter_review_chunks

    reviews: list[_Review] = []
    for chunk in iter_review_chunks(curriculum=curriculum_id, learner_id=learner_id, with_ids=True):
        reviews.extend(
            _Review(dt.datetime.fromtimestamp(t, tz=dt.timezone.utc), pk, position, correct, grade)
            for t, pk, position, correct, grade in zip(
                chunk["t"].tolist(), chunk["id"].tolist(), chunk["concept"].tolist(), chunk["correct"].tolist(),
                chunk["grade"].tolist(),
            )
        )
    return reviews


def state_from_history(reviews: Iterable[_Review], *, spec: StateSpec) -> tuple[EncodedLearnerState, tuple[float, int] | None]:
    """A state built from a learner's full history, and the order key of its newest review."""
    state = spec.new_state()
    return state, _observe(state, reviews, spec=spec)


def apply_reviews(*, reviews: Sequence[ReviewLog]) -> None:
    """Fold newly stored reviews into their learners' states; call inside the transaction that stored them.

    The state rows are locked (`select_for_update`, in a fixed order) so concurrent batches for one learner
    apply one after the other; a batch that does not extend the newest applied review rebuilds from history,
    which then holds every committed review and this transaction's own.
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
        # Rows are created empty first (sorted, so two batches cannot wait on each other's inserts), then locked.
        LearnerState.objects.bulk_create(
            [LearnerState(learner_id=l, curriculum_id=curriculum_id) for l in learner_ids], ignore_conflicts=True
        )
        rows = list(
            LearnerState.objects.select_for_update()
            .filter(curriculum_id=curriculum_id, learner_id__in=learner_ids)
            .order_by("learner_id")
        )
        now = timezone.now()
        for row in rows:
            _fold(row, groups[(curriculum_id, row.learner_id)], spec=spec)
            _save(row, now=now)


def _save(row: LearnerState, *, now: dt.datetime) -> None:
    # one UPDATE per row: bulk_update's CASE over large JSON values costs more than the round trips
    LearnerState.objects.filter(pk=row.pk).update(
        data=row.data, review_count=row.review_count, newest_review_at=row.newest_review_at, updated_at=now
    )


def _fold(row: LearnerState, new: list[_Review], *, spec: StateSpec) -> None:
    state = spec.load(row.data)
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
        row.data = spec.dump(state, last_review=last)
    else:
        # a late review, no state yet, or one encoded for another policy: the full history is the truth
        _rebuild(row, spec=spec)


def _rebuild(row: LearnerState, *, spec: StateSpec) -> None:
    """The row's state, counters included, from the learner's full history in `spec`'s encoding."""
    reviews = history(learner_id=row.learner_id, curriculum_id=row.curriculum_id)
    state, last = state_from_history(reviews, spec=spec)
    row.review_count = len(reviews)
    row.newest_review_at = reviews[-1].at if reviews else None
    row.data = spec.dump(state, last_review=last)


def reencode_states(*, curriculum_id: int, batch_size: int = 20) -> int:
    """Re-encode the curriculum's stored learner states that are not in the active policy's encoding (after a
    promotion or rollback: each version carries its own fitted encoder), so recommendations read them in O(1)
    again instead of rebuilding from the history on every request. Returns how many states were rebuilt.

    Batches of rows are locked as `apply_reviews` locks them, so a review batch arriving meanwhile is folded in
    after the rebuild (or the rebuild sees it committed); small batches keep those waits short (bench/api_load.py:
    with 200 learners a batch, review posts waited up to ~3 s during the re-encoding). The active policy is read
    again for every batch: when another promotion happens midway, the rest is encoded for that one (its own task
    then finds little to do).
    """
    learner_ids = list(
        LearnerState.objects.filter(curriculum_id=curriculum_id).order_by("learner_id").values_list("learner_id", flat=True)
    )
    rebuilt = 0
    for start in range(0, len(learner_ids), batch_size):
        with transaction.atomic():
            spec = serving_spec(curriculum_id=curriculum_id)
            rows = list(
                LearnerState.objects.select_for_update()
                .filter(curriculum_id=curriculum_id, learner_id__in=learner_ids[start:start + batch_size])
                .order_by("learner_id")
            )
            now = timezone.now()
            for row in rows:
                if spec.load(row.data) is None:
                    _rebuild(row, spec=spec)
                    _save(row, now=now)
                    rebuilt += 1
    return rebuilt


def invalidate_states(*, curriculum_id: int, learner_ids: Sequence[int], chunk_size: int = 1000) -> int:
    """Empty the stored serving states of these learners (an empty state is rebuilt from the history when read or
    when a review is folded in). For bulk writers at the end of their transaction: the rows are locked in
    learner order (as apply_reviews locks them) only from here to the commit. Returns how many were emptied."""
    emptied = 0
    for start in range(0, len(learner_ids), chunk_size):
        part = sorted(learner_ids[start:start + chunk_size])
        locked = list(
            LearnerState.objects.select_for_update().filter(curriculum_id=curriculum_id, learner_id__in=part)
            .order_by("learner_id").values_list("pk", flat=True)
        )
        emptied += LearnerState.objects.filter(pk__in=locked).update(data={}, updated_at=timezone.now())
    return emptied


def rebuild_states(*, curriculum_id: int, learner_ids: Sequence[int], batch_size: int = 10) -> int:
    """Rebuild these learners' serving states from their histories after a bulk write has committed (creating
    missing rows). Each state is computed without a lock; its row is then locked only to store it, and only if
    it is still empty or missing (a review folded in meanwhile rebuilt it from the full history already), so a
    live review waits a few milliseconds at most. Returns how many states were stored."""
    ids = sorted(set(learner_ids))
    stored = 0
    for start in range(0, len(ids), batch_size):
        part = ids[start:start + batch_size]
        spec = serving_spec(curriculum_id=curriculum_id)
        built = {}
        for learner_id in part:
            row = LearnerState(learner_id=learner_id, curriculum_id=curriculum_id, review_count=0)
            _rebuild(row, spec=spec)
            built[learner_id] = row
        LearnerState.objects.bulk_create(
            [LearnerState(learner_id=l, curriculum_id=curriculum_id) for l in part], ignore_conflicts=True
        )
        with transaction.atomic():
            rows = list(
                LearnerState.objects.select_for_update().filter(curriculum_id=curriculum_id, learner_id__in=part)
                .order_by("learner_id")
            )
            now = timezone.now()
            for row in rows:
                if row.data:  # folded in meanwhile (from the full history, the committed bulk write included)
                    continue
                fresh = built[row.learner_id]
                row.data, row.review_count, row.newest_review_at = fresh.data, fresh.review_count, fresh.newest_review_at
                _save(row, now=now)
                stored += 1
    return stored


def refresh_states(*, curriculum_id: int, learner_ids: Sequence[int], max_learners: int = 20_000,
                   lock_chunk: int = 500) -> list[int]:
    """For a bulk writer, inside its transaction, at its end: bring these learners' stored serving states up to
    date with the history (this transaction's reviews included) so that the commit publishes them together.

    Each state is computed first without a lock; the rows are then locked (in learner order, as apply_reviews
    locks them) only to store them, from there to the commit; a row that changed meanwhile (a live review folded
    in) is computed again, unlocked (up to three passes), and one that changed even then is emptied under its
    lock (an empty state is rebuilt from the history when read) and returned for later. Learners without a stored state, and every learner when there are more
    than ``max_learners`` (the states are held in memory), are left out: their states (emptied, for the latter)
    are for ``rebuild_states`` after the commit. Returns those learner ids.
    """
    ids = sorted(set(learner_ids))
    if len(ids) > max_learners:
        invalidate_states(curriculum_id=curriculum_id, learner_ids=ids)
        return ids
    spec = serving_spec(curriculum_id=curriculum_id)
    seen: dict[int, dt.datetime] = {}
    for start in range(0, len(ids), lock_chunk):
        seen.update(LearnerState.objects.filter(curriculum_id=curriculum_id, learner_id__in=ids[start:start + lock_chunk])
                    .values_list("learner_id", "updated_at"))
    built: dict[int, LearnerState] = {}
    todo = sorted(seen)
    for _ in range(3):  # live reviews folded in meanwhile: compute those again (each pass is shorter)
        for learner_id in todo:
            row = LearnerState(learner_id=learner_id, curriculum_id=curriculum_id, review_count=0)
            _rebuild(row, spec=spec)
            built[learner_id] = row
        now_seen = {}
        for start in range(0, len(todo), lock_chunk):
            now_seen.update(LearnerState.objects.filter(curriculum_id=curriculum_id,
                                                        learner_id__in=todo[start:start + lock_chunk])
                            .values_list("learner_id", "updated_at"))
        todo = sorted(l for l, at in now_seen.items() if at != seen[l])
        seen.update(now_seen)
        if not todo:
            break
    present, emptied = sorted(seen), []
    for start in range(0, len(present), lock_chunk):
        rows = list(LearnerState.objects.select_for_update()
                    .filter(curriculum_id=curriculum_id, learner_id__in=present[start:start + lock_chunk])
                    .order_by("learner_id"))
        now = timezone.now()
        for row in rows:
            if row.updated_at == seen[row.learner_id]:
                fresh = built[row.learner_id]
                row.data, row.review_count, row.newest_review_at = fresh.data, fresh.review_count, fresh.newest_review_at
            else:  # changed again: emptied now (rebuilt from the history when read), rebuilt after the commit
                row.data = {}
                emptied.append(row.learner_id)
            _save(row, now=now)
    return sorted([l for l in ids if l not in seen] + emptied)
