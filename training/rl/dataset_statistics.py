"""A TrajectoryDataset's summary for the extraction job's page and the training run: sizes, episode returns
and lengths, how often each concept was practised (JSON-able)."""
from __future__ import annotations

import numpy as np

from .dataset_file import format_version
from .trajectories import TrajectoryDataset

HISTOGRAM_BINS = 20


def dataset_statistics(ds: TrajectoryDataset) -> dict:
    """A JSON-able summary: sizes, episode returns and lengths (quantiles and a 20-bin histogram), how often
    each action was taken."""
    starts = np.asarray(ds.episode_starts)
    episodes, steps = len(starts) - 1, len(ds.actions)
    returns = np.asarray(ds.returns_to_go, dtype=np.float64)[starts[:-1]] if episodes else np.zeros(0)
    lengths = np.diff(starts)
    num_actions = max(len(ds.concept_keys), int(ds.actions.max()) + 1 if steps else 0)
    counts = np.bincount(ds.actions, minlength=num_actions) if steps else np.zeros(num_actions, dtype=np.int64)
    share = counts / max(steps, 1)
    keys = ds.concept_keys or [str(i) for i in range(num_actions)]

    def summary(values: np.ndarray) -> dict:
        if len(values) == 0:
            return {"mean": None, "std": None, "min": None, "max": None, "p10": None, "p50": None, "p90": None}
        p10, p50, p90 = np.quantile(values, [0.1, 0.5, 0.9])
        # 20 equal-width bins over [min, max] (numpy.histogram), for the admin's distribution charts
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
        return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                "max": float(values.max()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
                "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}}

    nonzero = share[share > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(num_actions)) if num_actions > 1 else None
    return {
        "episodes": int(episodes),
        "steps": int(steps),
        "state_dim": ds.state_dim,
        # how the dataset keeps its states: review rows (format 2, O(N)) or the states themselves (format 1)
        "storage": {"format_version": format_version(ds), "bytes": ds.nbytes},
        "return": summary(returns),
        "episode_length": summary(lengths.astype(np.float64)),
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
