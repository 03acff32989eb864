"""A dataset's .npz file: round trips (formats 1 and 2), no pickles, and refusals that name the array."""
import io
import json
import zipfile

import numpy as np
import pytest

from training.rl.dataset_file import load_dataset, save_dataset
from training.rl.dataset_statistics import dataset_statistics
from training.rl.trajectories import TrajectoryDataset

FIELDS = ("states", "actions", "rewards", "returns_to_go", "timesteps", "episode_starts")


def _saved(ds: TrajectoryDataset) -> bytes:
    buffer = io.BytesIO()
    save_dataset(ds, buffer)
    return buffer.getvalue()


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
