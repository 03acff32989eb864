"""Serving: which concept a learner should practise next, from the active policy version (or a fallback).

Each process keeps the active DTLite per curriculum in memory (`PolicyCache`); every request reads the active
version's id in the same query that finds the curriculum, so a promotion elsewhere is picked up on the next
request, loaded once, and swapped in while the old version keeps answering. NumPy only: never imports torch.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from django.utils import timezone

from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE, verify_artifacts
from training.rl.dtlite import DTLite
from training.rl.encoder import EncodedLearnerState
from training.rl.policies import LowestRecallPolicy, lowest_recall_choice

from . import selectors
from .learner_states import history, state_from_history
from .models import PolicyModel
from .services import artifact_storage
from .state_specs import StateSpec

logger = logging.getLogger(__name__)

FALLBACK = LowestRecallPolicy.name  # the rule evaluate_policy reports as its lowest_recall baseline
SCORE_DIGITS = 6


class UnknownCurriculum(LookupError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(f"unknown curriculum {key!r}")


class UnknownConcepts(ValueError):
    """Candidate keys that are not concepts of the curriculum."""

    def __init__(self, keys: list[str], curriculum: str):
        self.keys = keys
        super().__init__(f"unknown concept{'s' if len(keys) > 1 else ''} {', '.join(map(repr, keys))} in curriculum {curriculum!r}")


class NothingToRecommend(ValueError):
    """The curriculum has no concepts yet."""


@dataclass(frozen=True)
class Recommendation:
    concept: str
    scores: dict[str, float]
    policy_version: int | None
    strategy: str  # "policy" or "fallback:<name>"
    # Candidate concept keys the deciding policy version cannot score (outside its action space), position order.
    unscored: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------- policies
@dataclass(frozen=True)
class ServedPolicy:
    """A policy version ready to answer: its DTLite and the state encoding it was trained with."""

    id: int
    version: int
    lite: DTLite
    spec: StateSpec
    concept_keys: tuple[str, ...]
    target_return: float
    max_timestep: int

    @classmethod
    def load(cls, policy_id: int) -> ServedPolicy:
        """Read and verify a version's DTLite files from artifact storage (SHA-256 against the registry)."""
        policy = PolicyModel.objects.select_related("curriculum").get(pk=policy_id)
        storage, files, expected = artifact_storage(), {}, {}
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            entry = policy.artifacts[name]
            with storage.open(entry["path"], "rb") as fh:
                files[name] = fh.read()
            expected[name] = entry["sha256"]
        config, weights = verify_artifacts(weights=files[WEIGHTS_FILE], config=files[CONFIG_FILE], expected_sha256=expected)
        spec = StateSpec.for_policy(config)
        if spec.identity != policy.encoder_identity:
            raise ValueError(f"{policy}: the encoder in {CONFIG_FILE} is not the one registered (encoder_identity)")
        keys = tuple(config["concept_keys"])
        # The state encodes concepts by position: the policy's action order must be the curriculum's.
        positions = selectors.concept_keys(curriculum_id=policy.curriculum_id)
        if spec.num_concepts != len(keys) or spec.encoder_config.state_dim != config["state_dim"] or positions[: len(keys)] != keys:
            raise ValueError(f"{policy}: concept_keys/encoder do not match the curriculum's concepts in position order")
        return cls(policy.pk, policy.version, DTLite(weights, config), spec, keys, float(config["target_return"]),
                   int(config["max_timestep"]))


class PolicyCache:
    """The serving policy version per curriculum, for one process.

    `get` is called on every request with the active version's id as the database says now. A new id is
    loaded by one thread, outside any lock other requests wait on: meanwhile they keep getting the version
    already in memory (only a process's very first request per curriculum waits for a load). The swap is one
    dict assignment, so a request sees the old version or the new one, never half of each. A version that
    fails to load is logged and retried after `retry_after_s`; until then the old version (or the fallback)
    answers.
    """

    def __init__(self, *, loader: Callable[[int], ServedPolicy] = ServedPolicy.load, retry_after_s: float = 30.0):
        self._loader = loader
        self._retry_after_s = retry_after_s
        self._served: dict[int, ServedPolicy] = {}
        self._loading: dict[int, threading.Lock] = {}
        self._failed: dict[int, float] = {}
        self._guard = threading.Lock()

    def get(self, *, curriculum_id: int, policy_id: int | None) -> ServedPolicy | None:
        if policy_id is None:
            return None
        current = self._served.get(curriculum_id)
        if current is not None and current.id == policy_id:
            return current
        failed_at = self._failed.get(policy_id)
        if failed_at is not None and time.monotonic() - failed_at < self._retry_after_s:
            return current
        with self._guard:
            lock = self._loading.setdefault(curriculum_id, threading.Lock())
        if not lock.acquire(blocking=current is None):
            return current  # another thread is loading the new version; the old one answers meanwhile
        try:
            current = self._served.get(curriculum_id)
            if current is not None and current.id == policy_id:
                return current
            try:
                loaded = self._loader(policy_id)
            except Exception:
                logger.exception("cannot load policy id %s for serving; %s answers meanwhile", policy_id,
                                 f"v{current.version}" if current else "the fallback")
                self._failed[policy_id] = time.monotonic()
                return current
            self._served[curriculum_id] = loaded
            self._failed.pop(policy_id, None)
            logger.info("serving policy v%s (id %s) for curriculum id %s", loaded.version, loaded.id, curriculum_id)
            return loaded
        finally:
            lock.release()

    def clear(self) -> None:
        self._served.clear()
        self._failed.clear()


policies = PolicyCache()  # one per process


# ------------------------------------------------------------------------------------------- catalog
@dataclass(frozen=True)
class _Catalog:
    """A curriculum's concept keys in position order, cached per process; concepts are only ever appended."""

    keys: tuple[str, ...]
    positions: dict[str, int]


_catalogs: dict[int, _Catalog] = {}


def _catalog(*, curriculum_id: int, concept_count: int) -> _Catalog:
    catalog = _catalogs.get(curriculum_id)
    if catalog is None or len(catalog.keys) != concept_count:
        keys = selectors.concept_keys(curriculum_id=curriculum_id)
        catalog = _catalogs[curriculum_id] = _Catalog(keys, {k: i for i, k in enumerate(keys)})
    return catalog


def clear_caches() -> None:
    """Forget every loaded policy version and concept list (tests; a restored database)."""
    policies.clear()
    _catalogs.clear()


# ------------------------------------------------------------------------------------------- recommend
def recommend(
    *, curriculum: str, learner: str, candidates: Sequence[str] | None = None, at: dt.datetime | None = None
) -> Recommendation:
    """The concept `learner` should practise next in `curriculum`, at `at` (default now), among `candidates`.

    The active policy version decides; without one (or when none of the candidates is in its action space)
    the fallback `lowest_recall` does: the concept with the lowest estimated recall, never-reviewed concepts
    first in position order, and its scores are those recall estimates. A learner never seen is a new
    learner (nothing is stored on a read).
    """
    found = selectors.serving_lookup(curriculum_key=curriculum, learner_external_id=learner)
    if found is None:
        raise UnknownCurriculum(curriculum)
    curriculum_id, learner_id, data = found.curriculum_id, found.learner_id, found.state
    catalog = _catalog(curriculum_id=curriculum_id, concept_count=found.concept_count)
    if not catalog.keys:
        raise NothingToRecommend(f"curriculum {curriculum!r} has no concepts yet")
    if candidates is None:
        allowed = list(range(len(catalog.keys)))
    else:
        unknown = [k for k in dict.fromkeys(candidates) if k not in catalog.positions]
        if unknown:
            raise UnknownConcepts(unknown, curriculum)
        allowed = sorted({catalog.positions[k] for k in candidates})
    now = (at or timezone.now()).timestamp()

    served = policies.get(curriculum_id=curriculum_id, policy_id=found.policy_id)
    if served is not None:
        # A policy that scores concepts added after training reads states over all of the curriculum's concepts
        # (stored so by learner_states: selectors.serving_spec widens the same way).
        spec = served.spec.widened(num_concepts=len(catalog.keys))
        keys = served.concept_keys if spec is served.spec else catalog.keys
        in_policy = [p for p in allowed if p < len(keys)]
        if in_policy:
            state = _state(spec=spec, data=data, learner_id=learner_id, curriculum_id=curriculum_id)
            rec = _from_policy(served, [state], keys=keys, now=now, allowed=in_policy)[0]
            if len(in_policy) < len(allowed):  # concepts this version can neither be trained on nor score
                rec = replace(rec, unscored=tuple(catalog.keys[p] for p in allowed if p >= len(keys)))
            return rec
    spec = StateSpec.default(num_concepts=len(catalog.keys))
    state = _state(spec=spec, data=data, learner_id=learner_id, curriculum_id=curriculum_id)
    return _lowest_recall(state, keys=catalog.keys, now=now, allowed=allowed)


# Learners per batch request (POST /api/v1/recommendations/batch).
MAX_BATCH_LEARNERS = 1000
# Learners per DTLite call: bounds a request's scratch memory (about 75 MB at the default model size and context,
# against 300 MB for 1000 learners at once) at the same speed per learner (measured: 1.7-2.1 ms from 16 to 512).
_LEARNERS_PER_CALL = 256


def recommend_batch(*, curriculum: str, learners: Sequence[str], at: dt.datetime | None = None) -> list[Recommendation]:
    """`recommend` for each of `learners` (valid external ids, at most MAX_BATCH_LEARNERS; repeats allowed) of one
    curriculum at one moment, among all its concepts: one answer per learner, in order, each what `recommend` answers
    for that learner alone (to float32 rounding of the scores). The active policy version answers every learner in one
    batched DTLite call; a learner never seen is a new learner. Raises UnknownCurriculum, NothingToRecommend."""
    found = selectors.serving_batch_lookup(curriculum_key=curriculum, learner_external_ids=list(learners))
    if found is None:
        raise UnknownCurriculum(curriculum)
    curriculum_id = found.curriculum_id
    catalog = _catalog(curriculum_id=curriculum_id, concept_count=found.concept_count)
    if not catalog.keys:
        raise NothingToRecommend(f"curriculum {curriculum!r} has no concepts yet")
    allowed = list(range(len(catalog.keys)))
    now = (at or timezone.now()).timestamp()
    unique = list(dict.fromkeys(learners))
    if not unique:  # every id of the request was invalid: the curriculum was still checked
        return []
    rows = [found.learners.get(learner, (None, None)) for learner in unique]

    served = policies.get(curriculum_id=curriculum_id, policy_id=found.policy_id)
    if served is not None:
        spec = served.spec.widened(num_concepts=len(catalog.keys))
        keys = served.concept_keys if spec is served.spec else catalog.keys
        in_policy = [p for p in allowed if p < len(keys)]
        states = [_state(spec=spec, data=data, learner_id=lid, curriculum_id=curriculum_id) for lid, data in rows]
        answers = _from_policy(served, states, keys=keys, now=now, allowed=in_policy)
        if len(in_policy) < len(allowed):
            unscored = tuple(catalog.keys[p] for p in allowed if p >= len(keys))
            answers = [replace(rec, unscored=unscored) for rec in answers]
    else:
        spec = StateSpec.default(num_concepts=len(catalog.keys))
        answers = [_lowest_recall(_state(spec=spec, data=data, learner_id=lid, curriculum_id=curriculum_id),
                                  keys=catalog.keys, now=now, allowed=allowed) for lid, data in rows]
    by_learner = dict(zip(unique, answers))
    return [by_learner[learner] for learner in learners]


def _state(*, spec: StateSpec, data: dict[str, Any] | None, learner_id: int | None, curriculum_id: int) -> EncodedLearnerState:
    if learner_id is None:
        return spec.new_state()
    state = spec.load(data)
    if state is None:
        # No state row (reviews written around record_reviews) or one encoded for another policy version:
        # rebuild in memory, O(history); the next recorded review stores it in this encoding.
        state, _ = state_from_history(history(learner_id=learner_id, curriculum_id=curriculum_id), spec=spec)
    return state


def _from_policy(served: ServedPolicy, states: Sequence[EncodedLearnerState], *, keys: Sequence[str], now: float,
                 allowed: list[int]) -> list[Recommendation]:
    """The policy's choice for each learner state among allowed positions, in one batched DTLite call per
    `_LEARNERS_PER_CALL` learners; keys: the concepts the states encode (the policy's, or the curriculum's when it has
    concepts the policy scores from their features). Contexts shorter than the longest are left-padded and masked (attention_mask 0), which leaves their
    logits as they are alone (DTLite masks padded keys)."""
    if len(states) > _LEARNERS_PER_CALL:
        return [rec for start in range(0, len(states), _LEARNERS_PER_CALL)
                for rec in _from_policy(served, states[start:start + _LEARNERS_PER_CALL], keys=keys, now=now,
                                        allowed=allowed)]
    T = served.spec.context_length
    contexts = [tuple(a[-T:] for a in s.context(now, served.target_return, max_timestep=served.max_timestep))
                for s in states]
    L = max(len(c[0]) for c in contexts)
    B, S = len(contexts), contexts[0][1].shape[1]
    rtg, obs = np.zeros((B, L), np.float32), np.zeros((B, L, S), np.float32)
    actions, timesteps, mask = np.zeros((B, L), np.int64), np.zeros((B, L), np.int64), np.zeros((B, L), np.int64)
    for b, (r, o, a, t) in enumerate(contexts):
        n = len(r)
        rtg[b, L - n:], obs[b, L - n:], actions[b, L - n:], timesteps[b, L - n:], mask[b, L - n:] = r, o, a, t, 1
    chosen, probs = served.lite.select_action(
        rtg, obs, actions, timesteps, None if mask.all() else mask,
        candidates=None if len(allowed) == len(keys) else np.asarray(allowed),
    )
    return [
        Recommendation(
            concept=keys[int(chosen[b])],
            scores={keys[i]: round(float(p), SCORE_DIGITS) for i, p in zip(allowed, probs[b, allowed].tolist())},
            policy_version=served.version,
            strategy="policy",
        )
        for b in range(B)
    ]


def _lowest_recall(state: EncodedLearnerState, *, keys: tuple[str, ...], now: float, allowed: list[int]) -> Recommendation:
    recall = state.encoder.recall(state.memory, np.array([now]))[0]
    mask = np.zeros(len(recall), dtype=bool)
    mask[allowed] = True
    chosen = int(lowest_recall_choice(recall[None], state.memory.reviews[:1] > 0, allowed=mask)[0])
    return Recommendation(
        concept=keys[chosen],
        scores={keys[i]: round(float(recall[i]), SCORE_DIGITS) for i in allowed},
        policy_version=None,
        strategy=f"fallback:{FALLBACK}",
    )
