"""A dataset's states kept as review rows, encoded when a batch is drawn (NumPy only).

A stored state would be 4 x C floats per review (16 GB for 1M reviews of 1,000 concepts). Instead a dataset keeps,
per review row i (N rows, episode-concatenated), its time and concept and the encoder memory of that concept just
after the review (each per-concept field of ``EncoderMemory``, e.g. stability, difficulty, last review, reviews),
plus, every ``snapshot_every`` steps of an episode, the row of each concept's latest review so far (int32 [C]).

The state before row r is then rebuilt exactly: start from the snapshot at or before r in r's episode (or from
"nothing reviewed" at the episode's start), replay the concepts of at most ``snapshot_every - 1`` rows to find
each concept's latest review before r, put that review's stored memory values into a fresh memory (concepts
never reviewed keep ``init_memory``'s values) and call ``StateEncoder.encode`` at r's time. This relies on the
encoder's memory being per concept (a concept's memory changes only when it is reviewed) and on ``encode``
reading the per-concept fields only; tests/training/rl/test_review_states.py checks the result against encoding
every step.

Size: N x (8 + 8 + one value per memory field) bytes plus N / snapshot_every x C x 4 bytes, e.g. 1M reviews of
1,000 concepts: ~56 MB of rows and ~31 MB of snapshots at the default 128.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .encoder import EncoderConfig, EncoderMemory, StateEncoder

DEFAULT_SNAPSHOT_EVERY = 128  # rows replayed per drawn state: at most this - 1


def per_concept_fields(memory: EncoderMemory, num_concepts: int) -> list[str]:
    """The names of memory's per-concept fields: arrays [n, C, ...] (per-learner fields such as the reward's
    potential, [n], are not needed to encode a state)."""
    return [f.name for f in fields(memory)
            if getattr(memory, f.name).ndim >= 2 and getattr(memory, f.name).shape[1] == num_concepts]


@dataclass
class ReviewStates:
    """What rebuilds a dataset's states (see the module docstring).

    t float64 [N] (seconds since the epoch); concept int64 [N]; episode_starts int64 [E + 1];
    memory: per-concept field name -> [N, ...] values of the reviewed concept after review i;
    snapshot_rows int64 [M] increasing: snapshot m describes the state before that row;
    snapshots int32 [M, C]: the latest row (global index) of each concept's review in the episode before
    snapshot_rows[m], -1 for none; snapshot_every: the episode steps between snapshots (the first at step
    snapshot_every); encoder: the config that made the memory values.
    """

    t: np.ndarray
    concept: np.ndarray
    episode_starts: np.ndarray
    memory: dict[str, np.ndarray]
    snapshot_rows: np.ndarray
    snapshots: np.ndarray
    snapshot_every: int
    encoder: EncoderConfig

    def __post_init__(self) -> None:
        self._encoder = StateEncoder(self.encoder)
        self._initial = self._encoder.init_memory(1)
        expected = per_concept_fields(self._initial, self.encoder.num_concepts)
        if sorted(self.memory) != sorted(expected):
            raise ValueError(f"memory: the dataset holds the fields {sorted(self.memory)} but this encoder's memory "
                             f"has {sorted(expected)}: extract the dataset again")

    @property
    def state_dim(self) -> int:
        return self.encoder.state_dim

    @property
    def nbytes(self) -> int:
        arrays = [self.t, self.concept, self.snapshot_rows, self.snapshots, *self.memory.values()]
        return int(sum(a.nbytes for a in arrays))

    def latest_reviews(self, rows: np.ndarray) -> np.ndarray:
        """int64 [R, C]: for each of rows [R], the row of each concept's latest review before it in its episode
        (-1: not reviewed yet)."""
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.episode_starts
        episode_start = starts[np.searchsorted(starts, rows, side="right") - 1]
        k = np.searchsorted(self.snapshot_rows, rows, side="right") - 1
        kk = np.maximum(k, 0)
        has = (k >= 0) & (self.snapshot_rows[kk] >= episode_start) if len(self.snapshot_rows) else k >= 0
        base = np.where(has, self.snapshot_rows[kk] if len(self.snapshot_rows) else 0, episode_start)
        latest = np.full((len(rows), self.encoder.num_concepts), -1, dtype=np.int64)
        if has.any():
            latest[has] = self.snapshots[k[has]]
        lengths = rows - base  # rows base .. row - 1 are replayed
        total = int(lengths.sum())
        if total:
            owner = np.repeat(np.arange(len(rows)), lengths)
            offset = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            replayed = base[owner] + offset
            # rows increase along each replay, so the maximum is the latest review
            np.maximum.at(latest, (owner, self.concept[replayed]), replayed)
        return latest

    def states(self, rows: np.ndarray) -> np.ndarray:
        """float32 [*rows.shape, state_dim]: the encoding before each review row, at its time (what encoding the
        whole episode step by step gives, bit for bit)."""
        rows = np.asarray(rows, dtype=np.int64)
        flat = rows.ravel()
        latest = self.latest_reviews(flat)
        memory = self._encoder.init_memory(len(flat))
        seen = latest >= 0
        source = latest[seen]
        for name, values in self.memory.items():
            getattr(memory, name)[seen] = values[source]
        return self._encoder.encode(memory, self.t[flat]).reshape(rows.shape + (self.state_dim,))


class ReviewStatesBuilder:
    """Collects ReviewStates during extraction: per row the reviewed concept's memory values, and the snapshots.

    ``record`` is called per step of the vectorised extraction; rows are global row indices.
    """

    def __init__(self, *, encoder: StateEncoder, total_rows: int | None, snapshot_every: int) -> None:
        if snapshot_every < 1:
            raise ValueError(f"snapshot_every: expected a positive integer, got {snapshot_every!r}")
        self.encoder = encoder
        self.snapshot_every = snapshot_every
        initial = encoder.init_memory(1)
        self.names = per_concept_fields(initial, encoder.num_concepts)
        self._dtypes = {name: (getattr(initial, name).dtype, getattr(initial, name).shape[2:]) for name in self.names}
        self.total_rows = total_rows
        self.parts: list[dict[str, np.ndarray]] = []
        self.values = None if total_rows is None else self._empty(total_rows)
        self.snapshot_rows: list[np.ndarray] = []
        self.snapshots: list[np.ndarray] = []

    def _empty(self, n: int) -> dict[str, np.ndarray]:
        return {name: np.empty((n, *shape), dtype=dtype) for name, (dtype, shape) in self._dtypes.items()}

    def next_rows(self, start: int, n: int) -> dict[str, np.ndarray]:
        """The arrays to fill for rows start .. start + n - 1."""
        if self.values is not None:
            return {name: a[start:start + n] for name, a in self.values.items()}
        part = self._empty(n)
        self.parts.append(part)
        return part

    def snapshot(self, rows: np.ndarray, latest: np.ndarray) -> None:
        """Record latest [k, C] (global rows, -1 none) as the state of knowledge before rows [k]."""
        if len(rows):
            self.snapshot_rows.append(np.asarray(rows, dtype=np.int64))
            self.snapshots.append(latest.astype(np.int32))

    def finish(self, *, t: np.ndarray, concept: np.ndarray, episode_starts: np.ndarray) -> ReviewStates:
        values = self.values if self.values is not None else {
            name: np.concatenate([p[name] for p in self.parts]) if self.parts else self._empty(0)[name]
            for name in self.names}
        self.parts.clear()
        C = self.encoder.num_concepts
        rows = np.concatenate(self.snapshot_rows) if self.snapshot_rows else np.zeros(0, dtype=np.int64)
        snaps = np.concatenate(self.snapshots) if self.snapshots else np.zeros((0, C), dtype=np.int32)
        order = np.argsort(rows, kind="stable")
        return ReviewStates(t=t, concept=concept, episode_starts=episode_starts, memory=values,
                            snapshot_rows=rows[order], snapshots=snaps[order], snapshot_every=self.snapshot_every,
                            encoder=self.encoder.config)
