"""The one state encoder: a learner's review history -> the state a policy sees, and the reward (NumPy only).

Shared by trajectory extraction, closed-loop evaluation and serving, so a policy sees the same numbers in
training and in production. It reads the review log alone (never simulator internals), so it works the same
on synthetic, imported and live logs.

Recall estimator (FSRS-style, in half-life form; one memory per learner and concept)
--------------------------------------------------------------------------------------
memory: stability S (seconds; the estimated half-life), difficulty D in [1, 10], time of the last review,
number of reviews.

* estimated recall at time t: ``R = 2 ** (-(t - last_review) / S)``; a concept never reviewed has ``R = 0``.
* grade g in 1..4 (1 = wrong, 2 hard, 3 good, 4 easy). A wrong review counts as g = 1 whatever its grade;
  a correct one with an unknown (0) or contradictory (1) grade counts as 3.
  ``R`` below is the recall just before the review; ``clip`` keeps D in [1, 10].
* first review:       ``S = initial_stability_s[g - 1] * concept_stability[c]`` (1 unless fitted, below),
                      ``D = clip(initial_difficulty - difficulty_step * (g - 3))``
* correct, reviewed:  ``S' = S * (1 + growth * (11 - D) / 6 * (1 - R) ** recall_exponent * grade_factor[g - 1])``
  (spacing: a review at low recall lengthens the half-life most, a massed one at R ~ 1 hardly at all)
* wrong, reviewed:    ``S' = max(initial_stability_s[0], S * lapse_factor)``
* then                ``D' = clip(D - difficulty_step * (g - 3))``; S is capped at ``max_stability_s``.

The defaults are the population median of the synthetic students (as one would fit FSRS weights to a log).
Per item, ``concept_stability`` (one factor per concept, fitted to a log by ``ConceptStabilityFit``: how long a
first memory of this concept lasts relative to the median) and, later, D and the outcomes.

State layout (``state_dim = FEATURES_PER_CONCEPT * num_concepts``, concept-major: feature j of the concept at
position c is ``state[c * 4 + j]``):

* 0 recall:     R at the decision time, in [0, 1]; 0 when never reviewed
* 1 elapsed:    ``log1p(hours since the last review) / log1p(24 * 30)``; -1 when never reviewed
* 2 reviews:    ``log1p(number of reviews) / log1p(100)``
* 3 stability:  ``log1p(S in hours) / log1p(24 * 365)``; 0 when never reviewed

Reward (from the log alone)
---------------------------
The potential ``M_i`` is the mean over all concepts of the estimated recall at ``t_i + horizon_s`` with the
memory after review i (``M_0 = 0``: nothing reviewed). The reward of review i is ``r_i = M_i - M_{i-1}``: what
the review added to recall at the horizon, less what the other concepts lost to forgetting since the last
review. The rewards telescope, so an episode's return is ``M_last``: the estimated mean recall ``horizon_s``
after the last review, which is what evaluation measures with the simulator's true recall.
"""
from __future__ import annotations

import base64
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from typing import Iterable

import numpy as np

FEATURES_PER_CONCEPT = 4
STATE_FEATURES = ("recall", "elapsed", "reviews", "stability")
NEVER_REVIEWED_ELAPSED = -1.0

_HOUR = 3600.0
_ELAPSED_SCALE = float(np.log1p(24 * 30))
_REVIEWS_SCALE = float(np.log1p(100))
_STABILITY_SCALE = float(np.log1p(24 * 365))


@dataclass(frozen=True)
class EncoderConfig:
    """The encoder's parameters; stored with datasets and policy versions (``dt_lite_config.json["encoder"]``)."""

    num_concepts: int
    horizon_s: float = 86400.0
    initial_stability_s: tuple[float, float, float, float] = (86400.0, 129600.0, 172800.0, 259200.0)
    initial_difficulty: float = 5.0
    difficulty_step: float = 0.5
    growth: float = 6.0
    recall_exponent: float = 1.0
    grade_factor: tuple[float, float, float, float] = (0.0, 0.7, 1.0, 1.3)
    lapse_factor: float = 0.5
    max_stability_s: float = 365 * 86400.0
    # Per concept (in position order), a factor on the first review's stability: how much longer or shorter than
    # the population's median this concept's first memory lasts, fitted to a log by ConceptStabilityFit.
    # None: 1 for every concept (the unfitted encoder).
    concept_stability: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if int(self.num_concepts) < 1:
            raise ValueError(f"num_concepts: expected a positive integer, got {self.num_concepts!r}")
        if self.concept_stability is not None:
            factors = tuple(float(v) for v in self.concept_stability)
            if len(factors) != int(self.num_concepts):
                raise ValueError(f"concept_stability: {len(factors)} factors for {self.num_concepts} concepts")
            if not all(np.isfinite(v) and v > 0 for v in factors):
                raise ValueError("concept_stability: factors must be finite and > 0")
            object.__setattr__(self, "concept_stability", factors)
        for name in ("initial_stability_s", "grade_factor"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"{name}: expected 4 values (grades 1-4), got {getattr(self, name)!r}")
        # JSON gives lists; keep tuples so configs compare equal and stay hashable.
        object.__setattr__(self, "initial_stability_s", tuple(float(v) for v in self.initial_stability_s))
        object.__setattr__(self, "grade_factor", tuple(float(v) for v in self.grade_factor))
        object.__setattr__(self, "num_concepts", int(self.num_concepts))

    @property
    def state_dim(self) -> int:
        return FEATURES_PER_CONCEPT * self.num_concepts

    def with_num_concepts(self, num_concepts: int) -> "EncoderConfig":
        """This encoder for another number of concepts: fitted factors are kept for the concepts both have, and
        a concept beyond them is unfitted (factor 1)."""
        factors = self.concept_stability
        if factors is not None:
            factors = (factors + (1.0,) * num_concepts)[:num_concepts]
        return replace(self, num_concepts=num_concepts, concept_stability=factors)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["initial_stability_s"] = list(self.initial_stability_s)
        data["grade_factor"] = list(self.grade_factor)
        data["features"] = list(STATE_FEATURES)
        if self.concept_stability is None:
            del data["concept_stability"]  # an unfitted encoder's dict is as it was before the field existed
        else:
            data["concept_stability"] = list(self.concept_stability)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"features"})
        if unknown:
            raise ValueError(f"encoder config: unknown keys {unknown}")
        if "features" in data and list(data["features"]) != list(STATE_FEATURES):
            raise ValueError(f"encoder config: features {data['features']!r} differ from {list(STATE_FEATURES)!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class EncoderMemory:
    """What the encoder remembers of n learners: arrays [n, C] (potential [n])."""

    stability: np.ndarray  # float64, seconds
    difficulty: np.ndarray  # float64
    last_review: np.ndarray  # float64, seconds since the epoch; meaningless while reviews == 0
    reviews: np.ndarray  # int64
    potential: np.ndarray  # float64 [n]: M at the last review (see the module docstring)

    def __len__(self) -> int:
        return self.stability.shape[0]

    def take(self, rows: np.ndarray) -> "EncoderMemory":
        return EncoderMemory(*(getattr(self, f.name)[rows].copy() for f in fields(self)))

    def put(self, rows: np.ndarray, other: "EncoderMemory") -> None:
        for f in fields(self):
            getattr(self, f.name)[rows] = getattr(other, f.name)


class StateEncoder:
    """Batch operations over many learners' memories; one learner is a batch of one."""

    def __init__(self, config: EncoderConfig) -> None:
        self.config = config
        self.num_concepts = config.num_concepts
        self.state_dim = config.state_dim
        self._initial_stability = np.asarray(config.initial_stability_s, dtype=np.float64)
        self._grade_factor = np.asarray(config.grade_factor, dtype=np.float64)
        self._concept_stability = (None if config.concept_stability is None
                                   else np.asarray(config.concept_stability, dtype=np.float64))

    def init_memory(self, n: int) -> EncoderMemory:
        shape = (n, self.num_concepts)
        return EncoderMemory(
            # any positive stability keeps 2 ** (-elapsed / S) finite before the first review
            stability=np.full(shape, self._initial_stability[2]),
            difficulty=np.full(shape, float(self.config.initial_difficulty)),
            last_review=np.zeros(shape),
            reviews=np.zeros(shape, dtype=np.int64),
            potential=np.zeros(n),
        )

    def recall(self, memory: EncoderMemory, t: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """Estimated recall float64 [n, C] at times t [n] (seconds since the epoch)."""
        stability, last, reviews = _rows(memory, rows)
        return _recall(stability, last, reviews, np.asarray(t, dtype=np.float64))

    def encode(self, memory: EncoderMemory, t: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """States float32 [n, state_dim] at times t [n]; rows selects learners of memory (default all)."""
        stability, last, reviews = _rows(memory, rows)
        t = np.asarray(t, dtype=np.float64)
        seen = reviews > 0
        elapsed_h = np.maximum(t[:, None] - last, 0.0) / _HOUR
        out = np.empty(stability.shape + (FEATURES_PER_CONCEPT,), dtype=np.float32)
        out[..., 0] = _recall(stability, last, reviews, t)
        out[..., 1] = np.where(seen, np.log1p(elapsed_h) / _ELAPSED_SCALE, NEVER_REVIEWED_ELAPSED)
        out[..., 2] = np.log1p(reviews) / _REVIEWS_SCALE
        out[..., 3] = np.where(seen, np.log1p(stability / _HOUR) / _STABILITY_SCALE, 0.0)
        return out.reshape(stability.shape[0], self.state_dim)

    def recall_from_states(self, states: np.ndarray) -> np.ndarray:
        """The recall feature of encoded states [..., S] -> [..., C] (for heuristics on stored states)."""
        return states[..., 0::FEATURES_PER_CONCEPT]

    def update(
        self,
        memory: EncoderMemory,
        learner_rows: np.ndarray,
        concepts: np.ndarray,
        t: np.ndarray,
        correct: np.ndarray,
        grade: np.ndarray,
    ) -> np.ndarray:
        """Apply one review per listed learner (rows distinct) in place; returns the rewards float32 [rows]."""
        cfg = self.config
        rows = np.asarray(learner_rows, dtype=np.int64)
        concepts = np.asarray(concepts, dtype=np.int64)
        t = np.asarray(t, dtype=np.float64)
        correct = np.asarray(correct, dtype=bool)
        grade = np.asarray(grade, dtype=np.int64)
        g = effective_grade(correct, grade)

        stability = memory.stability[rows, concepts]
        difficulty = memory.difficulty[rows, concepts]
        reviews = memory.reviews[rows, concepts]
        seen = reviews > 0
        elapsed = np.maximum(t - memory.last_review[rows, concepts], 0.0)
        recall_before = np.where(seen, np.exp2(-elapsed / stability), 0.0)

        ease = (11.0 - difficulty) / 6.0
        spacing = (1.0 - recall_before) ** cfg.recall_exponent
        grown = stability * (1.0 + cfg.growth * ease * spacing * self._grade_factor[g - 1])
        lapsed = np.maximum(self._initial_stability[0], stability * cfg.lapse_factor)
        first = self._initial_stability[g - 1]
        if self._concept_stability is not None:
            first = first * self._concept_stability[concepts]
        new_stability = np.where(seen, np.where(g > 1, grown, lapsed), first)
        base_difficulty = np.where(seen, difficulty, cfg.initial_difficulty)

        memory.stability[rows, concepts] = np.minimum(new_stability, cfg.max_stability_s)
        memory.difficulty[rows, concepts] = np.clip(base_difficulty - cfg.difficulty_step * (g - 3), 1.0, 10.0)
        memory.last_review[rows, concepts] = t
        memory.reviews[rows, concepts] = reviews + 1

        potential = self.recall(memory, t + cfg.horizon_s, rows=rows).mean(axis=1)
        rewards = (potential - memory.potential[rows]).astype(np.float32)
        memory.potential[rows] = potential
        return rewards


def effective_grade(correct: np.ndarray, grade: np.ndarray) -> np.ndarray:
    """The grade the estimator uses: 1 when wrong; when correct the grade if it is 2-4, else 3 (see the module)."""
    grade = np.asarray(grade, dtype=np.int64)
    return np.where(np.asarray(correct, dtype=bool), np.where((grade >= 2) & (grade <= 4), grade, 3), 1)


def concept_sequences(learner: np.ndarray, concept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows in (learner, time) order, n > 0 -> (order, starts): ``order`` sorts them by (learner, concept) and keeps
    time order within (stable), ``starts`` are the positions in that order where a (learner, concept) sequence
    begins."""
    n = len(learner)
    order = np.lexsort((np.arange(n), concept, learner))
    key_l, key_c = learner[order], concept[order]
    starts = np.flatnonzero(np.r_[True, (key_l[1:] != key_l[:-1]) | (key_c[1:] != key_c[:-1])])
    return order, starts


class ConceptStabilityFit:
    """Fits ``EncoderConfig.concept_stability`` to a review log, streamed in chunks in (learner, time) order.

    After a learner's first review of concept c with (effective) grade g, the estimator's stability is
    ``initial_stability_s[g - 1] * m_c``, so the learner's second review of c, e seconds later, is correct with
    probability ``2 ** (-e / (initial_stability_s[g - 1] * m_c))``. ``m_c`` is the maximum-likelihood factor over
    all learners' (first, second) review pairs of c with time between them, on a grid from 1/16 to 16 (2 ** 0.25
    apart; ties go to the factor closest to 1); a concept with fewer than ``min_pairs`` such pairs keeps 1. It is
    the per-item part of fitting FSRS-style weights to a log: with one population median, easy and hard concepts
    are estimated alike until their outcomes pile up.
    """

    GRID = 2.0 ** np.arange(-4.0, 4.0 + 1e-9, 0.25)

    def __init__(self, config: EncoderConfig, *, min_pairs: int = 20) -> None:
        self.config = config
        self.min_pairs = min_pairs
        self.log_likelihood = np.zeros((config.num_concepts, len(self.GRID)))
        self.pairs = np.zeros(config.num_concepts, dtype=np.int64)
        self._held: tuple[np.ndarray, ...] | None = None  # the last learner's rows of the previous chunk
        self._initial_stability = np.asarray(config.initial_stability_s, dtype=np.float64)

    def add(self, learner: np.ndarray, concept: np.ndarray, t: np.ndarray, correct: np.ndarray,
            grade: np.ndarray) -> None:
        """One chunk of rows in (learner, time) order; a learner may continue into the next chunk."""
        columns = (np.asarray(learner, dtype=np.int64), np.asarray(concept, dtype=np.int64),
                   np.asarray(t, dtype=np.float64), np.asarray(correct, dtype=bool), np.asarray(grade, dtype=np.int64))
        if self._held is not None:
            columns = tuple(np.concatenate((held, new)) for held, new in zip(self._held, columns))
        if not len(columns[0]):
            return
        last = columns[0][-1]
        split = int(np.searchsorted(columns[0] == last, True))  # rows are grouped by learner
        self._held = tuple(c[split:] for c in columns)
        self._pairs(*(c[:split] for c in columns))

    def _pairs(self, learner: np.ndarray, concept: np.ndarray, t: np.ndarray, correct: np.ndarray,
               grade: np.ndarray) -> None:
        n = len(learner)
        if not n:
            return
        if concept.min() < 0 or concept.max() >= self.config.num_concepts:
            raise ValueError(f"concept: expected positions in [0, {self.config.num_concepts})")
        order, starts = concept_sequences(learner, concept)
        concept, t, correct, grade = (c[order] for c in (concept, t, correct, grade))
        has_second = np.r_[np.diff(starts), n - starts[-1]] >= 2
        first = starts[has_second]
        second = first + 1
        elapsed = t[second] - t[first]
        # a pair with no time between its reviews (or a broken time) says nothing of how long memory lasts
        informative = np.isfinite(elapsed) & (elapsed > 0)
        first, second, elapsed = first[informative], second[informative], elapsed[informative]
        stability = self._initial_stability[effective_grade(correct[first], grade[first]) - 1]
        p = np.exp2(-elapsed[:, None] / (stability[:, None] * self.GRID))  # [pairs, grid]
        p = np.clip(p, 1e-6, 1.0 - 1e-6)
        ll = np.where(correct[second][:, None], np.log(p), np.log1p(-p))
        np.add.at(self.log_likelihood, concept[first], ll)
        self.pairs += np.bincount(concept[first], minlength=self.config.num_concepts)

    def factors(self) -> tuple[float, ...]:
        """The fitted factor per concept (after the last chunk)."""
        if self._held is not None:
            self._pairs(*self._held)
            self._held = None
        # ties (a flat likelihood) go to the factor closest to 1: a tiny penalty, far below any real difference
        best = self.GRID[np.argmax(self.log_likelihood - 1e-9 * np.abs(np.log2(self.GRID)), axis=1)]
        return tuple(float(v) for v in np.where(self.pairs >= self.min_pairs, best, 1.0))

    def fitted_config(self) -> EncoderConfig:
        return replace(self.config, concept_stability=self.factors())


def _rows(memory: EncoderMemory, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if rows is None:
        return memory.stability, memory.last_review, memory.reviews
    return memory.stability[rows], memory.last_review[rows], memory.reviews[rows]


def _recall(stability: np.ndarray, last: np.ndarray, reviews: np.ndarray, t: np.ndarray) -> np.ndarray:
    elapsed = np.maximum(t[:, None] - last, 0.0)
    return np.where(reviews > 0, np.exp2(-elapsed / stability), 0.0)


# ---------------------------------------------------------------------------------------------- serving


def _pack(array: np.ndarray, dtype: type) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unpack(text: str, dtype: type, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.frombuffer(base64.b64decode(text.encode("ascii")), dtype=dtype)
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


class LearnerState:
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
    def new(cls, *, encoder: StateEncoder, context_length: int) -> "LearnerState":
        """An empty learner; keeps the context_length - 1 reviews that precede the decision position."""
        return cls(encoder=encoder, history_length=max(int(context_length) - 1, 0))

    @classmethod
    def from_history(
        cls, rows: Iterable[tuple[int, float, bool, int]], *, encoder: StateEncoder, context_length: int
    ) -> "LearnerState":
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

    def to_dict(self) -> dict:
        m = self.memory
        steps = list(self.history)
        return {
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
            },
            "history": {
                "states": _pack(np.stack([s.state for s in steps]) if steps else np.zeros((0,)), np.float32),
                "actions": [s.action for s in steps],
                "cumulative_rewards": [s.cumulative_reward for s in steps],
                "timesteps": [s.timestep for s in steps],
            },
        }

    @classmethod
    def from_dict(cls, data: dict, *, encoder: StateEncoder) -> "LearnerState":
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
        )
        hist = data["history"]
        k = len(hist["actions"])
        states = _unpack(hist["states"], np.float32, (k, encoder.state_dim), "history.states")
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
