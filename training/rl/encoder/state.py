"""One learner's encoded state for serving (``EncodedLearnerState``): encoder memory, counters and the last
reviews the Decision Transformer's context needs, with a JSON-safe dict form (NumPy only).

Not to be confused with ``curriculum.models.LearnerState``, the database row that stores this state's dict.
"""
from __future__ import annotations

import base64
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from .memory import EncoderMemory, StateEncoder


def _pack(array: np.ndarray, dtype: type) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _raw(packed: str | bytes | memoryview) -> bytes:
    """A stored array's bytes: ``packed`` is base64 text (the JSON form) or the raw bytes themselves (a history kept
    apart, see ``EncodedLearnerState.to_dict``; a memoryview, as some database drivers give a binary column, is
    copied to bytes)."""
    if isinstance(packed, str):
        return base64.b64decode(packed)
    return packed if isinstance(packed, bytes) else bytes(packed)


def _unpack(packed: str | bytes | memoryview, dtype: type, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.frombuffer(_raw(packed), dtype=dtype)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"learner state: {name} has {array.size} values, expected shape {shape}")
    return array.reshape(shape).copy()


@dataclass
class _Step:
    """One past review as the Decision Transformer sees it."""

    state: np.ndarray  # float32 [S]: the encoding before the review, at its time
    action: int
    cumulative_reward: float  # before the review: returns-to-go = target - this
    timestep: int


class EncodedLearnerState:
    """One learner's serving record: encoder memory, counters and the last reviews for the DT context.

    ``observe`` costs O(num_concepts) whatever the history's length; a review older than the last observed one
    cannot be applied incrementally (``observe`` refuses it): rebuild with ``from_history``.
    """

    def __init__(
        self,
        *,
        encoder: StateEncoder,
        history_length: int,
        memory: EncoderMemory | None = None,
        steps: int = 0,
        cumulative_reward: float = 0.0,
        last_reviewed_at: float = float("-inf"),
    ) -> None:
        self.encoder = encoder
        self.history_length = history_length
        self.memory = encoder.init_memory(1) if memory is None else memory
        self.steps = steps
        self.cumulative_reward = cumulative_reward  # float64 sum of the float32 rewards, in review order
        self.last_reviewed_at = last_reviewed_at
        self.history: deque[_Step] = deque(maxlen=history_length)

    @classmethod
    def new(cls, *, encoder: StateEncoder, context_length: int) -> "EncodedLearnerState":
        """An empty learner; keeps the context_length - 1 reviews that precede the decision position."""
        return cls(encoder=encoder, history_length=max(int(context_length) - 1, 0))

    @classmethod
    def from_history(
        cls, rows: Iterable[tuple[int, float, bool, int]], *, encoder: StateEncoder, context_length: int
    ) -> "EncodedLearnerState":
        """Rebuild from (concept, t, correct, grade) rows in any order (sorted by time, stable)."""
        ordered = sorted(rows, key=lambda row: row[1])
        state = cls.new(encoder=encoder, context_length=context_length)
        for concept, t, correct, grade in ordered:
            state.observe(concept=concept, t=t, correct=correct, grade=grade)
        return state

    def observe(self, *, concept: int, t: float, correct: bool, grade: int = 0) -> float:
        """Apply one review (not older than the last one); returns its reward."""
        if not 0 <= int(concept) < self.encoder.num_concepts:
            raise ValueError(f"concept: expected a position in [0, {self.encoder.num_concepts}), got {concept!r}")
        if t < self.last_reviewed_at:
            raise ValueError(
                f"t: review at {t} is older than the last one ({self.last_reviewed_at}); rebuild with from_history"
            )
        t_arr = np.array([float(t)])
        if self.history_length:
            state = self.encoder.encode(self.memory, t_arr)[0]
            self.history.append(_Step(state, int(concept), self.cumulative_reward, self.steps))
        reward = self.encoder.update(
            self.memory, np.zeros(1, dtype=np.int64), np.array([int(concept)]), t_arr, np.array([bool(correct)]),
            np.array([int(grade or 0)]),
        )
        self.cumulative_reward += float(reward[0])
        self.steps += 1
        self.last_reviewed_at = float(t)
        return float(reward[0])

    def encode(self, now: float) -> np.ndarray:
        return self.encoder.encode(self.memory, np.array([float(now)]))[0]

    def context(
        self, now: float, target_return: float, *, max_timestep: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The DT input (returns_to_go [T], states [T, S], actions [T], timesteps [T]); position T-1 is now."""
        steps = list(self.history)
        states = np.stack([s.state for s in steps] + [self.encode(now)]).astype(np.float32)
        returns_to_go = np.array(
            [target_return - s.cumulative_reward for s in steps] + [target_return - self.cumulative_reward],
            dtype=np.float32,
        )
        actions = np.array([s.action for s in steps] + [0], dtype=np.int64)
        timesteps = np.array([s.timestep for s in steps] + [self.steps], dtype=np.int64)
        if max_timestep is not None:
            timesteps = np.minimum(timesteps, max_timestep - 1)
        return returns_to_go, states, actions, timesteps

    def history_state_bytes(self) -> bytes:
        """The kept history's encoded states as raw bytes: float32, native (little-endian) order, [k, state_dim]
        row-major, k = len(history) (b"" without history): ``to_dict(history_states=False)``'s other half."""
        steps = list(self.history)
        return np.ascontiguousarray(np.stack([s.state for s in steps]) if steps else np.zeros((0,)),
                                    dtype=np.float32).tobytes()

    def to_dict(self, *, history_states: bool = True) -> dict:
        """The JSON-safe form (``format`` 1), arrays as base64 of their raw bytes. ``history_states`` False leaves
        out ``history.states`` (the largest part: k x state_dim float32), for a store that keeps them apart as
        bytes (``history_state_bytes``; ``from_dict(history_states=...)`` takes them back)."""
        m = self.memory
        steps = list(self.history)
        data = {
            "format": 1,
            "num_concepts": self.encoder.num_concepts,
            "history_length": self.history_length,
            "steps": self.steps,
            "cumulative_reward": self.cumulative_reward,
            "last_reviewed_at": None if self.steps == 0 else self.last_reviewed_at,
            "memory": {
                "stability": _pack(m.stability, np.float64),
                "difficulty": _pack(m.difficulty, np.float64),
                "last_review": _pack(m.last_review, np.float64),
                "reviews": _pack(m.reviews, np.int64),
                "potential": float(m.potential[0]),
                "last_grade": _pack(m.last_grade, np.int8),
            },
            "history": {
                "actions": [s.action for s in steps],
                "cumulative_rewards": [s.cumulative_reward for s in steps],
                "timesteps": [s.timestep for s in steps],
            },
        }
        if history_states:
            data["history"] = {"states": base64.b64encode(self.history_state_bytes()).decode("ascii"),
                               **data["history"]}
        return data

    @classmethod
    def from_dict(cls, data: dict, *, encoder: StateEncoder,
                  history_states: bytes | memoryview | None = None) -> "EncodedLearnerState":
        """The state ``to_dict`` wrote. ``history_states``: the history's states as raw bytes
        (``history_state_bytes``) when ``data`` was written without them; they win over ``data``'s own. ValueError
        naming what does not fit (format, concepts, array sizes, states in neither place)."""
        c = encoder.num_concepts
        if data.get("format") != 1:
            raise ValueError(f"learner state: format {data.get('format')!r} is not supported (expected 1)")
        if data.get("num_concepts") != c:
            raise ValueError(f"learner state: num_concepts {data.get('num_concepts')!r}, the encoder has {c}")
        mem = data["memory"]
        memory = EncoderMemory(
            stability=_unpack(mem["stability"], np.float64, (1, c), "memory.stability"),
            difficulty=_unpack(mem["difficulty"], np.float64, (1, c), "memory.difficulty"),
            last_review=_unpack(mem["last_review"], np.float64, (1, c), "memory.last_review"),
            reviews=_unpack(mem["reviews"], np.int64, (1, c), "memory.reviews"),
            potential=np.array([float(mem["potential"])]),
            # states stored before FSRS-6 have no last grade; only FSRS-6's same-day recall reads it
            last_grade=(_unpack(mem["last_grade"], np.int8, (1, c), "memory.last_grade") if "last_grade" in mem
                        else np.zeros((1, c), dtype=np.int8)),
        )
        hist = data["history"]
        k = len(hist["actions"])
        states = _unpack(_history_states(hist, history_states), np.float32, (k, encoder.state_dim), "history.states")
        state = cls(
            encoder=encoder,
            history_length=int(data["history_length"]),
            memory=memory,
            steps=int(data["steps"]),
            cumulative_reward=float(data["cumulative_reward"]),
            last_reviewed_at=float("-inf") if data["last_reviewed_at"] is None else data["last_reviewed_at"],
        )
        for i, (action, reward, timestep) in enumerate(
            zip(hist["actions"], hist["cumulative_rewards"], hist["timesteps"])
        ):
            state.history.append(_Step(states[i], int(action), float(reward), int(timestep)))
        return state


def _history_states(hist: dict, apart: bytes | memoryview | None) -> str | bytes | memoryview:
    """A stored history's states: the bytes kept apart, else the dict's base64; ValueError with neither."""
    if apart is not None:
        return apart
    if "states" not in hist:
        raise ValueError("learner state: history.states is neither in the state nor stored apart")
    return hist["states"]


_MEMORY_ARRAYS = (("stability", np.float64), ("difficulty", np.float64), ("last_review", np.float64),
                  ("reviews", np.int64), ("last_grade", np.int8))


@dataclass
class LearnerStateBatch:
    """Many learners' serving states decoded together (the batch recommendation path): what
    ``EncodedLearnerState`` holds for each, as arrays, so that the Decision Transformer's contexts of B learners
    are built without a Python object per review.

    ``memory``: the encoder's memory [B, C]; ``steps`` int64 [B], ``cumulative_reward`` float64 [B]; the kept
    history right-aligned in K = ``history_length`` slots, learner b's ``lengths[b]`` steps in slots K - lengths[b]
    .. K - 1: ``states`` float32 [B, K, S], ``actions`` int64 [B, K], ``cumulative_rewards`` float64 [B, K]
    (before each review), ``timesteps`` int64 [B, K]; empty slots hold zeros."""

    encoder: StateEncoder
    history_length: int
    memory: EncoderMemory
    steps: np.ndarray
    cumulative_reward: np.ndarray
    lengths: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    cumulative_rewards: np.ndarray
    timesteps: np.ndarray

    @classmethod
    def from_dicts(cls, datas: list[dict | None], *, encoder: StateEncoder, history_length: int,
                   history_states: Sequence[bytes | memoryview | None] | None = None) -> "LearnerStateBatch":
        """Decode ``EncodedLearnerState.to_dict()`` dicts (None: a new learner, as ``EncodedLearnerState.new``) of
        one encoder and one history length: per learner one base64 decode per array, the rest in bulk.
        ``history_states[b]``: learner b's history states as raw bytes when its dict was written without them
        (``to_dict(history_states=False)``; None: in the dict). The same checks as ``EncodedLearnerState.from_dict``
        (ValueError naming what does not fit); a dict whose ``history_length`` is not ``history_length`` is a
        ValueError too (its spec differs)."""
        B, C, S, K = len(datas), encoder.num_concepts, encoder.state_dim, history_length
        memory = encoder.init_memory(B)
        steps = np.zeros(B, np.int64)
        cumulative = np.zeros(B, np.float64)
        lengths = np.zeros(B, np.int64)
        raw = {name: [] for name, _ in _MEMORY_ARRAYS}
        stored, history_bytes, actions, rewards, timesteps = [], [], [], [], []
        potential = []
        for b, data in enumerate(datas):
            if data is None:
                continue
            if data.get("format") != 1:
                raise ValueError(f"learner state: format {data.get('format')!r} is not supported (expected 1)")
            if data.get("num_concepts") != C:
                raise ValueError(f"learner state: num_concepts {data.get('num_concepts')!r}, the encoder has {C}")
            if int(data["history_length"]) != K:
                raise ValueError(f"learner state: history_length {data['history_length']!r}, expected {K}")
            mem, hist = data["memory"], data["history"]
            stored.append(b)
            for name, _ in _MEMORY_ARRAYS:
                # states stored before FSRS-6 have no last grade; only FSRS-6's same-day recall reads it
                raw[name].append(base64.b64decode(mem[name]) if name in mem else bytes(C))
            potential.append(float(mem["potential"]))
            steps[b] = int(data["steps"])
            cumulative[b] = float(data["cumulative_reward"])
            k = len(hist["actions"])
            if k > K or len(hist["cumulative_rewards"]) != k or len(hist["timesteps"]) != k:
                raise ValueError(f"learner state: a history of {k} steps, at most {K} with one reward and timestep each")
            lengths[b] = k
            history_bytes.append(_raw(_history_states(hist, None if history_states is None else history_states[b])))
            if len(history_bytes[-1]) != 4 * k * S:
                raise ValueError(f"learner state: history.states has {len(history_bytes[-1]) // 4} values, expected "
                                 f"shape ({k}, {S})")
            actions.extend(hist["actions"])
            rewards.extend(hist["cumulative_rewards"])
            timesteps.extend(hist["timesteps"])
        if stored:
            rows = np.asarray(stored)
            for name, dtype in _MEMORY_ARRAYS:
                joined = b"".join(raw[name])
                if len(joined) != len(stored) * C * np.dtype(dtype).itemsize:
                    bad = next(i for i, r in enumerate(raw[name]) if len(r) != C * np.dtype(dtype).itemsize)
                    raise ValueError(f"learner state: memory.{name} has {len(raw[name][bad]) // np.dtype(dtype).itemsize}"
                                     f" values, expected shape (1, {C})")
                getattr(memory, name)[rows] = np.frombuffer(joined, dtype=dtype).reshape(len(stored), C)
            memory.potential[rows] = potential
        states = np.zeros((B, K, S), np.float32)
        history = dict(actions=np.zeros((B, K), np.int64), cumulative_rewards=np.zeros((B, K), np.float64),
                       timesteps=np.zeros((B, K), np.int64))
        if actions:
            # learner b's j-th kept step goes to slot K - lengths[b] + j
            owner = np.repeat(np.arange(B), lengths)
            starts = np.cumsum(lengths) - lengths
            slot = K - lengths[owner] + (np.arange(len(owner)) - starts[owner])
            states[owner, slot] = np.frombuffer(b"".join(history_bytes), dtype=np.float32).reshape(-1, S)
            history["actions"][owner, slot] = actions
            history["cumulative_rewards"][owner, slot] = rewards
            history["timesteps"][owner, slot] = timesteps
        return cls(encoder, K, memory, steps, cumulative, lengths, states, **history)

    def contexts(self, now: float, target_return: float, *, max_timestep: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every learner's DT input at ``now``, right-aligned in K + 1 positions (position K is now): returns_to_go
        float32 [B, K + 1], states float32 [B, K + 1, S], actions int64 [B, K + 1], timesteps int64 [B, K + 1];
        learner b's context is the last ``lengths[b] + 1`` positions, equal to ``EncodedLearnerState.context``."""
        B, K = len(self.steps), self.history_length
        rtg = np.empty((B, K + 1), np.float32)
        rtg[:, :K] = target_return - self.cumulative_rewards
        rtg[:, K] = target_return - self.cumulative_reward
        states = np.empty((B, K + 1, self.encoder.state_dim), np.float32)
        states[:, :K] = self.states
        states[:, K] = self.encoder.encode(self.memory, np.full(B, float(now)))
        actions = np.zeros((B, K + 1), np.int64)
        actions[:, :K] = self.actions
        timesteps = np.empty((B, K + 1), np.int64)
        timesteps[:, :K] = self.timesteps
        timesteps[:, K] = self.steps
        if max_timestep is not None:
            np.minimum(timesteps, max_timestep - 1, out=timesteps)
        return rtg, states, actions, timesteps
