"""Synthetic students practising a curriculum: the closed loop and the synthetic log (NumPy only).

Used to generate synthetic review logs under a recorded mix of behaviour policies, and for closed-loop evaluation.
The students themselves live in ``students/`` (one module per family, each with its documented memory law; this
module re-exports the built-in ``Cohort``, ``SimulatorConfig``, ``ReviewOutcome``, ``StudentsLike``, ``FsrsCohort``
and ``make_cohort`` for older imports).

Randomness: everything a student is (traits, review times, the uniform draws behind outcomes) comes from a stream
of ``(seed, domain, student)`` (``students.base``), so the schedule and the dice do not depend on the policy
(evaluation is paired) nor on how many students are simulated. ``domain`` separates training cohorts (0) from
held-out evaluation cohorts (1): no training seed can produce an evaluation student. A policy draws from
``(seed, domain, policy name)``; a training learner's behaviour policy from ``(seed, 0, assignment)`` and, with
several families, its family from ``(seed, 0, family)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .cpu_threads import pool_size, worker_pool
from .encoder import EncoderConfig, EncoderMemory, StateEncoder
from .policies import Observation, Policy, make_policy, normalise_mix
from .review_columns import ReviewColumns
from .students import (ASSIGNMENT_STREAM, FAMILY_STREAM, HELD_OUT_DOMAIN, POLICY_STREAM, TRAINING_DOMAIN, Cohort,
                       FsrsCohort, ReviewOutcome, SimulatorConfig, StudentCohort, StudentsLike, make_cohort,
                       parse_families)

__all__ = [
    "HELD_OUT_DOMAIN", "ORACLE_HORIZON_S", "TRAINING_DOMAIN", "Cohort", "FsrsCohort", "ReviewOutcome", "Rollout",
    "SimulatorConfig", "StudentCohort", "StudentsLike", "generate_logs", "make_cohort", "policy_rng",
    "run_policies",
]

ORACLE_HORIZON_S = 86400.0  # the oracle maximises expected true recall this long after each review


@dataclass(frozen=True)
class Rollout:
    """A closed loop's log, arrays [students, interactions] (step order = time order)."""

    concepts: np.ndarray  # int64
    t: np.ndarray  # float64
    correct: np.ndarray  # bool
    grade: np.ndarray  # int8
    response_time_ms: np.ndarray  # int32
    rewards: np.ndarray | None  # float32, the encoder's reward (None: run_policies(rewards=False))


def run_policies(
    *, cohort: Cohort, groups: list[tuple[Policy, np.ndarray]], encoder: StateEncoder, rewards: bool = True
) -> Rollout:
    """Drive the cohort for all its interactions; groups assign each student (rows) to one policy.

    A step computes what the groups' policies read and nothing more (``Policy.uses_*``): the encoded states only for
    the learners of a policy with ``uses_states``, the estimated recall on demand (``Observation.recall_of``: the
    recall rules need it only for learners who have reviewed every concept), the simulator's truth only for
    ``uses_true_recall``, the encoder's lookahead only for ``uses_expected_gain``. ``rewards`` False: the encoder's
    reward is not computed unless a policy has ``uses_rewards``, and ``Rollout.rewards`` is then None
    (``generate_logs``: a log has no reward column). What is computed is computed per learner as on the whole
    cohort, so the rollout is the same whichever parts are computed (tests/training/rl/test_simulation_pinned.py).
    """
    n, steps = cohort.num_students, cohort.interactions
    times = cohort.schedule()
    with_rewards = rewards or any(policy.uses_rewards for policy, _ in groups)
    out = {
        "concepts": np.zeros((n, steps), dtype=np.int64),
        "correct": np.zeros((n, steps), dtype=bool),
        "grade": np.zeros((n, steps), dtype=np.int8),
        "response_time_ms": np.zeros((n, steps), dtype=np.int32),
        "rewards": np.zeros((n, steps), dtype=np.float32) if with_rewards else None,
    }
    memory = encoder.init_memory(n)
    reviewed = np.zeros((n, encoder.num_concepts), dtype=bool)  # memory.reviews > 0, kept up to date in place
    cumulative = np.zeros(n)  # float64 sum of the float32 rewards, as LearnerState and returns-to-go add them
    all_rows = np.arange(n)
    needs_truth = any(policy.uses_true_recall for policy, _ in groups)
    for k in range(steps):
        t = times[:, k]
        true_recall = cohort.recall_probability(t) if needs_truth else None
        true_gain = cohort.expected_recall_gain(t, horizon_s=ORACLE_HORIZON_S) if needs_truth else None
        concepts = np.zeros(n, dtype=np.int64)
        for policy, rows in groups:
            at = t[rows]
            obs = Observation(
                step=k,
                t=at,
                recall=None,
                states=encoder.encode(memory, at, rows=rows) if policy.uses_states else None,
                cumulative_reward=cumulative[rows] if policy.uses_rewards else None,
                true_recall=true_recall[rows] if policy.uses_true_recall else None,
                true_gain=true_gain[rows] if policy.uses_true_recall else None,
                # the encoder's lookahead, for the planning policies' learners only
                expected_gain=(encoder.expected_recall_gain(memory, at, rows=rows) if policy.uses_expected_gain
                               else None),
                reviewed=reviewed[rows],
                recall_source=_recall_source(encoder, memory, at, rows),
            )
            concepts[rows] = policy.select(obs)
        outcome = cohort.review(concepts, t)
        step_rewards = encoder.update(memory, all_rows, concepts, t, outcome.correct, outcome.grade,
                                      rewards=with_rewards)
        reviewed[all_rows, concepts] = True
        if step_rewards is not None:
            cumulative += step_rewards
            out["rewards"][:, k] = step_rewards
        for policy, rows in groups:
            policy.observe(concepts=concepts[rows], t=t[rows], correct=outcome.correct[rows],
                           rewards=None if step_rewards is None else step_rewards[rows])
        out["concepts"][:, k] = concepts
        out["correct"][:, k] = outcome.correct
        out["grade"][:, k] = outcome.grade
        out["response_time_ms"][:, k] = outcome.response_time_ms
    return Rollout(t=times, **out)


def _recall_source(encoder: StateEncoder, memory: EncoderMemory, t: np.ndarray,
                   rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Observation.recall_source for a group's learners (rows of memory, at times t [m])."""
    return lambda learners: encoder.recall(memory, t[learners], rows=rows[learners])


def policy_rng(*, seed: int, held_out: bool, name: str) -> np.random.Generator:
    """The random stream a policy draws from, a function of (seed, domain, policy name) only."""
    domain = HELD_OUT_DOMAIN if held_out else TRAINING_DOMAIN
    return np.random.default_rng([seed, domain, POLICY_STREAM, *name.encode()])


# A worker process pays for itself only on a part of about a second or more: bench/simulation.py measured 250,000-
# 550,000 reviews/s on one core of the development machine (default mix, builtin students), and 0.3-0.7 s to start a
# pool of two workers and take their parts back (warm fork server; about 1 s cold).
MIN_REVIEWS_PER_PROCESS = 500_000


@dataclass(frozen=True)
class _Plan:
    """Everything that decides a synthetic log, drawn once for the whole cohort (so that parts agree on it)."""

    interactions: int
    num_concepts: int
    seed: int
    names: list[str]  # the behaviour policies, in the mix's order
    assigned: np.ndarray  # int64 [users]: each learner's policy (an index into names)
    families: tuple[str | None, ...]
    family_of: np.ndarray  # int64 [users]: each learner's family (an index into families)
    config: SimulatorConfig | None
    encoder: EncoderConfig
    students_like: StudentsLike | None


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
    families: str | tuple[str, ...] | list[str] | None = None,
    processes: int | Literal["auto"] = 1,
) -> ReviewColumns:
    """A synthetic log sorted by (learner, time); each learner follows one behaviour policy drawn from policy_mix
    (default ``policies.DEFAULT_POLICY_MIX``), recorded in ``behaviour_policy``. Behaviour policies see the state
    of ``encoder`` (default ``EncoderConfig(num_concepts)``).

    Students: ``families`` (names or "builtin,actr", see ``students.parse_families``; default the built-in
    students, or ``students_like``'s when it is given and families is None). With several families (domain
    randomisation) each learner belongs to one, drawn uniformly from the stream ``(seed, 0, family)``; learner i
    is the same student (stream, schedule, dice, behaviour policy) whatever the families. "fitted" needs
    ``students_like``. ValueError naming the family for an unknown one.

    ``processes``: at most this many worker processes (``cpu_threads.worker_pool``: forkserver, one BLAS thread
    each; "auto": one per available core), one per contiguous part of the learners, at least
    ``MIN_REVIEWS_PER_PROCESS`` reviews a part; 1 (the default), a cohort too small to split, or a daemonic caller (a
    Celery prefork worker may not start processes) simulates in this process (``cpu_threads.pool_size``). The log is
    the same whatever the number: a learner's students' streams are its own ``(seed, domain, learner)``, and a
    policy's draws are made for its whole group (``policies.Policy``). ValueError when processes is neither "auto"
    nor a positive integer.
    """
    mix = normalise_mix(policy_mix)
    names = list(mix)
    assignment_rng = np.random.default_rng([seed, TRAINING_DOMAIN, ASSIGNMENT_STREAM])
    assigned = assignment_rng.choice(len(names), size=num_users, p=[mix[name] for name in names])
    if families is None:
        chosen: tuple[str | None, ...] = (None,)  # make_cohort's default: built-in, or students_like's
    else:
        chosen = parse_families(families)
    if len(chosen) == 1:
        family_of = np.zeros(num_users, dtype=np.int64)
    else:
        family_rng = np.random.default_rng([seed, TRAINING_DOMAIN, FAMILY_STREAM])
        family_of = family_rng.integers(len(chosen), size=num_users)
    plan = _Plan(interactions=interactions, num_concepts=num_concepts, seed=seed, names=names, assigned=assigned,
                 families=chosen, family_of=family_of, config=config,
                 encoder=encoder or EncoderConfig(num_concepts=num_concepts), students_like=students_like)
    parts = pool_size(processes, parts=min(num_users, num_users * interactions // MIN_REVIEWS_PER_PROCESS))
    bounds = np.linspace(0, num_users, parts + 1).round().astype(np.int64)
    if parts == 1:
        pieces = [_simulate_part(plan, 0, num_users)]
    else:
        with worker_pool(parts, preload=[__name__]) as pool:  # one thread each: no oversubscription
            pieces = list(pool.map(_simulate_part, [plan] * parts, bounds[:-1].tolist(), bounds[1:].tolist()))
    out = {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}
    return ReviewColumns(
        learner=np.repeat(np.arange(num_users, dtype=np.int64), interactions),
        concept=out["concepts"].reshape(-1),
        t=out["t"].reshape(-1),
        correct=out["correct"].reshape(-1),
        grade=out["grade"].reshape(-1),
        response_time_ms=out["response_time_ms"].reshape(-1),
        behaviour_policy=np.array([names[i] for i in assigned], dtype=str),
    )


def _simulate_part(plan: _Plan, start: int, stop: int) -> dict[str, np.ndarray]:
    """The log of learners start..stop-1: arrays [stop - start, interactions] by column name (concepts, t, correct,
    grade, response_time_ms). Each family's learners in the part are a cohort of their own stream ids; each behaviour
    policy's learners in the part are a contiguous slice of the policy's group over the whole cohort, which draws as
    the whole group does (``Policy``'s stream_learners / stream_offset)."""
    n, single = stop - start, len(plan.families) == 1
    out = {name: np.zeros((n, plan.interactions), dtype=dtype) for name, dtype in (
        ("concepts", np.int64), ("t", np.float64), ("correct", bool), ("grade", np.int8),
        ("response_time_ms", np.int32))}
    for f, family in enumerate(plan.families):
        members = np.flatnonzero(plan.family_of == f)  # the family's learners over the whole cohort
        in_part = (members >= start) & (members < stop)
        part = members[in_part]
        if not len(part):
            continue
        cohort = make_cohort(family=family, students_like=plan.students_like, num_students=len(part),
                             num_concepts=plan.num_concepts, interactions=plan.interactions, seed=plan.seed,
                             config=plan.config, student_ids=part)
        position = np.cumsum(in_part) - 1  # a member's row in the part's cohort (where in_part)
        groups = []
        for i, name in enumerate(plan.names):
            group = np.flatnonzero(plan.assigned[members] == i)  # the policy's learners (positions in members)
            mine = in_part[group]
            if not mine.any():
                continue
            # one family keeps the policy streams of the single-population log; several get one each
            stream = name if single else f"{name}@{family}"
            rng = policy_rng(seed=plan.seed, held_out=False, name=stream)
            rows = position[group[mine]]
            policy = make_policy(name, num_learners=len(rows), num_concepts=plan.num_concepts, rng=rng,
                                 stream_learners=len(group), stream_offset=int(np.argmax(mine)))
            groups.append((policy, rows))
        rollout = run_policies(cohort=cohort, groups=groups, encoder=StateEncoder(plan.encoder), rewards=False)
        for key in out:
            out[key][part - start] = getattr(rollout, key)
    return out
