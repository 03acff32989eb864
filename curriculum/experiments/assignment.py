"""Sticky assignment of learners to an experiment's arms: a hash of the experiment and the learner, so that a learner
keeps its arm on every request and every process, without storing anything; and the seeded uniform sample of learners
that outcomes and off-policy estimates read when an arm has more learners than a page load may read."""
from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence

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


def sample(learners: Iterable[str], k: int, *, seed: int = 0) -> list[str]:
    """A uniform random sample of ``k`` distinct learners (all of them when there are no more than ``k``),
    deterministic in ``seed``: the ``k`` smallest keys SHA-256("sample:<seed>:<learner>") (UTF-8, first 8 bytes,
    big-endian), i.e. the first ``k`` of a random permutation (every k-subset equally likely, up to hash collisions),
    in that order. Unrelated to the arm's assignment hash, so it is not the first learners by id, nor by arm bucket.
    Raises ValueError for a negative ``k``."""
    if k < 0:
        raise ValueError(f"k: expected a number of learners >= 0, got {k!r}")

    def key(learner: str) -> int:
        return int.from_bytes(hashlib.sha256(f"sample:{seed}:{learner}".encode()).digest()[:8], "big")

    return heapq.nsmallest(k, dict.fromkeys(learners), key=key)
