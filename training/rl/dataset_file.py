"""A TrajectoryDataset's file: .npz arrays and a JSON meta record, written and read without pickles.

The extraction job saves one through the artifacts storage; training on "an extracted dataset" reads it back.
"""
from __future__ import annotations

import json
import zipfile
from typing import BinaryIO

import numpy as np

from .encoder import EncoderConfig
from .review_states import ReviewStates
from .trajectories import TrajectoryDataset

# Format 2 keeps review rows (review_states.py), format 1 the states [N, S] (still read; written for datasets
# that hold their states, e.g. hand-made ones).
DATASET_FORMAT_VERSION = 2
_STEP_ARRAYS = {  # name -> (dtype, number of dimensions)
    "actions": (np.int64, 1),
    "rewards": (np.float32, 1),
    "returns_to_go": (np.float32, 1),
    "timesteps": (np.int64, 1),
}
_MEMORY_PREFIX = "memory."


def format_version(ds: TrajectoryDataset) -> int:
    """The format save_dataset writes ds in: 2 when it keeps review rows, 1 when it holds its states."""
    return 1 if ds.review_states is None else DATASET_FORMAT_VERSION


def save_dataset(ds: TrajectoryDataset, fileobj: BinaryIO) -> None:
    """Write ds as .npz (no pickles): the arrays plus ``meta``, UTF-8 JSON bytes (uint8) with the concept keys,
    the encoder config and the format version. Format 2 (review rows): ``t`` float64 [N], ``memory.<field>``
    [N, ...], ``snapshot_rows`` int64 [M], ``snapshots`` int32 [M, C], and ``snapshot_every`` in meta; format 1
    (a dataset holding its states): ``states`` float32 [N, S]."""
    meta = {"format_version": format_version(ds), "concept_keys": list(ds.concept_keys), "encoder": ds.encoder}
    arrays = {name: np.asarray(getattr(ds, name), dtype=dtype) for name, (dtype, _) in _STEP_ARRAYS.items()}
    arrays["episode_starts"] = np.asarray(ds.episode_starts, dtype=np.int64)
    rs = ds.review_states
    if rs is None:
        arrays["states"] = np.asarray(ds.stored_states, dtype=np.float32)
    else:
        meta["snapshot_every"] = rs.snapshot_every
        arrays |= {"t": rs.t, "snapshot_rows": rs.snapshot_rows, "snapshots": rs.snapshots}
        arrays |= {_MEMORY_PREFIX + name: values for name, values in rs.memory.items()}
    np.savez(fileobj, **arrays, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8))


def _read(archive, name: str) -> np.ndarray:
    if name not in archive.files:
        raise ValueError(f"dataset file: array {name!r} is missing")
    try:
        return archive[name]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"dataset file: array {name!r} is corrupt ({exc})") from exc


def _check_array(name: str, a: np.ndarray, dtype, ndim: int, n: int) -> None:
    if a.dtype != dtype or a.ndim != ndim or a.shape[0] != n:
        raise ValueError(
            f"dataset file: array {name!r} has dtype {a.dtype} shape {a.shape}, expected {np.dtype(dtype)} "
            f"with {ndim} dimension(s) and {n} rows"
        )


def load_dataset(fileobj: BinaryIO) -> TrajectoryDataset:
    """Read a file written by save_dataset (format 1 or 2); refuses a missing, corrupt or inconsistent array,
    naming it."""
    try:
        archive = np.load(fileobj, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"dataset file: not a readable .npz archive ({exc})") from exc
    with archive:
        raw_meta = _read(archive, "meta")
        try:
            meta = json.loads(raw_meta.astype(np.uint8).tobytes().decode("utf-8"))
            concept_keys, encoder = list(meta["concept_keys"]), dict(meta["encoder"])
            version = meta["format_version"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"dataset file: array 'meta' is not the expected JSON ({exc})") from exc
        if version not in (1, DATASET_FORMAT_VERSION):
            raise ValueError(
                f"dataset file: array 'meta' has format_version {version!r}, expected 1 or {DATASET_FORMAT_VERSION}"
            )
        arrays = {name: _read(archive, name) for name in (*_STEP_ARRAYS, "episode_starts")}
        if version == 1:
            arrays["states"] = _read(archive, "states")
        else:
            for name in ("t", "snapshot_rows", "snapshots"):
                arrays[name] = _read(archive, name)
            memory = {name[len(_MEMORY_PREFIX):]: _read(archive, name) for name in archive.files
                      if name.startswith(_MEMORY_PREFIX)}

    n = len(arrays["actions"])
    for name, (dtype, ndim) in _STEP_ARRAYS.items():
        _check_array(name, arrays[name], dtype, ndim, n)
    starts = arrays["episode_starts"]
    if (starts.dtype != np.int64 or starts.ndim != 1 or len(starts) < 1 or starts[0] != 0 or starts[-1] != n
            or (np.diff(starts) <= 0).any()):
        raise ValueError(f"dataset file: array 'episode_starts' must be increasing int64 offsets from 0 to {n}")
    if concept_keys and n and (arrays["actions"].min() < 0 or arrays["actions"].max() >= len(concept_keys)):
        raise ValueError(f"dataset file: array 'actions' holds indices outside [0, {len(concept_keys)})")
    steps = {name: arrays[name] for name in _STEP_ARRAYS}
    if version == 1:
        states = arrays["states"]
        _check_array("states", states, np.float32, 2, n)
        if encoder and states.shape[1] != EncoderConfig.from_dict(encoder).state_dim:
            raise ValueError(f"dataset file: array 'states' has {states.shape[1]} columns, the encoder's "
                             f"{EncoderConfig.from_dict(encoder).state_dim}")
        return TrajectoryDataset(states=states, episode_starts=starts, concept_keys=concept_keys, encoder=encoder,
                                 **steps)
    if not encoder:
        raise ValueError("dataset file: array 'meta' has no encoder config (format 2 needs it)")
    config = EncoderConfig.from_dict(encoder)
    _check_array("t", arrays["t"], np.float64, 1, n)
    rows, snaps = arrays["snapshot_rows"], arrays["snapshots"]
    _check_array("snapshot_rows", rows, np.int64, 1, len(rows))
    _check_array("snapshots", snaps, np.int32, 2, len(rows))
    if snaps.shape[1] != config.num_concepts or (len(rows) and (rows.min() < 0 or rows.max() >= n
                                                                 or (np.diff(rows) < 0).any())):
        raise ValueError(f"dataset file: arrays 'snapshot_rows'/'snapshots' must be sorted rows in [0, {n}) with "
                         f"{config.num_concepts} columns")
    if len(snaps) and (snaps.min() < -1 or snaps.max() >= n):
        raise ValueError(f"dataset file: array 'snapshots' holds rows outside [-1, {n})")
    for name, values in memory.items():
        if values.shape[:1] != (n,):
            raise ValueError(f"dataset file: array {_MEMORY_PREFIX + name!r} has shape {values.shape}, expected {n} rows")
    every = meta.get("snapshot_every")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"dataset file: array 'meta' has snapshot_every {every!r}, expected a positive integer")
    review_states = ReviewStates(t=arrays["t"], concept=steps["actions"], episode_starts=starts, memory=memory,
                                 snapshot_rows=rows, snapshots=snaps, snapshot_every=every, encoder=config)
    return TrajectoryDataset(review_states=review_states, episode_starts=starts, concept_keys=concept_keys,
                             encoder=encoder, **steps)
