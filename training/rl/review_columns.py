"""Review rows as NumPy columns: the simulator's log, or a curriculum's log read in chunks; the input of
extraction (trajectories.py)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ReviewColumns:
    """Review rows as columns, sorted by (learner, time); the input of extraction (one chunk or a whole log).

    learner int64 [N] (any id, equal for one learner's rows); concept int64 [N] (position = action index);
    t float64 [N] (seconds since the epoch); correct bool [N]; grade int8 [N] (1-4, 0 unknown);
    response_time_ms int32 [N] (-1 unknown). behaviour_policy: the simulator's policy name per learner index
    (empty for real logs).
    """

    learner: np.ndarray
    concept: np.ndarray
    t: np.ndarray
    correct: np.ndarray
    grade: np.ndarray
    response_time_ms: np.ndarray
    behaviour_policy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))

    def __len__(self) -> int:
        return len(self.learner)

    def rows(self, part: slice) -> ReviewColumns:
        """The rows in `part` (views, not copies), without behaviour_policy (which is per learner, not per row)."""
        return ReviewColumns(
            learner=self.learner[part], concept=self.concept[part], t=self.t[part], correct=self.correct[part],
            grade=self.grade[part], response_time_ms=self.response_time_ms[part],
        )

    def chunks(self, *, size: int) -> Iterator[ReviewColumns]:
        """Consecutive slices of at most size rows (a learner may straddle two)."""
        for start in range(0, len(self), size):
            yield self.rows(slice(start, start + size))
