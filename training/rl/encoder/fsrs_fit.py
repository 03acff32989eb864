"""Fit FSRS-6's 21 parameters (and the same-day recall table) to the train part of a review log.

The 21 parameters come from fsrs-rs (the Rust optimizer Anki uses, through ``fsrs-rs-python``): it pre-trains
the first-review stabilities, then trains all parameters on every review's history (``FSRSItem``: the card's
reviews so far, elapsed whole days between them). This module only converts arrays to those items; a (learner,
concept) pair is a card. Why not the ``fsrs`` Python package's ``Optimizer``: it starts from the defaults with
5 epochs of Adam and no pre-training, and on a log simulated with known parameters it barely moves from the
defaults (held-out log loss 0.432 against the truth's 0.418 and the defaults' 0.438, 2,000 reviews), where
fsrs-rs reaches 0.419; it is also pure-Python per review (seconds where fsrs-rs takes milliseconds). The fit is
CPU work for workers and commands.

Small logs: with fewer than ``MIN_LONG_TERM_REVIEWS`` reviews a day or more after the card's previous review
the fit returns the default parameters and says so (``fitted`` False, ``reason``).

The same-day recall table (see ``fsrs6``) is the observed success rate of the train part's same-day reviews after
each previous grade, smoothed towards the rate of all same-day reviews: ``(k + SMOOTHING m) / (n + SMOOTHING)``,
clipped to [0.01, 0.99]; None when the train part has no same-day review.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import fsrs6

MIN_LONG_TERM_REVIEWS = 512  # as the fsrs package's optimizer (one mini-batch): fewer fit mostly noise
SMOOTHING = 2.0


@dataclass(frozen=True)
class Fsrs6Fit:
    """A fitted memory model: ``parameters`` (21 floats), ``same_day_recall`` (4 floats or None), whether the 21
    were fitted (``fitted``; False = defaults, ``reason`` says why), and the counts the fit saw."""

    parameters: tuple[float, ...]
    same_day_recall: tuple[float, ...] | None
    fitted: bool
    reason: str
    long_term_reviews: int
    same_day_reviews: int

    def to_dict(self) -> dict:
        """JSON-ready: lists for the tuples."""
        out = asdict(self)
        out["parameters"] = list(self.parameters)
        out["same_day_recall"] = None if self.same_day_recall is None else list(self.same_day_recall)
        return out


def grades_of(*, grade, correct) -> np.ndarray:
    """Grades 1-4 (int64 [N]): the recorded grade, or 3 / 1 from ``correct`` where none was recorded (0 or missing)."""
    g = np.asarray(grade, dtype=np.int64)
    c = np.asarray(correct, dtype=bool)
    return np.where((g >= 1) & (g <= 4), g, np.where(c, 3, 1))


def fit_same_day_recall(*, previous_grade, correct) -> tuple[float, ...] | None:
    """The same-day table from same-day reviews: previous_grade int [M] 1-4, correct bool [M] -> 4 floats or None."""
    previous_grade = np.asarray(previous_grade, dtype=np.int64)
    correct = np.asarray(correct, dtype=np.float64)
    if not correct.size:
        return None
    overall = correct.mean()
    n = np.bincount(previous_grade - 1, minlength=4)[:4].astype(np.float64)
    k = np.bincount(previous_grade - 1, weights=correct, minlength=4)[:4]
    return tuple(float(v) for v in np.clip((k + SMOOTHING * overall) / (n + SMOOTHING), 0.01, 0.99))


def fit_fsrs6(*, learner, concept, t, grade, correct, min_long_term_reviews: int = MIN_LONG_TERM_REVIEWS,
              ) -> Fsrs6Fit:
    """Fit on reviews (the train part only): learner, concept int [N]; t float [N] seconds since the epoch;
    grade int [N] (1-4, 0 = none recorded); correct bool [N]. Reviews need not be sorted.

    Returns an Fsrs6Fit; ValueError when the arrays differ in length.
    """
    arrays = [np.asarray(a).reshape(-1) for a in (learner, concept, t, grade, correct)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError(f"learner, concept, t, grade, correct: expected equal lengths, got {[a.size for a in arrays]}")
    learner, concept, t, grade, correct = arrays
    t = t.astype(np.float64)
    g = grades_of(grade=grade, correct=correct)
    by_time = np.argsort(t, kind="stable")
    learner, concept, t, g, correct = learner[by_time], concept[by_time], t[by_time], g[by_time], correct[by_time].astype(bool)

    order, starts, card = fsrs6.card_sequences(learner, concept)
    prev = np.full(t.size, -1, dtype=np.int64)  # index of the same pair's previous review
    same_pair = np.r_[False, np.diff(card[order]) == 0]
    prev[order[same_pair]] = order[np.flatnonzero(same_pair) - 1]
    has_prev = prev >= 0
    whole_days = np.where(has_prev, np.floor((t - t[np.maximum(prev, 0)]) / fsrs6.DAY_S), -1)
    long_term = int(np.count_nonzero(has_prev & (whole_days >= 1)))
    same_day = has_prev & (whole_days < 1)
    table = fit_same_day_recall(previous_grade=g[prev[same_day]], correct=correct[same_day])

    def result(parameters, fitted: bool, reason: str) -> Fsrs6Fit:
        return Fsrs6Fit(parameters=tuple(float(x) for x in parameters), same_day_recall=table, fitted=fitted,
                        reason=reason, long_term_reviews=long_term, same_day_reviews=int(same_day.sum()))

    if long_term < min_long_term_reviews:
        return result(fsrs6.DEFAULT_PARAMETERS, False,
                      f"default parameters: {long_term} reviews a day or more after the previous one, "
                      f"the fit needs {min_long_term_reviews}")
    from fsrs_rs_python import FSRS, FSRSItem, FSRSReview

    items = []
    ends = np.r_[starts[1:], t.size]
    for start, end in zip(starts, ends):
        idx = order[start:end]
        days = np.r_[0, np.floor(np.diff(t[idx]) / fsrs6.DAY_S)].astype(np.int64)
        history = [FSRSReview(int(gi), int(di)) for gi, di in zip(g[idx], days)]
        # fsrs-rs refuses a history with no whole day between its reviews (nothing long-term to learn from)
        items += [FSRSItem(history[: i + 1]) for i in range(1, len(history)) if days[1 : i + 1].max() > 0]
    parameters = FSRS(list(fsrs6.DEFAULT_PARAMETERS)).compute_parameters(items)
    parameters = np.clip(np.asarray(parameters, dtype=np.float64), fsrs6.LOWER_BOUNDS, fsrs6.UPPER_BOUNDS)
    return result(fsrs6.check_parameters(parameters), True,
                  f"fitted by fsrs-rs on {long_term} reviews a day or more apart")
