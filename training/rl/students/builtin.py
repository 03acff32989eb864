"""The built-in students (family "builtin"): exponential forgetting with a spacing effect, the project's own
simulator (NumPy only).

Memory law (arrays [students, concepts]; parameters ``SimulatorConfig``):

* per student a learning rate ``lr`` and a forgetting rate ``fr`` (log-normal around 1: ``fr = exp(0.3 z_s)``),
  per concept a difficulty ``d`` (``exp(1.2 z_c)``, fixed by ``SimulatorConfig.curriculum_seed`` so that training
  and held-out cohorts practise the same curriculum);
* true recall ``p = 2 ** (-fr * elapsed / h)`` with ``h`` the half-life (the exponential curve of half-life
  regression, Settles & Meeder 2016); a concept never seen has ``p = unseen_recall`` (0 by default: nothing is
  known before it is taught);
* the first review teaches: ``h = base_half_life_s * lr / d``. Afterwards a correct review multiplies ``h`` by
  ``1 + growth * lr * (1 - p) ** recall_exponent / d`` (spacing effect: low recall gives a large gain, so a review
  seconds after the last one, at p ~ 1, adds almost nothing); a wrong one sets
  ``h = max(first half-life, h * lapse_keep)``.
"""
from __future__ import annotations

import numpy as np

from .base import StudentCohort


class Cohort(StudentCohort):
    """The built-in students: num_students who will each do ``interactions`` reviews at the times of
    ``schedule()`` (see the module docstring for the memory law)."""

    family = "builtin"

    def __init__(self, **kwargs) -> None:
        """kwargs as ``StudentCohort``'s."""
        super().__init__(**kwargs)
        cfg = self.config
        self.learning_rate = np.exp(cfg.learning_rate_sigma * self.traits[:, 0])
        self.forgetting_rate = np.exp(cfg.forgetting_rate_sigma * self.traits[:, 1])
        shape = (self.num_students, self.num_concepts)
        self.half_life = np.ones(shape)
        self.last_review = np.zeros(shape)
        self.seen = np.zeros(shape, dtype=bool)

    def recall_probability(self, t: np.ndarray | float) -> np.ndarray:
        """True recall float64 [students, concepts] at time t (scalar or [students])."""
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), (self.num_students,))
        elapsed = np.maximum(t[:, None] - self.last_review, 0.0) * self.forgetting_rate[:, None]
        return np.where(self.seen, np.exp2(-elapsed / self.half_life), self.config.unseen_recall)

    def _recall_reviewed(self, rows: np.ndarray, concepts: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``recall_probability``'s formula at the reviewed cells only: float64 [n]."""
        elapsed = np.maximum(t - self.last_review[rows, concepts], 0.0) * self.forgetting_rate[rows]
        return np.where(self.seen[rows, concepts], np.exp2(-elapsed / self.half_life[rows, concepts]),
                        self.config.unseen_recall)

    def half_life_after(
        self, *, p: np.ndarray, half_life: np.ndarray, seen: np.ndarray, concepts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The half-lives (if correct, if wrong) after a review at true recall p: arrays [n] for concepts [n]
        (one per student), or [n, C] for every concept when concepts is None."""
        cfg, h = self.config, half_life
        lr = self.learning_rate if concepts is not None else self.learning_rate[:, None]
        d = self.difficulty[concepts] if concepts is not None else self.difficulty
        first = lr * cfg.base_half_life_s / d
        grown = h * (1.0 + cfg.growth * lr * (1.0 - p) ** cfg.recall_exponent / d)
        lapsed = np.maximum(first, h * cfg.lapse_keep)
        cap = cfg.max_half_life_s
        return np.minimum(np.where(seen, grown, first), cap), np.minimum(np.where(seen, lapsed, first), cap)

    def expected_recall_gain(self, t: np.ndarray, *, horizon_s: float) -> np.ndarray:
        """For each concept, how much reviewing it at t [n] would raise the expected TRUE recall at t + horizon_s
        (float64 [n, C]): what only the simulator knows; the oracle's score."""
        t = np.asarray(t, dtype=np.float64)
        p = self.recall_probability(t)
        if_correct, if_wrong = self.half_life_after(p=p, half_life=self.half_life, seen=self.seen)
        decay = -self.forgetting_rate[:, None] * horizon_s
        after = p * np.exp2(decay / if_correct) + (1.0 - p) * np.exp2(decay / if_wrong)
        return after - self.recall_probability(t + horizon_s)

    def _learn(self, rows, concepts, t, *, p, correct, grade) -> None:
        if_correct, if_wrong = self.half_life_after(
            p=p, half_life=self.half_life[rows, concepts], seen=self.seen[rows, concepts], concepts=concepts
        )
        self.half_life[rows, concepts] = np.where(correct, if_correct, if_wrong)
        self.last_review[rows, concepts] = t
        self.seen[rows, concepts] = True
