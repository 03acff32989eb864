"""The student-family protocol: what every simulated cohort shares, whatever its memory law (NumPy only).

A family is a ``StudentCohort`` subclass with its own memory law (``recall_probability``, ``expected_recall_gain``
and what a review does, ``_learn``). What it shares with every other family, so that evaluation is paired across
policies and comparable across families:

* the schedule (``SimulatorConfig``'s time rules: a review every few seconds to a minute within a session,
  sessions hours or days apart) and the dice: everything a student is comes from the stream
  ``(seed, domain, STUDENT_STREAM, student)`` (a standard normal pair of traits, 6 x interactions uniforms,
  interactions normals), drawn in that order, so the times and the draws behind outcomes do not depend on the
  policy, on the family, nor on how many students are simulated;
* the per-learner trait ``learner_normals`` (z_s, standard normal: in the built-in family the log forgetting rate
  over its sigma) and the per-concept trait ``concept_normals`` (z_c, standard normal, from the curriculum's
  stream ``(curriculum_seed, num_concepts)``: in the built-in family the log difficulty over its sigma); every
  family reads its per-learner and per-concept variation from these, so "the same student" is the same person in
  every family (z_s > 0 forgets faster, z_c > 0 is harder);
* a review's outcome: correct when the student's k-th uniform is below the true recall p; grade 1 when wrong, when
  correct 2, 3 or 4 as ``p`` (jittered by +-0.05) is below 0.5, below 0.85 or above; response time
  ``(1200 + 8000 (1 - p)) ms * lognormal(0, 0.3)``, x1.5 when wrong.

``domain`` separates training cohorts (TRAINING_DOMAIN) from held-out evaluation cohorts (HELD_OUT_DOMAIN): no
training seed can produce an evaluation student.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAINING_DOMAIN = 0
HELD_OUT_DOMAIN = 1
STUDENT_STREAM = 0
POLICY_STREAM = 1
ASSIGNMENT_STREAM = 2
FAMILY_STREAM = 3


@dataclass(frozen=True)
class SimulatorConfig:
    """The schedule every family shares, and the built-in family's memory parameters (see ``builtin``).
    Times in seconds."""

    base_half_life_s: float = 86400.0
    learning_rate_sigma: float = 0.3
    forgetting_rate_sigma: float = 0.3
    difficulty_sigma: float = 1.2
    curriculum_seed: int = 0
    growth: float = 6.0
    recall_exponent: float = 1.0
    lapse_keep: float = 0.5
    unseen_recall: float = 0.0
    max_half_life_s: float = 365 * 86400.0
    # time
    start_time: float = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    start_spread_s: float = 7 * 86400.0
    mean_session_reviews: float = 6.0
    review_gap_s: tuple[float, float] = (5.0, 60.0)
    same_day_gap_s: tuple[float, float] = (1.5 * 3600.0, 6 * 3600.0)
    new_day_probability: float = 0.3
    max_days_between: int = 3


@dataclass(frozen=True)
class ReviewOutcome:
    correct: np.ndarray  # bool [n]
    grade: np.ndarray  # int8 [n], 1-4
    response_time_ms: np.ndarray  # int32 [n]


def grade_from_recall(correct: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """1 when wrong; when correct 2, 3 or 4 as the recall strength is below 0.5, below 0.85 or above (int8 [n])."""
    return np.where(correct, np.where(strength < 0.5, 2, np.where(strength < 0.85, 3, 4)), 1).astype(np.int8)


class StudentCohort:
    """``num_students`` simulated students of one family who will each do ``interactions`` reviews at the times of
    ``schedule()`` (``student_ids``: the stream index of each row, default 0..n-1; ValueError for another
    length). Subclasses set ``family`` and implement ``recall_probability``, ``expected_recall_gain`` and
    ``_learn``; ``review`` is shared (the outcome, grade and response-time rules of the module docstring)."""

    family = ""

    def __init__(
        self,
        *,
        num_students: int,
        num_concepts: int,
        interactions: int,
        seed: int,
        held_out: bool = False,
        config: SimulatorConfig | None = None,
        student_ids: np.ndarray | None = None,
    ) -> None:
        self.config = cfg = config or SimulatorConfig()
        # row r is the student whose stream index is student_ids[r] (default r): a mixed cohort's part of one family
        ids = np.arange(num_students) if student_ids is None else np.asarray(student_ids, dtype=np.int64)
        if ids.shape != (num_students,):
            raise ValueError(f"student_ids: expected {num_students} ids, got shape {ids.shape}")
        self.num_students, self.num_concepts, self.interactions = num_students, num_concepts, interactions
        self.seed, self.domain = seed, HELD_OUT_DOMAIN if held_out else TRAINING_DOMAIN
        curriculum_rng = np.random.default_rng([cfg.curriculum_seed, num_concepts])
        self.difficulty = np.exp(cfg.difficulty_sigma * curriculum_rng.standard_normal(num_concepts))
        traits = np.empty((num_students, 2))
        uniforms = np.empty((num_students, 6, interactions))  # 4 for the schedule, 2 for outcomes and grades
        normals = np.empty((num_students, interactions))
        for s in range(num_students):
            rng = np.random.default_rng([seed, self.domain, STUDENT_STREAM, int(ids[s])])
            traits[s] = rng.standard_normal(2)
            uniforms[s] = rng.random((6, interactions))
            normals[s] = rng.standard_normal(interactions)
        self.concept_normals = np.log(self.difficulty) / cfg.difficulty_sigma if cfg.difficulty_sigma else np.zeros(
            num_concepts)
        self.learner_normals = traits[:, 1].copy()
        self.traits = traits
        self._times = self._make_schedule(uniforms[:, :4])
        self._outcome_u, self._grade_u, self._rt_z = uniforms[:, 4], uniforms[:, 5], normals
        self._reviews_done = 0

    def _make_schedule(self, u: np.ndarray) -> np.ndarray:
        cfg = self.config
        new_session = u[:, 0] < 1.0 / cfg.mean_session_reviews
        new_day, gap_u, hour_u = u[:, 1] < cfg.new_day_probability, u[:, 2], u[:, 3]
        lo, hi = cfg.review_gap_s
        within = lo + (hi - lo) * gap_u**2  # mostly short gaps, sometimes a minute
        same_day = cfg.same_day_gap_s[0] + (cfg.same_day_gap_s[1] - cfg.same_day_gap_s[0]) * gap_u
        days = 1 + np.floor(gap_u * cfg.max_days_between)
        other_day = days * 86400.0 + hour_u * 4 * 3600.0  # not at the same hour every day
        gaps = np.where(new_session, np.where(new_day, other_day, same_day), within)
        gaps[:, 0] = cfg.start_time + cfg.start_spread_s * gap_u[:, 0]
        return np.cumsum(gaps, axis=1)

    def schedule(self) -> np.ndarray:
        """Review times float64 [students, interactions], seconds since the epoch; the same whatever the policy."""
        return self._times

    def recall_probability(self, t: np.ndarray | float) -> np.ndarray:
        """True recall float64 [students, concepts] at time t (scalar or [students], seconds; not before any
        review already done)."""
        raise NotImplementedError

    def expected_recall_gain(self, t: np.ndarray, *, horizon_s: float) -> np.ndarray:
        """For each concept, how much reviewing it at t [n] would raise the expected TRUE recall at t + horizon_s
        (float64 [n, C]): what only the simulator knows; the oracle's score."""
        raise NotImplementedError

    def _recall_reviewed(self, rows: np.ndarray, concepts: np.ndarray, t: np.ndarray) -> np.ndarray:
        """True recall float64 [n] of concepts[s] at t[s], just before the review."""
        return self.recall_probability(t)[rows, concepts]

    def _learn(self, rows: np.ndarray, concepts: np.ndarray, t: np.ndarray, *, p: np.ndarray, correct: np.ndarray,
               grade: np.ndarray) -> None:
        """Apply the review of concepts[s] at t[s] (recall p, outcome, grade; arrays [n]) to the memory."""
        raise NotImplementedError

    def review(self, concepts: np.ndarray, t: np.ndarray) -> ReviewOutcome:
        """Every student reviews concepts[s] at t[s] (its k-th call uses the k-th dice of each student).
        RuntimeError after ``interactions`` calls."""
        if self._reviews_done >= self.interactions:
            raise RuntimeError(f"cohort: all {self.interactions} interactions have been reviewed")
        k = self._reviews_done
        rows = np.arange(self.num_students)
        concepts = np.asarray(concepts, dtype=np.int64)
        t = np.asarray(t, dtype=np.float64)
        p = self._recall_reviewed(rows, concepts, t)
        correct = self._outcome_u[:, k] < p
        grade = grade_from_recall(correct, p + 0.1 * (self._grade_u[:, k] - 0.5))
        self._learn(rows, concepts, t, p=p, correct=correct, grade=grade)
        self._reviews_done += 1
        rt = (1200.0 + 8000.0 * (1.0 - p)) * np.exp(0.3 * self._rt_z[:, k]) * np.where(correct, 1.0, 1.5)
        return ReviewOutcome(correct=correct, grade=grade, response_time_ms=rt.astype(np.int32))
