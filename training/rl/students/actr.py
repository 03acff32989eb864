"""Power-law students (family "actr"): ACT-R declarative memory with the spacing effect of Pavlik & Anderson
(2005), "Practice and forgetting effects on vocabulary memory: an activation-based model of the spacing effect",
Cognitive Science 29 (NumPy only).

Memory law (per learner s and concept c; parameters ``ActrConfig``):

* each review j of the concept is a presentation at time t_j that leaves a trace decaying as a power of the time
  since it, with its own decay d_j; the activation at time t is
  ``m(t) = beta_s + beta_c + ln(sum_j (t - t_j) ** -d_j)`` (times in seconds of psychological time, below;
  ``t - t_j`` at least 1 s);
* spacing effect: ``d_j = c * exp(m(t_j)) + a`` with ``m(t_j)`` the activation just before presentation j (the
  first has ``d_1 = a``): a review while the concept is still active (minutes after the last one) gets a high
  decay, so its trace is gone by the next day and it adds little; a review after forgetting decays slowly;
* recall probability ``p = 1 / (1 + exp((tau - m) / s))``; a concept never presented has p = 0;
* psychological time (Pavlik & Anderson's h): time between sessions interferes less than time within them. Each
  gap between the learner's successive scheduled reviews counts ``min(gap, session_s) + h * max(gap - session_s,
  0)`` seconds; the time after the latest scheduled review before t counts the same way;
* a review is a presentation whatever its outcome (the learner sees the answer either way);
* per-learner ability ``beta_s = -ability_sigma * z_s`` and per-concept difficulty ``beta_c = -difficulty_sigma *
  z_c`` (z_s, z_c the traits every family shares, ``base``), plus ``base_activation``.

Defaults: c = 0.217, a = 0.177, tau = -0.704, s = 0.255 are the values Pavlik & Anderson (2005) fitted; h = 0.025
as their psychological-time scaling; the spreads and base activation are this project's choice (so that the
learners span a wide range of recall).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import StudentCohort


@dataclass(frozen=True)
class ActrConfig:
    """ACT-R parameters (see the module docstring): decay intercept ``a`` and scale ``c``, retrieval threshold
    ``tau`` and noise ``s``, psychological-time factor ``h`` beyond ``session_s`` seconds, activation offsets."""

    a: float = 0.177
    c: float = 0.217
    tau: float = -0.704
    s: float = 0.255
    h: float = 0.025
    session_s: float = 1800.0
    base_activation: float = 0.0
    ability_sigma: float = 0.3
    difficulty_sigma: float = 0.3


class ActrCohort(StudentCohort):
    """Family "actr": ACT-R students (see the module docstring for the memory law)."""

    family = "actr"

    def __init__(self, *, actr: ActrConfig | None = None, **kwargs) -> None:
        """kwargs as ``StudentCohort``'s; ``actr`` the law's parameters (default ``ActrConfig()``)."""
        super().__init__(**kwargs)
        self.actr = p = actr or ActrConfig()
        self.offset = (p.base_activation - p.ability_sigma * self.learner_normals[:, None]
                       - p.difficulty_sigma * self.concept_normals[None, :])  # [students, concepts]
        times = self.schedule()
        gaps = np.diff(times, axis=1)
        self._psych_at_schedule = np.concatenate(
            [np.zeros((self.num_students, 1)), np.cumsum(self._psych_gap(gaps), axis=1)], axis=1)  # [n, interactions]
        # Slots for the psychological times of the presentations, doubled when full. At least 8: NumPy sums 8 or more
        # slots pairwise, in which trailing empty (zero) slots add exactly nothing, but fewer one by one, in another
        # order; from 8 slots a learner's traces sum to the same bits whatever the slots the cohort's other learners
        # needed, so a cohort split into parts (generate_logs(processes=N)) gives the same students.
        self._presented = np.zeros((self.num_students, self.num_concepts, 8))
        self._decay = np.zeros((self.num_students, self.num_concepts, 8))
        self.presentations = np.zeros((self.num_students, self.num_concepts), dtype=np.int64)

    def _psych_gap(self, gap: np.ndarray) -> np.ndarray:
        p = self.actr
        gap = np.maximum(gap, 0.0)
        return np.minimum(gap, p.session_s) + p.h * np.maximum(gap - p.session_s, 0.0)

    def psychological_time(self, t: np.ndarray | float) -> np.ndarray:
        """Each learner's psychological time float64 [students] at t (scalar or [students], seconds since the
        epoch), counted from the first scheduled review."""
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), (self.num_students,))
        times = self.schedule()
        k = np.maximum((times <= t[:, None]).sum(axis=1) - 1, 0)
        rows = np.arange(self.num_students)
        return self._psych_at_schedule[rows, k] + self._psych_gap(t - times[rows, k])

    def _activation(self, psych: np.ndarray, extra: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """m [n, C] at psychological times psych [n]; ``extra`` (times [n, C], decays [n, C]) adds one more
        presentation to every concept. -inf where nothing was presented."""
        used = np.arange(self._presented.shape[2])[None, None, :] < self.presentations[:, :, None]
        elapsed = np.maximum(psych[:, None, None] - self._presented, 1.0)
        traces = np.where(used, elapsed ** -self._decay, 0.0).sum(axis=2)
        if extra is not None:
            traces = traces + np.maximum(psych[:, None] - extra[0], 1.0) ** -extra[1]
        with np.errstate(divide="ignore"):
            return self.offset + np.log(traces)

    def _cell_activation(self, psych: np.ndarray, rows: np.ndarray, concepts: np.ndarray) -> np.ndarray:
        """``_activation``'s formula at the cells (rows[i], concepts[i]) only, at psychological times psych [n]:
        m float64 [n] (-inf where nothing was presented). The traces are summed over the same slots as on the whole
        grid, so each value is the grid's to the bit."""
        presented, decay = self._presented[rows, concepts], self._decay[rows, concepts]  # [n, slots]
        used = np.arange(presented.shape[1])[None, :] < self.presentations[rows, concepts][:, None]
        elapsed = np.maximum(psych[:, None] - presented, 1.0)
        traces = np.where(used, elapsed ** -decay, 0.0).sum(axis=1)
        with np.errstate(divide="ignore"):
            return self.offset[rows, concepts] + np.log(traces)

    def _recall_reviewed(self, rows: np.ndarray, concepts: np.ndarray, t: np.ndarray) -> np.ndarray:
        return self._recall_from(self._cell_activation(self.psychological_time(t), rows, concepts))

    def _recall_from(self, m: np.ndarray) -> np.ndarray:
        p = self.actr
        return np.where(np.isfinite(m), 1.0 / (1.0 + np.exp(np.clip((p.tau - m) / p.s, -700.0, 700.0))), 0.0)

    def recall_probability(self, t: np.ndarray | float) -> np.ndarray:
        """True recall float64 [students, concepts] at time t (scalar or [students])."""
        return self._recall_from(self._activation(self.psychological_time(t)))

    def _decay_now(self, m: np.ndarray) -> np.ndarray:
        p = self.actr
        return np.where(np.isfinite(m), p.c * np.exp(np.minimum(m, 50.0)) + p.a, p.a)

    def expected_recall_gain(self, t: np.ndarray, *, horizon_s: float) -> np.ndarray:
        """For each concept, how much reviewing it at t [n] would raise the TRUE recall at t + horizon_s (float64
        [n, C]; the outcome does not matter in this law): the oracle's score."""
        t = np.asarray(t, dtype=np.float64)
        now = self.psychological_time(t)
        decay = self._decay_now(self._activation(now))
        later = self.psychological_time(t + horizon_s)
        extra = (np.broadcast_to(now[:, None], decay.shape), decay)
        return self._recall_from(self._activation(later, extra)) - self._recall_from(self._activation(later))

    def _learn(self, rows, concepts, t, *, p, correct, grade) -> None:
        now = self.psychological_time(t)
        decay = self._decay_now(self._cell_activation(now, rows, concepts))
        slot = self.presentations[rows, concepts]
        if slot.max(initial=0) >= self._presented.shape[2]:  # room for more presentations: double it
            self._presented = np.concatenate([self._presented, np.zeros_like(self._presented)], axis=2)
            self._decay = np.concatenate([self._decay, np.zeros_like(self._decay)], axis=2)
        self._presented[rows, concepts, slot] = now
        self._decay[rows, concepts, slot] = decay
        self.presentations[rows, concepts] += 1
