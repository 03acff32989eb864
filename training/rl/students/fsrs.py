"""FSRS-6 students (NumPy only): family "fitted", students like a curriculum's own (its fitted parameters), and
family "fsrs6", students of the ``fsrs`` package's default parameters.

Memory law: FSRS-6 (open-spaced-repetition, Ye et al.; formulas as the ``fsrs`` Python package 6.x implements
them, in ``encoder.fsrs6``): a power forgetting curve ``R = (1 + FACTOR t / S) ** -w20`` on whole elapsed days,
stability S and difficulty D updated by each review's grade, a same-day (short-term) stability update
``S' = S e^(w17 (G - 3 + w18)) S^-w19`` for a review less than a day after the last one. A first review has true
recall 0 (it teaches, graded 1), as the built-in students.

* "fitted" (``StudentsLike``, ``FsrsCohort``): a curriculum's fitted 21 parameters and same-day rule
  (``same_day_stability``, or the older constant ``same_day_recall``; see ``encoder.fsrs6``);
* "fsrs6" (``Fsrs6Cohort``): ``fsrs.scheduler.DEFAULT_PARAMETERS`` read from the installed package, and the
  package's own same-day rule (recall 1.0 less than a whole day after a review; the short-term update above: a
  review minutes after the last adds ``e^(w17 (G - 3 + w18)) S^-w19`` to S, a factor that shrinks as S grows).

Per-learner and per-concept spread (both): learner s and concept c live on their own clock,
``t' = start_time + (t - start_time) * rate[s, c]`` with ``rate = exp(learner_sigma * z_s + concept_sigma * z_c)``
(z_s, z_c the shared traits of ``base``), so a learner with rate 2 forgets (and crosses day boundaries) twice as
fast as the median learner; with both sigmas 0 every student follows the parameters exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encoder import EncoderConfig, fsrs6
from .base import SimulatorConfig, StudentCohort, grade_from_recall


@dataclass(frozen=True)
class StudentsLike:
    """Students whose memory follows FSRS-6 with a curriculum's fitted ``parameters`` (21 floats) and same-day rule
    (``same_day_stability``, or the older constant ``same_day_recall``; at most one, see ``fsrs6``), spread per
    learner and per concept by log-normal clock rates (see the module docstring; sigmas >= 0). ValueError naming
    the field for parameters out of the package's bounds, two same-day rules, or a negative sigma."""

    parameters: tuple[float, ...]
    same_day_recall: tuple[float, ...] | None = None
    learner_sigma: float = 0.3
    concept_sigma: float = 0.3
    same_day_stability: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", tuple(float(v) for v in fsrs6.check_parameters(self.parameters)))
        table = fsrs6.check_same_day_recall(self.same_day_recall)
        object.__setattr__(self, "same_day_recall", None if table is None else tuple(float(v) for v in table))
        short = fsrs6.check_same_day_stability(self.same_day_stability)
        object.__setattr__(self, "same_day_stability", None if short is None else tuple(float(v) for v in short))
        if table is not None and short is not None:
            raise ValueError("same_day_stability: give one same-day rule, not it and same_day_recall")
        for name in ("learner_sigma", "concept_sigma"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name}: expected a number >= 0, got {getattr(self, name)!r}")

    @classmethod
    def from_encoder(cls, encoder: EncoderConfig | dict | None) -> "StudentsLike | None":
        """The students an encoder's fitted FSRS-6 describes; None unless the encoder is FSRS-6 with fitted
        parameters (a dict is read as ``dt_lite_config.json["encoder"]``)."""
        if encoder is None:
            return None
        config = encoder if isinstance(encoder, EncoderConfig) else EncoderConfig.from_dict(encoder)
        if config.estimator != "fsrs6" or config.fsrs6_parameters is None:
            return None
        return cls(parameters=config.fsrs6_parameters, same_day_recall=config.fsrs6_same_day_recall,
                   same_day_stability=config.fsrs6_same_day_stability)

    @classmethod
    def package_defaults(cls) -> "StudentsLike":
        """FSRS-6 students with the installed ``fsrs`` package's DEFAULT_PARAMETERS and its same-day rule (none:
        recall 1.0 within a day), default spread."""
        from fsrs.scheduler import DEFAULT_PARAMETERS

        return cls(parameters=tuple(DEFAULT_PARAMETERS))


class FsrsCohort(StudentCohort):
    """Family "fitted": students whose memory is FSRS-6 with ``students``' parameters and spread (the schedule, the
    dice and the grade rule are every family's: the same students' times and draws as the built-in cohort of the
    same seed)."""

    family = "fitted"

    def __init__(self, *, students: StudentsLike, num_students: int, num_concepts: int, interactions: int, seed: int,
                 held_out: bool = False, config: SimulatorConfig | None = None,
                 student_ids: np.ndarray | None = None) -> None:
        super().__init__(num_students=num_students, num_concepts=num_concepts, interactions=interactions, seed=seed,
                         held_out=held_out, config=config, student_ids=student_ids)
        self.students = students
        self._w = np.asarray(students.parameters, dtype=np.float64)
        self.rate = np.exp(students.learner_sigma * self.learner_normals[:, None]
                           + students.concept_sigma * self.concept_normals[None, :])  # [students, concepts]
        self.memory = fsrs6.init_memory(num_students, num_concepts)
        self._learners = np.repeat(np.arange(num_students), num_concepts)
        self._concepts = np.tile(np.arange(num_concepts), num_students)

    def own_time(self, t: np.ndarray, rows: np.ndarray | None = None, concepts: np.ndarray | None = None) -> np.ndarray:
        """Each learner's clock: t [n] -> [n, C] (or [n] for one concept per learner)."""
        start = self.config.start_time
        t = np.asarray(t, dtype=np.float64)
        if concepts is None:
            return start + (t[:, None] - start) * self.rate
        return start + (t - start) * self.rate[rows, concepts]

    def _recall(self, memory: fsrs6.Memory, t: np.ndarray) -> np.ndarray:
        own = self.own_time(np.broadcast_to(np.asarray(t, dtype=np.float64), (self.num_students,)))
        p = fsrs6.recall(memory, self._learners, self._concepts, own.reshape(-1), w=self._w,
                         same_day_recall=self.students.same_day_recall,
                         same_day_stability=self.students.same_day_stability)
        return p.reshape(self.num_students, self.num_concepts)

    def recall_probability(self, t: np.ndarray | float) -> np.ndarray:
        """True recall float64 [students, concepts] at time t (scalar or [students]): FSRS-6 on each one's clock."""
        return self._recall(self.memory, t)

    def expected_recall_gain(self, t: np.ndarray, *, horizon_s: float) -> np.ndarray:
        """For each concept, how much reviewing it at t [n] would raise the expected TRUE recall at t + horizon_s
        (float64 [n, C]), by FSRS-6 on the students' own memory (the oracle's score)."""
        t = np.asarray(t, dtype=np.float64)
        p = self.recall_probability(t)
        own = self.own_time(t).reshape(-1)
        after = np.zeros_like(p)
        for outcome, weight in ((True, p), (False, 1.0 - p)):
            memory = fsrs6.Memory(*(np.copy(getattr(self.memory, f)) for f in
                                    ("stability", "difficulty", "last_t", "last_grade", "reviews")))
            grade = grade_from_recall(np.full(p.size, outcome), p.reshape(-1))
            fsrs6.update(memory, self._learners, self._concepts, own, grade, w=self._w)
            after += weight * self._recall(memory, t + horizon_s)
        return after - self.recall_probability(t + horizon_s)

    def _recall_reviewed(self, rows, concepts, t) -> np.ndarray:
        own = self.own_time(t, rows, concepts)
        return fsrs6.recall(self.memory, rows, concepts, own, w=self._w,
                            same_day_recall=self.students.same_day_recall,
                            same_day_stability=self.students.same_day_stability)

    def _learn(self, rows, concepts, t, *, p, correct, grade) -> None:
        fsrs6.update(self.memory, rows, concepts, self.own_time(t, rows, concepts), grade, w=self._w)


class Fsrs6Cohort(FsrsCohort):
    """Family "fsrs6": FSRS-6 students with the ``fsrs`` package's default parameters (``StudentsLike
    .package_defaults()``: read from the installed package) and the default per-learner and per-concept spread."""

    family = "fsrs6"

    def __init__(self, *, num_students: int, num_concepts: int, interactions: int, seed: int,
                 held_out: bool = False, config: SimulatorConfig | None = None,
                 student_ids: np.ndarray | None = None) -> None:
        super().__init__(students=StudentsLike.package_defaults(), num_students=num_students,
                         num_concepts=num_concepts, interactions=interactions, seed=seed, held_out=held_out,
                         config=config, student_ids=student_ids)
