"""Calibration report of a curriculum's review log, as the spaced-repetition benchmark (srs-benchmark) measures it.

The log is split by time: the first ``train_fraction`` of reviews (by ``reviewed_at``) is the train part, the rest
the test part. The model is FSRS-6 with its parameters and same-day stabilities fitted on the train part only
(``training.rl.encoder.fsrs_fit``); every review then feeds the memory, and each review's prediction is the
retrievability of that (learner, concept) just before it. Scored: test reviews that are not a card's (learner +
concept's) first review. Two sections: ``excluding_same_day`` (only reviews a day or more after the previous review
of the card, the benchmark's rule) and ``including_same_day`` (all of them). Beside the model: ``avg`` (the mean
outcome of all the train part's reviews), ``moving_avg`` (each learner's moving average of their earlier
outcomes, ``training.rl.calibration.moving_average``) and ``fsrs6_default`` (FSRS-6 with the default parameters and
the ``fsrs`` package's same-day rule). Metrics per learner, averaged weighted by reviews (``unweighted`` beside).
"""
from __future__ import annotations

import datetime as dt

from collections.abc import Iterator
from typing import Any

import numpy as np

from training.rl import calibration as metrics
from training.rl.encoder import fsrs6
from training.rl.encoder.fit import time_split
from training.rl.encoder.fsrs_fit import fit_fsrs6, grades_of

from .models import Curriculum
from .reviews.reader import iter_review_chunks

TRAIN_FRACTION = 0.7
CHUNK_REVIEWS = 20_000


def _review_chunks(*, curriculum: Curriculum, chunk_size: int) -> Iterator[dict[str, np.ndarray]]:
    """The curriculum's reviews in (learner, time) order, in chunks that end at a learner boundary (the reader's
    chunks may split a learner; the last learner of each is held back and joined to the next)."""
    held: dict[str, np.ndarray] | None = None
    for chunk in iter_review_chunks(curriculum=curriculum, chunk_size=chunk_size):
        if held is not None:
            chunk = {name: np.concatenate([held[name], chunk[name]]) for name in chunk}
        last = chunk["learner"][-1]
        cut = int(np.searchsorted(chunk["learner"], last))  # learners ascend within the stream
        held = {name: column[cut:] for name, column in chunk.items()}
        if cut:
            yield {name: column[:cut] for name, column in chunk.items()}
    if held is not None and len(held["learner"]):
        yield held


PREDICTORS = ("model", "avg", "moving_avg", "fsrs6_default")
RELIABILITY_BINS = 10


def _all_reviews(*, curriculum: Curriculum, chunk_size: int) -> dict[str, np.ndarray]:
    chunks = list(_review_chunks(curriculum=curriculum, chunk_size=chunk_size))
    keys = ("learner", "concept", "t", "correct", "grade")
    if not chunks:
        return {"learner": np.zeros(0, np.int64), "concept": np.zeros(0, np.int64), "t": np.zeros(0),
                "correct": np.zeros(0, bool), "grade": np.zeros(0, np.int64)}
    return {k: np.concatenate([c[k] for c in chunks]) for k in keys}


def _card_history(*, learner, concept, correct) -> tuple[np.ndarray, np.ndarray]:
    """For reviews in time order within each card: the review's index in its card (0 = first) and the lapses
    (wrong reviews) of the card before it: int64 [N] each."""
    order, starts, card = fsrs6.card_sequences(learner, concept)
    n = order.size
    index = np.zeros(n, dtype=np.int64)
    lapses = np.zeros(n, dtype=np.int64)
    if not n:
        return index, lapses
    pos = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    index[order] = pos
    wrong = (~np.asarray(correct, dtype=bool)[order]).astype(np.int64)
    before = np.cumsum(wrong) - wrong
    lapses[order] = before - np.repeat(before[starts], np.diff(np.r_[starts, n]))
    return index, lapses


def calibration_report(
    *, curriculum: Curriculum, train_fraction: float = TRAIN_FRACTION, chunk_size: int = CHUNK_REVIEWS,
) -> dict[str, Any]:
    """The fitted FSRS-6 model against the baselines on the later part of the curriculum's log (see the module).

    Returns ``{"curriculum", "reviews", "split": {"train_fraction", "test_from"}, "results": {"excluding_same_day":
    section, "including_same_day": section}}``, a section being ``{"n", "model", "avg", "moving_avg",
    "fsrs6_default"}`` with per predictor ``{"log_loss", "auc", "rmse_bins"}`` (review-weighted averages over
    learners) and extra keys (``unweighted``, ``reliability``; the model's ``fit``). Undefined numbers are None.
    ValueError when train_fraction is not strictly between 0 and 1.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction: expected a number between 0 and 1, got {train_fraction!r}")
    r = _all_reviews(curriculum=curriculum, chunk_size=chunk_size)
    total = int(r["t"].size)
    empty_section = {"n": 0, **{name: {"log_loss": None, "auc": None, "rmse_bins": None} for name in PREDICTORS}}
    report = {
        "curriculum": curriculum.key,
        "reviews": total,
        "split": {"train_fraction": train_fraction, "test_from": None},
        "results": {"excluding_same_day": dict(empty_section), "including_same_day": dict(empty_section)},
    }
    if not total:
        return report
    part, cut = time_split(r["t"], train_fraction=train_fraction)  # the encoder's split: it scores what policies see
    report["split"]["test_from"] = dt.datetime.fromtimestamp(cut, tz=dt.timezone.utc).isoformat()
    train = np.zeros(total, dtype=bool)
    train[part] = True
    grade = grades_of(grade=r["grade"], correct=r["correct"])
    y = r["correct"].astype(np.float64)

    fit = fit_fsrs6(learner=r["learner"][train], concept=r["concept"][train], t=r["t"][train],
                    grade=grade[train], correct=r["correct"][train])
    model = fsrs6.replay(r["learner"], r["concept"], r["t"], grade, w=fit.parameters,
                         same_day_stability=fit.same_day_stability)
    default = fsrs6.replay(r["learner"], r["concept"], r["t"], grade)
    index, lapses = _card_history(learner=r["learner"], concept=r["concept"], correct=r["correct"])
    bins = metrics.benchmark_bins(elapsed_days=model["elapsed_days"], review_index=index, lapses=lapses)
    repeat = ~model["first"]
    same_day = repeat & (model["elapsed_days"] < 1)

    constant = float(y[train].mean()) if train.any() else float("nan")
    moving = metrics.moving_average(learner=r["learner"], y=y, start=constant if np.isfinite(constant) else 0.5)
    for section, kind in (("excluding_same_day", repeat & ~same_day), ("including_same_day", repeat)):
        predictions = {"model": model["p"], "avg": np.full(total, constant), "moving_avg": moving,
                       "fsrs6_default": default["p"]}
        scored = kind & ~train
        out: dict[str, Any] = {"n": int(scored.sum())}
        for name in PREDICTORS:
            if not scored.any() or not np.isfinite(constant):
                out[name] = dict(empty_section[name])
                continue
            p = predictions[name][scored]
            out[name] = metrics.score_by_learner(learner=r["learner"][scored], y=y[scored], p=p, bins=bins[scored])
            out[name]["reliability"] = metrics.reliability(y=y[scored], p=p, bins=RELIABILITY_BINS)
        out["avg"]["value"] = constant
        out["model"]["fit"] = fit.to_dict()
        report["results"][section] = out
    return _finite_or_none(report)


def _finite_or_none(value: Any) -> Any:
    """The report with NaN (an undefined metric, e.g. AUC when every outcome is the same) as None: valid JSON."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
