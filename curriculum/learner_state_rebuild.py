"""Bulk rebuilds of the stored serving states (learner_states.py keeps them in step review by review): after a
promotion or rollback (`reencode_states`, a Celery task) and around a bulk import of reviews (`invalidate_states` and
`refresh_states` inside its transaction, `rebuild_states` after it). Rows are locked as the live fold-in locks them
(`learner_states.locked_states`), in short batches, so that a live review waits little.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from django.db import transaction
from django.utils import timezone

from .learner_states import create_missing_states, locked_states, rebuild_state, save_state
from .models import LearnerState
from .selectors import serving_spec
from .state_specs import StateSpec


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
            rows = list(locked_states(curriculum_id=curriculum_id, learner_ids=learner_ids[start:start + batch_size]))
            now = timezone.now()
            for row in rows:
                if spec.load(row.data, row.history_states) is None:
                    rebuild_state(row, spec=spec)
                    save_state(row, now=now)
                    rebuilt += 1
    return rebuilt


def invalidate_states(*, curriculum_id: int, learner_ids: Sequence[int], chunk_size: int = 1000) -> int:
    """Empty the stored serving states of these learners (an empty state is rebuilt from the history when read or
    when a review is folded in). For bulk writers at the end of their transaction: the rows are locked in
    learner order (as apply_reviews locks them) only from here to the commit. Returns how many were emptied."""
    emptied = 0
    for start in range(0, len(learner_ids), chunk_size):
        part = sorted(learner_ids[start:start + chunk_size])
        locked = list(locked_states(curriculum_id=curriculum_id, learner_ids=part).values_list("pk", flat=True))
        emptied += LearnerState.objects.filter(pk__in=locked).update(data={}, history_states=None,
                                                                     updated_at=timezone.now())
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
        built = {l: _rebuilt(curriculum_id=curriculum_id, learner_id=l, spec=spec) for l in part}
        create_missing_states(curriculum_id=curriculum_id, learner_ids=part)
        with transaction.atomic():
            rows = list(locked_states(curriculum_id=curriculum_id, learner_ids=part))
            now = timezone.now()
            for row in rows:
                if row.data:  # folded in meanwhile (from the full history, the committed bulk write included)
                    continue
                _take(row, built[row.learner_id])
                save_state(row, now=now)
                stored += 1
    return stored


def refresh_states(*, curriculum_id: int, learner_ids: Sequence[int], max_learners: int = 20_000,
                   lock_chunk: int = 500) -> list[int]:
    """For a bulk writer, inside its transaction, at its end: bring these learners' stored serving states up to
    date with the history (this transaction's reviews included) so that the commit publishes them together.

    Each state is computed first without a lock; the rows are then locked (in learner order, as apply_reviews
    locks them) only to store them, from there to the commit; a row that changed meanwhile (a live review folded
    in) is computed again, unlocked (up to three passes), and one that changed even then is emptied under its
    lock (an empty state is rebuilt from the history when read) and returned for later. Learners without a
    stored state, and every learner when there are more than ``max_learners`` (the states are held in memory),
    are left out: their states (emptied, for the latter) are for ``rebuild_states`` after the commit. Returns
    those learner ids.
    """
    ids = sorted(set(learner_ids))
    if len(ids) > max_learners:
        invalidate_states(curriculum_id=curriculum_id, learner_ids=ids)
        return ids
    spec = serving_spec(curriculum_id=curriculum_id)
    seen = _updated_at(curriculum_id=curriculum_id, learner_ids=ids, chunk=lock_chunk)
    built: dict[int, LearnerState] = {}
    todo = sorted(seen)
    for _ in range(3):  # live reviews folded in meanwhile: compute those again (each pass is shorter)
        for learner_id in todo:
            built[learner_id] = _rebuilt(curriculum_id=curriculum_id, learner_id=learner_id, spec=spec)
        now_seen = _updated_at(curriculum_id=curriculum_id, learner_ids=todo, chunk=lock_chunk)
        todo = sorted(l for l, at in now_seen.items() if at != seen[l])
        seen.update(now_seen)
        if not todo:
            break
    present, emptied = sorted(seen), []
    for start in range(0, len(present), lock_chunk):
        rows = list(locked_states(curriculum_id=curriculum_id, learner_ids=present[start:start + lock_chunk]))
        now = timezone.now()
        for row in rows:
            if row.updated_at == seen[row.learner_id]:
                _take(row, built[row.learner_id])
            else:  # changed again: emptied now (rebuilt from the history when read), rebuilt after the commit
                row.data, row.history_states = {}, None
                emptied.append(row.learner_id)
            save_state(row, now=now)
    return sorted([l for l in ids if l not in seen] + emptied)


def _rebuilt(*, curriculum_id: int, learner_id: int, spec: StateSpec) -> LearnerState:
    """An unsaved row holding the learner's state rebuilt from the full history (computed without a lock)."""
    row = LearnerState(learner_id=learner_id, curriculum_id=curriculum_id, review_count=0)
    rebuild_state(row, spec=spec)
    return row


def _take(row: LearnerState, fresh: LearnerState) -> None:
    """Copy a rebuilt state and its counters onto the locked row."""
    row.data, row.history_states = fresh.data, fresh.history_states
    row.review_count, row.newest_review_at = fresh.review_count, fresh.newest_review_at


def _updated_at(*, curriculum_id: int, learner_ids: Sequence[int], chunk: int) -> dict[int, dt.datetime]:
    """learner id -> updated_at of its stored row (learners without one are absent), read unlocked in chunks."""
    seen: dict[int, dt.datetime] = {}
    for start in range(0, len(learner_ids), chunk):
        seen.update(LearnerState.objects.filter(curriculum_id=curriculum_id,
                                                learner_id__in=learner_ids[start:start + chunk])
                    .values_list("learner_id", "updated_at"))
    return seen
