"""The state encoder and the serving EncodedLearnerState: the same numbers however the log arrives."""
import json

import numpy as np
import pytest

from training.rl.encoder import (
    FEATURES_PER_CONCEPT,
    NEVER_REVIEWED_ELAPSED,
    EncoderConfig,
    EncodedLearnerState,
    StateEncoder,
)
from training.rl.simulator import generate_logs
from training.rl.trajectories import trajectories_from_columns

C = 5
T0 = 1_700_000_000.0
DAY = 86400.0


@pytest.fixture(params=["fsrs6", "halflife"])
def encoder(request) -> StateEncoder:
    """Either estimator: what every encoding must do."""
    return StateEncoder(EncoderConfig(estimator=request.param, num_concepts=C))


@pytest.fixture
def halflife() -> StateEncoder:
    """The half-life estimator (configs exported before FSRS-6)."""
    return StateEncoder(EncoderConfig(estimator="halflife", num_concepts=C))


@pytest.fixture(scope="module")
def log():
    return generate_logs(num_users=6, interactions=25, num_concepts=C, seed=4)


def _review(encoder, memory, concept, t, correct=True, grade=3, row=0):
    one = [np.array([value]) for value in (row, concept, t, correct, grade)]
    return encoder.update(memory, *one)


def _learner_rows(log, learner):
    rows = np.flatnonzero(log.learner == learner)
    return [(int(log.concept[i]), float(log.t[i]), bool(log.correct[i]), int(log.grade[i])) for i in rows]


def test_state_dim_is_features_per_concept_times_concepts_in_concept_major_layout(encoder):
    memory = encoder.init_memory(1)
    _review(encoder, memory, 2, T0)
    state = encoder.encode(memory, np.array([T0 + 3600]))
    assert state.shape == (1, FEATURES_PER_CONCEPT * C) and state.dtype == np.float32
    per_concept = state.reshape(C, FEATURES_PER_CONCEPT)
    never = [0, 1, 3, 4]
    assert (per_concept[never, 0] == 0).all() and (per_concept[never, 1] == NEVER_REVIEWED_ELAPSED).all()
    assert 0.9 < per_concept[2, 0] <= 1 and (per_concept[2, 1:] > 0).all()


def test_estimated_recall_halves_after_one_stability(halflife):
    encoder = halflife
    memory = encoder.init_memory(1)
    _review(encoder, memory, 0, T0, correct=False, grade=1)
    stability = memory.stability[0, 0]
    assert stability == encoder.config.initial_stability_s[0]
    assert encoder.recall(memory, np.array([T0]))[0, 0] == 1.0
    assert encoder.recall(memory, np.array([T0 + stability]))[0, 0] == pytest.approx(0.5)


def test_correct_review_at_low_recall_grows_stability_more_than_a_massed_one(halflife):
    encoder = halflife
    memory = encoder.init_memory(2)
    for row in (0, 1):
        _review(encoder, memory, 0, T0, correct=False, grade=1, row=row)
    first = memory.stability[0, 0]
    _review(encoder, memory, 0, T0 + 60, row=0)  # massed: recall ~ 1
    _review(encoder, memory, 0, T0 + 2 * first, row=1)  # spaced: recall 0.25
    massed, spaced = memory.stability[:, 0] / first
    assert 1.0 < massed < 1.01 and spaced > 3


def test_lapse_shrinks_stability_but_not_below_the_first_and_raises_difficulty(halflife):
    encoder = halflife
    memory = encoder.init_memory(1)
    _review(encoder, memory, 0, T0, grade=4)
    for k in range(1, 4):
        _review(encoder, memory, 0, T0 + k * 2 * DAY, grade=3)
    before_s, before_d = memory.stability[0, 0], memory.difficulty[0, 0]
    _review(encoder, memory, 0, T0 + 30 * DAY, correct=False, grade=1)
    assert encoder.config.initial_stability_s[0] <= memory.stability[0, 0] < before_s
    assert memory.difficulty[0, 0] > before_d


def test_unknown_grade_counts_as_good_when_correct_and_a_wrong_review_as_grade_one(halflife):
    encoder = halflife
    memory = encoder.init_memory(4)
    for row, (correct, grade) in enumerate([(True, 0), (True, 3), (False, 0), (False, 4)]):
        _review(encoder, memory, 0, T0, correct=correct, grade=grade, row=row)
    assert memory.stability[0, 0] == memory.stability[1, 0]
    assert memory.stability[2, 0] == memory.stability[3, 0] == encoder.config.initial_stability_s[0]


def test_rewards_telescope_to_mean_recall_at_the_horizon_after_the_last_review(encoder):
    rng = np.random.default_rng(0)
    memory = encoder.init_memory(1)
    t, total = T0, 0.0
    for _ in range(30):
        t += float(rng.choice([20.0, 5 * 3600.0, 2 * DAY]))
        total += float(_review(encoder, memory, int(rng.integers(C)), t, correct=bool(rng.random() < 0.7))[0])
    final = encoder.recall(memory, np.array([t + encoder.config.horizon_s]))[0].mean()
    assert total == pytest.approx(final, abs=1e-5)
    assert final > 0


def test_encoder_gives_identical_states_whether_the_log_is_fed_whole_or_in_chunks(encoder, log):
    learners, steps = 6, 25
    by_step = log.learner.reshape(learners, steps)  # the log is sorted by (learner, time)
    assert (by_step == np.arange(learners)[:, None]).all()
    whole = encoder.init_memory(learners)
    states_whole = np.empty((learners, steps, encoder.state_dim), dtype=np.float32)
    for k in range(steps):  # every learner's k-th review in one batch
        idx = np.arange(learners) * steps + k
        states_whole[:, k] = encoder.encode(whole, log.t[idx])
        encoder.update(whole, np.arange(learners), log.concept[idx], log.t[idx], log.correct[idx], log.grade[idx])

    one_by_one = encoder.init_memory(learners)
    states_single = np.empty_like(states_whole)
    for i in np.argsort(log.t, kind="stable"):  # one review at a time, learners interleaved in time
        learner, k = divmod(int(i), steps)
        row = np.array([learner])
        states_single[learner, k] = encoder.encode(one_by_one, log.t[[i]], rows=row)[0]
        encoder.update(one_by_one, row, log.concept[[i]], log.t[[i]], log.correct[[i]], log.grade[[i]])

    assert np.array_equal(states_whole, states_single)
    for name in ("stability", "difficulty", "last_review", "reviews", "potential", "last_grade"):
        assert np.array_equal(getattr(whole, name), getattr(one_by_one, name)), name


def test_encoder_config_round_trips_through_json_and_refuses_unknown_keys():
    config = EncoderConfig(estimator="halflife", num_concepts=7, growth=5.0)
    data = json.loads(json.dumps(config.to_dict()))
    assert EncoderConfig.from_dict(data) == config
    assert EncoderConfig.from_dict(data).state_dim == 28
    with pytest.raises(ValueError, match="colour"):
        EncoderConfig.from_dict(data | {"colour": "red"})
    with pytest.raises(ValueError, match="num_concepts"):
        EncoderConfig(num_concepts=0)


def test_concept_stability_scales_the_first_review_of_its_concept_only():
    encoder = StateEncoder(EncoderConfig(estimator="halflife", num_concepts=3, concept_stability=(1.0, 4.0, 0.25)))
    memory = encoder.init_memory(1)
    for concept in range(3):
        _review(encoder, memory, concept, T0, correct=False, grade=1)
    first = encoder.config.initial_stability_s[0]
    assert memory.stability[0].tolist() == [first, 4 * first, first / 4]
    _review(encoder, memory, 1, T0 + DAY, correct=False, grade=1)  # a lapse: as without the factor
    assert memory.stability[0, 1] == max(first, 4 * first * encoder.config.lapse_factor)


def test_concept_stability_is_validated_and_round_trips_only_when_fitted():
    with pytest.raises(ValueError, match="2 factors for 3 concepts"):
        EncoderConfig(estimator="halflife", num_concepts=3, concept_stability=(1.0, 2.0))
    with pytest.raises(ValueError, match="finite and > 0"):
        EncoderConfig(estimator="halflife", num_concepts=2, concept_stability=(1.0, 0.0))
    assert "concept_stability" not in EncoderConfig(num_concepts=2).to_dict()  # as before the field existed
    fitted = EncoderConfig(estimator="halflife", num_concepts=2, concept_stability=[0.5, 2])
    data = json.loads(json.dumps(fitted.to_dict()))
    assert data["concept_stability"] == [0.5, 2.0] and EncoderConfig.from_dict(data) == fitted


def test_an_encoder_for_more_or_fewer_concepts_keeps_the_fitted_factors_it_can():
    fitted = EncoderConfig(estimator="halflife", num_concepts=2, concept_stability=(0.5, 2.0))
    assert fitted.with_num_concepts(4).concept_stability == (0.5, 2.0, 1.0, 1.0)
    assert fitted.with_num_concepts(1).concept_stability == (0.5,)
    assert EncoderConfig(num_concepts=2).with_num_concepts(3) == EncoderConfig(num_concepts=3)


# ---------------------------------------------------------------------------------------------- EncodedLearnerState


def test_learner_state_incremental_equals_from_history_after_a_late_review(encoder, log):
    rows = _learner_rows(log, 2)
    incremental = EncodedLearnerState.new(encoder=encoder, context_length=6)
    for concept, t, correct, grade in rows:
        incremental.observe(concept=concept, t=t, correct=correct, grade=grade)
    late = rows[:10] + rows[11:]  # review 10 arrives last, out of order
    partial = EncodedLearnerState.new(encoder=encoder, context_length=6)
    for concept, t, correct, grade in late:
        partial.observe(concept=concept, t=t, correct=correct, grade=grade)
    with pytest.raises(ValueError, match="from_history"):
        partial.observe(concept=rows[10][0], t=rows[10][1], correct=rows[10][2], grade=rows[10][3])
    rebuilt = EncodedLearnerState.from_history(late + [rows[10]], encoder=encoder, context_length=6)
    now = rows[-1][1] + 3600
    for a, b in zip(incremental.context(now, 0.8), rebuilt.context(now, 0.8)):
        assert np.array_equal(a, b)
    assert incremental.cumulative_reward == rebuilt.cumulative_reward


def test_learner_state_round_trips_through_json(encoder, log):
    state = EncodedLearnerState.from_history(_learner_rows(log, 1), encoder=encoder, context_length=4)
    restored = EncodedLearnerState.from_dict(json.loads(json.dumps(state.to_dict())), encoder=encoder)
    now = float(log.t[log.learner == 1][-1]) + 60
    for a, b in zip(state.context(now, 1.0), restored.context(now, 1.0)):
        assert np.array_equal(a, b)
    concept, t = 3, now + 10
    review = {"concept": concept, "t": t, "correct": True, "grade": 3}
    assert state.observe(**review) == restored.observe(**review)
    assert len(json.dumps(state.to_dict())) < 2000


def test_learner_state_from_dict_refuses_another_encoder(encoder):
    data = EncodedLearnerState.new(encoder=encoder, context_length=3).to_dict()
    with pytest.raises(ValueError, match="num_concepts"):
        EncodedLearnerState.from_dict(data, encoder=StateEncoder(EncoderConfig(num_concepts=C + 1)))


def test_context_ends_with_the_decision_now_and_keeps_context_length_positions(encoder, log):
    rows = _learner_rows(log, 0)
    state = EncodedLearnerState.from_history(rows, encoder=encoder, context_length=5)
    now = rows[-1][1] + 7200
    rtg, states, actions, timesteps = state.context(now, 0.9, max_timestep=23)
    assert rtg.shape == actions.shape == timesteps.shape == (5,) and states.shape == (5, encoder.state_dim)
    assert rtg.dtype == np.float32 and states.dtype == np.float32 and actions.dtype == timesteps.dtype == np.int64
    assert actions[-1] == 0 and actions[:-1].tolist() == [r[0] for r in rows[-4:]]
    assert rtg[-1] == np.float32(0.9 - state.cumulative_reward)
    assert timesteps.tolist() == [21, 22, 22, 22, 22]  # steps 21..25 clipped to max_timestep - 1
    assert np.array_equal(states[-1], state.encode(now))


def test_new_learner_context_is_the_decision_alone(encoder):
    rtg, states, actions, timesteps = EncodedLearnerState.new(encoder=encoder, context_length=20).context(T0, 0.7)
    assert rtg.tolist() == [np.float32(0.7)] and actions.tolist() == [0] and timesteps.tolist() == [0]
    assert np.array_equal(states[0], encoder.encode(encoder.init_memory(1), np.array([T0]))[0])


def test_serving_states_and_returns_equal_the_extracted_trajectory(encoder, log):
    ds = trajectories_from_columns(log, encoder=encoder.config, chunk_rows=17)
    learner, k = 3, 25
    rows = _learner_rows(log, learner)
    state = EncodedLearnerState.from_history(rows[: k - 1], encoder=encoder, context_length=k)
    start = ds.episode_starts[learner]
    _, states, actions, timesteps = state.context(rows[k - 1][1], 0.0)
    assert np.array_equal(states, ds.states[start : start + k])
    assert np.array_equal(actions[:-1], ds.actions[start : start + k - 1])
    assert np.array_equal(timesteps, ds.timesteps[start : start + k])
    assert state.cumulative_reward == pytest.approx(float(ds.rewards[start : start + k - 1].sum()), abs=1e-6)


def test_recall_and_rewards_over_the_reviewed_cells_equal_the_whole_grid(encoder, log):
    """recall and the reward's potential read the reviewed cells only: the same numbers as each estimator's formula
    on the whole [n, C] grid (FSRS-6's recall_grid, the half-life curve), 0 for concepts never reviewed."""
    from training.rl.encoder import fsrs6

    memory = encoder.init_memory(3)
    rng = np.random.default_rng(0)
    for step in range(8):
        rows = np.array([0, 2]) if step % 2 else np.array([0, 1, 2])
        t = T0 + step * DAY * rng.uniform(0.2, 2.0, rows.size)
        before = memory.potential[rows].copy()
        rewards = encoder.update(memory, rows, rng.integers(0, C, rows.size), t, rng.random(rows.size) < 0.7,
                                 rng.integers(1, 5, rows.size))
        horizon = t + encoder.config.horizon_s
        cfg = encoder.config
        if cfg.estimator == "fsrs6":
            grid = fsrs6.recall_grid(fsrs6.Memory(stability=memory.stability[rows] / fsrs6.DAY_S,
                                                  difficulty=memory.difficulty[rows], last_t=memory.last_review[rows],
                                                  last_grade=memory.last_grade[rows], reviews=memory.reviews[rows]),
                                     horizon, w=cfg.parameters, same_day_recall=cfg.fsrs6_same_day_recall,
                                     same_day_stability=cfg.same_day_stability)
        else:
            elapsed = np.maximum(horizon[:, None] - memory.last_review[rows], 0.0)
            grid = np.where(memory.reviews[rows] > 0, np.exp2(-elapsed / memory.stability[rows]), 0.0)
        assert np.array_equal(encoder.recall(memory, horizon, rows=rows), grid)
        assert np.allclose(rewards, (grid.mean(axis=1) - before).astype(np.float32), rtol=0, atol=1e-7)
    assert (memory.reviews == 0).any()  # some cells never reviewed, so the sparse path is exercised
