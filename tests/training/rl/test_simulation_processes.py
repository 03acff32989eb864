"""Simulation at the hardware's pace (issue #22): the log does not depend on the number of processes, a policy group
split into parts draws as the whole group, and a step computes only what the policies read."""
from __future__ import annotations

import numpy as np
import pytest

from training.rl import simulator
from training.rl.encoder import EncoderConfig, StateEncoder
from training.rl.policies import (BEHAVIOUR_POLICIES, Observation, Policy, lowest_recall_choice, make_policy,
                                  never_reviewed_first)
from training.rl.simulator import StudentsLike, generate_logs, make_cohort, policy_rng, run_policies

COLUMNS = ("learner", "concept", "t", "correct", "grade", "response_time_ms", "behaviour_policy")
FITTED = StudentsLike(parameters=(0.3, 1.1, 2.5, 7.0, 6.0, 0.8, 2.9, 0.01, 1.7, 0.2, 0.9, 1.4, 0.07, 0.25, 1.6, 0.6,
                                  1.9, 0.5, 0.1, 0.07, 0.2), same_day_stability=(0.001, 0.8, 1.5, 5.0))


def test_generated_log_does_not_depend_on_the_number_of_processes(monkeypatch):
    monkeypatch.setattr(simulator, "MIN_REVIEWS_PER_PROCESS", 1)  # split even this small cohort
    kwargs = dict(num_users=37, interactions=40, num_concepts=5, seed=4, families="builtin,fsrs6,actr,hlr,fitted",
                  students_like=FITTED, policy_mix={name: 1.0 for name in BEHAVIOUR_POLICIES})
    one = generate_logs(**kwargs)
    three = generate_logs(processes=3, **kwargs)
    for name in COLUMNS:
        assert np.array_equal(getattr(one, name), getattr(three, name)), name


def test_a_cohort_below_the_minimum_part_stays_in_this_process(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a worker process was started")

    monkeypatch.setattr(simulator, "worker_pool", refuse)
    log = generate_logs(num_users=50, interactions=3, num_concepts=4, seed=1, processes=4)
    assert len(log) == 150 < simulator.MIN_REVIEWS_PER_PROCESS


@pytest.mark.parametrize("processes", [0, -1, 1.5, True, "2"])
def test_generate_logs_refuses_a_number_of_processes_that_is_not_a_positive_integer(processes):
    with pytest.raises(ValueError, match="processes"):
        generate_logs(num_users=2, interactions=2, num_concepts=3, seed=1, processes=processes)


@pytest.mark.parametrize("name", ["random", "noisy_lowest_recall", "noisy_varied_target_recall",
                                  "varied_target_recall"])
def test_a_policy_group_split_into_parts_chooses_as_the_whole_group(name):
    m, concepts, steps = 11, 6, 8
    rng = np.random.default_rng(0)
    recall = rng.random((steps, m, concepts))
    reviewed = rng.random((steps, m, concepts)) < 0.8

    def choices(rows: slice) -> np.ndarray:
        policy = make_policy(name, num_learners=rows.stop - rows.start, num_concepts=concepts,
                             rng=np.random.default_rng(7), stream_learners=m, stream_offset=rows.start)
        return np.stack([policy.select(Observation(step=k, t=np.zeros(rows.stop - rows.start), recall=recall[k, rows],
                                                   states=None, cumulative_reward=None, reviewed=reviewed[k, rows]))
                         for k in range(steps)], axis=1)

    whole = choices(slice(0, m))
    parts = np.concatenate([choices(slice(0, 4)), choices(slice(4, 5)), choices(slice(5, m))])
    assert np.array_equal(parts, whole)


def test_a_policy_part_must_fit_in_its_group():
    with pytest.raises(ValueError, match="stream_offset"):
        make_policy("random", num_learners=5, num_concepts=3, rng=np.random.default_rng(0), stream_learners=6,
                    stream_offset=2)


def test_never_reviewed_first_equals_the_argmin_over_every_concept_and_asks_only_for_finished_learners():
    rng = np.random.default_rng(3)
    recall = rng.random((200, 5))
    reviewed = rng.random((200, 5)) < 0.85
    asked = []

    def choose(done):
        asked.append(done)
        return lowest_recall_choice(recall[done], reviewed[done])

    assert np.array_equal(never_reviewed_first(reviewed, choose), lowest_recall_choice(recall, reviewed))
    assert np.array_equal(np.concatenate(asked), np.flatnonzero(reviewed.all(axis=1)))


class _Recording(Policy):
    """round robin that records what each observation carried."""

    name = "recording"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[Observation] = []
        self.recall: list[np.ndarray] = []  # recall_of every learner, asked during the step (it reads live memory)
        self.rewards: list[np.ndarray | None] = []

    def select(self, obs):
        self.seen.append(obs)
        self.recall.append(obs.recall_of(np.arange(self.num_learners)))
        return np.full(self.num_learners, obs.step % self.num_concepts, dtype=np.int64)

    def observe(self, *, concepts, t, correct, rewards):
        self.rewards.append(rewards)


class _RecordingWithStates(_Recording):
    uses_states = True
    uses_rewards = True


def _rollout(policy_class, *, rewards):
    cohort = make_cohort(num_students=6, num_concepts=4, interactions=7, seed=2)
    policy = policy_class(num_learners=6, num_concepts=4, rng=policy_rng(seed=2, held_out=False, name="x"))
    rollout = run_policies(cohort=cohort, groups=[(policy, np.arange(6))],
                           encoder=StateEncoder(EncoderConfig(num_concepts=4)), rewards=rewards)
    return policy, rollout


def test_a_step_computes_states_and_rewards_only_for_policies_that_read_them():
    lean, lean_rollout = _rollout(_Recording, rewards=False)
    assert all(obs.states is None and obs.cumulative_reward is None and obs.recall is None for obs in lean.seen)
    assert all(r is None for r in lean.rewards) and lean_rollout.rewards is None
    full, full_rollout = _rollout(_RecordingWithStates, rewards=False)
    assert all(obs.states.shape == (6, 16) and obs.cumulative_reward.shape == (6,) for obs in full.seen)
    assert full_rollout.rewards.shape == (6, 7) and all(r.shape == (6,) for r in full.rewards)
    # what is computed does not change what is generated
    for name in ("concepts", "t", "correct", "grade", "response_time_ms"):
        assert np.array_equal(getattr(lean_rollout, name), getattr(full_rollout, name)), name


def test_on_demand_recall_and_the_kept_reviewed_matrix_equal_the_encoder_state():
    policy, _ = _rollout(_RecordingWithStates, rewards=True)
    encoder = StateEncoder(EncoderConfig(num_concepts=4))
    assert any(obs.reviewed.any() and not obs.reviewed.all() for obs in policy.seen)
    for obs, recall in zip(policy.seen, policy.recall):
        assert np.array_equal(obs.reviewed, obs.states[:, 2::4] > 0)
        assert np.array_equal(recall.astype(np.float32), encoder.recall_from_states(obs.states))
