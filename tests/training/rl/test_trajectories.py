"""Review rows -> trajectories: streaming extraction, states, returns and timesteps."""
import numpy as np
import pytest

from training.rl.encoder import EncoderConfig, StateEncoder
from training.rl.review_columns import ReviewColumns
from training.rl.trajectories import extract_trajectories, trajectories_from_columns

C = 6  # the concepts of the shared log (conftest.py)
FIELDS = ("states", "actions", "rewards", "returns_to_go", "timesteps", "episode_starts")


def test_trajectories_are_identical_with_different_chunk_sizes(log, dataset):
    for size in (1, 7, 40, 41, 333):
        other = trajectories_from_columns(log, num_concepts=C, concept_keys=dataset.concept_keys, chunk_rows=size)
        for name in FIELDS:
            assert np.array_equal(getattr(other, name), getattr(dataset, name)), (size, name)
    # streamed without total_rows: the output is gathered per chunk
    streamed = extract_trajectories(chunks=log.chunks(size=13), encoder=EncoderConfig(num_concepts=C))
    for name in FIELDS:
        assert np.array_equal(getattr(streamed, name), getattr(dataset, name)), name


def test_one_episode_per_learner_with_steps_actions_and_shapes(log, dataset):
    assert dataset.episode_starts.tolist() == list(range(0, 12 * 40 + 1, 40))
    assert dataset.states.shape == (480, 4 * C) and dataset.states.dtype == np.float32
    assert np.array_equal(dataset.actions, log.concept)
    assert dataset.timesteps[:40].tolist() == list(range(40))
    assert dataset.encoder == EncoderConfig(num_concepts=C).to_dict()


def test_state_is_the_encoding_before_the_review_at_its_time(log, dataset):
    encoder = StateEncoder(EncoderConfig(num_concepts=C))
    empty = encoder.encode(encoder.init_memory(1), log.t[:1])[0]
    assert np.array_equal(dataset.states[0], empty)
    memory = encoder.init_memory(1)
    for i in range(3):
        encoder.update(memory, np.array([0]), log.concept[[i]], log.t[[i]], log.correct[[i]], log.grade[[i]])
    assert np.array_equal(dataset.states[3], encoder.encode(memory, log.t[[3]])[0])


def test_returns_to_go_are_suffix_sums_of_rewards_within_each_episode(dataset):
    for e in range(len(dataset.episode_starts) - 1):
        start, end = dataset.episode_starts[e], dataset.episode_starts[e + 1]
        rewards = dataset.rewards[start:end].astype(np.float64)
        expected = np.cumsum(rewards[::-1])[::-1]
        np.testing.assert_allclose(dataset.returns_to_go[start:end], expected, atol=1e-6)


def test_timesteps_are_capped_below_max_timestep(log):
    ds = trajectories_from_columns(log, num_concepts=C, max_timestep=16, chunk_rows=9)
    assert ds.timesteps.max() == 15
    assert ds.timesteps[:18].tolist() == list(range(16)) + [15, 15]


def test_extraction_refuses_rows_out_of_order_naming_the_columns(log):
    shuffled = ReviewColumns(
        learner=log.learner[::-1].copy(), concept=log.concept, t=log.t, correct=log.correct, grade=log.grade,
        response_time_ms=log.response_time_ms,
    )
    with pytest.raises(ValueError, match="learner, t"):
        trajectories_from_columns(shuffled, num_concepts=C)
    back_in_time = [next(log.chunks(size=30)), next(log.chunks(size=10))]  # learner 0 again, earlier
    with pytest.raises(ValueError, match="learner, t"):
        extract_trajectories(chunks=back_in_time, encoder=EncoderConfig(num_concepts=C))
    with pytest.raises(ValueError, match="concept"):
        trajectories_from_columns(log, num_concepts=C - 1)
