"""Reads of the curriculum domain, the one way each is done: the active policy (also on serving's hot path),
concept keys in action order, the serving spec of a curriculum (keyed by the encoder identity), versions, history."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import connection
from django.db.models import QuerySet

from training.rl.model_config import scores_unseen_concepts

from .models import Concept, Curriculum, Experiment, Learner, LearnerState, PolicyModel, PromotionEvent
from .evaluation_protocol import EvaluationProtocol, fallback_key, protocol_of
from .state_specs import StateSpec


def _active_policies() -> QuerySet[PolicyModel]:
    return PolicyModel.objects.filter(status=PolicyModel.Status.ACTIVE)


def active_policy(*, curriculum: Curriculum, for_update: bool = False) -> PolicyModel | None:
    """The curriculum's active policy version, or None. ``for_update``: lock its row (inside a transaction)."""
    active = _active_policies().filter(curriculum=curriculum)
    return (active.select_for_update() if for_update else active).first()


def policy_versions(*, curriculum: Curriculum) -> QuerySet[PolicyModel]:
    return PolicyModel.objects.filter(curriculum=curriculum).order_by("-version")


def promotion_history(*, curriculum: Curriculum) -> QuerySet[PromotionEvent]:
    return PromotionEvent.objects.filter(curriculum=curriculum).select_related("actor").order_by("-at", "-id")


def evaluation_under(*, policy: PolicyModel, protocol: EvaluationProtocol) -> dict[str, Any] | None:
    """The version's evaluation (evaluate_policy's JSON with ``protocol``) under ``protocol``: its training-time
    metrics when they were run under it, else a stored re-evaluation, else None."""
    if protocol_of(policy.metrics) == protocol:
        return policy.metrics
    stored = (policy.evaluations or {}).get(protocol.key)
    return stored if protocol_of(stored) == protocol else None


def fallback_evaluation(*, curriculum: Curriculum, protocol: EvaluationProtocol, num_concepts: int) -> dict[str, Any] | None:
    """The curriculum's fallback rule's stored evaluation (``Curriculum.fallback_evaluations``) under ``protocol`` over
    ``num_concepts`` concepts, or None when there is none, or when it was made with another default encoder than
    serving's now (``StateSpec.default``: a changed encoder serves, and scores, differently)."""
    stored = (curriculum.fallback_evaluations or {}).get(fallback_key(protocol, num_concepts, curriculum.fallback_rule))
    if not isinstance(stored, dict) or protocol_of(stored) != protocol:
        return None
    if stored.get("encoder_identity") != StateSpec.default(num_concepts=num_concepts).identity:
        return None
    return stored


def activation_event(*, curriculum: Curriculum, active: PolicyModel | None = None) -> PromotionEvent | None:
    """The promotion that made the active version active (its latest promotion, rollbacks skipped): what a rollback
    undoes. None when nothing is active or it was never promoted."""
    active = active if active is not None else active_policy(curriculum=curriculum)
    if active is None:
        return None
    return (
        PromotionEvent.objects.filter(curriculum=curriculum, to_version=active.version, kind=PromotionEvent.Kind.PROMOTE)
        .select_related("actor").order_by("-at", "-id").first()
    )


def rollback_target(*, curriculum: Curriculum, active: PolicyModel | None = None) -> PolicyModel | None:
    """The version a rollback would re-activate: the one that was active before the current active version was
    promoted (rollbacks are skipped, so rolling back twice walks further back); None when there is none."""
    activation = activation_event(curriculum=curriculum, active=active)
    if activation is None or activation.from_version is None:
        return None
    return PolicyModel.objects.filter(curriculum=curriculum, version=activation.from_version).first()


@dataclass(frozen=True)
class Coverage:
    """Which of a curriculum's concepts a policy version scores, as serving does (curriculum/serving.py recommend):
    the concepts it was trained on, those added after training that it scores from their features (a version
    with the summary state token and the concept head), and those it cannot score (a linear-token version: the
    API lists them as ``unscored``). Keys in position order."""

    concept_count: int
    trained: int  # the curriculum's concepts the version was trained on
    from_features: tuple[str, ...]  # scored from their features, not trained on
    uncovered: tuple[str, ...]  # never scored while the version is active

    @property
    def scored(self) -> int:
        return self.concept_count - len(self.uncovered)

    @property
    def complete(self) -> bool:
        return not self.uncovered


def policy_coverage(*, curriculum: Curriculum, policy: PolicyModel, keys: tuple[str, ...] | None = None) -> Coverage:
    """The `Coverage` of ``policy`` over ``curriculum``'s concepts (``keys``: its concept keys in position order,
    read when not given). A config without ``concept_keys`` was trained on the first ``action_dim`` positions."""
    keys = keys if keys is not None else concept_keys(curriculum_id=curriculum.pk)
    config = policy.config or {}
    trained_keys = config.get("concept_keys")
    if trained_keys is None:
        trained_keys = keys[: int(config.get("action_dim", len(keys)))]
    trained_set = set(trained_keys)
    outside = tuple(k for k in keys if k not in trained_set)
    if scores_unseen_concepts(config):
        return Coverage(len(keys), len(keys) - len(outside), from_features=outside, uncovered=())
    return Coverage(len(keys), len(keys) - len(outside), from_features=(), uncovered=outside)


def uncovered_concepts(*, curriculum: Curriculum, policy: PolicyModel | None = None) -> list[str]:
    """The curriculum's concept keys (position order) that ``policy`` (default: the active version) cannot score,
    as serving does: [] without a policy (the fallback scores every concept) and for a version that scores
    concepts added after training from their features; else those outside its trained concepts."""
    policy = policy if policy is not None else active_policy(curriculum=curriculum)
    if policy is None:
        return []
    return list(policy_coverage(curriculum=curriculum, policy=policy).uncovered)


def concept_keys(*, curriculum_id: int) -> tuple[str, ...]:
    """The curriculum's concept keys in action (position) order: key i is action i of its policies."""
    return tuple(Concept.objects.filter(curriculum_id=curriculum_id).order_by("position").values_list("key", flat=True))


# A spec depends on its identity alone (the identity is its hash), so one per identity serves every version
# that has it, whatever its id.
_specs_by_identity: dict[str, StateSpec] = {}


def spec_for_identity(*, encoder_identity: str) -> StateSpec | None:
    """The spec of the policy versions registered with ``encoder_identity`` (cached per process), or None when
    no version has it (or it is "": a version without an encoder)."""
    if not encoder_identity:
        return None
    spec = _specs_by_identity.get(encoder_identity)
    if spec is None:
        config = PolicyModel.objects.filter(encoder_identity=encoder_identity).values_list("config", flat=True).first()
        if config is None:
            return None
        spec = _specs_by_identity[encoder_identity] = StateSpec.for_policy(config)
    return spec


def serving_spec(*, curriculum_id: int) -> StateSpec:
    """How the curriculum's learner states are encoded now: the active policy's spec (widened to every concept of
    the curriculum when the policy scores concepts added after training), else (no active version, or one without
    an encoder) the default encoder over all of the curriculum's concepts."""
    active = _active_policies().filter(curriculum_id=curriculum_id).values_list(
        "encoder_identity", "config__state_token", "config__concept_features").first()
    identity, token, features = active or ("", None, None)
    spec = spec_for_identity(encoder_identity=identity or "")
    count = Concept.objects.filter(curriculum_id=curriculum_id).count()
    if spec is not None:
        # versions sharing an encoder identity may differ in their model: the flag is this version's
        flag = scores_unseen_concepts({"state_token": token, "concept_features": features})
        return spec.scoring_unseen(flag).widened(num_concepts=count)
    return StateSpec.default(num_concepts=count)


@dataclass(frozen=True)
class ServingRules:
    """A curriculum's exploration rule and parameters (Curriculum.exploration*), its running experiment's id and its
    fallback rule (Curriculum.fallback_rule)."""

    exploration: str = "argmax"
    temperature: float = 1.0
    epsilon: float = 0.1
    experiment_id: int | None = None
    fallback_rule: str = "lowest_recall"


@dataclass(frozen=True)
class ServingLookup:
    """What a recommendation reads before choosing, as the database says now."""

    curriculum_id: int
    policy_id: int | None  # the active version's
    concept_count: int
    learner_id: int | None  # None: a learner never seen
    state: dict[str, Any] | None  # the stored LearnerState.data, None without one
    serving: ServingRules = ServingRules()  # how the curriculum explores, and its running experiment
    # the stored LearnerState.history_states as the driver gives it (None: in ``state``, or none)
    history_states: bytes | memoryview | None = None


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


# Everything a recommendation reads, in one round trip on indexed columns (the curriculum key, the one active
# policy, the learner's external id, the state's (learner, curriculum)); hand-written because this is the hot
# path and building it through the ORM cost more than running it.
_RULES_COLUMNS = f"""c.exploration, c.exploration_temperature, c.exploration_epsilon,
    (SELECT e.id FROM {_table(Experiment)} e WHERE e.curriculum_id = c.id AND e.status = 'running'), c.fallback_rule"""
_LOOKUP_SQL = f"""
    SELECT c.id, p.id, (SELECT COUNT(*) FROM {_table(Concept)} k WHERE k.curriculum_id = c.id), l.id, s.data,
    s.history_states, {_RULES_COLUMNS}
    FROM {_table(Curriculum)} c
    LEFT JOIN {_table(PolicyModel)} p ON p.curriculum_id = c.id AND p.status = %s
    LEFT JOIN {_table(Learner)} l ON l.external_id = %s
    LEFT JOIN {_table(LearnerState)} s ON s.learner_id = l.id AND s.curriculum_id = c.id
    WHERE c.{connection.ops.quote_name("key")} = %s
"""


def serving_lookup(*, curriculum_key: str, learner_external_id: str) -> ServingLookup | None:
    """The curriculum's id, active version's id and concept count, the learner's id and stored state, in one
    query; None when there is no curriculum with that key."""
    with connection.cursor() as cursor:
        cursor.execute(_LOOKUP_SQL, [PolicyModel.Status.ACTIVE, learner_external_id, curriculum_key])
        row = cursor.fetchone()
    if row is None:
        return None
    curriculum_id, policy_id, concept_count, learner_id, data, history_states, *rules = row
    if isinstance(data, str):  # what the database driver gives for a JSON column without the ORM
        data = _json_loads(data)
    return ServingLookup(curriculum_id, policy_id, concept_count, learner_id, data, ServingRules(*rules),
                         history_states)


@dataclass(frozen=True)
class ServingBatchLookup:
    """What a batch of recommendations reads before choosing: the curriculum's part of `ServingLookup` once, and
    per learner external id found its (learner id, stored state or None, stored history states or None); ids never
    seen are absent."""

    curriculum_id: int
    policy_id: int | None
    concept_count: int
    learners: dict[str, tuple[int, dict[str, Any] | None, bytes | memoryview | None]]
    serving: ServingRules = ServingRules()


_CURRICULUM_SQL = f"""
    SELECT c.id, p.id, (SELECT COUNT(*) FROM {_table(Concept)} k WHERE k.curriculum_id = c.id), {_RULES_COLUMNS}
    FROM {_table(Curriculum)} c
    LEFT JOIN {_table(PolicyModel)} p ON p.curriculum_id = c.id AND p.status = %s
    WHERE c.{connection.ops.quote_name("key")} = %s
"""
# SQLite before 3.32 allows 999 parameters per statement: ids are sent in chunks well below it.
_IDS_PER_QUERY = 500


def serving_batch_lookup(*, curriculum_key: str, learner_external_ids: list[str]) -> ServingBatchLookup | None:
    """`serving_lookup` for many learners of one curriculum: one query for the curriculum, then one for all the
    learners on PostgreSQL (the ids as one array parameter; elsewhere one per `_IDS_PER_QUERY` learners), on the same
    indexed columns. None for an unknown curriculum."""
    with connection.cursor() as cursor:
        cursor.execute(_CURRICULUM_SQL, [PolicyModel.Status.ACTIVE, curriculum_key])
        row = cursor.fetchone()
        if row is None:
            return None
        curriculum_id, policy_id, concept_count, *rules = row
        learners: dict[str, tuple[int, dict[str, Any] | None, bytes | memoryview | None]] = {}
        ids = list(dict.fromkeys(learner_external_ids))
        select = (f"SELECT l.external_id, l.id, s.data, s.history_states FROM {_table(Learner)} l "
                  f"LEFT JOIN {_table(LearnerState)} s ON s.learner_id = l.id AND s.curriculum_id = %s ")
        if connection.vendor == "postgresql":  # the ids as one array parameter: one query for the whole batch
            rows = _binary_rows(select.replace("s.data,", "s.data::text,", 1) + "WHERE l.external_id = ANY(%s)",
                                [curriculum_id, ids])
        else:
            rows = []
            for start in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[start:start + _IDS_PER_QUERY]
                cursor.execute(select + f"WHERE l.external_id IN ({', '.join(['%s'] * len(chunk))})",
                               [curriculum_id, *chunk])
                rows.extend(cursor.fetchall())
        for external_id, learner_id, data, history_states in rows:
            learners[external_id] = (learner_id, _json_loads(data) if isinstance(data, str) else data,
                                     history_states)
    return ServingBatchLookup(curriculum_id, policy_id, concept_count, learners, ServingRules(*rules))


def _binary_rows(sql: str, params: list[Any]) -> list[tuple]:
    """The rows of one PostgreSQL query with its results in binary format: ``bytea`` columns travel as their bytes
    instead of hexadecimal text of twice their size, which PostgreSQL writes and psycopg parses back (a batch of
    1,000 learners' rows, history states of about 6 KB each, took 70 ms in text against 46 ms in binary; served, with
    PostgreSQL on the same cores, the batch endpoint answered 1.29x the learners: bench/README.md, "The batch lookup
    in PostgreSQL's binary format"). Django's cursor is a client-side-binding one, which psycopg cannot switch to binary results, so
    the query runs on a server-binding psycopg cursor of the same connection, inside Django's cursor wrapper: the
    execute wrappers (the web process's query deadline, crlsite/query_deadline.py; the outage watch), the
    query log and the conversion of psycopg's errors to Django's apply as to any query. Select ``jsonb`` columns cast to ``text``
    (a jsonb column in binary format would be parsed by psycopg's standard-library JSON loader)."""
    import psycopg

    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY  # what psycopg's own connection.cursor(binary=True) sets
    # Django's own wrapping of a new cursor (a private method, Django 5.2): the debug wrapper when queries are logged
    # (DEBUG, CaptureQueriesContext, the tests' query counts) and the thread-sharing check, as connection.cursor()
    with connection._prepare_cursor(raw) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _json_loads(text: str) -> Any:
    """A learner state's JSON (as the ORM's JSONField wrote it) -> Python values: orjson's decoder, about 4x faster
    than the standard library's on these states (bench/batch_profile.py: 47 ms of 215 per 1,000 learners), the same
    values for JSON that PostgreSQL's jsonb accepts. A document it refuses (NaN or Infinity, which the standard
    library writes and SQLite stores as text) falls back to the standard library's."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
