"""A TrajectoryDataset's summary for the extraction job's page and the training run: sizes, episode returns
and lengths, how often each concept was practised (JSON-able)."""
from __future__ import annotations

import numpy as np

from .dataset_file import format_version
from .trajectories import TrajectoryDataset

HISTOGRAM_BINS = 20


def histogram(values: np.ndarray, *, integers: bool = False) -> dict:
    """``{"edges", "counts"}`` of float values [n >= 1] for the admin's distribution charts: HISTOGRAM_BINS
    equal-width bins over [min, max] (numpy.histogram), one bin when every value is the same (numpy's 20 over
    min +- 0.5 read as twenty bins of one value). ``integers`` (counts, such as episode lengths): bins of whole
    integers, at most HISTOGRAM_BINS of equal width, edges half-way between integers (an episode length falls inside
    a bin, never on an edge): lengths 1 to 100 in 20 bins of 5, a single length L in one bin (L - 0.5, L + 0.5)."""
    low, high = float(values.min()), float(values.max())
    if integers:
        span = int(round(high - low)) + 1  # the integers low..high
        width = -(-span // HISTOGRAM_BINS)  # ceil: at most HISTOGRAM_BINS bins
        bins = -(-span // width)
        edges = low - 0.5 + width * np.arange(bins + 1, dtype=np.float64)
    else:
        edges = HISTOGRAM_BINS if high > low else 1
    counts, edges = np.histogram(values, bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def dataset_statistics(ds: TrajectoryDataset) -> dict:
    """A JSON-able summary: sizes, episode returns and lengths (quantiles and a histogram of at most 20 bins: of
    whole lengths for the lengths, one bin when all are equal), how often each action was taken."""
    starts = np.asarray(ds.episode_starts)
    episodes, steps = len(starts) - 1, len(ds.actions)
    returns = np.asarray(ds.returns_to_go, dtype=np.float64)[starts[:-1]] if episodes else np.zeros(0)
    lengths = np.diff(starts)
    num_actions = max(len(ds.concept_keys), int(ds.actions.max()) + 1 if steps else 0)
    counts = np.bincount(ds.actions, minlength=num_actions) if steps else np.zeros(num_actions, dtype=np.int64)
    share = counts / max(steps, 1)
    keys = ds.concept_keys or [str(i) for i in range(num_actions)]

    def summary(values: np.ndarray, *, integers: bool = False) -> dict:
        if len(values) == 0:
            return {"mean": None, "std": None, "min": None, "max": None, "p10": None, "p50": None, "p90": None}
        p10, p50, p90 = np.quantile(values, [0.1, 0.5, 0.9])
        return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                "max": float(values.max()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
                "histogram": histogram(values, integers=integers)}

    nonzero = share[share > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(num_actions)) if num_actions > 1 else None
    return {
        "episodes": int(episodes),
        "steps": int(steps),
        "state_dim": ds.state_dim,
        # how the dataset keeps its states: review rows (format 2, O(N)) or the states themselves (format 1)
        "storage": {"format_version": format_version(ds), "bytes": ds.nbytes},
        "return": summary(returns),
        "episode_length": summary(lengths.astype(np.float64), integers=True),
        "actions": {
            "count": int(num_actions),
            "counts": {keys[i]: int(c) for i, c in enumerate(counts)},
            "most_common": keys[int(counts.argmax())] if num_actions else None,
            "least_common": keys[int(counts.argmin())] if num_actions else None,
            "min_share": float(share.min()) if num_actions else None,
            "max_share": float(share.max()) if num_actions else None,
            # 1.0 = every concept equally often
            "normalised_entropy": entropy,
        },
    }
