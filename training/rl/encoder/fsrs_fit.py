"""Fit FSRS-6's 21 parameters (and its same-day rule) to the train part of a review log.

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
clipped to [0.01, 0.99]; None when the train part has no same-day review. Fits report it; encoders no longer read
it (the constant cannot see recall fall over the hours after a review).

The same-day stabilities (``fsrs6``'s same-day rule, what encoders read) are fitted after the 21 parameters, by
maximum likelihood on the train part's same-day reviews, on the same power curve (the fitted ``w20``): for each
previous grade g, ``s_g`` minimises ``sum_{i: G'_i = g} l(y_i, R(dt_i, s)) + SMOOTHING / M * sum_{all M} l(y_j,
R(dt_j, s))`` with ``l`` the log loss (p clipped to [1e-6, 1 - 1e-6]) and ``dt`` the fractional days since the
previous review: the grade's own reviews plus SMOOTHING pseudo-reviews like the average same-day review (for a
constant R this is the table's ``(k + SMOOTHING m) / (n + SMOOTHING)``). The one-dimensional minimum over
``log s`` in [SAME_DAY_STABILITY_MIN, SAME_DAY_STABILITY_MAX] is found on a grid of ``GRID_POINTS`` then refined
by golden-section search in the grid cell around the best point.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import fsrs6

MIN_LONG_TERM_REVIEWS = 512  # as the fsrs package's optimizer (one mini-batch): fewer fit mostly noise
SMOOTHING = 2.0
GRID_POINTS = 41
GOLDEN_STEPS = 40
LOSS_EPS = 1e-6


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
    same_day_stability: tuple[float, ...] | None = None

    def to_dict(self) -> dict:
        """JSON-ready: lists for the tuples."""
        out = asdict(self)
        out["parameters"] = list(self.parameters)
        out["same_day_recall"] = None if self.same_day_recall is None else list(self.same_day_recall)
        out["same_day_stability"] = None if self.same_day_stability is None else list(self.same_day_stability)
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


def fit_same_day_stability(*, previous_grade, elapsed_days, correct, w=fsrs6.DEFAULT_PARAMETERS,
                            ) -> tuple[float, ...] | None:
    """The same-day stabilities (days) by maximum likelihood (see the module): previous_grade int [M] 1-4,
    elapsed_days float [M] in [0, 1), correct bool [M], ``w`` the parameters whose curve (w20) they live on ->
    4 floats or None when M is 0. ValueError when the arrays differ in length."""
    arrays = [np.asarray(a).reshape(-1) for a in (previous_grade, elapsed_days, correct)]
    if len({a.size for a in arrays}) != 1:
        raise ValueError(f"previous_grade, elapsed_days, correct: expected equal lengths, got {[a.size for a in arrays]}")
    grade, dt, y = arrays[0].astype(np.int64), arrays[1].astype(np.float64), arrays[2].astype(np.float64)
    if not y.size:
        return None
    w = np.asarray(w, dtype=np.float64)

    def loss(log_s: float, rows: np.ndarray) -> float:
        p = np.clip(fsrs6.forgetting_curve(dt[rows], np.exp(log_s), w), LOSS_EPS, 1.0 - LOSS_EPS)
        return float(-np.sum(y[rows] * np.log(p) + (1.0 - y[rows]) * np.log1p(-p)))

    everyone = np.arange(y.size)
    lo, hi = np.log(fsrs6.SAME_DAY_STABILITY_MIN), np.log(fsrs6.SAME_DAY_STABILITY_MAX)
    grid = np.linspace(lo, hi, GRID_POINTS)
    pooled = np.array([loss(x, everyone) for x in grid]) * (SMOOTHING / y.size)
    out = []
    for g in range(1, 5):
        own = np.flatnonzero(grade == g)

        def objective(x: float) -> float:
            return loss(x, own) + SMOOTHING / y.size * loss(x, everyone)

        values = np.array([loss(x, own) for x in grid]) + pooled
        best = int(np.argmin(values))
        a, b = grid[max(best - 1, 0)], grid[min(best + 1, GRID_POINTS - 1)]
        ratio = (np.sqrt(5.0) - 1.0) / 2.0
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        fc, fd = objective(c), objective(d)
        for _ in range(GOLDEN_STEPS):
            if fc <= fd:
                b, d, fd = d, c, fc
                c = b - ratio * (b - a)
                fc = objective(c)
            else:
                a, c, fc = c, d, fd
                d = a + ratio * (b - a)
                fd = objective(d)
        candidates = [(values[best], grid[best]), (fc, c), (fd, d)]
        out.append(float(np.exp(min(candidates)[1])))
    return tuple(float(v) for v in np.clip(out, fsrs6.SAME_DAY_STABILITY_MIN, fsrs6.SAME_DAY_STABILITY_MAX))


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
    same_pair = np.zeros(t.size, dtype=bool)  # (np.r_[False, diff] would be one long for an empty train part)
    same_pair[1:] = np.diff(card[order]) == 0
    prev[order[same_pair]] = order[np.flatnonzero(same_pair) - 1]
    has_prev = prev >= 0
    whole_days = np.where(has_prev, np.floor((t - t[np.maximum(prev, 0)]) / fsrs6.DAY_S), -1)
    long_term = int(np.count_nonzero(has_prev & (whole_days >= 1)))
    same_day = has_prev & (whole_days < 1)
    table = fit_same_day_recall(previous_grade=g[prev[same_day]], correct=correct[same_day])

    def result(parameters, fitted: bool, reason: str) -> Fsrs6Fit:
        stability = fit_same_day_stability(
            previous_grade=g[prev[same_day]], elapsed_days=(t[same_day] - t[prev[same_day]]) / fsrs6.DAY_S,
            correct=correct[same_day], w=parameters)
        return Fsrs6Fit(parameters=tuple(float(x) for x in parameters), same_day_recall=table, fitted=fitted,
                        reason=reason, long_term_reviews=long_term, same_day_reviews=int(same_day.sum()),
                        same_day_stability=stability)

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
