"""States rebuilt from review rows when a batch is drawn equal the full step-by-step encoding, and a dataset's
size does not grow with the number of concepts."""
import numpy as np
import pytest

from training.rl.encoder import EncoderConfig, StateEncoder
from training.rl.review_columns import ReviewColumns
from training.rl.simulator import generate_logs
from training.rl.trainer import sample_windows
from training.rl.trajectories import trajectories_from_columns

C = 7


@pytest.fixture(scope="module")
def log() -> ReviewColumns:
    return generate_logs(num_users=9, interactions=60, num_concepts=C, seed=4)


def full_encoding(log: ReviewColumns, config: EncoderConfig) -> np.ndarray:
    """The states as extraction stored them before: every step encoded, one learner at a time."""
    enc = StateEncoder(config)
    states = np.empty((len(log), config.state_dim), np.float32)
    memory, previous = None, None
    for i in range(len(log)):
        if log.learner[i] != previous:
            memory, previous = enc.init_memory(1), log.learner[i]
        t = log.t[[i]]
        states[i] = enc.encode(memory, t)[0]
        enc.update(memory, np.array([0]), log.concept[[i]], t, log.correct[[i]], log.grade[[i]])
    return states


@pytest.mark.parametrize("snapshot_every,chunk_rows", [(1, 1000), (3, 17), (8, 60), (128, 41)])
def test_states_computed_at_batch_time_equal_the_full_encoding(log, snapshot_every, chunk_rows):
    config = EncoderConfig(num_concepts=C)
    ds = trajectories_from_columns(log, encoder=config, chunk_rows=chunk_rows, snapshot_every=snapshot_every)
    expected = full_encoding(log, config)
    assert ds.stored_states is None  # nothing of size N x S is kept
    assert np.array_equal(ds.state_rows(np.arange(len(log))), expected)
    rows = np.random.default_rng(0).integers(0, len(log), size=(5, 11))  # any order, any shape
    assert np.array_equal(ds.state_rows(rows), expected[rows])


def test_drawn_batches_carry_the_full_encodings_states(log):
    config = EncoderConfig(num_concepts=C)
    ds = trajectories_from_columns(log, encoder=config, snapshot_every=5)
    expected = full_encoding(log, config)
    rng = np.random.default_rng(1)
    batch = sample_windows(ds, rng=rng, batch_size=16, context_length=10)
    rng = np.random.default_rng(1)
    ends = rng.integers(0, len(ds.actions), size=16)
    rows = ends[:, None] - 9 + np.arange(10)
    starts = ds.episode_starts[np.searchsorted(ds.episode_starts, ends, side="right") - 1]
    valid = rows >= starts[:, None]
    assert np.array_equal(batch["states"][valid], expected[rows[valid]])
    assert (batch["states"][~valid] == 0).all()


def test_the_dataset_size_grows_with_reviews_not_with_reviews_times_concepts():
    sizes = {}
    for concepts in (10, 400):
        log = generate_logs(num_users=20, interactions=50, num_concepts=concepts, seed=2)
        ds = trajectories_from_columns(log, num_concepts=concepts)
        sizes[concepts] = ds.nbytes
        per_row = ds.nbytes / len(log)
        assert per_row < 200, per_row  # the states would be 4 x concepts x 4 bytes a row
    # only the snapshots (every 128 steps, none here for 50-step episodes) grow with concepts
    assert sizes[400] == sizes[10]
