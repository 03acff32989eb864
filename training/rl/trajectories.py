"""Review rows -> trajectories for offline RL (NumPy only).

A trajectory is one learner's reviews in time order: per step the encoded state before the review,
the concept reviewed (the action), the reward and the return-to-go. Extraction streams over chunks of review
columns; datasets are saved as .npz without pickles.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from .encoder import EncoderConfig, EncoderMemory, StateEncoder


@dataclass
class TrajectoryDataset:
    """Flat, episode-concatenated arrays; episode e spans rows episode_starts[e]:episode_starts[e+1].

    states float32 [N, S]; actions int64 [N]; rewards float32 [N]; returns_to_go float32 [N];
    timesteps int64 [N] (step index within the episode, 0-based); episode_starts int64 [E + 1].
    concept_keys: action index -> concept key. encoder: the StateEncoder config dict that made the states.
    """

    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    returns_to_go: np.ndarray
    timesteps: np.ndarray
    episode_starts: np.ndarray
    concept_keys: list[str] = field(default_factory=list)
    encoder: dict = field(default_factory=dict)


@dataclass
class ReviewColumns:
    """Review rows as columns, sorted by (learner, time); the input of extraction (one chunk or a whole log).

    learner int64 [N] (any id, equal for one learner's rows); concept int64 [N] (position = action index);
    t float64 [N] (seconds since the epoch); correct bool [N]; grade int8 [N] (1-4, 0 unknown);
    response_time_ms int32 [N] (-1 unknown). behaviour_policy: the simulator's policy name per learner index
    (empty for real logs).
    """

    learner: np.ndarray
    concept: np.ndarray
    t: np.ndarray
    correct: np.ndarray
    grade: np.ndarray
    response_time_ms: np.ndarray
    behaviour_policy: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=str))

    def __len__(self) -> int:
        return len(self.learner)

    def chunks(self, *, size: int) -> Iterator["ReviewColumns"]:
        """Consecutive slices of at most size rows (a learner may straddle two)."""
        for start in range(0, len(self), size):
            part = slice(start, start + size)
            yield ReviewColumns(
                learner=self.learner[part], concept=self.concept[part], t=self.t[part], correct=self.correct[part],
                grade=self.grade[part], response_time_ms=self.response_time_ms[part],
            )


DEFAULT_MAX_TIMESTEP = 1024  # the DT's timestep table; later steps share its last row
DEFAULT_CHUNK_ROWS = 100_000


@dataclass
class _Carry:
    """The learner whose episode may continue in the next chunk."""

    learner: int
    memory: EncoderMemory
    steps: int
    last_t: float


def extract_trajectories(
    *,
    chunks: Iterable[ReviewColumns],
    encoder: EncoderConfig,
    concept_keys: list[str] | None = None,
    max_timestep: int = DEFAULT_MAX_TIMESTEP,
    total_rows: int | None = None,
) -> TrajectoryDataset:
    """Review chunks in (learner, time) order -> one episode per learner.

    Per step: the state is the encoding before the review at its time, the action the concept, the reward the
    encoder's, timesteps the step index clipped to max_timestep - 1 and returns-to-go the episode's suffix sum of
    rewards. Besides the output, memory holds one chunk and one carried learner. Within a chunk the work is
    vectorised across learners, one pass per step index; total_rows (when known) lets the output be allocated once.
    """
    if concept_keys is not None and len(concept_keys) != encoder.num_concepts:
        raise ValueError(f"concept_keys: {len(concept_keys)} keys for {encoder.num_concepts} concepts")
    enc = StateEncoder(encoder)
    out = _Output(enc.state_dim, total_rows)
    carry: _Carry | None = None
    for chunk in chunks:
        if len(chunk):
            carry = _extract_chunk(enc, chunk, carry, out, max_timestep)
    states, actions, rewards, timesteps, episode_starts = out.finish()
    return TrajectoryDataset(
        states=states,
        actions=actions,
        rewards=rewards,
        returns_to_go=_returns_to_go(rewards, episode_starts),
        timesteps=timesteps,
        episode_starts=episode_starts,
        concept_keys=[str(i) for i in range(encoder.num_concepts)] if concept_keys is None else list(concept_keys),
        encoder=encoder.to_dict(),
    )


def trajectories_from_columns(
    columns: ReviewColumns,
    *,
    encoder: EncoderConfig | None = None,
    num_concepts: int | None = None,
    concept_keys: list[str] | None = None,
    max_timestep: int = DEFAULT_MAX_TIMESTEP,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> TrajectoryDataset:
    """Extraction of an in-memory log (e.g. the simulator's), in chunks of chunk_rows."""
    if encoder is None:
        if num_concepts is None:
            raise ValueError("num_concepts: required when no encoder config is given")
        encoder = EncoderConfig(num_concepts=num_concepts)
    return extract_trajectories(
        chunks=columns.chunks(size=chunk_rows), encoder=encoder, concept_keys=concept_keys,
        max_timestep=max_timestep, total_rows=len(columns),
    )


class _Output:
    """The output arrays, allocated once when the row count is known, else gathered per chunk."""

    def __init__(self, state_dim: int, total_rows: int | None) -> None:
        self.state_dim, self.total_rows, self.filled = state_dim, total_rows, 0
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.episode_starts: list[np.ndarray] = []
        if total_rows is not None:
            self.arrays = _empty_steps(total_rows, state_dim)

    def next_rows(self, n: int) -> tuple[np.ndarray, ...]:
        """Arrays to fill for the next n rows."""
        if self.total_rows is None:
            part = _empty_steps(n, self.state_dim)
            self.parts.append(part)
        elif self.filled + n > self.total_rows:
            raise ValueError(f"total_rows: the chunks hold more than the {self.total_rows} rows announced")
        else:
            part = tuple(a[self.filled : self.filled + n] for a in self.arrays)
        self.filled += n
        return part

    def finish(self) -> tuple[np.ndarray, ...]:
        if self.total_rows is None:
            arrays = tuple(np.concatenate([p[i] for p in self.parts]) if self.parts else a
                           for i, a in enumerate(_empty_steps(0, self.state_dim)))
            self.parts.clear()
        elif self.filled != self.total_rows:
            raise ValueError(f"total_rows: {self.total_rows} rows announced, the chunks held {self.filled}")
        else:
            arrays = self.arrays
        starts = np.concatenate(self.episode_starts + [np.array([self.filled], dtype=np.int64)])
        return (*arrays, starts)


def _empty_steps(n: int, state_dim: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty((n, state_dim), dtype=np.float32),  # states
        np.empty(n, dtype=np.int64),  # actions
        np.empty(n, dtype=np.float32),  # rewards
        np.empty(n, dtype=np.int64),  # timesteps
    )


def _extract_chunk(
    enc: StateEncoder, chunk: ReviewColumns, carry: _Carry | None, out: _Output, max_timestep: int
) -> _Carry:
    learner = np.asarray(chunk.learner, dtype=np.int64)
    concept = np.asarray(chunk.concept, dtype=np.int64)
    t = np.asarray(chunk.t, dtype=np.float64)
    n = len(learner)
    _check_chunk(enc, learner, concept, t, carry)

    new_learner = np.ones(n, dtype=bool)
    new_learner[1:] = learner[1:] != learner[:-1]
    group_starts = np.flatnonzero(new_learner)
    group = np.cumsum(new_learner) - 1
    local_step = np.arange(n) - group_starts[group]
    memory = enc.init_memory(len(group_starts))
    step_offset = np.zeros(len(group_starts), dtype=np.int64)
    continues = carry is not None and int(learner[0]) == carry.learner
    if continues:
        memory.put(np.array([0]), carry.memory)
        step_offset[0] = carry.steps
    episode_rows = group_starts[1:] if continues else group_starts
    out.episode_starts.append(out.filled + episode_rows.astype(np.int64))

    states, actions, rewards, timesteps = out.next_rows(n)
    actions[:] = concept
    timesteps[:] = np.minimum(local_step + step_offset[group], max_timestep - 1)
    # Rows by step index; within one step the groups (learners) come in increasing order, each at most once.
    order = np.argsort(local_step, kind="stable")
    counts = np.bincount(local_step)
    correct = np.asarray(chunk.correct, dtype=bool)
    grade = np.asarray(chunk.grade, dtype=np.int64)
    begin = 0
    for count in counts:
        idx = order[begin : begin + count]
        begin += count
        rows = group[idx]
        states[idx] = enc.encode(memory, t[idx], rows=rows)
        rewards[idx] = enc.update(memory, rows, concept[idx], t[idx], correct[idx], grade[idx])

    last = len(group_starts) - 1
    return _Carry(
        learner=int(learner[-1]),
        memory=memory.take(np.array([last])),
        steps=int(step_offset[last] + local_step[-1] + 1),
        last_t=float(t[-1]),
    )


def _check_chunk(
    enc: StateEncoder, learner: np.ndarray, concept: np.ndarray, t: np.ndarray, carry: _Carry | None
) -> None:
    if not (len(concept) == len(t) == len(learner)):
        raise ValueError(
            f"review chunk: columns differ in length (learner {len(learner)}, concept {len(concept)}, t {len(t)})"
        )
    if concept.min() < 0 or concept.max() >= enc.num_concepts:
        raise ValueError(
            f"concept: positions must lie in [0, {enc.num_concepts}), got {concept.min()}..{concept.max()}"
        )
    if not np.isfinite(t).all():
        raise ValueError("t: review times must be finite")
    if carry is not None:
        learner = np.concatenate([[carry.learner], learner])
        t = np.concatenate([[carry.last_t], t])
    same = learner[1:] == learner[:-1]
    if (learner[1:] < learner[:-1]).any() or (same & (t[1:] < t[:-1])).any():
        raise ValueError("learner, t: review rows must come sorted by (learner, time), across chunks too")


def _returns_to_go(rewards: np.ndarray, episode_starts: np.ndarray) -> np.ndarray:
    """Suffix sums of rewards within each episode, accumulated in float64."""
    if len(rewards) == 0:
        return np.zeros(0, dtype=np.float32)
    total = np.cumsum(rewards, dtype=np.float64)
    ends = episode_starts[1:]
    lengths = np.diff(episode_starts)
    episode_total = np.repeat(total[ends - 1], lengths)
    return (episode_total - total + rewards).astype(np.float32)


# ---------------------------------------------------------------------------------------------- files

DATASET_FORMAT_VERSION = 1
_STEP_ARRAYS = {  # name -> (dtype, number of dimensions)
    "states": (np.float32, 2),
    "actions": (np.int64, 1),
    "rewards": (np.float32, 1),
    "returns_to_go": (np.float32, 1),
    "timesteps": (np.int64, 1),
}


def save_dataset(ds: TrajectoryDataset, fileobj: BinaryIO) -> None:
    """Write ds as .npz (no pickles): the arrays plus ``meta``, UTF-8 JSON bytes (uint8) with the concept keys,
    the encoder config and the format version."""
    meta = {"format_version": DATASET_FORMAT_VERSION, "concept_keys": list(ds.concept_keys), "encoder": ds.encoder}
    np.savez(
        fileobj,
        **{name: np.asarray(getattr(ds, name), dtype=dtype) for name, (dtype, _) in _STEP_ARRAYS.items()},
        episode_starts=np.asarray(ds.episode_starts, dtype=np.int64),
        meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
    )


def load_dataset(fileobj: BinaryIO) -> TrajectoryDataset:
    """Read a file written by save_dataset; refuses a missing, corrupt or inconsistent array, naming it."""
    try:
        archive = np.load(fileobj, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"dataset file: not a readable .npz archive ({exc})") from exc
    with archive:
        arrays = {}
        for name in (*_STEP_ARRAYS, "episode_starts", "meta"):
            if name not in archive.files:
                raise ValueError(f"dataset file: array {name!r} is missing")
            try:
                arrays[name] = archive[name]
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
                raise ValueError(f"dataset file: array {name!r} is corrupt ({exc})") from exc
    try:
        meta = json.loads(arrays["meta"].astype(np.uint8).tobytes().decode("utf-8"))
        concept_keys, encoder = list(meta["concept_keys"]), dict(meta["encoder"])
        version = meta["format_version"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"dataset file: array 'meta' is not the expected JSON ({exc})") from exc
    if version != DATASET_FORMAT_VERSION:
        raise ValueError(
            f"dataset file: array 'meta' has format_version {version!r}, expected {DATASET_FORMAT_VERSION}"
        )

    n = len(arrays["actions"])
    for name, (dtype, ndim) in _STEP_ARRAYS.items():
        a = arrays[name]
        if a.dtype != dtype or a.ndim != ndim or a.shape[0] != n:
            raise ValueError(
                f"dataset file: array {name!r} has dtype {a.dtype} shape {a.shape}, expected {np.dtype(dtype)} "
                f"with {ndim} dimension(s) and {n} rows"
            )
    starts = arrays["episode_starts"]
    if (starts.dtype != np.int64 or starts.ndim != 1 or len(starts) < 1 or starts[0] != 0 or starts[-1] != n
            or (np.diff(starts) <= 0).any()):
        raise ValueError(f"dataset file: array 'episode_starts' must be increasing int64 offsets from 0 to {n}")
    if encoder:
        state_dim = EncoderConfig.from_dict(encoder).state_dim
        if arrays["states"].shape[1] != state_dim:
            raise ValueError(
                f"dataset file: array 'states' has {arrays['states'].shape[1]} columns, the encoder's {state_dim}"
            )
    if concept_keys and n and (arrays["actions"].min() < 0 or arrays["actions"].max() >= len(concept_keys)):
        raise ValueError(f"dataset file: array 'actions' holds indices outside [0, {len(concept_keys)})")
    return TrajectoryDataset(
        states=arrays["states"], actions=arrays["actions"], rewards=arrays["rewards"],
        returns_to_go=arrays["returns_to_go"], timesteps=arrays["timesteps"], episode_starts=starts,
        concept_keys=concept_keys, encoder=encoder,
    )


# ---------------------------------------------------------------------------------------------- statistics


HISTOGRAM_BINS = 20


def dataset_statistics(ds: TrajectoryDataset) -> dict:
    """A JSON-able summary: sizes, episode returns and lengths (quantiles and a 20-bin histogram), how often
    each action was taken."""
    starts = np.asarray(ds.episode_starts)
    episodes, steps = len(starts) - 1, len(ds.actions)
    returns = np.asarray(ds.returns_to_go, dtype=np.float64)[starts[:-1]] if episodes else np.zeros(0)
    lengths = np.diff(starts)
    num_actions = max(len(ds.concept_keys), int(ds.actions.max()) + 1 if steps else 0)
    counts = np.bincount(ds.actions, minlength=num_actions) if steps else np.zeros(num_actions, dtype=np.int64)
    share = counts / max(steps, 1)
    keys = ds.concept_keys or [str(i) for i in range(num_actions)]

    def summary(values: np.ndarray) -> dict:
        if len(values) == 0:
            return {"mean": None, "std": None, "min": None, "max": None, "p10": None, "p50": None, "p90": None}
        p10, p50, p90 = np.quantile(values, [0.1, 0.5, 0.9])
        # 20 equal-width bins over [min, max] (numpy.histogram), for the admin's distribution charts
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
        return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                "max": float(values.max()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
                "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}}

    nonzero = share[share > 0]
    entropy = float(-(nonzero * np.log(nonzero)).sum() / np.log(num_actions)) if num_actions > 1 else None
    return {
        "episodes": int(episodes),
        "steps": int(steps),
        "state_dim": int(ds.states.shape[1]) if ds.states.ndim == 2 else 0,
        "return": summary(returns),
        "episode_length": summary(lengths.astype(np.float64)),
        "actions": {
            "count": int(num_actions),
            "counts": {keys[i]: int(c) for i, c in enumerate(counts)},
            "most_common": keys[int(counts.argmax())] if num_actions else None,
            "least_common": keys[int(counts.argmin())] if num_actions else None,
            "min_share": float(share.min()) if num_actions else None,
            "max_share": float(share.max()) if num_actions else None,
            # 1.0 = every concept equally often
            "normalised_entropy": entropy,
        },
    }
