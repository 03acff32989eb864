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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from django.conf import settings
from django.utils import timezone

from training.rl.artifacts import CONFIG_FILE, WEIGHTS_FILE, verify_artifacts
from training.rl.dtlite import DTLite
from training.rl.encoder import EncodedLearnerState, EncoderMemory, StateEncoder
from training.rl.encoder.state import LearnerStateBatch
from training.rl.kv_cache import HistoryStepCache
from training.rl.policies import LowestRecallPolicy, RoundRobinPolicy, lowest_recall_choice

from . import selectors
from .experiments import recommendation_log
from .experiments.assignment import assign
from .experiments.exploration import Exploration, draw
from .learner_states import histories, state_from_history
from .models import ExperimentArm, PolicyModel
from .services import artifact_storage
from .state_specs import IDENTITY_KEY, StateSpec

logger = logging.getLogger(__name__)

FALLBACK = LowestRecallPolicy.name  # the default fallback rule: evaluate_policy's lowest_recall baseline
ROUND_ROBIN = RoundRobinPolicy.name  # the other one a curriculum may choose (Curriculum.fallback_rule)
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
    # The recommendation log's id for this answer (a UUID string; a review may send it back).
    recommendation_id: str | None = None
    # The serving distribution's probability of `concept` (curriculum.experiments.exploration), among `candidates`
    # concepts; `policy_id` the deciding version's database id (None: the fallback).
    propensity: float = 1.0
    candidates: int = 0
    policy_id: int | None = None


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
    fails to load is retried after `retry_after_s`; until then the old version (or the fallback) answers. Its first
    failure is logged with the traceback, each retry that fails again with a one-line warning (the traceback every
    `retry_after_s` would bury the log); after it loads, a new failure logs its traceback again.
    """

    def __init__(self, *, loader: Callable[[int], ServedPolicy] = ServedPolicy.load, retry_after_s: float = 30.0):
        self._loader = loader
        self._retry_after_s = retry_after_s
        self._served: dict[int, ServedPolicy] = {}
        self._loading: dict[int, threading.Lock] = {}
        self._failed: dict[int, float] = {}
        self._traced: set[int] = set()  # versions whose load failure was logged with its traceback
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
            except Exception as exc:
                meanwhile = f"v{current.version}" if current else "the fallback"
                if policy_id in self._traced:
                    logger.warning("still cannot load policy id %s for serving (%s: %s); %s answers meanwhile",
                                   policy_id, type(exc).__name__, exc, meanwhile)
                else:
                    logger.exception("cannot load policy id %s for serving; %s answers meanwhile (retried every "
                                     "%.0f s, logged again in one line)", policy_id, meanwhile, self._retry_after_s)
                    self._traced.add(policy_id)
                self._failed[policy_id] = time.monotonic()
                return current
            self._served[curriculum_id] = loaded
            self._failed.pop(policy_id, None)
            self._traced.discard(policy_id)
            logger.info("serving policy v%s (id %s) for curriculum id %s", loaded.version, loaded.id, curriculum_id)
            return loaded
        finally:
            lock.release()

    def clear(self) -> None:
        self._served.clear()
        self._failed.clear()
        self._traced.clear()


policies = PolicyCache()  # one per process
# Versions serving an experiment's arm other than the active one: one slot per version (its id as the slot key).
arm_policies = PolicyCache()


def _served(*, curriculum_id: int, policy_id: int | None, active_id: int | None) -> ServedPolicy | None:
    if policy_id is None:
        return None
    if policy_id == active_id:
        return policies.get(curriculum_id=curriculum_id, policy_id=policy_id)
    return arm_policies.get(curriculum_id=policy_id, policy_id=policy_id)


# ------------------------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class _Arm:
    id: int
    label: str
    policy_id: int | None
    is_control: bool
    traffic_percent: int


@dataclass(frozen=True)
class _Plan:
    """A running experiment's arms, cached per process: arms never change once an experiment has started."""

    id: int
    mode: str
    arms: tuple[_Arm, ...]

    def arms_for(self, learner: str) -> tuple[_Arm, _Arm | None]:
        """(the arm that serves the learner, the shadow arm that only chooses and logs, or None)."""
        if self.mode == "shadow":
            control = next(a for a in self.arms if a.is_control)
            candidates = [a for a in self.arms if not a.is_control and a.traffic_percent > 0]
            if not candidates:
                return control, None
            chosen = assign(experiment_id=self.id, learner=learner, weights=[a.traffic_percent for a in candidates])
            return control, candidates[chosen]
        return self.arms[assign(experiment_id=self.id, learner=learner,
                                weights=[a.traffic_percent for a in self.arms])], None


_plans: dict[int, _Plan] = {}


def _plan(experiment_id: int | None) -> _Plan | None:
    if experiment_id is None:
        return None
    plan = _plans.get(experiment_id)
    if plan is None:
        from .models import Experiment

        mode = Experiment.objects.filter(pk=experiment_id).values_list("mode", flat=True).first()
        arms = tuple(_Arm(*row) for row in ExperimentArm.objects.filter(experiment_id=experiment_id).order_by(
            "label").values_list("id", "label", "policy_id", "is_control", "traffic_percent"))
        if mode is None or not arms or not any(a.is_control for a in arms):
            return None
        plan = _plans[experiment_id] = _Plan(experiment_id, mode, arms)
    return plan


def _exploration(rules: selectors.ServingRules) -> Exploration:
    try:
        return Exploration(rules.exploration, rules.temperature, rules.epsilon)
    except ValueError:
        logger.exception("the curriculum's exploration settings are invalid; serving without exploration")
        return Exploration()


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


_step_caches: list[HistoryStepCache] = []


def _step_cache() -> HistoryStepCache | None:
    """This process's per-step cache of learners' history keys and values (SERVING_STEP_CACHE_BYTES; 0: none)."""
    if not _step_caches:
        if settings.SERVING_STEP_CACHE_BYTES <= 0:
            return None
        _step_caches.append(HistoryStepCache(max_bytes=settings.SERVING_STEP_CACHE_BYTES))
    return _step_caches[0]


def clear_caches() -> None:
    """Forget every loaded policy version and concept list (tests; a restored database)."""
    _step_caches.clear()
    policies.clear()
    arm_policies.clear()
    _catalogs.clear()
    _plans.clear()


# ------------------------------------------------------------------------------------------- recommend
def recommend(
    *, curriculum: str, learner: str, candidates: Sequence[str] | None = None, at: dt.datetime | None = None
) -> Recommendation:
    """The concept `learner` should practise next in `curriculum`, at `at` (default now), among `candidates`.

    The active policy version decides (or, while an experiment runs, the learner's arm's version); without one (or
    when none of the candidates is in its action space) the fallback `lowest_recall` does: the concept with the
    lowest estimated recall, never-reviewed concepts first in position order, and its scores are those recall
    estimates. The curriculum's exploration rule draws the concept from the decider's distribution. The answer is
    queued for the recommendation log under its `recommendation_id` (with a shadow arm's choice, in shadow mode).
    A learner never seen is a new learner (nothing is stored on a read).
    """
    found = selectors.serving_lookup(curriculum_key=curriculum, learner_external_id=learner)
    if found is None:
        raise UnknownCurriculum(curriculum)
    catalog = _catalog(curriculum_id=found.curriculum_id, concept_count=found.concept_count)
    if not catalog.keys:
        raise NothingToRecommend(f"curriculum {curriculum!r} has no concepts yet")
    if candidates is None:
        allowed = list(range(len(catalog.keys)))
    else:
        unknown = [k for k in dict.fromkeys(candidates) if k not in catalog.positions]
        if unknown:
            raise UnknownConcepts(unknown, curriculum)
        allowed = sorted({catalog.positions[k] for k in candidates})
    moment = at or timezone.now()
    exploration = _exploration(found.serving)
    plan = _plan(found.serving.experiment_id)
    arm, shadow = plan.arms_for(learner) if plan is not None else (None, None)
    rows = [(found.learner_id, found.state, found.history_states)]

    def decide(policy_id: int | None) -> Recommendation:
        return _decide(curriculum_id=found.curriculum_id, policy_id=policy_id, active_id=found.policy_id,
                       catalog=catalog, allowed=allowed, rows=rows, now=moment.timestamp(), exploration=exploration,
                       fallback=found.serving.fallback_rule)[0]

    rec = decide(arm.policy_id if arm is not None else found.policy_id)
    offered = recommendation_log.offered_text(allowed if candidates is not None else None)
    log = [_log_row(rec, curriculum_id=found.curriculum_id, learner=learner, at=moment, exploration=exploration,
                    arm=arm, offered=offered)]
    if shadow is not None:
        log.append(_log_row(decide(shadow.policy_id), curriculum_id=found.curriculum_id, learner=learner, at=moment,
                            exploration=exploration, arm=shadow, served=False, offered=offered))
    recommendation_log.writer().submit(log)
    return replace(rec, recommendation_id=str(log[0].id))


def _log_row(rec: Recommendation, *, curriculum_id: int, learner: str, at: dt.datetime, exploration: Exploration,
             arm: _Arm | None, served: bool = True, offered: str = "") -> recommendation_log.LogRow:
    """The log row of ``rec``; ``offered``: the request's candidates (recommendation_log.offered_text; "": every
    concept), which off-policy estimates score a version on."""
    return recommendation_log.LogRow(
        id=uuid.uuid4(), curriculum_id=curriculum_id, learner=learner, policy_id=rec.policy_id, concept=rec.concept,
        candidates=rec.candidates, propensity=rec.propensity, exploration=exploration.rule,
        arm_id=arm.id if arm is not None else None, served=served, at=at, offered=offered,
    )


def _decide(*, curriculum_id: int, policy_id: int | None, active_id: int | None, catalog: _Catalog, allowed: list[int],
            rows: Sequence[tuple[int | None, dict[str, Any] | None, bytes | None]], now: float,
            exploration: Exploration, fallback: str = FALLBACK) -> list[Recommendation]:
    """The answer for each (learner id or None, stored state or None, stored history states or None) of `rows` by
    version `policy_id` (None, one that cannot load, or one that scores none of `allowed`: the curriculum's
    `fallback` rule), drawn by `exploration`. The states are decoded together (LearnerStateBatch) and the deciding version answers them in
    batched DTLite calls."""
    served = _served(curriculum_id=curriculum_id, policy_id=policy_id, active_id=active_id)
    if served is not None:
        # A policy that scores concepts added after training reads states over all of the curriculum's concepts
        # (stored so by learner_states: selectors.serving_spec widens the same way).
        spec = served.spec.widened(num_concepts=len(catalog.keys))
        keys = served.concept_keys if spec is served.spec else catalog.keys
        in_policy = [p for p in allowed if p < len(keys)]
        if in_policy:
            unscored = tuple(catalog.keys[p] for p in allowed if p >= len(keys))
            return _from_policy(served, _states(spec=spec, rows=rows, curriculum_id=curriculum_id),
                                learner_ids=[lid for lid, *_ in rows], keys=keys, now=now, allowed=in_policy,
                                exploration=exploration, unscored=unscored)
    spec = StateSpec.default(num_concepts=len(catalog.keys))
    batch = _states(spec=spec, rows=rows, curriculum_id=curriculum_id)
    rule = _round_robin if fallback == ROUND_ROBIN else _lowest_recall
    return rule(batch.memory, encoder=batch.encoder, keys=catalog.keys, now=now, allowed=allowed,
                exploration=exploration)


# Learners per batch request (POST /api/v1/recommendations/batch).
MAX_BATCH_LEARNERS = 1000
# Learners per DTLite call: bounds a request's scratch memory (about 75 MB at the default model size and context,
# against 300 MB for 1000 learners at once) at the same speed per learner (measured: 1.7-2.1 ms from 16 to 512).
_LEARNERS_PER_CALL = 256


def recommend_batch(*, curriculum: str, learners: Sequence[str], at: dt.datetime | None = None) -> list[Recommendation]:
    """`recommend` for each of `learners` (valid external ids, at most MAX_BATCH_LEARNERS; repeats allowed) of one
    curriculum at one moment, among all its concepts: one answer per learner, in order, each what `recommend` answers
    for that learner alone (to float32 rounding of the scores, and up to exploration's draw). Each deciding version
    answers its learners in one batched DTLite call; a learner never seen is a new learner; a learner sent twice gets
    one answer (one recommendation_id) twice. Raises UnknownCurriculum, NothingToRecommend."""
    found = selectors.serving_batch_lookup(curriculum_key=curriculum, learner_external_ids=list(learners))
    if found is None:
        raise UnknownCurriculum(curriculum)
    curriculum_id = found.curriculum_id
    catalog = _catalog(curriculum_id=curriculum_id, concept_count=found.concept_count)
    if not catalog.keys:
        raise NothingToRecommend(f"curriculum {curriculum!r} has no concepts yet")
    allowed = list(range(len(catalog.keys)))
    moment = at or timezone.now()
    unique = list(dict.fromkeys(learners))
    if not unique:  # every id of the request was invalid: the curriculum was still checked
        return []
    exploration = _exploration(found.serving)
    plan = _plan(found.serving.experiment_id)
    arms = {learner: plan.arms_for(learner) if plan is not None else (None, None) for learner in unique}

    def decide_groups(pick) -> dict[str, tuple[Recommendation, _Arm | None]]:
        # learners grouped by deciding version: one batched call per version
        groups: dict[int | None, list[str]] = {}
        for learner in unique:
            arm = pick(learner)
            if arm is not False:
                groups.setdefault(arm.policy_id if arm is not None else found.policy_id, []).append(learner)
        out = {}
        for policy_id, members in groups.items():
            answers = _decide(curriculum_id=curriculum_id, policy_id=policy_id, active_id=found.policy_id,
                              catalog=catalog, allowed=allowed, rows=[found.learners.get(m, (None, None, None)) for m in members],
                              now=moment.timestamp(), exploration=exploration, fallback=found.serving.fallback_rule)
            out.update({m: (rec, pick(m)) for m, rec in zip(members, answers)})
        return out

    served = decide_groups(lambda learner: arms[learner][0])
    shadows = decide_groups(lambda learner: arms[learner][1] if arms[learner][1] is not None else False)
    log, by_learner = [], {}
    for learner in unique:
        rec, arm = served[learner]
        row = _log_row(rec, curriculum_id=curriculum_id, learner=learner, at=moment, exploration=exploration, arm=arm)
        log.append(row)
        by_learner[learner] = replace(rec, recommendation_id=str(row.id))
        if learner in shadows:
            rec, arm = shadows[learner]
            log.append(_log_row(rec, curriculum_id=curriculum_id, learner=learner, at=moment, exploration=exploration,
                                arm=arm, served=False))
    recommendation_log.writer().submit(log)
    return [by_learner[learner] for learner in learners]


def _states(*, spec: StateSpec, rows: Sequence[tuple[int | None, dict[str, Any] | None, bytes | None]],
            curriculum_id: int) -> LearnerStateBatch:
    """The learner states of `rows` ((learner id or None for a new learner, stored `LearnerState.data` or None, stored
    `LearnerState.history_states` or None)) in `spec`'s encoding, decoded together. A state row that is missing
    (reviews written around record_reviews) or encoded for another policy version is rebuilt in memory from the
    learner's history, O(history), the histories of all of them read together (learner_states.histories: one query
    per 500 learners); the next recorded review stores it in this encoding (a learner without reviews is a new
    one). ValueError for a stored state that does not decode."""
    identity = spec.identity
    current = [lid is not None and bool(data) and data.get(IDENTITY_KEY) == identity for lid, data, _ in rows]
    stale = [lid for (lid, _, _), ok in zip(rows, current) if lid is not None and not ok]
    # the histories of every state to rebuild (after a promotion, until the worker has re-encoded them) read together
    rebuilt = {lid: state_from_history(reviews, spec=spec)[0].to_dict() for lid, reviews in histories(
        learner_ids=list(dict.fromkeys(stale)), curriculum_id=curriculum_id).items()} if stale else {}
    datas = [data["state"] if ok else None if lid is None else rebuilt.get(lid)
             for (lid, data, _), ok in zip(rows, current)]
    apart = [blob if ok else None for (_, _, blob), ok in zip(rows, current)]
    return LearnerStateBatch.from_dicts(datas, encoder=spec.encoder, history_length=max(spec.context_length - 1, 0),
                                        history_states=apart)


def _from_policy(served: ServedPolicy, batch: LearnerStateBatch, *, learner_ids: Sequence[int | None],
                 keys: Sequence[str], now: float, allowed: list[int], exploration: Exploration = Exploration(),
                 unscored: tuple[str, ...] = ()) -> list[Recommendation]:
    """The policy's choice for each learner of `batch` among allowed positions at `now`. Learners are grouped by
    context length, so none is padded (a new learner's one-step context costs one step, not a full context), and
    each group is answered in DTLite calls of at most `_LEARNERS_PER_CALL` learners; keys: the concepts the states
    encode (the policy's, or the curriculum's when it has concepts the policy scores from their features), drawn by
    `exploration` (its propensity on each answer). With a model of local attention (``attention_window``), known
    learners (``learner_ids``, None: a new learner) with a history are answered by the per-step path: the keys and
    values of their history come from this process's `HistoryStepCache` (computed once per history and version,
    extended by one step after a review), and only the decision position's tokens are computed."""
    rtg, obs, actions, timesteps = batch.contexts(now, served.target_return, max_timestep=served.max_timestep)
    lengths = np.minimum(batch.lengths + 1, served.spec.context_length)
    chosen = np.zeros(len(lengths), np.int64)
    probs = np.zeros((len(lengths), len(keys)), np.float32)
    candidates = None if len(allowed) == len(keys) else np.asarray(allowed)
    cache = _step_cache() if served.lite.attention_window is not None else None
    if cache is not None:  # known learners with a history: their history's keys and values from the cache
        known = np.flatnonzero((lengths > 1) & np.array([lid is not None for lid in learner_ids], bool))
        for start in range(0, len(known), _LEARNERS_PER_CALL):  # bounded scratch memory, as the full forward's
            stepped = known[start:start + _LEARNERS_PER_CALL]
            # keyed by the loaded DTLite too: a version id is never reused, but a restored database could
            logits = cache.last_logits(served.lite, learners=[learner_ids[b] for b in stepped.tolist()],
                                       version=(served.id, id(served.lite)), returns_to_go=rtg[stepped],
                                       states=obs[stepped], actions=actions[stepped], timesteps=timesteps[stepped],
                                       lengths=lengths[stepped] - 1)
            chosen[stepped], probs[stepped] = served.lite.choose(logits, candidates=candidates)
        if len(known):
            lengths = lengths.copy()
            lengths[known] = 0  # answered
    for n in np.unique(lengths[lengths > 0]).tolist():
        group = np.flatnonzero(lengths == n)
        for start in range(0, len(group), _LEARNERS_PER_CALL):
            rows = group[start:start + _LEARNERS_PER_CALL]
            chosen[rows], probs[rows] = served.lite.select_action(
                rtg[rows, -n:], obs[rows, -n:], actions[rows, -n:], timesteps[rows, -n:], candidates=candidates)
    chosen, propensity = _explore(exploration, preferences=_log(probs[:, allowed]), allowed=allowed, greedy=chosen)
    return _answers(keys=keys, allowed=allowed, chosen=chosen, scores=probs[:, allowed], propensity=propensity,
                    policy_version=served.version, strategy="policy", policy_id=served.id, unscored=unscored)


def _answers(*, keys: Sequence[str], allowed: list[int], chosen: np.ndarray, scores: np.ndarray,
             propensity: np.ndarray, policy_version: int | None, strategy: str, policy_id: int | None = None,
             unscored: tuple[str, ...] = ()) -> list[Recommendation]:
    """One Recommendation per row: chosen positions int [B], scores float [B, len(allowed)] (rounded to
    SCORE_DIGITS in bulk), propensities float [B]."""
    named = [keys[i] for i in allowed]
    rounded = np.round(np.asarray(scores, np.float64), SCORE_DIGITS).tolist()
    return [
        Recommendation(concept=keys[c], scores=dict(zip(named, row)), policy_version=policy_version, strategy=strategy,
                       unscored=unscored, propensity=p, candidates=len(allowed), policy_id=policy_id)
        for c, row, p in zip(chosen.tolist(), rounded, np.asarray(propensity, np.float64).tolist())
    ]


def policy_distribution(served: ServedPolicy, states: Sequence[EncodedLearnerState], *, nows: Sequence[float],
                        allowed: list[int], all_concepts: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The version's choice and probabilities for each learner state at its own moment ``nows[b]`` (epoch seconds):
    (greedy positions int64 [B], probs float32 [B, A], 0 outside ``allowed``), in one DTLite call (callers batch at
    most `_LEARNERS_PER_CALL`). ``all_concepts``: ``allowed`` is every action (no candidate mask). Contexts shorter
    than the longest are left-padded and masked (attention_mask 0), which leaves their logits as they are alone."""
    T = served.spec.context_length
    contexts = [tuple(a[-T:] for a in s.context(now, served.target_return, max_timestep=served.max_timestep))
                for s, now in zip(states, nows)]
    L = max(len(c[0]) for c in contexts)
    B, S = len(contexts), contexts[0][1].shape[1]
    rtg, obs = np.zeros((B, L), np.float32), np.zeros((B, L, S), np.float32)
    actions, timesteps, mask = np.zeros((B, L), np.int64), np.zeros((B, L), np.int64), np.zeros((B, L), np.int64)
    for b, (r, o, a, t) in enumerate(contexts):
        n = len(r)
        rtg[b, L - n:], obs[b, L - n:], actions[b, L - n:], timesteps[b, L - n:], mask[b, L - n:] = r, o, a, t, 1
    return served.lite.select_action(rtg, obs, actions, timesteps, None if mask.all() else mask,
                                     candidates=None if all_concepts else np.asarray(allowed))


def _log(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=np.float64))


def _explore(exploration: Exploration, *, preferences: np.ndarray, allowed: list[int],
             greedy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(chosen positions int64 [B], their propensities float64 [B]) under `exploration`, from the decider's
    preferences float [B, len(allowed)] over `allowed` positions and its greedy positions int [B]."""
    greedy = np.asarray(greedy, dtype=np.int64)
    if exploration.rule == "argmax":  # no draw: the greedy choice, with probability 1
        return greedy, np.ones(len(greedy))
    index = {p: i for i, p in enumerate(allowed)}
    distribution = exploration.distribution(preferences=preferences, greedy=np.array([index[int(g)] for g in greedy]))
    drawn, propensity = draw(distribution)
    return np.asarray(allowed, dtype=np.int64)[drawn], propensity


def _lowest_recall(memory: EncoderMemory, *, encoder: StateEncoder, keys: tuple[str, ...], now: float,
                   allowed: list[int], exploration: Exploration = Exploration()) -> list[Recommendation]:
    """The fallback's answer for each of the B learners of `memory` (the encoder's memory [B, C]) at `now`: the
    lowest estimated recall among allowed positions, never-reviewed concepts first (lowest_recall_choice); its
    scores are the recall estimates."""
    recall = encoder.recall(memory, np.full(len(memory), float(now)))
    mask = np.zeros(recall.shape[1], dtype=bool)
    mask[allowed] = True
    reviewed = memory.reviews > 0
    greedy = lowest_recall_choice(recall, reviewed, allowed=mask)
    # the fallback's preference: low recall first, never-reviewed concepts above all (as lowest_recall_choice)
    preferences = -np.where(reviewed, recall, -1.0)[:, allowed]
    chosen, propensity = _explore(exploration, preferences=preferences, allowed=allowed, greedy=greedy)
    return _answers(keys=keys, allowed=allowed, chosen=chosen, scores=recall[:, allowed], propensity=propensity,
                    policy_version=None, strategy=f"fallback:{FALLBACK}")


def _round_robin(memory: EncoderMemory, *, encoder: StateEncoder, keys: tuple[str, ...], now: float,
                 allowed: list[int], exploration: Exploration = Exploration()) -> list[Recommendation]:
    """The round-robin fallback for each of the B learners of `memory` (the encoder's memory [B, C]): the allowed
    concepts in position order, in turn by the learner's number of reviews n (``allowed[n mod len(allowed)]``; over
    all concepts, training.rl.policies.RoundRobinPolicy's rule with n its step). Its preference for exploration: 0
    for the concept whose turn it is, -1 for the others (softmax at temperature tau gives the turn e^(1/tau) times
    any other's probability). Scores: the estimated recalls, as the lowest-recall fallback's."""
    recall = encoder.recall(memory, np.full(len(memory), float(now)))
    turn = np.asarray(memory.reviews, dtype=np.int64).sum(axis=1) % len(allowed)
    preferences = np.full((len(turn), len(allowed)), -1.0)
    preferences[np.arange(len(turn)), turn] = 0.0
    greedy = np.asarray(allowed, dtype=np.int64)[turn]
    chosen, propensity = _explore(exploration, preferences=preferences, allowed=allowed, greedy=greedy)
    return _answers(keys=keys, allowed=allowed, chosen=chosen, scores=recall[:, allowed], propensity=propensity,
                    policy_version=None, strategy=f"fallback:{ROUND_ROBIN}")
