"""Review rows -> trajectories for offline RL (NumPy only).

A trajectory is one learner's reviews in time order: per step the encoded state before the review,
the concept reviewed (the action), the reward and the return-to-go. Extraction streams over chunks of review
columns (review_columns.py); a dataset's file format is dataset_file.py's, its summary dataset_statistics.py's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .encoder import EncoderConfig, EncoderMemory, StateEncoder
from .review_columns import ReviewColumns
from .review_states import DEFAULT_SNAPSHOT_EVERY, ReviewStates, ReviewStatesBuilder


class TrajectoryDataset:
    """Flat, episode-concatenated arrays; episode e spans rows episode_starts[e]:episode_starts[e+1].

    actions int64 [N]; rewards float32 [N]; returns_to_go float32 [N]; timesteps int64 [N] (step index within
    the episode, 0-based); episode_starts int64 [E + 1]. concept_keys: action index -> concept key. encoder: the
    StateEncoder config dict that made the states.

    The states float32 [N, S] are either held (``stored_states``: small or hand-made data, format 1 files) or,
    as extraction makes them, rebuilt from review rows when asked (``review_states``, see review_states.py), so
    a dataset's size does not grow with N x C. ``state_rows(rows)`` is the one way the trainer reads them;
    ``states`` builds all N (tests and small data only).
    """

    def __init__(
        self, *, actions: np.ndarray, rewards: np.ndarray, returns_to_go: np.ndarray, timesteps: np.ndarray,
        episode_starts: np.ndarray, concept_keys: list[str] | None = None, encoder: dict | None = None,
        states: np.ndarray | None = None, review_states: ReviewStates | None = None,
    ) -> None:
        if (states is None) == (review_states is None):
            raise ValueError("TrajectoryDataset: give exactly one of states or review_states")
        self.actions, self.rewards, self.returns_to_go = actions, rewards, returns_to_go
        self.timesteps, self.episode_starts = timesteps, episode_starts
        self.concept_keys = list(concept_keys or [])
        self.encoder = dict(encoder or {})
        self.stored_states = states
        self.review_states = review_states

    @property
    def state_dim(self) -> int:
        if self.review_states is not None:
            return self.review_states.state_dim
        return int(self.stored_states.shape[1]) if self.stored_states.ndim == 2 else 0

    def state_rows(self, rows: np.ndarray) -> np.ndarray:
        """float32 [*rows.shape, S]: the states of the given rows."""
        if self.review_states is not None:
            return self.review_states.states(rows)
        return self.stored_states[np.asarray(rows)]

    @property
    def states(self) -> np.ndarray:
        """All N states, float32 [N, S] (N x S floats in memory: for tests and small datasets)."""
        if self.stored_states is not None:
            return self.stored_states
        return self.review_states.states(np.arange(len(self.actions)))

    @property
    def nbytes(self) -> int:
        """Bytes held by the dataset's arrays."""
        arrays = [self.actions, self.rewards, self.returns_to_go, self.timesteps, self.episode_starts]
        held = sum(int(np.asarray(a).nbytes) for a in arrays)
        if self.review_states is not None:
            return held + self.review_states.nbytes - self.review_states.concept.nbytes  # concept is actions
        return held + int(self.stored_states.nbytes)


DEFAULT_MAX_TIMESTEP = 1024  # the DT's timestep table; later steps share its last row
DEFAULT_CHUNK_ROWS = 100_000
# The encoder memory of one chunk's learners is [learners, C] per field: a chunk is cut (at learner boundaries
# where possible) so that learners x C stays under this many cells (~5 fields x 8 bytes each: ~160 MB).
MAX_MEMORY_CELLS = 4_000_000


@dataclass
class _Carry:
    """The learner whose episode may continue in the next chunk."""

    learner: int
    memory: EncoderMemory
    latest: np.ndarray  # int64 [1, C]: row of each concept's latest review in the episode, -1 none
    steps: int
    last_t: float


def extract_trajectories(
    *,
    chunks: Iterable[ReviewColumns],
    encoder: EncoderConfig,
    concept_keys: list[str] | None = None,
    max_timestep: int = DEFAULT_MAX_TIMESTEP,
    total_rows: int | None = None,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> TrajectoryDataset:
    """Review chunks in (learner, time) order -> one episode per learner.

    Per step: the state is the encoding before the review at its time, the action the concept, the reward the
    encoder's, timesteps the step index clipped to max_timestep - 1 and returns-to-go the episode's suffix sum of
    rewards. The states are not stored: the dataset keeps the review rows and memory values that rebuild them
    when a batch is drawn (review_states.py), O(N) memory instead of O(N x C). Besides the output, memory holds
    one chunk and its learners' encoder memory (chunks are cut so that learners x C <= MAX_MEMORY_CELLS). Within
    a chunk the work is vectorised across learners, one pass per step index; total_rows (when known) lets the
    output be allocated once.
    """
    if concept_keys is not None and len(concept_keys) != encoder.num_concepts:
        raise ValueError(f"concept_keys: {len(concept_keys)} keys for {encoder.num_concepts} concepts")
    enc = StateEncoder(encoder)
    out = _Output(total_rows)
    builder = ReviewStatesBuilder(encoder=enc, total_rows=total_rows, snapshot_every=snapshot_every)
    carry: _Carry | None = None
    max_learners = max(1, MAX_MEMORY_CELLS // encoder.num_concepts)
    for chunk in chunks:
        for piece in _pieces(chunk, max_learners=max_learners):
            carry = _extract_chunk(enc, piece, carry, out, builder, max_timestep)
    t, actions, rewards, timesteps, episode_starts = out.finish()
    if len(actions) >= np.iinfo(np.int32).max:
        raise ValueError(f"total_rows: {len(actions)} reviews exceed what one dataset holds (2**31 - 1)")
    return TrajectoryDataset(
        review_states=builder.finish(t=t, concept=actions, episode_starts=episode_starts),
        actions=actions,
        rewards=rewards,
        returns_to_go=_returns_to_go(rewards, episode_starts),
        timesteps=timesteps,
        episode_starts=episode_starts,
        concept_keys=[str(i) for i in range(encoder.num_concepts)] if concept_keys is None else list(concept_keys),
        encoder=encoder.to_dict(),
    )


def _pieces(chunk: ReviewColumns, *, max_learners: int) -> Iterator[ReviewColumns]:
    """The chunk, cut before every max_learners-th learner's first row (a learner is never split by this)."""
    learner = np.asarray(chunk.learner)
    if not len(learner):
        return
    starts = np.flatnonzero(np.r_[True, learner[1:] != learner[:-1]])
    if len(starts) <= max_learners:
        yield chunk
        return
    cuts = list(starts[max_learners::max_learners]) + [len(learner)]
    begin = 0
    for end in cuts:
        yield chunk.rows(slice(begin, int(end)))
        begin = int(end)


def trajectories_from_columns(
    columns: ReviewColumns,
    *,
    encoder: EncoderConfig | None = None,
    num_concepts: int | None = None,
    concept_keys: list[str] | None = None,
    max_timestep: int = DEFAULT_MAX_TIMESTEP,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
) -> TrajectoryDataset:
    """Extraction of an in-memory log (e.g. the simulator's), in chunks of chunk_rows."""
    if encoder is None:
        if num_concepts is None:
            raise ValueError("num_concepts: required when no encoder config is given")
        encoder = EncoderConfig(num_concepts=num_concepts)
    return extract_trajectories(
        chunks=columns.chunks(size=chunk_rows), encoder=encoder, concept_keys=concept_keys,
        max_timestep=max_timestep, total_rows=len(columns), snapshot_every=snapshot_every,
    )


class _Output:
    """The per-row output arrays, allocated once when the row count is known, else gathered per chunk."""

    def __init__(self, total_rows: int | None) -> None:
        self.total_rows, self.filled = total_rows, 0
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.episode_starts: list[np.ndarray] = []
        if total_rows is not None:
            self.arrays = _empty_steps(total_rows)

    def next_rows(self, n: int) -> tuple[np.ndarray, ...]:
        """Arrays to fill for the next n rows."""
        if self.total_rows is None:
            part = _empty_steps(n)
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
                           for i, a in enumerate(_empty_steps(0)))
            self.parts.clear()
        elif self.filled != self.total_rows:
            raise ValueError(f"total_rows: {self.total_rows} rows announced, the chunks held {self.filled}")
        else:
            arrays = self.arrays
        starts = np.concatenate(self.episode_starts + [np.array([self.filled], dtype=np.int64)])
        return (*arrays, starts)


def _empty_steps(n: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty(n, dtype=np.float64),  # t
        np.empty(n, dtype=np.int64),  # actions
        np.empty(n, dtype=np.float32),  # rewards
        np.empty(n, dtype=np.int64),  # timesteps
    )


def _extract_chunk(
    enc: StateEncoder, chunk: ReviewColumns, carry: _Carry | None, out: _Output, builder: ReviewStatesBuilder,
    max_timestep: int,
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
    latest = np.full((len(group_starts), enc.num_concepts), -1, dtype=np.int64)
    step_offset = np.zeros(len(group_starts), dtype=np.int64)
    continues = carry is not None and int(learner[0]) == carry.learner
    if continues:
        memory.put(np.array([0]), carry.memory)
        latest[0] = carry.latest[0]
        step_offset[0] = carry.steps
    first_row = out.filled
    episode_rows = group_starts[1:] if continues else group_starts
    out.episode_starts.append(first_row + episode_rows.astype(np.int64))

    times, actions, rewards, timesteps = out.next_rows(n)
    values = builder.next_rows(first_row, n)
    times[:] = t
    actions[:] = concept
    episode_step = local_step + step_offset[group]
    timesteps[:] = np.minimum(episode_step, max_timestep - 1)
    # Rows by step index; within one step the groups (learners) come in increasing order, each at most once.
    order = np.argsort(local_step, kind="stable")
    counts = np.bincount(local_step)
    correct = np.asarray(chunk.correct, dtype=bool)
    grade = np.asarray(chunk.grade, dtype=np.int64)
    every = builder.snapshot_every
    begin = 0
    for count in counts:
        idx = order[begin : begin + count]
        begin += count
        rows = group[idx]
        due = (episode_step[idx] % every == 0) & (episode_step[idx] > 0)
        if due.any():
            builder.snapshot(first_row + idx[due], latest[rows[due]])
        cidx = concept[idx]
        rewards[idx] = enc.update(memory, rows, cidx, t[idx], correct[idx], grade[idx])
        for name, target in values.items():
            target[idx] = getattr(memory, name)[rows, cidx]
        latest[rows, cidx] = first_row + idx

    last = len(group_starts) - 1
    return _Carry(
        learner=int(learner[-1]),
        memory=memory.take(np.array([last])),
        latest=latest[[last]].copy(),
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
