"""Half-life regression students (family "hlr"): exponential forgetting whose half-life is a log-linear function
of the practice history, after Settles & Meeder (2016), "A trainable spaced repetition model for language
learning", ACL (Duolingo's HLR) (NumPy only).

Memory law (per learner s and concept c; parameters ``HlrConfig``):

* recall ``p = 2 ** (-delta / h)`` with delta the time since the concept's latest review (days) and the half-life
  ``h = 2 ** (theta . x + b_s + b_c)`` days, ``x = (sqrt(1 + right), sqrt(1 + wrong), 1)`` (the paper's feature
  set: counts of correct and wrong recalls, square-rooted, and a bias);
* per-learner offset ``b_s = -learner_sigma * z_s`` and per-concept offset ``b_c = -concept_sigma * z_c`` (log2
  half-life; z_s, z_c the traits every family shares, ``base``): the paper's lexeme-tag weights play the per-concept
  part;
* the first review teaches: it starts the clock (p = 0 before it) and counts neither right nor wrong;
* later reviews restart the clock and add to ``right`` or ``wrong`` by their outcome, but a review ``delta`` seconds
  after the previous one counts only ``1 - 2 ** (-delta / massing_half_life_s)`` of a review (massing: with the
  default hour, a review 1 minute later counts 1.1%, one an hour later 50%, one a day later all but 1e-7): a
  review minutes after the last one restores recall for the moment but barely lengthens the half-life. The paper
  counts every attempt; this discount is this project's rule for the spacing effect the counts alone do not see.

Defaults: theta = (1.6, -0.8, -1.0): a first-taught concept has h = 2 ** -0.2 ~ 0.87 days (median learner and
concept), 3 right recalls give 2.6 days, 8 give 8 days; this project's choice (the paper fitted theta on
Duolingo's logs with many more features and did not publish the 3-feature weights).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import StudentCohort

DAY_S = 86400.0


@dataclass(frozen=True)
class HlrConfig:
    """HLR weights ``theta`` (right, wrong, bias; log2 days), offsets' spreads, and the massing discount's half-life
    (seconds)."""

    theta: tuple[float, float, float] = (1.6, -0.8, -1.0)
    learner_sigma: float = 0.5
    concept_sigma: float = 0.5
    massing_half_life_s: float = 3600.0


class HlrCohort(StudentCohort):
    """Family "hlr": half-life regression students (see the module docstring for the memory law)."""

    family = "hlr"

    def __init__(self, *, hlr: HlrConfig | None = None, **kwargs) -> None:
        """kwargs as ``StudentCohort``'s; ``hlr`` the law's parameters (default ``HlrConfig()``)."""
        super().__init__(**kwargs)
        self.hlr = p = hlr or HlrConfig()
        self.offset = (-p.learner_sigma * self.learner_normals[:, None]
                       - p.concept_sigma * self.concept_normals[None, :])  # [students, concepts], log2 days
        shape = (self.num_students, self.num_concepts)
        self.right = np.zeros(shape)
        self.wrong = np.zeros(shape)
        self.last_review = np.zeros(shape)
        self.seen = np.zeros(shape, dtype=bool)

    def half_life_days(self, right: np.ndarray, wrong: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """``2 ** (theta . (sqrt(1 + right), sqrt(1 + wrong), 1) + offset)`` days, broadcast over the inputs."""
        theta = self.hlr.theta
        return np.exp2(theta[0] * np.sqrt(1.0 + right) + theta[1] * np.sqrt(1.0 + wrong) + theta[2] + offset)

    def recall_probability(self, t: np.ndarray | float) -> np.ndarray:
        """True recall float64 [students, concepts] at time t (scalar or [students])."""
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), (self.num_students,))
        delta = np.maximum(t[:, None] - self.last_review, 0.0) / DAY_S
        h = self.half_life_days(self.right, self.wrong, self.offset)
        return np.where(self.seen, np.exp2(-delta / h), 0.0)

    def _recall_reviewed(self, rows: np.ndarray, concepts: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``recall_probability``'s formula at the reviewed cells only: float64 [n]."""
        delta = np.maximum(t - self.last_review[rows, concepts], 0.0) / DAY_S
        h = self.half_life_days(self.right[rows, concepts], self.wrong[rows, concepts], self.offset[rows, concepts])
        return np.where(self.seen[rows, concepts], np.exp2(-delta / h), 0.0)

    def counted(self, gap_s: np.ndarray) -> np.ndarray:
        """The share of a review ``gap_s`` seconds after the previous one that the counts take (massing discount)."""
        return -np.expm1(-np.log(2.0) * np.maximum(gap_s, 0.0) / self.hlr.massing_half_life_s)

    def expected_recall_gain(self, t: np.ndarray, *, horizon_s: float) -> np.ndarray:
        """For each concept, how much reviewing it at t [n] would raise the expected TRUE recall at t + horizon_s
        (float64 [n, C]): the oracle's score."""
        t = np.asarray(t, dtype=np.float64)
        p = self.recall_probability(t)
        share = np.where(self.seen, self.counted(t[:, None] - self.last_review), 0.0)
        decay = -horizon_s / DAY_S
        if_right = np.exp2(decay / self.half_life_days(self.right + share, self.wrong, self.offset))
        if_wrong = np.exp2(decay / self.half_life_days(self.right, self.wrong + share, self.offset))
        return p * if_right + (1.0 - p) * if_wrong - self.recall_probability(t + horizon_s)

    def _learn(self, rows, concepts, t, *, p, correct, grade) -> None:
        seen = self.seen[rows, concepts]
        share = np.where(seen, self.counted(t - self.last_review[rows, concepts]), 0.0)
        self.right[rows, concepts] += np.where(correct, share, 0.0)
        self.wrong[rows, concepts] += np.where(correct, 0.0, share)
        self.last_review[rows, concepts] = t
        self.seen[rows, concepts] = True
