"""A learner's history as the serving encoder sees it: the reviews in time order and each concept's estimated
recall between them (for the learner's admin page; curriculum/charts.py draws it)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from django.db.models import Count
from django.utils import timezone

from . import selectors
from .models import Curriculum, Learner, ReviewLog

# The newest reviews a page replays (a learner with more shows the latest ones, and says so).
MAX_REVIEWS = 2000


@dataclass(frozen=True)
class RecallHistory:
    """One learner in one curriculum.

    ``reviews``: (seconds since the epoch, concept key, correct, grade or None) in time order.
    ``times``: float64 [T] seconds since the epoch; ``recall``: float64 [T, K], the encoder's estimated recall
    of ``concepts`` (the K reviewed concepts, in action order) at each time, 0 before a concept's first review.
    ``truncated``: how many older reviews were left out (MAX_REVIEWS).
    ``review_count`` and ``concept_count``: the learner's reviews and distinct reviewed concepts in the curriculum,
    counted by the database (not from the replayed window, which MAX_REVIEWS may cut).
    """

    curriculum: Curriculum
    reviews: list[tuple[float, str, bool, int | None]]
    concepts: list[str]
    times: np.ndarray
    recall: np.ndarray
    truncated: int
    review_count: int = 0
    concept_count: int = 0


def learner_curricula(*, learner: Learner) -> list[Curriculum]:
    """The curricula the learner has reviews in, by key."""
    ids = ReviewLog.objects.filter(learner=learner).values_list("curriculum_id", flat=True).distinct()
    return list(Curriculum.objects.filter(pk__in=list(ids)).order_by("key"))


def recall_history(*, learner: Learner, curriculum: Curriculum, points: int = 300,
                   now: dt.datetime | None = None) -> RecallHistory:
    """Replay the learner's reviews through the curriculum's serving encoder (selectors.serving_spec) and sample
    every reviewed concept's estimated recall at ``points`` times from the first review to ``now``, plus just
    before and at each review (so the jumps show). Concepts beyond the encoder's (a curriculum that grew
    since its active version) are left out of the recall, not of the reviews."""
    spec = selectors.serving_spec(curriculum_id=curriculum.pk)
    encoder = spec.encoder
    rows = list(
        ReviewLog.objects.filter(learner=learner, curriculum=curriculum)
        .order_by("-reviewed_at", "-id").values_list("reviewed_at", "concept__key", "concept__position", "correct",
                                                      "grade")[: MAX_REVIEWS + 1]
    )
    logged = ReviewLog.objects.filter(learner=learner, curriculum=curriculum)
    review_count = len(rows)
    concept_count = len({key for _, key, _, _, _ in rows})
    if len(rows) > MAX_REVIEWS:
        counts = logged.aggregate(reviews=Count("id"), concepts=Count("concept", distinct=True))
        review_count, concept_count = counts["reviews"], counts["concepts"]
        rows = rows[:MAX_REVIEWS]
    truncated = review_count - len(rows)
    rows.reverse()
    reviews = [(at.timestamp(), key, bool(correct), grade) for at, key, _, correct, grade in rows]
    positions = {key: position for _, key, position, _, _ in rows if position < encoder.num_concepts}
    concepts = sorted(positions, key=positions.get)
    if not rows:
        return RecallHistory(curriculum, [], [], np.zeros(0), np.zeros((0, 0)), 0, 0, 0)

    end = max((now or timezone.now()).timestamp(), reviews[-1][0] + 1.0)
    review_times = np.array([r[0] for r in reviews])
    grid = np.linspace(review_times[0], end, points)
    # Sample times: the grid, a moment before each review, and each review (after it is applied).
    times = np.unique(np.concatenate([grid, np.maximum(review_times - 1e-3, review_times[0]), review_times]))
    columns = np.array([positions[key] for key in concepts], dtype=np.int64)
    recall = np.zeros((len(times), len(concepts)))
    memory = encoder.init_memory(1)
    cursor = 0
    # Between reviews the memory is fixed: evaluate its recall for all the times up to the next review at once.
    for index in range(len(reviews) + 1):
        upto = reviews[index][0] if index < len(reviews) else np.inf
        stop = int(np.searchsorted(times, upto, side="left"))
        if stop > cursor:
            segment = times[cursor:stop]
            batch = memory.take(np.zeros(len(segment), dtype=np.int64))
            recall[cursor:stop] = encoder.recall(batch, segment)[:, columns]
            cursor = stop
        if index < len(reviews):
            t, key, correct, grade = reviews[index]
            position = rows[index][2]
            if position < encoder.num_concepts:
                encoder.update(memory, np.array([0]), np.array([position]), np.array([t]), np.array([correct]),
                               np.array([grade or 0]))
    return RecallHistory(curriculum, reviews, concepts, times, recall, truncated, review_count, concept_count)
