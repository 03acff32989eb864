"""Writes of the curriculum domain: record reviews, register, promote and roll back policy versions."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .models import Concept, Curriculum, Learner, PolicyModel, PromotionEvent, ReviewLog

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
ARTIFACT_NAMES = ("dt_model.pt", "dt_lite_weights.npz", "dt_lite_config.json")


# ---------------------------------------------------------------------------------------------- errors
class ReviewValidationError(ValueError):
    """A batch of reviews was refused; ``errors`` lists ``{"index", "field", "message"}`` per problem."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"item {first['index']}: {first['field']}: {first['message']}{more}")


class PolicyError(Exception):
    """Base of the registry's refusals; the message says what to fix."""


class ArtifactIntegrityError(PolicyError):
    """An artifact file of a policy version is missing or does not match its SHA-256."""


class PromotionRefused(PolicyError):
    """A promotion or rollback that the rules do not allow (worse candidate, nothing to roll back to...)."""


# ------------------------------------------------------------------------------------------- curricula
def ensure_curriculum(*, key: str, name: str = "", concept_keys: Iterable[str] = ()) -> Curriculum:
    """Get or create a curriculum and append the concepts it lacks, in the order given."""
    with transaction.atomic():
        curriculum, _ = Curriculum.objects.get_or_create(key=key, defaults={"name": name or key})
        curriculum = Curriculum.objects.select_for_update().get(pk=curriculum.pk)
        ensure_concepts(curriculum=curriculum, concept_keys=concept_keys)
    return curriculum


def ensure_concepts(*, curriculum: Curriculum, concept_keys: Iterable[str]) -> dict[str, Concept]:
    """Create the concepts a curriculum lacks, at the next positions, in first-seen order; return key -> concept.

    Call it inside a transaction holding the curriculum row lock, so positions stay dense and unique.
    """
    existing = {c.key: c for c in Concept.objects.filter(curriculum=curriculum)}
    next_position = max((c.position for c in existing.values()), default=-1) + 1
    new = []
    for key in dict.fromkeys(concept_keys):
        if key not in existing:
            concept = Concept(curriculum=curriculum, key=key, name=key, position=next_position)
            next_position += 1
            existing[key] = concept
            new.append(concept)
    if new:
        Concept.objects.bulk_create(new, batch_size=1000)
        existing.update({c.key: c for c in Concept.objects.filter(curriculum=curriculum, key__in=[n.key for n in new])})
    return existing


# --------------------------------------------------------------------------------------------- reviews
@dataclass(frozen=True)
class RecordResult:
    created: int
    duplicates: int
    reviews: list[ReviewLog] = field(default_factory=list, repr=False, compare=False)


@dataclass(frozen=True)
class _ValidReview:
    curriculum: Curriculum
    learner_id: str
    concept: Concept
    reviewed_at: dt.datetime
    correct: bool
    grade: int | None
    response_time_ms: int | None
    idempotency_key: str | None


def parse_aware_datetime(value: Any) -> dt.datetime:
    """An ISO 8601 date-time string (or datetime) with a zone; ValueError saying what was expected otherwise."""
    if isinstance(value, str):
        parsed = parse_datetime(value.strip())
        if parsed is None:
            raise ValueError(f"expected an ISO 8601 date-time with a zone, got {value!r}")
        value = parsed
    if not isinstance(value, dt.datetime):
        raise ValueError(f"expected an ISO 8601 date-time with a zone, got {type(value).__name__}")
    if timezone.is_naive(value):
        raise ValueError("the date-time has no zone; add one, e.g. 'Z' or '+02:00'")
    try:
        value.astimezone(dt.timezone.utc)  # stored in UTC: e.g. year 1 at +01:00 is before year 1 there
    except OverflowError:
        raise ValueError(f"the date-time {value.isoformat()} is out of range in UTC") from None
    return value


def _validate_reviews(items: list[Mapping[str, Any]]) -> list[_ValidReview]:
    errors: list[dict[str, Any]] = []

    def error(index: int, field_name: str, message: str) -> None:
        errors.append({"index": index, "field": field_name, "message": message})

    curriculum_keys = {str(i.get("curriculum")) for i in items if isinstance(i, Mapping) and i.get("curriculum")}
    curricula = {c.key: c for c in Curriculum.objects.filter(key__in=curriculum_keys)}
    concepts: dict[tuple[int, str], Concept] = {
        (c.curriculum_id, c.key): c
        for c in Concept.objects.filter(curriculum__in=curricula.values()).only("id", "key", "curriculum_id", "position")
    }

    valid: list[_ValidReview] = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            error(index, "item", "expected an object")
            continue
        before = len(errors)
        curriculum = curricula.get(str(item.get("curriculum", "")))
        if not item.get("curriculum"):
            error(index, "curriculum", "this field is required")
        elif curriculum is None:
            error(index, "curriculum", f"unknown curriculum {item['curriculum']!r}")
        learner = item.get("learner")
        if learner is None or (isinstance(learner, str) and not learner.strip()):
            error(index, "learner", "this field is required")
        elif not isinstance(learner, (str, int)) or isinstance(learner, bool) or len(str(learner)) > 200:
            error(index, "learner", "expected a learner id string of at most 200 characters")
        concept = None
        if not item.get("concept"):
            error(index, "concept", "this field is required")
        elif curriculum is not None:
            concept = concepts.get((curriculum.id, str(item["concept"])))
            if concept is None:
                error(index, "concept", f"unknown concept {item['concept']!r} in curriculum {curriculum.key!r}")
        correct = item.get("correct")
        if not isinstance(correct, bool):
            error(index, "correct", "expected true or false")
        grade = item.get("grade")
        if grade is not None:
            if isinstance(grade, bool) or not isinstance(grade, int) or not 1 <= grade <= 4:
                error(index, "grade", "expected an integer from 1 to 4")
            elif isinstance(correct, bool) and (grade == 1) == correct:
                error(index, "grade", f"grade {grade} contradicts correct={str(correct).lower()} (1 means wrong, 2-4 right)")
        reviewed_at = None
        if item.get("reviewed_at") in (None, ""):
            error(index, "reviewed_at", "this field is required")
        else:
            try:
                reviewed_at = parse_aware_datetime(item["reviewed_at"])
            except ValueError as exc:
                error(index, "reviewed_at", str(exc))
        response_time = item.get("response_time_ms")
        if response_time is not None and (
            isinstance(response_time, bool) or not isinstance(response_time, int) or not 0 <= response_time < 2**31
        ):
            error(index, "response_time_ms", "expected a non-negative integer number of milliseconds")
        key = item.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not key or len(key) > 200):
            error(index, "idempotency_key", "expected a non-empty string of at most 200 characters")
        unknown = set(item) - {
            "curriculum", "learner", "concept", "correct", "grade", "reviewed_at", "response_time_ms", "idempotency_key",
        }
        if unknown:
            error(index, sorted(unknown)[0], "unknown field")
        if len(errors) == before:
            valid.append(
                _ValidReview(curriculum, str(learner), concept, reviewed_at, correct, grade, response_time, key)
            )
    if errors:
        raise ReviewValidationError(errors)
    return valid


def record_reviews(
    *, items: Iterable[Mapping[str, Any]], source: str = ReviewLog.Source.LIVE, batch: str = ""
) -> RecordResult:
    """Validate every item, then store all of them or none; an idempotency key already stored is a duplicate.

    Items: ``{"curriculum", "learner", "concept", "correct", "grade"?, "reviewed_at", "response_time_ms"?,
    "idempotency_key"?}``. Raises ReviewValidationError naming the item index and field.
    """
    items = list(items)
    if not items:
        return RecordResult(created=0, duplicates=0)
    if len(items) > MAX_BATCH:
        raise ReviewValidationError([{"index": MAX_BATCH, "field": "items", "message": f"at most {MAX_BATCH} reviews per batch"}])
    valid = _validate_reviews(items)
    # A concurrent writer may store the same idempotency key between our check and our insert: retry once.
    for attempt in range(3):
        try:
            return _store_reviews(valid, source=source, batch=batch)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _store_reviews(valid: list[_ValidReview], *, source: str, batch: str) -> RecordResult:
    from .learner_states import apply_reviews  # the serving state is kept in step with the log

    with transaction.atomic():
        keys = [v.idempotency_key for v in valid if v.idempotency_key]
        seen = set(ReviewLog.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True))
        fresh: list[_ValidReview] = []
        for v in valid:
            if v.idempotency_key:
                if v.idempotency_key in seen:
                    continue
                seen.add(v.idempotency_key)
            fresh.append(v)
        learners = get_or_create_learners(external_ids=[v.learner_id for v in fresh])
        rows = [
            ReviewLog(
                learner=learners[v.learner_id],
                curriculum=v.curriculum,
                concept=v.concept,
                reviewed_at=v.reviewed_at,
                correct=v.correct,
                grade=v.grade,
                response_time_ms=v.response_time_ms,
                source=source,
                batch=batch,
                idempotency_key=v.idempotency_key,
            )
            for v in fresh
        ]
        ReviewLog.objects.bulk_create(rows, batch_size=1000)
        apply_reviews(reviews=rows)
    return RecordResult(created=len(rows), duplicates=len(valid) - len(rows), reviews=rows)


def get_or_create_learners(*, external_ids: Iterable[str]) -> dict[str, Learner]:
    """Learners by external id, creating the missing ones (safe against a concurrent creator)."""
    wanted = list(dict.fromkeys(external_ids))
    found = {l.external_id: l for l in Learner.objects.filter(external_id__in=wanted)}
    missing = [Learner(external_id=e) for e in wanted if e not in found]
    if missing:
        Learner.objects.bulk_create(missing, batch_size=1000, ignore_conflicts=True)
        found.update({l.external_id: l for l in Learner.objects.filter(external_id__in=[m.external_id for m in missing])})
    return found


# ---------------------------------------------------------------------------------------- the registry
def artifact_storage():
    return storages["artifacts"]


def _sha256_of(fileobj) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: fileobj.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def register_policy(
    *,
    curriculum: Curriculum,
    artifact_dir: str | Path,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any] | None = None,
    notes: str = "",
) -> PolicyModel:
    """Store a trained policy's artifact files and create the next ``candidate`` version of the curriculum."""
    artifact_dir = Path(artifact_dir)
    missing = [n for n in ARTIFACT_NAMES if not (artifact_dir / n).is_file()]
    if missing:
        raise ArtifactIntegrityError(f"cannot register: {', '.join(missing)} missing in {artifact_dir}")
    storage = artifact_storage()
    with transaction.atomic():
        Curriculum.objects.select_for_update().get(pk=curriculum.pk)  # versions are numbered under this lock
        version = (PolicyModel.objects.filter(curriculum=curriculum).aggregate(v=Max("version"))["v"] or 0) + 1
        artifacts = {}
        for name in ARTIFACT_NAMES:
            with open(artifact_dir / name, "rb") as fh:
                sha, size = _sha256_of(fh)
                fh.seek(0)
                stored = storage.save(f"policies/{curriculum.key}/v{version}/{name}", ContentFile(fh.read()))
            artifacts[name] = {"path": stored, "sha256": sha, "size": size}
        return PolicyModel.objects.create(
            curriculum=curriculum,
            version=version,
            artifacts=artifacts,
            config=dict(config),
            metrics=dict(metrics or {}),
            notes=notes,
        )


def verify_policy_artifacts(*, policy: PolicyModel) -> None:
    """Raise ArtifactIntegrityError unless every artifact file exists and matches its recorded SHA-256."""
    storage = artifact_storage()
    for name in ARTIFACT_NAMES:
        entry = policy.artifacts.get(name)
        if not entry:
            raise ArtifactIntegrityError(f"{policy}: {name} is not recorded for this version")
        if not storage.exists(entry["path"]):
            raise ArtifactIntegrityError(f"{policy}: artifact {name} is missing from storage ({entry['path']})")
        with storage.open(entry["path"], "rb") as fh:
            sha, _ = _sha256_of(fh)
        if sha != entry["sha256"]:
            raise ArtifactIntegrityError(
                f"{policy}: artifact {name} does not match its SHA-256 (recorded {entry['sha256'][:12]}..., "
                f"found {sha[:12]}...): the file was changed after registration"
            )


def promote_policy(
    *, policy: PolicyModel, actor=None, reason: str = "", force: bool = False
) -> PromotionEvent:
    """Make ``policy`` the active version of its curriculum, atomically, with an audit event.

    Refused when an artifact is missing or tampered with, and (unless ``force`` with a reason) when the
    candidate evaluates worse than the active version.
    """
    return _activate(
        curriculum_id=policy.curriculum_id, version=policy.version, actor=actor, reason=reason, force=force,
        kind=PromotionEvent.Kind.PROMOTE,
    )


def rollback_policy(*, curriculum: Curriculum, actor=None, reason: str = "") -> PromotionEvent:
    """Re-activate the version that was active before the current one."""
    return _activate(
        curriculum_id=curriculum.pk, version=None, actor=actor, reason=reason, force=True,
        kind=PromotionEvent.Kind.ROLLBACK,
    )


def _activate(
    *, curriculum_id: int, version: int | None, actor, reason: str, force: bool, kind: str
) -> PromotionEvent:
    reason = (reason or "").strip()
    with transaction.atomic():
        # The curriculum row lock serialises promotions and rollbacks of one curriculum.
        curriculum = Curriculum.objects.select_for_update().get(pk=curriculum_id)
        active = PolicyModel.objects.select_for_update().filter(curriculum=curriculum, status="active").first()
        if kind == PromotionEvent.Kind.ROLLBACK:
            if active is None:
                raise PromotionRefused(f"{curriculum.key}: no active version to roll back from")
            # The promotion that made the current version active says what was active before it;
            # rollbacks are skipped so that rolling back twice walks further back instead of undoing itself.
            activation = (
                PromotionEvent.objects.filter(
                    curriculum=curriculum, to_version=active.version, kind=PromotionEvent.Kind.PROMOTE
                )
                .order_by("-at", "-id")
                .first()
            )
            previous = activation if activation and activation.from_version is not None else None
            if previous is None:
                raise PromotionRefused(f"{curriculum.key}: v{active.version} has no previous version to roll back to")
            version = previous.from_version
        target = PolicyModel.objects.select_for_update().filter(curriculum=curriculum, version=version).first()
        if target is None:
            raise PromotionRefused(f"{curriculum.key}: no version {version}")
        if active is not None and active.pk == target.pk:
            raise PromotionRefused(f"{target} is already the active version")
        if force and kind == PromotionEvent.Kind.PROMOTE and not reason:
            raise PromotionRefused("a forced promotion needs a written reason")
        verify_policy_artifacts(policy=target)
        if kind == PromotionEvent.Kind.PROMOTE and not force and active is not None:
            new, old = target.dt_mean_final_recall, active.dt_mean_final_recall
            if old is not None and (new is None or new < old):
                shown = "no evaluation" if new is None else f"{new:.4f}"
                raise PromotionRefused(
                    f"{target} evaluates worse than the active v{active.version} "
                    f"(mean final recall {shown} < {old:.4f}); force it with a reason to promote anyway"
                )
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
        )
        transaction.on_commit(lambda: _enqueue_reencoding(curriculum_id=curriculum.pk))
    return event


def _enqueue_reencoding(*, curriculum_id: int) -> None:
    """Ask a worker to store the learner states in the new version's encoding. Serving is correct without it
    (a state in another encoding is rebuilt from the history on read), so a broker that is down or hung costs
    the promotion at most about a second and is logged, not raised: the promotion has happened, and the
    periodic catch-up (curriculum.tasks.reencode_lagging_learner_states, also run when a worker starts)
    re-encodes later."""
    from crlsite.celery import publish

    from .tasks import REENCODE_TASK

    publish(REENCODE_TASK, args=[curriculum_id])
