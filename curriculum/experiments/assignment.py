"""Sticky assignment of learners to an experiment's arms: a hash of the experiment and the learner, so that a learner
keeps its arm on every request and every process, without storing anything."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def bucket(*, experiment_id: int, learner: str) -> float:
    """The learner's place in [0, 1) for this experiment: the first 8 bytes of SHA-256("<experiment_id>:<learner>")
    (UTF-8) read as a big-endian integer over 2**64. Independent between experiments, uniform over learners."""
    digest = hashlib.sha256(f"{experiment_id}:{learner}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(*, experiment_id: int, learner: str, weights: Sequence[float]) -> int:
    """The index of the learner's arm, with probability proportional to ``weights`` over learners (e.g. traffic
    percentages 50, 25, 25): the arm whose cumulative share contains `bucket`. Raises ValueError for no weights, a
    negative one or all zero."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError(f"weights: expected non-negative numbers with a positive sum, got {list(weights)!r}")
    edges = np.cumsum(w) / w.sum()
    index = int(np.searchsorted(edges, bucket(experiment_id=experiment_id, learner=learner), side="right"))
    index = min(index, w.size - 1)
    while w[index] == 0:  # only when rounding put the bucket on a zero-width arm's edge
        index -= 1
    return index
