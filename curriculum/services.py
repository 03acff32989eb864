"""Writes of the curriculum domain: curricula and concepts, register, promote and roll back policy versions
(reviews are written by curriculum.reviews)."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.files.base import File
from django.core.files.storage import storages
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from training.rl.artifacts import ARTIFACT_NAMES, OPTIONAL_ARTIFACT_NAMES, ArtifactError, check_sha256, file_sha256
from training.rl.model_config import scores_unseen_concepts

from . import selectors
from .evaluation_protocol import EvaluationProtocol, dt_mean, protocol_of
from .history import record_change
from .models import Concept, Curriculum, PolicyModel, PromotionEvent
from .reviews.fields import check_curriculum_key
from .reviews.validation import normalise_id
from .selectors import active_policy
from .storage import check_free_space, remove_leftovers, saving_together
from .state_specs import policy_identity

logger = logging.getLogger(__name__)

# Evaluating a version under the protocol is training's work (training/protocol_evaluation.py), launched as a job
# (training.models.ProtocolEvaluationJob, from the orchestrator). The task of the earlier, job-less request keeps its
# name so that messages already in a broker still run.
EVALUATE_TASK = "training.tasks.evaluate_policy_under_protocol"


# ---------------------------------------------------------------------------------------------- errors
class PolicyError(Exception):
    """Base of the registry's refusals; the message says what to fix."""


class ArtifactIntegrityError(PolicyError):
    """An artifact file of a policy version is missing or does not match its SHA-256."""


class PromotionRefused(PolicyError):
    """A promotion or rollback that the rules do not allow (worse candidate, nothing to roll back to...)."""


# ------------------------------------------------------------------------------------------- curricula
def ensure_curriculum(*, key: str, name: str = "", concept_keys: Iterable[str] = ()) -> Curriculum:
    """Get or create a curriculum and append the concepts it lacks, in the order given.

    Raises ValueError (curriculum.reviews.fields.check_curriculum_key's message) for a key that is not a curriculum
    key, before anything is stored."""
    check_curriculum_key(key)
    with transaction.atomic():
        curriculum, _ = Curriculum.objects.get_or_create(key=key, defaults={"name": name or key})
        curriculum = Curriculum.objects.select_for_update().get(pk=curriculum.pk)
        ensure_concepts(curriculum=curriculum, concept_keys=concept_keys)
    return curriculum


def ensure_concepts(*, curriculum: Curriculum, concept_keys: Iterable[str]) -> dict[str, Concept]:
    """Create the concepts a curriculum lacks, at the next positions, in first-seen order; return key -> concept.

    Call it inside a transaction holding the curriculum row lock, so positions stay dense and unique. Keys are
    taken in Unicode NFC (``normalise_id``), as reviews name concepts; the returned dict is keyed by them.
    """
    existing = {c.key: c for c in Concept.objects.filter(curriculum=curriculum)}
    next_position = max((c.position for c in existing.values()), default=-1) + 1
    new = []
    for key in dict.fromkeys(normalise_id(k) for k in concept_keys):
        if key not in existing:
            concept = Concept(curriculum=curriculum, key=key, name=key, position=next_position)
            next_position += 1
            existing[key] = concept
            new.append(concept)
    if new:
        Concept.objects.bulk_create(new, batch_size=1000)
        existing.update({c.key: c for c in Concept.objects.filter(curriculum=curriculum, key__in=[n.key for n in new])})
    return existing


# ---------------------------------------------------------------------------------------- the registry
def artifact_storage():
    return storages["artifacts"]


def register_policy(
    *,
    curriculum: Curriculum,
    artifact_dir: str | Path,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    notes: str = "",
) -> PolicyModel:
    """Store a trained policy's artifact files (the three, and `dt_policy.onnx` when the folder has it) and create the
    next ``candidate`` version of the curriculum, with its encoder identity (``state_specs.policy_identity(config)``;
    "" for a config without an encoder). The first version of a curriculum without an evaluation protocol stores the
    one it was evaluated under (``metrics["protocol"]``) as the curriculum's: every later version is evaluated alike.

    The files are stored whole, then recorded: when storing or recording fails, none of them is left (and what a
    registration rolled back after it left in the version's folder is removed before this one stores there). Raises
    curriculum.storage.StorageFull, before anything is stored, when the artifact storage has clearly not enough
    space for the three files."""
    artifact_dir = Path(artifact_dir)
    missing = [n for n in ARTIFACT_NAMES if not (artifact_dir / n).is_file()]
    if missing:
        raise ArtifactIntegrityError(f"cannot register: {', '.join(missing)} missing in {artifact_dir}")
    try:
        identity = policy_identity(config)
    except (KeyError, TypeError, ValueError) as exc:  # refused before anything is stored
        raise PolicyError(f"cannot register: config.encoder/context_length cannot be read ({exc})") from None
    names = ARTIFACT_NAMES + tuple(n for n in OPTIONAL_ARTIFACT_NAMES if (artifact_dir / n).is_file())
    storage = artifact_storage()
    with transaction.atomic():
        locked = Curriculum.objects.select_for_update().get(pk=curriculum.pk)  # versions are numbered under this lock
        version = (PolicyModel.objects.filter(curriculum=curriculum).aggregate(v=Max("version"))["v"] or 0) + 1
        measured = protocol_of(metrics)
        if version == 1 and not locked.evaluation_protocol and measured is not None:
            locked.evaluation_protocol = measured.to_dict()
            locked.save(update_fields=["evaluation_protocol"])
            curriculum.evaluation_protocol = locked.evaluation_protocol
        folder = f"policies/{curriculum.key}/v{version}"
        remove_leftovers(storage, folder)  # no committed version names them: we hold the lock that numbers versions
        check_free_space(storage, needed=sum((artifact_dir / n).stat().st_size for n in names),
                         what=f"curriculum {curriculum.key} v{version}'s artifacts")
        artifacts = {}
        with saving_together(storage) as save:
            for name in names:
                with open(artifact_dir / name, "rb") as fh:
                    sha, size = file_sha256(fh)
                    stored = save(f"{folder}/{name}", File(fh, name=name))
                artifacts[name] = {"path": stored, "sha256": sha, "size": size}
            return PolicyModel.objects.create(
                curriculum=curriculum,
                version=version,
                artifacts=artifacts,
                config=dict(config),
                encoder_identity=identity,
                metrics=dict(metrics or {}),
                notes=notes,
            )


def verify_policy_artifacts(*, policy: PolicyModel) -> None:
    """Raise ArtifactIntegrityError unless every artifact file (the three, and an optional one the version recorded,
    such as dt_policy.onnx) exists and matches its recorded SHA-256."""
    storage = artifact_storage()
    for name in ARTIFACT_NAMES + tuple(n for n in OPTIONAL_ARTIFACT_NAMES if n in policy.artifacts):
        entry = policy.artifacts.get(name)
        if not entry:
            raise ArtifactIntegrityError(f"{policy}: {name} is not recorded for this version")
        if not storage.exists(entry["path"]):
            raise ArtifactIntegrityError(f"{policy}: artifact {name} is missing from storage ({entry['path']})")
        with storage.open(entry["path"], "rb") as fh:
            sha, _ = file_sha256(fh)
        try:
            check_sha256(name=name, actual=sha, expected=entry["sha256"])
        except ArtifactError as exc:
            raise ArtifactIntegrityError(
                f"{policy}: artifact {exc} (the SHA-256 recorded at registration): the file was changed since"
            ) from None


def promote_policy(
    *, policy: PolicyModel, actor=None, reason: str = "", force: bool = False, experiment=None
) -> PromotionEvent:
    """Make ``policy`` the active version of its curriculum, atomically, with an audit event.

    Always refused: no written ``reason``; a missing or tampered artifact. Refused unless ``force`` (the reason
    then says why, and the event records ``forced``) by the gate (``promotion_gate``): the candidate has no
    evaluation under the curriculum's protocol, evaluates below the random baseline, or does not beat what would
    serve without it under that same protocol: the active version (or the active version has no evaluation under
    it: re-evaluate it first, ``evaluate_under_protocol``), or, with no active version, the fallback rule (or
    the fallback has no stored evaluation under it yet). ``experiment``: the Experiment whose winner this is; the
    audit event links it.
    """
    return _activate(
        curriculum_id=policy.curriculum_id, version=policy.version, actor=actor, reason=reason, force=force,
        kind=PromotionEvent.Kind.PROMOTE, experiment=experiment,
    )


def rollback_policy(*, curriculum: Curriculum, actor=None, reason: str = "") -> PromotionEvent:
    """Re-activate the version that was active before the current one (``selectors.rollback_target``).
    Needs a written reason; not gated (the target was active before)."""
    return _activate(
        curriculum_id=curriculum.pk, version=None, actor=actor, reason=reason, force=True,
        kind=PromotionEvent.Kind.ROLLBACK,
    )


@dataclass(frozen=True)
class GateVerdict:
    """What the promotion gate says about activating ``candidate`` over ``active`` under ``protocol``.

    ``refusals``: one sentence per rule broken (empty: it passes); ``needs_reevaluation``: versions (the candidate
    and/or the active one) with no evaluation under the protocol, which an "evaluate under the protocol" job fixes
    (the job on the candidate also evaluates the fallback when ``fallback_needs_evaluation``);
    ``fallback_metrics``: with no active version, or one evaluated over fewer concepts than the candidate
    (``unlike_decks``), the fallback rule's stored evaluation under the protocol over the candidate's concepts
    (``selectors.fallback_evaluation``; its mean is ``results[rule]``, the curriculum's fallback rule), None when not
    evaluated yet. ``unlike_decks``: (the candidate's concept count, the active version's) when they differ
    (``compared_decks``), so that the two means are over different decks and are not compared: a candidate over
    more concepts is held to the fallback instead, one over fewer is refused; else None.
    """

    protocol: EvaluationProtocol
    candidate: PolicyModel
    active: PolicyModel | None
    candidate_metrics: dict[str, Any] | None
    active_metrics: dict[str, Any] | None
    refusals: tuple[str, ...]
    needs_reevaluation: tuple[PolicyModel, ...]
    fallback_metrics: dict[str, Any] | None = None
    fallback_needs_evaluation: bool = False
    unlike_decks: tuple[int, int] | None = None

    @property
    def passes(self) -> bool:
        return not self.refusals

    @property
    def fallback_recall(self) -> float | None:
        """The fallback's mean final recall under the protocol (with no active version and a stored evaluation)."""
        return dt_mean(self.fallback_metrics, self.candidate.curriculum.fallback_rule)


def _configured_concept_count(config: Mapping[str, Any] | None) -> int | None:
    """The concept count a DTLite ``config`` states (its ``action_dim``, or its ``concept_keys``), None without one."""
    config = config or {}
    if isinstance(config.get("action_dim"), int):
        return config["action_dim"]
    if config.get("concept_keys"):
        return len(config["concept_keys"])
    return None


def evaluated_concept_count(*, config: Mapping[str, Any] | None, curriculum_id: int,
                            concept_count: int | None = None) -> int:
    """How many concepts a version with DTLite ``config`` is evaluated over: the config's ``action_dim`` (or its
    ``concept_keys``), else the curriculum's concept count (a version registered without a DTLite config):
    ``concept_count`` when the caller has it, else one query."""
    stated = _configured_concept_count(config)
    if stated is not None:
        return stated
    if concept_count is not None:
        return concept_count
    return Concept.objects.filter(curriculum_id=curriculum_id).count()


def compared_decks(*, candidate: PolicyModel, active: PolicyModel | None,
                   concept_count: int | None = None) -> tuple[int, int] | None:
    """(the candidate's evaluated concept count, the active version's) when they differ, so that their mean final
    recalls are over different decks and not comparable (``evaluated_concept_count``); None when they are the same
    deck, when no version is active or when ``candidate`` is the active version. ``concept_count``: the
    curriculum's, when the caller has it; else at most one query (versions registered without a DTLite config)."""
    if active is None or active.pk == candidate.pk:
        return None
    mine, theirs = _configured_concept_count(candidate.config), _configured_concept_count(active.config)
    if (mine is None or theirs is None) and concept_count is None:  # counted once for both
        concept_count = Concept.objects.filter(curriculum_id=candidate.curriculum_id).count()
    mine, theirs = (concept_count if mine is None else mine), (concept_count if theirs is None else theirs)
    return None if mine == theirs else (mine, theirs)


def held_to_fallback(*, candidate: PolicyModel, active: PolicyModel | None,
                     concept_count: int | None = None) -> bool:
    """Whether the promotion gate holds ``candidate`` to the fallback rule over its own concepts rather than to the
    active version: no version is active, or the candidate covers more concepts than the active one
    (``compared_decks``: concepts added since the active version was trained), so that the two means are not
    comparable. A candidate over fewer concepts than the active one is not held to the fallback: the gate refuses
    it (promoting it would leave concepts unscored; forcing it needs a reason)."""
    if active is None:
        return True
    decks = compared_decks(candidate=candidate, active=active, concept_count=concept_count)
    return decks is not None and decks[0] > decks[1]


def promotion_gate(*, candidate: PolicyModel, active: PolicyModel | None,
                   concept_count: int | None = None) -> GateVerdict:
    """The gate's verdict on promoting ``candidate`` over ``active`` (a read: nothing changes, nothing is evaluated).
    ``concept_count``: the curriculum's, when the caller has it (versions without a DTLite config count it: a query).

    Rules, under the candidate's curriculum protocol only (numbers from other protocols are never compared):
    the candidate has an evaluation under it; its DT mean is not below the random baseline's of that evaluation;
    it beats what would serve without it: when there is an active version evaluated over as many concepts as the
    candidate (``compared_decks``), that version has an evaluation under the protocol too and the candidate's DT
    mean is not below it; when there is none, or the active version covers fewer concepts than the candidate (a
    mean final recall over 20 concepts and one over 58 are not comparable: concepts were added since, say), the
    fallback rule (``Curriculum.fallback_rule`` with serving's default encoder, over the candidate's concepts) has a
    stored evaluation under the protocol (``selectors.fallback_evaluation``) and the candidate's DT mean is strictly
    above its mean: the bar a first version meets, on the candidate's own deck. A candidate over fewer concepts
    than the active version is refused (its mean is not comparable either, and promoting it would leave concepts
    unscored): only forcing, with a reason, promotes it.
    """
    protocol = candidate.curriculum.protocol
    refusals: list[str] = []
    reevaluate: list[PolicyModel] = []
    mine = selectors.evaluation_under(policy=candidate, protocol=protocol)
    fallback, fallback_missing, theirs = None, False, None
    new = dt_mean(mine)
    if mine is None or new is None:
        measured = protocol_of(candidate.metrics)
        how = f"it was evaluated under {measured.label}" if measured else "its evaluation names no protocol"
        refusals.append(f"v{candidate.version} has no evaluation under the curriculum's protocol ({protocol.label}); "
                        f"{how}: evaluate it under the protocol first")
        reevaluate.append(candidate)
    else:
        random = dt_mean(mine, "random")
        if random is not None and new < random:
            refusals.append(f"v{candidate.version} evaluates below the random baseline under the protocol "
                            f"(mean final recall {new:.4f} < random {random:.4f})")
    unlike = compared_decks(candidate=candidate, active=active, concept_count=concept_count)
    if unlike is not None and unlike[0] < unlike[1]:
        others = unlike[1] - unlike[0]
        if scores_unseen_concepts(candidate.config or {}):  # it serves every concept, but was evaluated on fewer
            why = (f"v{candidate.version} scores the other {others} from their features when it serves, but its "
                   f"evaluation does not cover them: force it with a reason to promote it anyway")
        else:
            why = (f"promoting it would leave {others} concept{'s' if others != 1 else ''} the active version scores "
                   f"unscored: force it with a reason if that is intended")
        refusals.append(f"v{candidate.version} is evaluated over {unlike[0]} concepts, fewer than the active "
                        f"v{active.version}'s {unlike[1]}: their means are over different decks and are not compared; "
                        f"{why}")
    elif active is not None and unlike is None:
        theirs = selectors.evaluation_under(policy=active, protocol=protocol)
        old = dt_mean(theirs)
        if theirs is None or old is None:
            refusals.append(f"the active v{active.version} has no evaluation under the curriculum's protocol "
                            f"({protocol.label}): re-evaluate it before comparing")
            reevaluate.append(active)
        elif new is not None and mine is not None and new < old:
            refusals.append(f"v{candidate.version} evaluates worse than the active v{active.version} under the "
                            f"same protocol (mean final recall {new:.4f} < {old:.4f})")
    if active is None or (unlike is not None and unlike[0] > unlike[1]):
        deck = unlike[0] if unlike is not None else evaluated_concept_count(
            config=candidate.config, curriculum_id=candidate.curriculum_id, concept_count=concept_count)
        fallback = selectors.fallback_evaluation(curriculum=candidate.curriculum, protocol=protocol, num_concepts=deck)
        rule = candidate.curriculum.fallback_rule
        bar = dt_mean(fallback, rule)
        what = ("what serves with no active version" if unlike is None else
                f"held to it over v{candidate.version}'s {deck} concepts because the active v{active.version} is "
                f"evaluated over {unlike[1]}, whose mean is not comparable")
        if bar is None:
            fallback, fallback_missing = None, True
            refusals.append(f"the fallback ({rule}, {what}) has no evaluation under the curriculum's protocol "
                            f"{'yet' if unlike is None else f'over {deck} concepts yet'}: evaluate "
                            f"v{candidate.version} under the protocol (it evaluates the fallback too)")
            if candidate not in reevaluate:
                reevaluate.append(candidate)
        elif new is not None and mine is not None and new <= bar:
            replaced = "the fallback it would replace" if unlike is None else "the fallback"
            refusals.append(f"v{candidate.version} does not beat {replaced}: {rule}, {what}, scores {bar:.4f} "
                            f"under the same protocol (v{candidate.version}: mean final recall {new:.4f})")
    return GateVerdict(protocol=protocol, candidate=candidate, active=active, candidate_metrics=mine,
                       active_metrics=theirs, refusals=tuple(refusals), needs_reevaluation=tuple(reevaluate),
                       fallback_metrics=fallback, fallback_needs_evaluation=fallback_missing, unlike_decks=unlike)


def _activate(
    *, curriculum_id: int, version: int | None, actor, reason: str, force: bool, kind: str, experiment=None
) -> PromotionEvent:
    reason = (reason or "").strip()
    what = "rollback" if kind == PromotionEvent.Kind.ROLLBACK else "promotion"
    if not reason:
        raise PromotionRefused(f"reason: every {what} needs a written reason (it is recorded in the history)")
    with transaction.atomic():
        # The curriculum row lock serialises promotions and rollbacks of one curriculum. FOR NO KEY UPDATE: it
        # does not wait for writers that only reference the row (reviews being stored, e.g. a long import).
        curriculum = Curriculum.objects.select_for_update(no_key=True).get(pk=curriculum_id)
        active = active_policy(curriculum=curriculum, for_update=True)
        if kind == PromotionEvent.Kind.ROLLBACK:
            if active is None:
                raise PromotionRefused(f"{curriculum.key}: no active version to roll back from")
            previous = selectors.rollback_target(curriculum=curriculum, active=active)
            if previous is None:
                raise PromotionRefused(f"{curriculum.key}: v{active.version} has no previous version to roll back to")
            version = previous.version
        target = PolicyModel.objects.select_for_update().filter(curriculum=curriculum, version=version).first()
        if target is None:
            raise PromotionRefused(f"{curriculum.key}: no version {version}")
        if active is not None and active.pk == target.pk:
            raise PromotionRefused(f"{target} is already the active version")
        verify_policy_artifacts(policy=target)
        if kind == PromotionEvent.Kind.PROMOTE and not force:
            target.curriculum = curriculum
            verdict = promotion_gate(candidate=target, active=active)
            if not verdict.passes:
                raise PromotionRefused("; ".join(verdict.refusals) + "; force it with a reason to promote anyway")
        now = timezone.now()
        if active is not None:
            PolicyModel.objects.filter(pk=active.pk).update(status=PolicyModel.Status.RETIRED)
        PolicyModel.objects.filter(pk=target.pk).update(status=PolicyModel.Status.ACTIVE, promoted_at=now)
        event = PromotionEvent.objects.create(
            curriculum=curriculum,
            kind=kind,
            from_version=active.version if active else None,
            to_version=target.version,
            actor=actor if getattr(actor, "pk", None) else None,
            actor_name=getattr(actor, "get_username", lambda: str(actor or ""))(),
            reason=reason,
            forced=bool(force and kind == PromotionEvent.Kind.PROMOTE),
            experiment=experiment,
        )
        _record_activation(event=event, curriculum=curriculum, target=target, retired=active, actor=actor)
        transaction.on_commit(lambda: _enqueue_reencoding(curriculum_id=curriculum.pk))
    return event


def _record_activation(*, event: PromotionEvent, curriculum: Curriculum, target: PolicyModel,
                       retired: PolicyModel | None, actor) -> None:
    """The promotion or rollback in the admin history of the curriculum and of both versions (when a user acted)."""
    done = "Rolled back" if event.kind == PromotionEvent.Kind.ROLLBACK else ("Force-promoted" if event.forced else "Promoted")
    change = f"v{retired.version} \u2192 v{target.version}" if retired is not None else f"v{target.version} (none active before)"
    why = f"Reason: {event.reason}"
    record_change(actor=actor, objects=[curriculum], message=f"{done}: {change}. {why}")
    record_change(actor=actor, objects=[target], message=f"{done}: now the active version ({change}). {why}")
    if retired is not None:
        record_change(actor=actor, objects=[retired], message=f"Retired: {done.lower()} to v{target.version}. {why}")


def set_policy_description(*, policy: PolicyModel, description: str) -> PolicyModel:
    """Replace a version's operator-written description (trimmed; at most 2000 characters)."""
    description = (description or "").strip()
    if len(description) > 2000:
        raise PolicyError(f"description: at most 2000 characters, got {len(description)}")
    PolicyModel.objects.filter(pk=policy.pk).update(description=description)
    policy.description = description
    return policy


# ---------------------------------------------------------------------------------- evaluation protocol
def set_evaluation_protocol(
    *, curriculum: Curriculum, protocol: EvaluationProtocol, actor, reason: str
) -> EvaluationProtocol:
    """Change the curriculum's evaluation protocol on purpose, with an audit entry in the curriculum's admin
    history (``LogEntry``: who, from which protocol to which, why). Versions evaluated under the old protocol are
    then "not evaluated under the current protocol" until re-evaluated (a ``training.models.ProtocolEvaluationJob``); the
    fallback's score is evaluated anew under the new one. Returns the old protocol.

    Raises PolicyError: no written ``reason``; the protocol is the current one."""
    reason = (reason or "").strip()
    if not reason:
        raise PolicyError("reason: changing the evaluation protocol needs a written reason (it is recorded in the history)")
    with transaction.atomic():
        locked = Curriculum.objects.select_for_update(no_key=True).get(pk=curriculum.pk)
        old = locked.protocol
        if old == protocol:
            raise PolicyError(f"the evaluation protocol is already {protocol.label}")
        locked.evaluation_protocol = protocol.to_dict()
        locked.save(update_fields=["evaluation_protocol"])
        record_change(actor=actor, objects=[locked],
                      message=f"Evaluation protocol changed from {old.label} to {protocol.label}. Reason: {reason}")
    curriculum.evaluation_protocol = locked.evaluation_protocol
    return old


def fixed_evaluation_protocol(*, curriculum: Curriculum) -> EvaluationProtocol | None:
    """The protocol a new version of ``curriculum`` is evaluated under whatever its run's settings say: the stored
    one, or the defaults once the curriculum has a version; None while it has neither (the run's own settings then
    serve, and registering the first version stores them, ``register_policy``). Reads the instance as given."""
    if curriculum.evaluation_protocol or PolicyModel.objects.filter(curriculum=curriculum).exists():
        return curriculum.protocol
    return None


def evaluation_protocol_for(*, curriculum: Curriculum, proposed: EvaluationProtocol) -> EvaluationProtocol:
    """The protocol a new version of ``curriculum`` is evaluated under: ``fixed_evaluation_protocol`` as stored
    now, else ``proposed`` (the run's own evaluation settings). Reads only, so a run that registers nothing (an
    operator trying flags) fixes nothing."""
    curriculum.refresh_from_db(fields=["evaluation_protocol"])
    return fixed_evaluation_protocol(curriculum=curriculum) or proposed


def _enqueue_reencoding(*, curriculum_id: int) -> None:
    """Ask a worker to store the learner states in the new version's encoding. Serving is correct without it
    (a state in another encoding is rebuilt from the history on read), so a broker that is down or hung costs
    the promotion at most about a second and is logged, not raised: the promotion has happened, and the
    periodic catch-up (curriculum.tasks.reencode_lagging_learner_states, also run when a worker starts)
    re-encodes later."""
    from crlsite.celery import publish

    from .tasks import REENCODE_TASK

    publish(REENCODE_TASK, args=[curriculum_id])
