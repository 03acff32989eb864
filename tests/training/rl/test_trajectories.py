"""Review rows -> trajectories: streaming extraction, returns, statistics and the .npz file format."""
import io
import json
import zipfile

import numpy as np
import pytest

from training.rl.encoder import EncoderConfig, StateEncoder
from training.rl.simulator import generate_logs
from training.rl.trajectories import (
    ReviewColumns,
    TrajectoryDataset,
    dataset_statistics,
    extract_trajectories,
    load_dataset,
    save_dataset,
    trajectories_from_columns,
)

C = 6
FIELDS = ("states", "actions", "rewards", "returns_to_go", "timesteps", "episode_starts")


@pytest.fixture(scope="module")
def log() -> ReviewColumns:
    return generate_logs(num_users=12, interactions=40, num_concepts=C, seed=9)


@pytest.fixture(scope="module")
def dataset(log) -> TrajectoryDataset:
    return trajectories_from_columns(log, num_concepts=C, concept_keys=[f"c{i}" for i in range(C)])


def _saved(ds: TrajectoryDataset) -> bytes:
    buffer = io.BytesIO()
    save_dataset(ds, buffer)
    return buffer.getvalue()


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


def test_save_and_load_round_trip(dataset):
    loaded = load_dataset(io.BytesIO(_saved(dataset)))
    for name in FIELDS:
        original = getattr(dataset, name)
        assert np.array_equal(getattr(loaded, name), original) and getattr(loaded, name).dtype == original.dtype
    assert loaded.concept_keys == dataset.concept_keys and loaded.encoder == dataset.encoder


def test_saved_file_holds_no_pickles(dataset):
    with zipfile.ZipFile(io.BytesIO(_saved(dataset))) as archive:
        for name in archive.namelist():
            assert np.lib.format.read_array(archive.open(name), allow_pickle=False) is not None
        meta = np.lib.format.read_array(archive.open("meta.npy"))
    assert meta.dtype == np.uint8 and json.loads(meta.tobytes())["concept_keys"][0] == "c0"


def _rewrite(data: bytes, *, drop: str | None = None, replace: dict | None = None) -> io.BytesIO:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            name = item.filename[: -len(".npy")]
            if name == drop:
                continue
            if replace and name in replace:
                buffer = io.BytesIO()
                np.save(buffer, replace[name])
                dst.writestr(item.filename, buffer.getvalue())
            else:
                dst.writestr(item, src.read(item.filename))
    out.seek(0)
    return out


def test_load_refuses_a_missing_array_naming_it(dataset):
    with pytest.raises(ValueError, match="'returns_to_go' is missing"):
        load_dataset(_rewrite(_saved(dataset), drop="returns_to_go"))


def test_load_refuses_an_array_of_the_wrong_shape_naming_it(dataset):
    with pytest.raises(ValueError, match="'timesteps'"):
        load_dataset(_rewrite(_saved(dataset), replace={"timesteps": dataset.timesteps[:-1]}))
    with pytest.raises(ValueError, match="'episode_starts'"):
        load_dataset(_rewrite(_saved(dataset), replace={"episode_starts": dataset.episode_starts[::-1].copy()}))
    rs = dataset.review_states
    with pytest.raises(ValueError, match="'snapshot"):
        load_dataset(_rewrite(_saved(dataset), replace={"snapshots": rs.snapshots[:, :-1].copy()}))
    field = sorted(rs.memory)[0]
    with pytest.raises(ValueError, match=f"'memory.{field}'"):
        load_dataset(_rewrite(_saved(dataset), replace={f"memory.{field}": rs.memory[field][:-1].copy()}))
    held = TrajectoryDataset(states=dataset.states, actions=dataset.actions, rewards=dataset.rewards,
                             returns_to_go=dataset.returns_to_go, timesteps=dataset.timesteps,
                             episode_starts=dataset.episode_starts, concept_keys=dataset.concept_keys,
                             encoder=dataset.encoder)
    with pytest.raises(ValueError, match="'states'"):  # format 1: the states themselves
        load_dataset(_rewrite(_saved(held), replace={"states": dataset.states[:, :-1].copy()}))


def test_a_dataset_holding_its_states_round_trips_as_format_1(dataset):
    held = TrajectoryDataset(states=dataset.states, actions=dataset.actions, rewards=dataset.rewards,
                             returns_to_go=dataset.returns_to_go, timesteps=dataset.timesteps,
                             episode_starts=dataset.episode_starts, concept_keys=dataset.concept_keys,
                             encoder=dataset.encoder)
    loaded = load_dataset(io.BytesIO(_saved(held)))
    assert loaded.review_states is None and np.array_equal(loaded.states, dataset.states)
    assert dataset_statistics(loaded)["storage"]["format_version"] == 1


def test_load_refuses_corrupt_bytes_naming_the_array(dataset):
    data = bytearray(_saved(dataset))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("rewards.npy")
    # flip a byte inside the stored data of rewards.npy (after its local header) so its CRC fails
    offset = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size - 2
    data[offset] ^= 0xFF
    with pytest.raises(ValueError, match="'rewards'"):
        load_dataset(io.BytesIO(bytes(data)))
    with pytest.raises(ValueError, match="not a readable"):
        load_dataset(io.BytesIO(b"not a zip file"))


def test_dataset_statistics_summarise_episodes_returns_and_actions(dataset):
    stats = dataset_statistics(dataset)
    json.dumps(stats)
    returns = dataset.returns_to_go[dataset.episode_starts[:-1]]
    assert stats["episodes"] == 12 and stats["steps"] == 480 and stats["state_dim"] == 4 * C
    assert stats["return"]["mean"] == pytest.approx(float(returns.mean()))
    assert stats["return"]["min"] <= stats["return"]["p10"] <= stats["return"]["p50"] <= stats["return"]["p90"]
    assert stats["return"]["p90"] <= stats["return"]["max"]
    counts = stats["actions"]["counts"]
    assert sum(counts.values()) == 480 and set(counts) == set(dataset.concept_keys)
    assert 0 < stats["actions"]["normalised_entropy"] <= 1
