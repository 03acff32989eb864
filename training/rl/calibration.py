"""How well a recall estimate predicts review outcomes: the spaced-repetition benchmarks' metrics (NumPy only).

Metrics, over reviews with outcome y (1 = correct) and predicted recall p:

* log loss: ``mean(-(y log p + (1 - y) log(1 - p)))`` with p clipped to ``[EPS, 1 - EPS]``;
* AUC: the probability that a random correct review got a higher p than a random wrong one, ties counting
  one half (Mann-Whitney with average ranks); NaN when the outcomes are all one class;
* RMSE (bins): srs-benchmark's, over bins of (elapsed days, review index, lapses), see ``benchmark_bins``;
* reliability: equal-width bins of p, mean p against the observed rate (the calibration plot).

``recall_before_reviews`` gives the state encoder's recall estimate of the reviewed concept just before each
review, from the learner's earlier reviews alone.
"""
from __future__ import annotations

import numpy as np

from .encoder.fit import recall_before_reviews  # noqa: F401  (the replay lives with the encoder's fit, which uses it)

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


def benchmark_bins(*, elapsed_days, review_index, lapses) -> np.ndarray:
    """srs-benchmark's RMSE bins: each review's bin id (int64 [N]) from the elapsed days since the card's previous
    review, the review's index in its card (1 = the second review) and the card's lapses (Again) before it.

    As srs-benchmark's ``rmse_matrix``: elapsed rounded to ``2.48 * 3.62 ** floor(log(x) / log(3.62))`` (2 decimals),
    index to ``1.99 * 1.89 ** floor(log(i) / log(1.89))`` (integer), lapses to ``1.65 * 1.73 ** floor(log(l) /
    log(1.73))`` (integer; 0 stays 0). Elapsed days below 1 (same-day reviews) share the bin of 0.
    """
    x = np.asarray(elapsed_days, dtype=np.float64)
    i = np.asarray(review_index, dtype=np.float64)
    lapse = np.asarray(lapses, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        dt_bin = np.where(x >= 1, np.round(2.48 * 3.62 ** np.floor(np.log(np.maximum(x, 1)) / np.log(3.62)), 2), 0.0)
        i_bin = np.round(1.99 * 1.89 ** np.floor(np.log(np.maximum(i, 1)) / np.log(1.89)))
        l_bin = np.where(lapse > 0, np.round(1.65 * 1.73 ** np.floor(np.log(np.maximum(lapse, 1)) / np.log(1.73))), 0.0)
    _, ids = np.unique(np.stack([dt_bin, i_bin, l_bin], axis=1), axis=0, return_inverse=True)
    return ids.reshape(-1).astype(np.int64)


def rmse_bins(*, y, p, bins) -> float:
    """RMSE (bins) as srs-benchmark: per bin (``benchmark_bins``) the mean outcome against the mean prediction,
    the root of the count-weighted mean squared difference. ``bins``: int [N], one bin id per review."""
    y, p = _arrays(y, p)
    bins = np.asarray(bins, dtype=np.int64).reshape(-1)
    if not y.size:
        return float("nan")
    count = np.bincount(bins)
    used = count > 0
    observed = np.bincount(bins, weights=y)[used] / count[used]
    predicted = np.bincount(bins, weights=p)[used] / count[used]
    return float(np.sqrt(np.sum(count[used] * (observed - predicted) ** 2) / count[used].sum()))


def score(*, y, p, bins) -> dict:
    """All metrics of one predictor: ``{"n", "log_loss", "auc", "rmse_bins", "mean_predicted", "mean_observed"}``;
    ``bins`` as ``rmse_bins``."""
    y, p = _arrays(y, p)
    return {
        "n": int(y.size),
        "log_loss": log_loss(y=y, p=p),
        "auc": auc(y=y, p=p),
        "rmse_bins": rmse_bins(y=y, p=p, bins=bins),
        "mean_predicted": float(p.mean()) if y.size else float("nan"),
        "mean_observed": float(y.mean()) if y.size else float("nan"),
    }


def score_by_learner(*, learner, y, p, bins) -> dict:
    """srs-benchmark's averages over learners: each metric per learner, then averaged weighted by the learner's
    reviews (the main figures) and unweighted (``"unweighted"``); a learner with an undefined metric (AUC with one
    class of outcome) is left out of that metric's averages. ``{"n", "learners", metrics..., "unweighted": {...}}``."""
    y, p = _arrays(y, p)
    learner = np.asarray(learner).reshape(-1)
    bins = np.asarray(bins, dtype=np.int64).reshape(-1)
    keys = ("log_loss", "auc", "rmse_bins")
    rows = []
    for who in np.unique(learner):
        mine = learner == who
        rows.append((int(mine.sum()), score(y=y[mine], p=p[mine], bins=bins[mine])))
    out: dict = {"n": int(y.size), "learners": len(rows)}
    unweighted = {}
    for key in keys:
        values = np.array([s[key] for _, s in rows], dtype=np.float64)
        weights = np.array([n for n, _ in rows], dtype=np.float64)
        ok = np.isfinite(values)
        out[key] = float(np.average(values[ok], weights=weights[ok])) if ok.any() else float("nan")
        unweighted[key] = float(values[ok].mean()) if ok.any() else float("nan")
    out["mean_predicted"] = float(p.mean()) if y.size else float("nan")
    out["mean_observed"] = float(y.mean()) if y.size else float("nan")
    out["unweighted"] = unweighted
    return out


def moving_average(*, learner, y, start: float, alpha: float = 0.1) -> np.ndarray:
    """The ``moving_avg`` baseline: for reviews in time order, each learner's exponentially weighted mean of their
    earlier outcomes, ``m <- m + alpha (y - m)``, starting at ``start``: float64 [N], the value before each review."""
    learner = np.asarray(learner).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    out = np.empty(y.size)
    state: dict = {}
    for i, (who, outcome) in enumerate(zip(learner.tolist(), y.tolist())):
        m = state.get(who, start)
        out[i] = m
        state[who] = m + alpha * (outcome - m)
    return out
