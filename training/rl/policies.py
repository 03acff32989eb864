"""Behaviour and baseline policies that pick the next concept, vectorised over learners (NumPy only).

All but ``oracle`` see only what the review log shows (the encoder's estimate); ``oracle`` reads the simulator's
true recall and exists for evaluation only, as the ceiling.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .encoder import FEATURES_PER_CONCEPT, STATE_FEATURES


@dataclass(frozen=True)
class Observation:
    """What a policy sees before choosing, for its m learners (all at the same step of their sessions).

    ``run_policies`` fills only what the policy reads (its ``uses_*`` flags), so that a step costs what the policies
    need: ``states`` only for ``uses_states``, ``cumulative_reward`` only for ``uses_rewards``; ``recall`` is left
    None there and computed on demand, for the learners asked, through ``recall_of`` (``recall_source``)."""

    step: int  # reviews each learner has done so far
    t: np.ndarray  # float64 [m], seconds since the epoch
    recall: np.ndarray | None  # float64 [m, C], the encoder's estimate (None: ask recall_of)
    states: np.ndarray | None  # float32 [m, S], the encoder's state (None unless the policy has uses_states)
    cumulative_reward: np.ndarray | None  # float64 [m] (None unless the policy has uses_rewards)
    # only for policies with uses_true_recall (the simulator's truth):
    true_recall: np.ndarray | None = None  # float64 [m, C]
    true_gain: np.ndarray | None = None  # float64 [m, C], expected rise of true recall a horizon ahead if reviewed
    # only for policies with uses_expected_gain (the encoder's estimate, StateEncoder.expected_recall_gain):
    expected_gain: np.ndarray | None = None  # float64 [m, C], expected rise of estimated recall a horizon ahead
    reviewed: np.ndarray | None = None  # bool [m, C], reviewed at least once (None: read from states)
    # learner indices [k] (into these m) -> their estimated recall float64 [k, C]; used when recall is None. It reads
    # the encoder's live memory: ask during select, before the step's reviews are applied
    recall_source: Callable[[np.ndarray], np.ndarray] | None = None

    def recall_of(self, learners: np.ndarray) -> np.ndarray:
        """The encoder's estimated recall float64 [k, C] of ``learners`` (int indices [k] into this observation's
        m learners): rows of ``recall`` when it is given, else ``recall_source``'s. ValueError when neither is."""
        if self.recall is not None:
            return self.recall[learners]
        if self.recall_source is None:
            raise ValueError("observation: neither recall nor recall_source is given")
        return self.recall_source(learners)


def _reviewed(obs: Observation) -> np.ndarray:
    """bool [m, C]: which concepts each learner has reviewed (``obs.reviewed``, else the encoded review count > 0)."""
    if obs.reviewed is not None:
        return obs.reviewed
    if obs.states is None:
        raise ValueError("observation: neither reviewed nor states is given")
    return obs.states[:, STATE_FEATURES.index("reviews")::FEATURES_PER_CONCEPT] > 0


def never_reviewed_first(reviewed: np.ndarray, choose: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Per learner, the never-reviewed concept of lowest position; for the learners who reviewed every concept,
    ``choose(learners)`` (int indices [k] -> concept positions [k]). int64 [m] from reviewed bool [m, C].

    The same choice as an argmin over all concepts of a key that is -1 where never reviewed and >= 0 (never NaN)
    where reviewed, as the recall rules below state it, but the key (the recall) is computed only for the learners
    who have nothing new left: on a large deck, none for most of a cohort's reviews."""
    choice = np.argmax(~reviewed, axis=1).astype(np.int64)  # argmax takes the first True: the lowest position
    done = np.flatnonzero(reviewed.all(axis=1))
    if done.size:
        choice[done] = choose(done)
    return choice


class Policy:
    """One policy for a fixed group of m learners; keeps whatever per-learner state it needs.

    A group may be run in parts (one per process, ``simulator.generate_logs(processes=N)``): this policy's m learners
    are then positions ``stream_offset`` to ``stream_offset + m`` of a group of ``stream_learners`` (default: m, the
    whole group) that share ``rng``. Every per-learner draw (``_draw``) is made for the whole group and the part keeps
    its own slice, so the parts draw exactly what the whole group would (a draw costs O(group) per step, nothing
    next to the O(m x C) of choosing). ValueError when the part does not fit in the group."""

    name: ClassVar[str]
    uses_true_recall: ClassVar[bool] = False
    uses_expected_gain: ClassVar[bool] = False  # reads Observation.expected_gain (the encoder's lookahead)
    uses_states: ClassVar[bool] = False  # reads Observation.states (the encoded states: [m, 4 C] floats a step)
    uses_rewards: ClassVar[bool] = False  # reads Observation.cumulative_reward or observe's rewards

    def __init__(self, *, num_learners: int, num_concepts: int, rng: np.random.Generator,
                 stream_learners: int | None = None, stream_offset: int = 0) -> None:
        self.num_learners = num_learners
        self.num_concepts = num_concepts
        self.rng = rng
        self.stream_learners = num_learners if stream_learners is None else int(stream_learners)
        self.stream_offset = int(stream_offset)
        if self.stream_offset < 0 or self.stream_offset + num_learners > self.stream_learners:
            raise ValueError(f"stream_offset: learners {self.stream_offset}..{self.stream_offset + num_learners} do "
                             f"not fit in a group of stream_learners={self.stream_learners}")

    def _draw(self, draw: Callable[[int], np.ndarray]) -> np.ndarray:
        """``draw(size)`` (one value per learner of the whole group, from ``self.rng``) -> this part's values [m]."""
        values = draw(self.stream_learners)
        if self.stream_learners == self.num_learners:
            return values
        return values[self.stream_offset:self.stream_offset + self.num_learners]

    def select(self, obs: Observation) -> np.ndarray:
        """Concept positions int64 [m]."""
        raise NotImplementedError

    def observe(self, *, concepts: np.ndarray, t: np.ndarray, correct: np.ndarray,
                rewards: np.ndarray | None) -> None:
        """The outcome of the reviews just chosen (most policies need nothing); rewards float32 [m], None unless the
        policy has uses_rewards (run_policies may skip computing them)."""


class RandomPolicy(Policy):
    name = "random"

    def select(self, obs: Observation) -> np.ndarray:
        return self._draw(lambda size: self.rng.integers(0, self.num_concepts, size=size, dtype=np.int64))


class RoundRobinPolicy(Policy):
    name = "round_robin"

    def select(self, obs: Observation) -> np.ndarray:
        return np.full(self.num_learners, obs.step % self.num_concepts, dtype=np.int64)


class BlockedPolicy(Policy):
    """The same concept block_size times in a row, then the next: massed practice, a weak behaviour."""

    name = "blocked"
    block_size = 5

    def select(self, obs: Observation) -> np.ndarray:
        return np.full(self.num_learners, (obs.step // self.block_size) % self.num_concepts, dtype=np.int64)


class LeitnerPolicy(Policy):
    """Leitner boxes on a clock: correct promotes a box, wrong sends back to box 0; box b is due interval[b] after
    its last review. Review the lowest due box (earliest due first); when nothing is due, introduce the next new
    concept; when none is new, the one due soonest."""

    name = "leitner"
    intervals_s = np.array([600.0, 3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0])

    def __init__(self, **kwargs) -> None:
        """kwargs as ``Policy``'s."""
        super().__init__(**kwargs)
        num_learners, num_concepts = self.num_learners, self.num_concepts
        self.box = np.full((num_learners, num_concepts), -1, dtype=np.int64)  # -1: never reviewed
        self.due = np.zeros((num_learners, num_concepts))

    def select(self, obs: Observation) -> np.ndarray:
        seen = self.box >= 0
        due_now = seen & (self.due <= obs.t[:, None])
        # box dominates (1e12 s is far beyond any due time), the due time breaks ties
        due_choice = np.argmin(np.where(due_now, self.box * 1e12 + self.due, np.inf), axis=1)
        new_choice = np.argmax(~seen, axis=1)
        soonest = np.argmin(np.where(seen, self.due, np.inf), axis=1)
        return np.where(due_now.any(axis=1), due_choice, np.where((~seen).any(axis=1), new_choice, soonest))

    def observe(self, *, concepts: np.ndarray, t: np.ndarray, correct: np.ndarray,
                rewards: np.ndarray | None) -> None:
        rows = np.arange(self.num_learners)
        promoted = np.maximum(self.box[rows, concepts], 0) + 1  # a new concept answered correctly starts in box 1
        box = np.where(correct, np.minimum(promoted, len(self.intervals_s) - 1), 0)
        self.box[rows, concepts] = box
        self.due[rows, concepts] = t + self.intervals_s[box]


def lowest_recall_choice(recall: np.ndarray, reviewed: np.ndarray, *, allowed: np.ndarray | None = None) -> np.ndarray:
    """The lowest-recall rule, the one used by the ``lowest_recall`` baseline and by serving's fallback: per learner,
    a never-reviewed concept first (the lowest position), else the lowest estimated recall, ties to the lowest
    position. (Never-reviewed concepts go first explicitly: a long-forgotten one can also estimate 0.)

    recall float [m, C] (the encoder's estimate), reviewed bool [m, C] (reviewed at least once), allowed bool [C]
    or [m, C] (None: every concept) -> concept positions int64 [m]. Raises ValueError when the shapes differ or
    a row allows no concept.
    """
    recall = np.asarray(recall, dtype=np.float64)
    reviewed = np.asarray(reviewed, dtype=bool)
    if recall.ndim != 2 or reviewed.shape != recall.shape:
        raise ValueError(f"recall and reviewed: expected two [m, C] arrays, got {recall.shape} and {reviewed.shape}")
    key = np.where(reviewed, recall, -1.0)  # recall is in [0, 1]: -1 puts never-reviewed concepts first
    if allowed is not None:
        allowed = np.broadcast_to(np.asarray(allowed, dtype=bool), recall.shape)
        if not allowed.any(axis=1).all():
            raise ValueError("allowed: some learner has no concept to choose")
        key = np.where(allowed, key, np.inf)
    return np.argmin(key, axis=1).astype(np.int64)  # argmin takes the first minimum: ties go to the lowest position


class LowestRecallPolicy(Policy):
    """The concept with the lowest estimated recall, never-reviewed ones first (``lowest_recall_choice``)."""

    name = "lowest_recall"

    def select(self, obs: Observation) -> np.ndarray:
        reviewed = _reviewed(obs)
        return never_reviewed_first(reviewed, lambda done: lowest_recall_choice(obs.recall_of(done), reviewed[done]))


class _Exploring(Policy):
    """Mixin: the parent policy's choice, but a random concept with probability epsilon (exploration)."""

    epsilon = 0.2

    def select(self, obs: Observation) -> np.ndarray:
        explore = self._draw(lambda size: self.rng.random(size)) < self.epsilon
        random = self._draw(lambda size: self.rng.integers(0, self.num_concepts, size=size, dtype=np.int64))
        return np.where(explore, random, super().select(obs))


class NoisyLowestRecallPolicy(_Exploring, LowestRecallPolicy):
    """lowest_recall, but a random concept with probability epsilon: good behaviour with exploration."""

    name = "noisy_lowest_recall"


class TargetRecallPolicy(Policy):
    """Never-reviewed concepts first (in position order), then the concept whose estimated recall is closest to
    ``target``: nearly forgotten, but not so far gone that the review mostly restarts it from scratch. On the
    simulator it beats lowest_recall (200 held-out students, 20 concepts, seeds 3, 5, 7, 11): by 0.001-0.008 with
    the median encoder, by 0.011-0.026 with the encoder fitted to the curriculum (it relies on the recall
    estimate's level, lowest_recall only on its order)."""

    name = "target_recall"
    target = 0.25

    def select(self, obs: Observation) -> np.ndarray:
        seen = _reviewed(obs)
        return never_reviewed_first(seen, lambda done: np.argmin(np.abs(obs.recall_of(done) - self._targets(done)),
                                                                 axis=1))

    def _targets(self, learners: np.ndarray) -> float | np.ndarray:
        """The target recall of ``learners`` (indices [k]), broadcastable to [k, C]: one for every learner here."""
        return self.target


class NoisyTargetRecallPolicy(_Exploring, TargetRecallPolicy):
    """target_recall, but a random concept with probability epsilon."""

    name = "noisy_target_recall"


class VariedTargetRecallPolicy(TargetRecallPolicy):
    """target_recall with each learner's own target, drawn once per learner uniformly from ``target_range``:
    exploration over the target rather than over single choices. The log then shows which targets paid for which
    learners, and a Decision Transformer conditioned on a high return can keep the better ones (measured in
    ``DEFAULT_POLICY_MIX``'s comment)."""

    name = "varied_target_recall"
    target_range = (0.15, 0.45)

    def __init__(self, **kwargs) -> None:
        """kwargs as ``Policy``'s."""
        super().__init__(**kwargs)
        self.targets = self._draw(lambda size: self.rng.uniform(*self.target_range, size=size))  # float64 [m]

    def _targets(self, learners: np.ndarray) -> np.ndarray:
        return self.targets[learners, None]


class NoisyVariedTargetRecallPolicy(_Exploring, VariedTargetRecallPolicy):
    """varied_target_recall, but a random concept with probability epsilon."""

    name = "noisy_varied_target_recall"


class PlannerPolicy(Policy):
    """The review with the highest expected gain in ESTIMATED recall at the encoder's horizon (one-step lookahead on
    the encoder's memory model, ``StateEncoder.expected_recall_gain``: E over a correct / wrong answer, with the
    model's own recall as the probability, of the concept's recall ``horizon_s`` later, minus its recall then
    without the review); ties to the lowest position. The oracle's rule on the estimate instead of the truth: it
    sees only the log, so it can write a behaviour log. Measured in ``DEFAULT_POLICY_MIX``'s comment."""

    name = "planner"
    uses_expected_gain = True

    def select(self, obs: Observation) -> np.ndarray:
        if obs.expected_gain is None:
            raise ValueError("planner: the observation has no expected_gain (run_policies computes it)")
        return np.argmax(obs.expected_gain, axis=1).astype(np.int64)  # argmax takes the first maximum


class OraclePolicy(Policy):
    """The concept whose review raises the expected TRUE recall a horizon ahead the most (one-step lookahead on
    the simulated memory): the ceiling, not a competitor. (The argmin of true recall is no ceiling: it spends
    reviews on concepts too far gone to be recalled.)"""

    name = "oracle"
    uses_true_recall = True

    def select(self, obs: Observation) -> np.ndarray:
        if obs.true_gain is None:
            raise ValueError("oracle: the observation has no true_gain (only the simulator can provide it)")
        return np.argmax(obs.true_gain, axis=1)


POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (
        RandomPolicy,
        RoundRobinPolicy,
        BlockedPolicy,
        LeitnerPolicy,
        LowestRecallPolicy,
        NoisyLowestRecallPolicy,
        TargetRecallPolicy,
        NoisyTargetRecallPolicy,
        VariedTargetRecallPolicy,
        NoisyVariedTargetRecallPolicy,
        PlannerPolicy,
        OraclePolicy,
    )
}
BEHAVIOUR_POLICIES = tuple(name for name, cls in POLICIES.items() if not cls.uses_true_recall)

# Weak (random), middling (leitner) and good (target_recall with a target per learner, its noisy twin) behaviour:
# offline RL needs good trajectories to imitate and worse ones so that the return means something. Measured with the
# default command (held-out validation seeds; never the evaluation's 1234): with lowest_recall and its noisy twin as
# the good half the Decision Transformer only matched lowest_recall (0.678-0.685 against 0.680-0.685); with
# target_recall it was ~0.01 above it and level with target_recall itself (training seed 3, held-out 99 / 2024:
# 0.683 / 0.687 against 0.681 / 0.691). With a target per learner (varied_target_recall, 0.15-0.45) the logs show
# which targets paid, and the DT went past target_recall: training seeds 3 and 7 x held-out 99 and 2024, DT minus
# target_recall +0.0027, -0.0003, +0.0052, +0.0027 (DT 0.684, 0.691, 0.687, 0.695); a fixed target of 0.3 instead
# gave +0.0021, -0.0007 on seed 3. No round_robin or blocked: their first steps look exactly like the others'
# (never-reviewed concepts in position order), so a Decision Transformer reading its own history drifts into round
# robin (with them: 0.670-0.673). An admin's policy_mix may still use any of them.
DEFAULT_POLICY_MIX: dict[str, float] = {
    "random": 0.15,
    "leitner": 0.15,
    "varied_target_recall": 0.5,
    "noisy_varied_target_recall": 0.2,
}


def make_policy(name: str, *, num_learners: int, num_concepts: int, rng: np.random.Generator,
                stream_learners: int | None = None, stream_offset: int = 0) -> Policy:
    """The policy ``name`` for num_learners (a part of a group of stream_learners from stream_offset: see
    ``Policy``). ValueError for an unknown name."""
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ValueError(f"policy: unknown name {name!r}; expected one of {sorted(POLICIES)}") from None
    return cls(num_learners=num_learners, num_concepts=num_concepts, rng=rng, stream_learners=stream_learners,
               stream_offset=stream_offset)


def normalise_mix(mix: dict[str, float] | None) -> dict[str, float]:
    """Weights of a policy mix (relative, any positive scale) rescaled to sum to 1, zero weights dropped.

    ``mix`` None: DEFAULT_POLICY_MIX. Raises ValueError ("policy_mix: ...") for a name that is not a behaviour policy
    (the oracle cannot write a real log), a weight that is not a finite number (bool, string, NaN, infinity), a
    negative weight, weights all zero, or finite weights whose sum overflows a float (1e308 + 1e308).
    """
    mix = DEFAULT_POLICY_MIX if mix is None else mix
    bad = sorted(name for name in mix if name not in BEHAVIOUR_POLICIES)
    if bad:
        raise ValueError(
            f"policy_mix: {bad} are not behaviour policies; expected names from {list(BEHAVIOUR_POLICIES)}"
        )
    weights = {name: _finite_weight(w) for name, w in mix.items()}
    not_numbers = sorted(name for name, w in weights.items() if w is None)
    if not_numbers:
        raise ValueError(f"policy_mix: the weights of {not_numbers} are not finite numbers, got "
                         f"{[mix[name] for name in not_numbers]!r}")
    if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
        raise ValueError(f"policy_mix: weights must be non-negative and not all zero, got {mix!r}")
    total = sum(weights.values())
    if not math.isfinite(total):  # each finite, their sum past the largest float (1.8e308): nothing to divide by
        raise ValueError(f"policy_mix: the weights sum to more than the largest number ({sys.float_info.max:.3g}), "
                         f"got {mix!r}; use smaller relative weights, e.g. 1 and 2")
    return {name: w / total for name, w in weights.items() if w > 0}


def _finite_weight(weight: object) -> float | None:
    """``weight`` as a finite float, or None when it is not a finite number (a bool, a string, NaN, infinity, an
    integer past the largest float)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        return None
    try:
        value = float(weight)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None
