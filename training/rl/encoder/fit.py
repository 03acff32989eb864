"""Fitting the encoder to a review log: ``fit_encoder_config`` (FSRS-6's parameters and same-day table, fitted by
``fsrs_fit.fit_fsrs6`` to the log's time-ordered train part) and the (learner, concept) sequence helper shared with
calibration (NumPy only).

The half-life estimator's per-concept factors (``ConceptStabilityFit``, before FSRS-6) are no longer fitted: FSRS-6's
initial stabilities by first grade and its per-card difficulty subsume them (see ``memory.py``). Configs that carry
factors keep serving with them.
"""
from __future__ import annotations

import numpy as np

from .config import EncoderConfig
from .fsrs_fit import Fsrs6Fit, fit_fsrs6
from .memory import effective_grade

TRAIN_FRACTION = 0.7  # as the calibration report (srs-benchmark): the earlier 70% of the log by time


def concept_sequences(learner: np.ndarray, concept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows in (learner, time) order, n > 0 -> (order, starts): ``order`` sorts them by (learner, concept) and keeps
    time order within (stable), ``starts`` are the positions in that order where a (learner, concept) sequence
    begins."""
    n = len(learner)
    order = np.lexsort((np.arange(n), concept, learner))
    key_l, key_c = learner[order], concept[order]
    starts = np.flatnonzero(np.r_[True, (key_l[1:] != key_l[:-1]) | (key_c[1:] != key_c[:-1])])
    return order, starts


def time_split(t: np.ndarray, *, train_fraction: float = TRAIN_FRACTION) -> tuple[np.ndarray, float | None]:
    """The time-ordered split of a log, as srs-benchmark splits: t float [N] seconds -> (train indices int64 in time
    order, the test part's first time in seconds or None when there is no test part).

    The cut is the time of the review at position ``int(N * train_fraction)`` in time order; the train part is every
    review strictly before it, so reviews tied at the cut all fall on the test side (never split by storage order).
    It can be empty (every review at one time). ``train_fraction`` 1: everything, no test part. The encoder's fit
    and the calibration report both split with this. ValueError when train_fraction is not in (0, 1].
    """
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction: expected a number in (0, 1], got {train_fraction!r}")
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    by_time = np.argsort(t, kind="stable")
    k = int(t.size * train_fraction)
    if k >= t.size:
        return by_time, None
    cut = float(t[by_time[k]])
    return by_time[: int(np.searchsorted(t[by_time], cut, side="left"))], cut


def train_part(t: np.ndarray, *, train_fraction: float = TRAIN_FRACTION) -> np.ndarray:
    """Indices (int64) of the train part of ``time_split`` (reviews strictly before the cut; possibly none)."""
    return time_split(t, train_fraction=train_fraction)[0]


def fit_encoder_config(
    *, learner, concept, t, correct, grade, num_concepts: int, train_fraction: float = TRAIN_FRACTION,
    horizon_s: float | None = None,
) -> tuple[EncoderConfig, Fsrs6Fit]:
    """The FSRS-6 encoder fitted to a log's time-ordered train part: arrays [N] (learner, concept int; t float
    seconds; correct bool; grade int 0-4, 0 = none recorded), any order -> (EncoderConfig, the fit).

    The fit sees each review's ``effective_grade`` (the grade the encoder counts). Fewer long-term reviews than the
    fit needs in the train part (or none at all): the parameters stay the defaults (``fsrs6_parameters`` None; the fit's ``reason`` says why) and the
    same-day table is still the log's. ValueError when the arrays differ in length or the log is empty.
    """
    arrays = [np.asarray(a).reshape(-1) for a in (learner, concept, t, correct, grade)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError(f"learner, concept, t, correct, grade: expected equal lengths, got {[a.size for a in arrays]}")
    if not arrays[0].size:
        raise ValueError("the log is empty: the encoder needs reviews to be fitted to")
    learner, concept, t, correct, grade = arrays
    part = train_part(t, train_fraction=train_fraction)
    g = effective_grade(correct[part], grade[part])
    fit = fit_fsrs6(learner=learner[part], concept=concept[part], t=t[part], grade=g, correct=correct[part])
    extra = {} if horizon_s is None else {"horizon_s": float(horizon_s)}
    config = EncoderConfig(num_concepts=num_concepts, estimator="fsrs6",
                           fsrs6_parameters=fit.parameters if fit.fitted else None,
                           fsrs6_same_day_stability=fit.same_day_stability, **extra)
    return config, fit
