"""Synthetic students practising a curriculum, vectorised over students (NumPy only).

Used to generate synthetic review logs under a recorded mix of behaviour policies, and for closed-loop evaluation.

Model (arrays [students, concepts]):

* per student a learning rate ``lr`` and a forgetting rate ``fr`` (log-normal around 1), per concept a difficulty
  ``d`` (log-normal around 1; fixed by ``SimulatorConfig.curriculum_seed`` so that training and held-out cohorts
  practise the same curriculum);
* true recall ``p = 2 ** (-fr * elapsed / h)`` with ``h`` the half-life; a concept never seen has
  ``p = unseen_recall`` (0 by default: nothing is known before it is taught);
* a review's outcome is Bernoulli(p). The first review teaches: ``h = base_half_life_s * lr / d``. Afterwards a
  correct review multiplies ``h`` by ``1 + growth * lr * (1 - p) ** recall_exponent / d`` (spacing effect: low
  recall gives a large gain, massed repetition at p ~ 1 almost none); a wrong one sets
  ``h = max(first half-life, h * lapse_keep)``;
* grade: 1 when wrong; when correct 2, 3 or 4 as the recall strength ``p`` (jittered by +-0.05) is below 0.5,
  below 0.85 or above; response time ``(1200 + 8000 * (1 - p)) ms * lognormal(0, 0.3)``, x1.5 when wrong;
* time: a review every few seconds to a minute within a session, sessions of ~``mean_session_reviews`` reviews,
  several sessions a day hours apart and 1-3 days between some sessions.

Students like a curriculum's own (``StudentsLike``, ``FsrsCohort``): the same schedule, dice and grade rule, but
the memory is FSRS-6 (``encoder.fsrs6``: its ``update`` and ``recall``, same-day rule included) with a curriculum's
fitted parameters. Per-learner spread: learner s and concept c live on their own clock,
``t' = start_time + (t - start_time) * rate[s, c]`` with ``rate = exp(learner_sigma * z_s + concept_sigma * z_c)``
(z standard normal: z_s from the student's stream, z_c from the curriculum's), so a learner with rate 2 forgets
(and crosses day boundaries) twice as fast as the fitted median learner; with both sigmas 0 every student follows
the parameters exactly. A first review has true recall 0 (it teaches, graded 1), as the built-in students.

Randomness: everything a student is (rates, review times, the uniform draws behind outcomes) comes from a stream
of ``(seed, domain, student)``, so the schedule and the dice do not depend on the policy (evaluation is paired)
nor on how many students are simulated. ``domain`` separates training cohorts (0) from held-out evaluation
cohorts (1): no training seed can produce an evaluation student.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .encoder import EncoderConfig, StateEncoder, fsrs6
from .policies import Observation, Policy, make_policy, normalise_mix
from .trajectories import ReviewColumns

TRAINING_DOMAIN = 0
HELD_OUT_DOMAIN = 1
_STUDENT_STREAM = 0
_POLICY_STREAM = 1
_ASSIGNMENT_STREAM = 2
ORACLE_HORIZON_S = 86400.0  # the oracle maximises expected true recall this long after each review


@dataclass(frozen=True)
class SimulatorConfig:
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


class Cohort:
    """num_students simulated students who will each do ``interactions`` reviews at the times of ``schedule()``."""

    def __init__(
        self,
        *,
        num_students: int,
        num_concepts: int,
        interactions: int,
        seed: int,
        held_out: bool = False,
        config: SimulatorConfig | None = None,
    ) -> None:
        self.config = cfg = config or SimulatorConfig()
        self.num_students, self.num_concepts, self.interactions = num_students, num_concepts, interactions
        self.seed, self.domain = seed, HELD_OUT_DOMAIN if held_out else TRAINING_DOMAIN
        curriculum_rng = np.random.default_rng([cfg.curriculum_seed, num_concepts])
        self.difficulty = np.exp(cfg.difficulty_sigma * curriculum_rng.standard_normal(num_concepts))
        traits = np.empty((num_students, 2))
        uniforms = np.empty((num_students, 6, interactions))  # 4 for the schedule, 2 for outcomes and grades
        normals = np.empty((num_students, interactions))
        for s in range(num_students):
            rng = np.random.default_rng([seed, self.domain, _STUDENT_STREAM, s])
            traits[s] = rng.standard_normal(2)
            uniforms[s] = rng.random((6, interactions))
            normals[s] = rng.standard_normal(interactions)
        self.concept_normals = np.log(self.difficulty) / cfg.difficulty_sigma if cfg.difficulty_sigma else np.zeros(
            num_concepts)
        self.learner_normals = traits[:, 1].copy()
        self.learning_rate = np.exp(cfg.learning_rate_sigma * traits[:, 0])
        self.forgetting_rate = np.exp(cfg.forgetting_rate_sigma * traits[:, 1])
        self._times = self._make_schedule(uniforms[:, :4])
        self._outcome_u, self._grade_u, self._rt_z = uniforms[:, 4], uniforms[:, 5], normals
        self._reviews_done = 0
        shape = (num_students, num_concepts)
        self.half_life = np.ones(shape)
        self.last_review = np.zeros(shape)
        self.seen = np.zeros(shape, dtype=bool)

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
        """True recall float64 [students, concepts] at time t (scalar or [students])."""
        t = np.broadcast_to(np.asarray(t, dtype=np.float64), (self.num_students,))
        elapsed = np.maximum(t[:, None] - self.last_review, 0.0) * self.forgetting_rate[:, None]
        return np.where(self.seen, np.exp2(-elapsed / self.half_life), self.config.unseen_recall)

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

    def review(self, concepts: np.ndarray, t: np.ndarray) -> ReviewOutcome:
        """Every student reviews concepts[s] at t[s] (its k-th call uses the k-th dice of each student)."""
        if self._reviews_done >= self.interactions:
            raise RuntimeError(f"cohort: all {self.interactions} interactions have been reviewed")
        cfg, k = self.config, self._reviews_done
        rows = np.arange(self.num_students)
        concepts = np.asarray(concepts, dtype=np.int64)
        t = np.asarray(t, dtype=np.float64)
        p = self.recall_probability(t)[rows, concepts]
        correct = self._outcome_u[:, k] < p

        if_correct, if_wrong = self.half_life_after(
            p=p, half_life=self.half_life[rows, concepts], seen=self.seen[rows, concepts], concepts=concepts
        )
        self.half_life[rows, concepts] = np.where(correct, if_correct, if_wrong)
        self.last_review[rows, concepts] = t
        self.seen[rows, concepts] = True
        self._reviews_done += 1

        grade = _grade(correct, p + 0.1 * (self._grade_u[:, k] - 0.5))
        rt = (1200.0 + 8000.0 * (1.0 - p)) * np.exp(0.3 * self._rt_z[:, k]) * np.where(correct, 1.0, 1.5)
        return ReviewOutcome(correct=correct, grade=grade, response_time_ms=rt.astype(np.int32))


def _grade(correct: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """1 when wrong; when correct 2, 3 or 4 as the recall strength is below 0.5, below 0.85 or above (int8)."""
    return np.where(correct, np.where(strength < 0.5, 2, np.where(strength < 0.85, 3, 4)), 1).astype(np.int8)


@dataclass(frozen=True)
class StudentsLike:
    """Students whose memory follows FSRS-6 with a curriculum's fitted ``parameters`` (21 floats) and same-day rule
    (``same_day_stability``, or the older constant ``same_day_recall``; at most one, see ``fsrs6``), spread per
    learner and per concept by log-normal clock rates (see the module docstring; sigmas >= 0)."""

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


class FsrsCohort(Cohort):
    """A Cohort whose memory is FSRS-6 with ``students``' parameters and spread (the schedule, the dice and the
    grade rule are Cohort's: the same students' times and draws as the built-in cohort of the same seed)."""

    def __init__(self, *, students: StudentsLike, num_students: int, num_concepts: int, interactions: int, seed: int,
                 held_out: bool = False, config: SimulatorConfig | None = None) -> None:
        super().__init__(num_students=num_students, num_concepts=num_concepts, interactions=interactions, seed=seed,
                         held_out=held_out, config=config)
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
            grade = _grade(np.full(p.size, outcome), p.reshape(-1))
            fsrs6.update(memory, self._learners, self._concepts, own, grade, w=self._w)
            after += weight * self._recall(memory, t + horizon_s)
        return after - self.recall_probability(t + horizon_s)

    def review(self, concepts: np.ndarray, t: np.ndarray) -> ReviewOutcome:
        """Every student reviews concepts[s] at t[s] (its k-th call uses the k-th dice of each student)."""
        if self._reviews_done >= self.interactions:
            raise RuntimeError(f"cohort: all {self.interactions} interactions have been reviewed")
        k = self._reviews_done
        rows = np.arange(self.num_students)
        concepts = np.asarray(concepts, dtype=np.int64)
        own = self.own_time(np.asarray(t, dtype=np.float64), rows, concepts)
        p = fsrs6.recall(self.memory, rows, concepts, own, w=self._w, same_day_recall=self.students.same_day_recall,
                         same_day_stability=self.students.same_day_stability)
        correct = self._outcome_u[:, k] < p
        grade = _grade(correct, p + 0.1 * (self._grade_u[:, k] - 0.5))
        fsrs6.update(self.memory, rows, concepts, own, grade, w=self._w)
        self._reviews_done += 1
        rt = (1200.0 + 8000.0 * (1.0 - p)) * np.exp(0.3 * self._rt_z[:, k]) * np.where(correct, 1.0, 1.5)
        return ReviewOutcome(correct=correct, grade=grade, response_time_ms=rt.astype(np.int32))


def make_cohort(*, students_like: StudentsLike | None = None, **kwargs) -> Cohort:
    """The built-in students (``Cohort``), or FSRS-6 students like a curriculum's (``FsrsCohort``) when
    ``students_like`` is given; kwargs as Cohort's."""
    if students_like is None:
        return Cohort(**kwargs)
    return FsrsCohort(students=students_like, **kwargs)


@dataclass(frozen=True)
class Rollout:
    """A closed loop's log, arrays [students, interactions] (step order = time order)."""

    concepts: np.ndarray  # int64
    t: np.ndarray  # float64
    correct: np.ndarray  # bool
    grade: np.ndarray  # int8
    response_time_ms: np.ndarray  # int32
    rewards: np.ndarray  # float32, the encoder's reward


def run_policies(
    *, cohort: Cohort, groups: list[tuple[Policy, np.ndarray]], encoder: StateEncoder
) -> Rollout:
    """Drive the cohort for all its interactions; groups assign each student (rows) to one policy."""
    n, steps = cohort.num_students, cohort.interactions
    times = cohort.schedule()
    out = {
        "concepts": np.zeros((n, steps), dtype=np.int64),
        "correct": np.zeros((n, steps), dtype=bool),
        "grade": np.zeros((n, steps), dtype=np.int8),
        "response_time_ms": np.zeros((n, steps), dtype=np.int32),
        "rewards": np.zeros((n, steps), dtype=np.float32),
    }
    memory = encoder.init_memory(n)
    cumulative = np.zeros(n)  # float64 sum of the float32 rewards, as LearnerState and returns-to-go add them
    all_rows = np.arange(n)
    needs_truth = any(policy.uses_true_recall for policy, _ in groups)
    for k in range(steps):
        t = times[:, k]
        recall = encoder.recall(memory, t)
        states = encoder.encode(memory, t)
        true_recall = cohort.recall_probability(t) if needs_truth else None
        true_gain = cohort.expected_recall_gain(t, horizon_s=ORACLE_HORIZON_S) if needs_truth else None
        concepts = np.zeros(n, dtype=np.int64)
        for policy, rows in groups:
            obs = Observation(
                step=k,
                t=t[rows],
                recall=recall[rows],
                states=states[rows],
                cumulative_reward=cumulative[rows],
                true_recall=true_recall[rows] if policy.uses_true_recall else None,
                true_gain=true_gain[rows] if policy.uses_true_recall else None,
            )
            concepts[rows] = policy.select(obs)
        outcome = cohort.review(concepts, t)
        rewards = encoder.update(memory, all_rows, concepts, t, outcome.correct, outcome.grade)
        cumulative += rewards
        for policy, rows in groups:
            policy.observe(
                concepts=concepts[rows], t=t[rows], correct=outcome.correct[rows], rewards=rewards[rows]
            )
        out["concepts"][:, k] = concepts
        out["correct"][:, k] = outcome.correct
        out["grade"][:, k] = outcome.grade
        out["response_time_ms"][:, k] = outcome.response_time_ms
        out["rewards"][:, k] = rewards
    return Rollout(t=times, **out)


def policy_rng(*, seed: int, held_out: bool, name: str) -> np.random.Generator:
    """The random stream a policy draws from, a function of (seed, domain, policy name) only."""
    domain = HELD_OUT_DOMAIN if held_out else TRAINING_DOMAIN
    return np.random.default_rng([seed, domain, _POLICY_STREAM, *name.encode()])


def generate_logs(
    *,
    num_users: int,
    interactions: int,
    num_concepts: int,
    seed: int,
    policy_mix: dict[str, float] | None = None,
    config: SimulatorConfig | None = None,
    encoder: EncoderConfig | None = None,
    students_like: StudentsLike | None = None,
) -> ReviewColumns:
    """A synthetic log sorted by (learner, time); each learner follows one behaviour policy drawn from policy_mix
    (default ``policies.DEFAULT_POLICY_MIX``), recorded in ``behaviour_policy``. Behaviour policies see the state
    of ``encoder`` (default ``EncoderConfig(num_concepts)``). Students: the built-in ones, or ``students_like``'s."""
    mix = normalise_mix(policy_mix)
    names = list(mix)
    assignment_rng = np.random.default_rng([seed, TRAINING_DOMAIN, _ASSIGNMENT_STREAM])
    assigned = assignment_rng.choice(len(names), size=num_users, p=[mix[name] for name in names])
    cohort = make_cohort(students_like=students_like, num_students=num_users, num_concepts=num_concepts,
                         interactions=interactions, seed=seed, config=config)
    groups = []
    for i, name in enumerate(names):
        rows = np.flatnonzero(assigned == i)
        if len(rows):
            rng = policy_rng(seed=seed, held_out=False, name=name)
            groups.append((make_policy(name, num_learners=len(rows), num_concepts=num_concepts, rng=rng), rows))
    encoder_config = encoder or EncoderConfig(num_concepts=num_concepts)
    rollout = run_policies(cohort=cohort, groups=groups, encoder=StateEncoder(encoder_config))
    return ReviewColumns(
        learner=np.repeat(np.arange(num_users, dtype=np.int64), interactions),
        concept=rollout.concepts.reshape(-1),
        t=rollout.t.reshape(-1),
        correct=rollout.correct.reshape(-1),
        grade=rollout.grade.reshape(-1),
        response_time_ms=rollout.response_time_ms.reshape(-1),
        behaviour_policy=np.array([names[i] for i in assigned], dtype=str),
    )
