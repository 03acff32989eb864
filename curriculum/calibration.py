"""Calibration report of a curriculum's review log: does the state encoder's recall estimate predict outcomes?

The log is split by time: the first ``train_fraction`` of reviews (by ``reviewed_at``) is the train part, the
rest the test part. Every review feeds the encoder (its memory is the learner's history), and each review's
prediction is the encoder's recall of that concept just before it. A learner's first review of a concept is
left out of the scores: the encoder knows nothing of it yet (its estimate is 0 by definition). On the test
reviews the encoder is scored beside the constant "average recall" predictor, the mean correctness of the
train reviews (the only use of the train part). Metrics: ``training.rl.calibration``.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from training.rl import calibration as metrics
from training.rl.encoder import EncoderConfig

from .models import Concept, Curriculum, ReviewLog
from .selectors import active_policy, serving_spec

TRAIN_FRACTION = 0.7
CHUNK_REVIEWS = 20_000


def _review_chunks(*, curriculum: Curriculum, chunk_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The curriculum's reviews in (learner, time) order, in chunks that end at a learner boundary."""
    positions = dict(Concept.objects.filter(curriculum=curriculum).values_list("id", "position"))
    rows = (
        ReviewLog.objects.filter(curriculum=curriculum)
        .order_by("learner_id", "reviewed_at", "id")
        .values_list("learner_id", "concept_id", "reviewed_at", "correct", "grade")
        .iterator(chunk_size=chunk_size)
    )
    pending: list[tuple] = []
    for row in rows:
        if len(pending) >= chunk_size and row[0] != pending[-1][0]:
            yield _columns(pending, positions)
            pending = []
        pending.append(row)
    if pending:
        yield _columns(pending, positions)


def _columns(rows: list[tuple], positions: dict[int, int]) -> dict[str, np.ndarray]:
    learner, concept, at, correct, grade = zip(*rows)
    return {
        "learner": np.asarray(learner, dtype=np.int64),
        "concept": np.asarray([positions[c] for c in concept], dtype=np.int64),
        "t": np.asarray([a.timestamp() for a in at], dtype=np.float64),
        "correct": np.asarray(correct, dtype=bool),
        "grade": np.asarray([g or 0 for g in grade], dtype=np.int64),
    }


def _encoder(*, curriculum: Curriculum) -> tuple[EncoderConfig, str]:
    """The encoder serving uses (the active policy's, else the default one) and where it came from."""
    spec = serving_spec(curriculum_id=curriculum.pk)
    active = active_policy(curriculum=curriculum)
    uses_policy = active is not None and bool(active.encoder_identity)
    # one concept's estimate does not depend on how many concepts there are: cover concepts added since training
    config = spec.encoder_config.with_num_concepts(max(spec.num_concepts, curriculum.concepts.count(), 1))
    return config, f"active policy v{active.version}" if uses_policy else "default"


def calibration_report(
    *, curriculum: Curriculum, train_fraction: float = TRAIN_FRACTION, bins: int = metrics.DEFAULT_BINS,
    chunk_size: int = CHUNK_REVIEWS,
) -> dict[str, Any]:
    """The encoder against the constant predictor on the later part of the curriculum's log (see the module)."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction: expected a number between 0 and 1, got {train_fraction!r}")
    config, source = _encoder(curriculum=curriculum)
    reviews = ReviewLog.objects.filter(curriculum=curriculum)
    total = reviews.count()
    cut = None
    if total:
        cut_at = reviews.order_by("reviewed_at", "id").values_list("reviewed_at", flat=True)[int(total * train_fraction)]
        cut = cut_at.timestamp()

    train_correct = train_evaluated = train_reviews = first_reviews = 0
    test_p: list[np.ndarray] = []
    test_y: list[np.ndarray] = []
    for chunk in _review_chunks(curriculum=curriculum, chunk_size=chunk_size):
        p, first = metrics.recall_before_reviews(config=config, **chunk)
        is_train = chunk["t"] < cut
        train_reviews += int(is_train.sum())
        first_reviews += int(first.sum())
        scored_train = is_train & ~first
        train_evaluated += int(scored_train.sum())
        train_correct += int(chunk["correct"][scored_train].sum())
        scored_test = ~is_train & ~first
        test_p.append(p[scored_test])
        test_y.append(chunk["correct"][scored_test])

    y = np.concatenate(test_y) if test_y else np.zeros(0, dtype=bool)
    p = np.concatenate(test_p) if test_p else np.zeros(0)
    constant = train_correct / train_evaluated if train_evaluated else float("nan")
    predictors = {}
    if y.size and train_evaluated:
        predictors = {
            "encoder": metrics.score(y=y, p=p, bins=bins),
            "constant": metrics.score(y=y, p=np.full(y.size, constant), bins=bins),
        }
    return _finite_or_none({
        "curriculum": curriculum.key,
        "reviews": total,
        "split": {
            "train_fraction": train_fraction,
            "cut_at": None if cut is None else cut_at.isoformat(),
            "train_reviews": train_reviews,
            "test_reviews": total - train_reviews,
        },
        "evaluated": {"train": train_evaluated, "test": int(y.size), "first_reviews_excluded": first_reviews},
        "train_mean_recall": constant,
        "predictors": predictors,
        "bins": metrics.reliability(y=y, p=p, bins=bins),
        "encoder": {"source": source, "config": config.to_dict()},
    })


def _finite_or_none(value: Any) -> Any:
    """The report with NaN (an undefined metric, e.g. AUC when every outcome is the same) as None: valid JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
