"""How well a recall estimate predicts review outcomes: the spaced-repetition benchmarks' metrics (NumPy only).

Metrics, over reviews with outcome y (1 = correct) and predicted recall p:

* log loss: ``mean(-(y log p + (1 - y) log(1 - p)))`` with p clipped to ``[EPS, 1 - EPS]``;
* AUC: the probability that a random correct review got a higher p than a random wrong one, ties counting
  one half (Mann-Whitney with average ranks); NaN when the outcomes are all one class;
* RMSE (bins): p cut into ``bins`` equal-width bins over [0, 1] (p = 1 in the last); per bin the mean p
  against the observed rate; the root of the count-weighted mean squared difference.

``recall_before_reviews`` gives the state encoder's recall estimate of the reviewed concept just before each
review, from the learner's earlier reviews alone.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .encoder import EncoderConfig, StateEncoder, concept_sequences

EPS = 1e-6
DEFAULT_BINS = 20


def _arrays(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"outcomes and predictions differ in length: {y.size} != {p.size}")
    return y, p


def log_loss(*, y, p, eps: float = EPS) -> float:
    y, p = _arrays(y, p)
    if not y.size:
        return float("nan")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def auc(*, y, p) -> float:
    y, p = _arrays(y, p)
    positives = int(np.count_nonzero(y))
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    sorted_p = p[order]
    # average rank (1-based) of each run of equal predictions
    run_start = np.r_[0, np.flatnonzero(np.diff(sorted_p)) + 1]
    run_end = np.r_[run_start[1:], p.size]
    ranks = np.empty(p.size)
    ranks[order] = np.repeat((run_start + run_end + 1) / 2.0, run_end - run_start)
    return float((ranks[y > 0].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def reliability(*, y, p, bins: int = DEFAULT_BINS) -> list[dict]:
    """Per equal-width bin of p: ``{"lo", "hi", "count", "predicted", "observed"}`` (means; None when empty)."""
    y, p = _arrays(y, p)
    index = np.minimum((np.clip(p, 0.0, 1.0) * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=p, minlength=bins)
    observed = np.bincount(index, weights=y, minlength=bins)
    return [
        {
            "lo": b / bins,
            "hi": (b + 1) / bins,
            "count": int(count[b]),
            "predicted": float(predicted[b] / count[b]) if count[b] else None,
            "observed": float(observed[b] / count[b]) if count[b] else None,
        }
        for b in range(bins)
    ]


def rmse_bins(*, y, p, bins: int = DEFAULT_BINS) -> float:
    table = [row for row in reliability(y=y, p=p, bins=bins) if row["count"]]
    total = sum(row["count"] for row in table)
    if not total:
        return float("nan")
    return float(np.sqrt(sum(row["count"] * (row["predicted"] - row["observed"]) ** 2 for row in table) / total))


def score(*, y, p, bins: int = DEFAULT_BINS) -> dict:
    """All metrics of one predictor: ``{"n", "log_loss", "auc", "rmse_bins", "mean_predicted", "mean_observed"}``."""
    y, p = _arrays(y, p)
    return {
        "n": int(y.size),
        "log_loss": log_loss(y=y, p=p),
        "auc": auc(y=y, p=p),
        "rmse_bins": rmse_bins(y=y, p=p, bins=bins),
        "mean_predicted": float(p.mean()) if y.size else float("nan"),
        "mean_observed": float(y.mean()) if y.size else float("nan"),
    }


def recall_before_reviews(
    *, config: EncoderConfig, learner: np.ndarray, concept: np.ndarray, t: np.ndarray, correct: np.ndarray, grade: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For reviews in (learner, time) order: the encoder's recall of the reviewed concept just before each review
    (float64 [N]), and whether it is the learner's first review of that concept (bool [N]; the estimate is 0).

    The encoder's memory of one concept changes only with reviews of that concept, so each (learner, concept)
    sequence runs as its own one-concept learner: O(1) per review, whatever the number of concepts. The
    encoder's rewards (which average over all concepts) are not needed here.
    """
    learner = np.asarray(learner, dtype=np.int64)
    concept = np.asarray(concept, dtype=np.int64)
    n = learner.size
    p = np.zeros(n)
    first = np.zeros(n, dtype=bool)
    if not n:
        return p, first
    order, starts = concept_sequences(learner, concept)  # within a sequence the reviews keep their time order
    lengths = np.diff(np.r_[starts, n])
    t_sorted = np.asarray(t, dtype=np.float64)[order]
    correct_sorted = np.asarray(correct, dtype=bool)[order]
    grade_sorted = np.asarray(grade, dtype=np.int64)[order]

    # One concept per sequence: the concept's fitted factor (EncoderConfig.concept_stability) is applied to each
    # sequence's first review here, as the full encoder applies it to that concept's.
    encoder = StateEncoder(replace(config, num_concepts=1, concept_stability=None))
    factors = None
    if config.concept_stability is not None:  # a position beyond the fitted ones is unfitted (factor 1)
        positions = concept[order[starts]]
        covering = config.with_num_concepts(int(positions.max()) + 1)
        factors = np.asarray(covering.concept_stability, dtype=np.float64)[positions]
    memory = encoder.init_memory(starts.size)
    zeros = np.zeros(starts.size, dtype=np.int64)
    by_length = np.argsort(-lengths, kind="stable")  # the sequences still running at step k are a prefix
    for k in range(int(lengths.max())):
        rows = by_length[: np.searchsorted(-lengths[by_length], -k, side="left")]
        at = starts[rows] + k
        p[order[at]] = encoder.recall(memory, t_sorted[at], rows=rows)[:, 0]
        is_first = memory.reviews[rows, 0] == 0
        first[order[at]] = is_first
        encoder.update(memory, rows, zeros[: rows.size], t_sorted[at], correct_sorted[at], grade_sorted[at])
        if factors is not None and is_first.any():
            scaled = rows[is_first]
            memory.stability[scaled, 0] = np.minimum(memory.stability[scaled, 0] * factors[scaled],
                                                     config.max_stability_s)
    return p, first
