"""The simulation's results are pinned: making it faster (issue #22) must not change a single generated review.

The SHA-256 digests below were computed with the code of commit 78b1ebe (before the fast path: every step built the
full encoded states and recall of every learner, the students' recall of every concept), by running exactly these
cases (``_log_digest`` / ``_rollout_digest``) on that checkout. They cover every family, the default behaviour mix
and every behaviour policy, the three encoder estimators' paths (FSRS-6 with the default and a fitted same-day rule,
the half-life estimator), mixed cohorts, and a deck whose learners never see every concept. A digest that changes
means the generated log changed: a change of stream, which must be documented and the policy figures re-measured,
never a side effect of an optimisation. The rollouts' float arrays are hashed rounded to 1e-9: their last bits differ
between CPUs (on 2026-12-06 the same code gave other bits on another machine), so those digests were re-computed
with 78b1ebe's code, which gives the same rounded digests as the code of today.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from training.rl.encoder import EncoderConfig, StateEncoder
from training.rl.policies import BEHAVIOUR_POLICIES, POLICIES, Policy, make_policy
from training.rl.simulator import StudentsLike, generate_logs, make_cohort, policy_rng, run_policies

EVERY = {name: 1.0 for name in BEHAVIOUR_POLICIES}
FITTED = StudentsLike(parameters=(0.3, 1.1, 2.5, 7.0, 6.0, 0.8, 2.9, 0.01, 1.7, 0.2, 0.9, 1.4, 0.07, 0.25, 1.6, 0.6,
                                  1.9, 0.5, 0.1, 0.07, 0.2), same_day_stability=(0.001, 0.8, 1.5, 5.0))
SAME_DAY_ENCODER = EncoderConfig(num_concepts=7, fsrs6_same_day_stability=(0.002, 1.0, 2.0, 6.0))
HALF_LIFE_ENCODER = EncoderConfig(num_concepts=7, estimator="halflife")

# generate_logs(num_users=40, interactions=30, num_concepts=7, seed=5, **kwargs)
LOG_CASES = {
    "builtin-default": (dict(families="builtin"),
                        "e9f8b8a9a667e1df80a3876e2fde1fac144279106eff7cf28be38288a62e84f2"),
    "fsrs6-default": (dict(families="fsrs6"), "295faccda5f67ed0301f442043909de3be985c9ddbf6d6cb488a831dd6f0b0b9"),
    "actr-default": (dict(families="actr"), "093934db6c2c3a6f7a0cc4038e989e04ecc209a5b6616130c0b4d21021b5972d"),
    "hlr-default": (dict(families="hlr"), "cc02e70d76edcbcf6deef012ac6fa9ebfa89b1b9b914ad3a888fd01fd1db12bf"),
    "fitted-default": (dict(families="fitted", students_like=FITTED),
                       "0d354221060ea07e9fa3421b87c623be169a41c9d6efa8d3445a8db4ec09fb08"),
    "mixed-default": (dict(families="builtin,fsrs6,actr,hlr"),
                      "3639dfb955a49e3e2aabb407dbe07f57ef2747cdaf368045598c561e11beb321"),
    "builtin-every": (dict(families="builtin", policy_mix=EVERY),
                      "ebd757b596d87333a4d65bc138b73fbc35da6d484c85f05250112d26f9052728"),
    "mixed-every": (dict(families="builtin,fsrs6,actr,hlr,fitted", students_like=FITTED, policy_mix=EVERY),
                    "a2536aded70ee8c39e8092aadbf4c38ca72fe6aab76553d5a031af8b4cfeda3c"),
    "builtin-every-sameday": (dict(families="builtin", policy_mix=EVERY, encoder=SAME_DAY_ENCODER),
                              "744d3a16522975c64964adf0fca0c2dfbe447d78854bb6deb58519cdb1af4089"),
    "hlr-every-halflife": (dict(families="hlr", policy_mix=EVERY, encoder=HALF_LIFE_ENCODER),
                           "91c084c05bdb9332fcfc7890675094f819e13325e5e6519608a172a8784691a5"),
}
# generate_logs(num_users=30, interactions=50, num_concepts=40, seed=6, families=every family, every policy):
# no learner sees every concept, so the policies' never-reviewed-first rules decide most reviews.
WIDE_DIGEST = "1408039a6bc381b00ca1e2cf6c6c26766e93f9265c54a68c19f751bc1ee1f49a"

# run_policies on 26 held-out students (seed 8) x 25 reviews of 6 concepts, every policy of POLICIES (oracle
# included) and _StateReader on interleaved rows: the whole rollout (rewards too) and the final true recall.
ROLLOUT_DIGESTS = {  # floats rounded to 1e-9 (_exact_or_rounded); re-computed on 78b1ebe's code on 2026-12-06
    "builtin": "f3426c60a7156ab3e898a93575a605e582f848cbe9cd723543004b4d3702f46e",
    "fsrs6": "d1f2e816bb33e1dd9bc3e0594e4e361036fc6f05de552369aa4b7fea1225334f",
    "actr": "325bbe225fa5b737c7ed274ed9cbea029e44a49aace0b1558230e218ec224441",
    "hlr": "58b92cf7ac8357af98210cea326e98375920d921e11eac146a261a2810fd5022",
    "fitted": "10c07601009bfac453228b123219051826dcc5c8c67f9ad5b5e14c79986e97d4",
}


def _log_digest(log) -> str:
    digest = hashlib.sha256()
    for name in ("learner", "concept", "t", "correct", "grade", "response_time_ms"):
        digest.update(np.ascontiguousarray(getattr(log, name)).tobytes())
    digest.update("\n".join(log.behaviour_policy.tolist()).encode())
    return digest.hexdigest()


class _StateReader(Policy):
    """A test policy that reads the encoded states and the reward so far, as the Decision Transformer does: the
    concept longest unreviewed (the elapsed feature's maximum) until the learner's return passes 0.2, then the
    most recently reviewed one."""

    name = "state_reader"
    uses_states = True
    uses_rewards = True

    def select(self, obs):
        elapsed = obs.states[:, 1::4]
        late = obs.cumulative_reward > 0.2
        return np.where(late, np.argmin(elapsed, axis=1), np.argmax(elapsed, axis=1)).astype(np.int64)


def _rollout_digest(family: str) -> str:
    students, concepts, interactions = 26, 6, 25
    cohort = make_cohort(family=family, students_like=FITTED if family == "fitted" else None, num_students=students,
                         num_concepts=concepts, interactions=interactions, seed=8, held_out=True)
    names = [*POLICIES, _StateReader.name]
    groups = []
    for i, name in enumerate(names):
        rows = np.arange(students)[i::len(names)]
        rng = policy_rng(seed=8, held_out=True, name=name)
        policy = (_StateReader(num_learners=len(rows), num_concepts=concepts, rng=rng) if name == _StateReader.name
                  else make_policy(name, num_learners=len(rows), num_concepts=concepts, rng=rng))
        groups.append((policy, rows))
    rollout = run_policies(cohort=cohort, groups=groups, encoder=StateEncoder(EncoderConfig(num_concepts=concepts)))
    digest = hashlib.sha256()
    for name in ("concepts", "t", "correct", "grade", "response_time_ms", "rewards"):
        digest.update(_exact_or_rounded(getattr(rollout, name)))
    digest.update(_exact_or_rounded(cohort.recall_probability(cohort.schedule()[:, -1] + 86400.0)))
    return digest.hexdigest()


def _exact_or_rounded(values) -> bytes:
    """The bytes hashed for one array: integers exactly; floats rounded to 1e-9, because libm and NumPy's SIMD
    exp/log differ in the last bit between CPUs (the same commit gave other float bits on another machine)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        values = np.round(values.astype(np.float64), 9)
    return np.ascontiguousarray(values).tobytes()


@pytest.mark.parametrize("case", sorted(LOG_CASES))
def test_generated_log_is_bit_identical_to_the_pinned_one(case):
    kwargs, expected = LOG_CASES[case]
    log = generate_logs(num_users=40, interactions=30, num_concepts=7, seed=5, **kwargs)
    assert _log_digest(log) == expected


def test_generated_log_of_a_deck_no_learner_finishes_is_bit_identical_to_the_pinned_one():
    log = generate_logs(num_users=30, interactions=50, num_concepts=40, seed=6,
                        families="builtin,fsrs6,actr,hlr,fitted", students_like=FITTED, policy_mix=EVERY)
    assert _log_digest(log) == WIDE_DIGEST


@pytest.mark.parametrize("family", sorted(ROLLOUT_DIGESTS))
def test_closed_loop_rollout_with_rewards_and_states_is_bit_identical_to_the_pinned_one(family):
    assert _rollout_digest(family) == ROLLOUT_DIGESTS[family]
