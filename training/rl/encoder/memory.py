"""The recall estimator (one memory per learner and concept), the state it encodes and the reward (NumPy only).

Recall estimator (FSRS-style, in half-life form; one memory per learner and concept)
--------------------------------------------------------------------------------------
memory: stability S (seconds; the estimated half-life), difficulty D in [1, 10], time of the last review,
number of reviews.

* estimated recall at time t: ``R = 2 ** (-(t - last_review) / S)``; a concept never reviewed has ``R = 0``.
* grade g in 1..4 (1 = wrong, 2 hard, 3 good, 4 easy). A wrong review counts as g = 1 whatever its grade;
  a correct one with an unknown (0) or contradictory (1) grade counts as 3.
  ``R`` below is the recall just before the review; ``clip`` keeps D in [1, 10].
* first review:       ``S = initial_stability_s[g - 1] * concept_stability[c]`` (1 unless fitted, below),
                      ``D = clip(initial_difficulty - difficulty_step * (g - 3))``
* correct, reviewed:  ``S' = S * (1 + growth * (11 - D) / 6 * (1 - R) ** recall_exponent * grade_factor[g - 1])``
  (spacing: a review at low recall lengthens the half-life most, a massed one at R ~ 1 hardly at all)
* wrong, reviewed:    ``S' = max(initial_stability_s[0], S * lapse_factor)``
* then                ``D' = clip(D - difficulty_step * (g - 3))``; S is capped at ``max_stability_s``.

The defaults are the population median of the synthetic students (as one would fit FSRS weights to a log).
Per item, ``concept_stability`` (one factor per concept, fitted to a log by ``ConceptStabilityFit``: how long a
first memory of this concept lasts relative to the median) and, later, D and the outcomes.

The state layout is in ``config.py``.

Reward (from the log alone)
---------------------------
The potential ``M_i`` is the mean over all concepts of the estimated recall at ``t_i + horizon_s`` with the
memory after review i (``M_0 = 0``: nothing reviewed). The reward of review i is ``r_i = M_i - M_{i-1}``: what
the review added to recall at the horizon, less what the other concepts lost to forgetting since the last
review. The rewards telescope, so an episode's return is ``M_last``: the estimated mean recall ``horizon_s``
after the last review, which is what evaluation measures with the simulator's true recall.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .config import FEATURES_PER_CONCEPT, NEVER_REVIEWED_ELAPSED, EncoderConfig

_HOUR = 3600.0
_ELAPSED_SCALE = float(np.log1p(24 * 30))
_REVIEWS_SCALE = float(np.log1p(100))
_STABILITY_SCALE = float(np.log1p(24 * 365))


@dataclass
class EncoderMemory:
    """What the encoder remembers of n learners: arrays [n, C] (potential [n])."""

    stability: np.ndarray  # float64, seconds
    difficulty: np.ndarray  # float64
    last_review: np.ndarray  # float64, seconds since the epoch; meaningless while reviews == 0
    reviews: np.ndarray  # int64
    potential: np.ndarray  # float64 [n]: M at the last review (see the module docstring)

    def __len__(self) -> int:
        return self.stability.shape[0]

    def take(self, rows: np.ndarray) -> "EncoderMemory":
        return EncoderMemory(*(getattr(self, f.name)[rows].copy() for f in fields(self)))

    def put(self, rows: np.ndarray, other: "EncoderMemory") -> None:
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)


class StateEncoder:
    """Batch operations over many learners' memories; one learner is a batch of one."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.num_concepts = config.num_concepts
        self.state_dim = config.state_dim
        self._initial_stability = np.asarray(config.initial_stability_s, dtype=np.float64)
        self._grade_factor = np.asarray(config.grade_factor, dtype=np.float64)
        self._concept_stability = (None if config.concept_stability is None
                                   else np.asarray(config.concept_stability, dtype=np.float64))

    def init_memory(self, n: int) -> EncoderMemory:
        shape = (n, self.num_concepts)
        return EncoderMemory(
            # any positive stability keeps 2 ** (-elapsed / S) finite before the first review
            stability=np.full(shape, self._initial_stability[2]),
            difficulty=np.full(shape, float(self.config.initial_difficulty)),
            last_review=np.zeros(shape),
            reviews=np.zeros(shape, dtype=np.int64),
            potential=np.zeros(n),
        )

    def recall(self, memory: EncoderMemory, t: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """Estimated recall float64 [n, C] at times t [n] (seconds since the epoch)."""
        stability, last, reviews = _rows(memory, rows)
        return _recall(stability, last, reviews, np.asarray(t, dtype=np.float64))

    def encode(self, memory: EncoderMemory, t: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """States float32 [n, state_dim] at times t [n]; rows selects learners of memory (default all)."""
        stability, last, reviews = _rows(memory, rows)
        t = np.asarray(t, dtype=np.float64)
        seen = reviews > 0
        elapsed_h = np.maximum(t[:, None] - last, 0.0) / _HOUR
        out = np.empty(stability.shape + (FEATURES_PER_CONCEPT,), dtype=np.float32)
        out[..., 0] = _recall(stability, last, reviews, t)
        out[..., 1] = np.where(seen, np.log1p(elapsed_h) / _ELAPSED_SCALE, NEVER_REVIEWED_ELAPSED)
        out[..., 2] = np.log1p(reviews) / _REVIEWS_SCALE
        out[..., 3] = np.where(seen, np.log1p(stability / _HOUR) / _STABILITY_SCALE, 0.0)
        return out.reshape(stability.shape[0], self.state_dim)

    def recall_from_states(self, states: np.ndarray) -> np.ndarray:
        """The recall feature of encoded states [..., S] -> [..., C] (for heuristics on stored states)."""
        return states[..., 0::FEATURES_PER_CONCEPT]

    def update(
        self,
        memory: EncoderMemory,
        learner_rows: np.ndarray,
        concepts: np.ndarray,
        t: np.ndarray,
        correct: np.ndarray,
        grade: np.ndarray,
    ) -> np.ndarray:
        """Apply one review per listed learner (rows distinct) in place; returns the rewards float32 [rows]."""
        cfg = self.config
        rows = np.asarray(learner_rows, dtype=np.int64)
        concepts = np.asarray(concepts, dtype=np.int64)
        t = np.asarray(t, dtype=np.float64)
        correct = np.asarray(correct, dtype=bool)
        grade = np.asarray(grade, dtype=np.int64)
        g = effective_grade(correct, grade)

        stability = memory.stability[rows, concepts]
        difficulty = memory.difficulty[rows, concepts]
        reviews = memory.reviews[rows, concepts]
        seen = reviews > 0
        elapsed = np.maximum(t - memory.last_review[rows, concepts], 0.0)
        recall_before = np.where(seen, np.exp2(-elapsed / stability), 0.0)

        ease = (11.0 - difficulty) / 6.0
        spacing = (1.0 - recall_before) ** cfg.recall_exponent
        grown = stability * (1.0 + cfg.growth * ease * spacing * self._grade_factor[g - 1])
        lapsed = np.maximum(self._initial_stability[0], stability * cfg.lapse_factor)
        first = self._initial_stability[g - 1]
        if self._concept_stability is not None:
            first = first * self._concept_stability[concepts]
        new_stability = np.where(seen, np.where(g > 1, grown, lapsed), first)
        base_difficulty = np.where(seen, difficulty, cfg.initial_difficulty)

        memory.stability[rows, concepts] = np.minimum(new_stability, cfg.max_stability_s)
        memory.difficulty[rows, concepts] = np.clip(base_difficulty - cfg.difficulty_step * (g - 3), 1.0, 10.0)
        memory.last_review[rows, concepts] = t
        memory.reviews[rows, concepts] = reviews + 1

        potential = self.recall(memory, t + cfg.horizon_s, rows=rows).mean(axis=1)
        rewards = (potential - memory.potential[rows]).astype(np.float32)
        memory.potential[rows] = potential
        return rewards


def effective_grade(correct: np.ndarray, grade: np.ndarray) -> np.ndarray:
    """The grade the estimator uses: 1 when wrong; when correct the grade if it is 2-4, else 3 (see the module)."""
    grade = np.asarray(grade, dtype=np.int64)
    return np.where(np.asarray(correct, dtype=bool), np.where((grade >= 2) & (grade <= 4), grade, 3), 1)


def _rows(memory: EncoderMemory, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if rows is None:
        return memory.stability, memory.last_review, memory.reviews
    return memory.stability[rows], memory.last_review[rows], memory.reviews[rows]


def _recall(stability: np.ndarray, last: np.ndarray, reviews: np.ndarray, t: np.ndarray) -> np.ndarray:
    elapsed = np.maximum(t[:, None] - last, 0.0)
    return np.where(reviews > 0, np.exp2(-elapsed / stability), 0.0)
