"""Experiments' writes: create (a draft with its arms), start, stop, and promote the winner through the promotion
service. Keyword-only, one verb each; invariants under a row lock and the database's one-running constraint."""
from __future__ import annotations

from collections.abc import Sequence

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import Curriculum, Experiment, ExperimentArm, PolicyModel, PromotionEvent
from ..selectors import active_policy

LABELS = "ABCDEFGH"  # the control, then up to Experiment.MAX_CANDIDATES candidates


class ExperimentError(ValueError):
    """An experiment operation refused; the message names the field or the state at fault."""


def create_experiment(
    *, curriculum: Curriculum, name: str, candidates: Sequence[PolicyModel], traffic: Sequence[int] | None = None,
    mode: str = Experiment.Mode.SPLIT, actor=None, horizon_s: int = 86400, min_effect: float = 0.01,
) -> Experiment:
    """A draft experiment: arm A the control (the active version now, or the fallback without one; it is taken
    again at start), arms B, C... the ``candidates`` (1 to Experiment.MAX_CANDIDATES versions of the curriculum,
    distinct, not the active one). ``traffic``: percent per arm, control first, summing to 100 (default: equal,
    the remainder to the control); in shadow mode the control serves everyone and ``traffic`` lists the
    candidates' shares of the shadow choices only (summing to 100). Raises ExperimentError naming the field."""
    name = (name or "").strip()
    if not name:
        raise ExperimentError("name: an experiment needs a name")
    if mode not in Experiment.Mode.values:
        raise ExperimentError(f"mode: expected one of {', '.join(Experiment.Mode.values)}, got {mode!r}")
    candidates = list(candidates)
    if not 1 <= len(candidates) <= Experiment.MAX_CANDIDATES:
        raise ExperimentError(f"candidates: expected 1 to {Experiment.MAX_CANDIDATES} versions, got {len(candidates)}")
    if len({c.pk for c in candidates}) != len(candidates):
        raise ExperimentError("candidates: a version is listed twice")
    active = active_policy(curriculum=curriculum)
    for c in candidates:
        if c.curriculum_id != curriculum.pk:
            raise ExperimentError(f"candidates: v{c.version} is not a version of {curriculum.key}")
        if active is not None and c.pk == active.pk:
            raise ExperimentError(f"candidates: v{c.version} is the active version, the control")
    shares = _traffic(mode=mode, arms=len(candidates) + 1, traffic=traffic)
    if not 60 <= horizon_s <= 365 * 86400:
        raise ExperimentError("horizon_s: expected 60 seconds to a year")
    if not 1e-4 <= min_effect <= 1:
        raise ExperimentError("min_effect: expected a difference in recall from 0.0001 to 1")
    with transaction.atomic():
        experiment = Experiment.objects.create(curriculum=curriculum, name=name, mode=mode, horizon_s=horizon_s,
                                               min_effect=min_effect, created_by=actor if getattr(actor, "pk", None) else None)
        ExperimentArm.objects.bulk_create(
            [ExperimentArm(experiment=experiment, label=LABELS[i], policy=policy, is_control=i == 0,
                           traffic_percent=share)
             for i, (policy, share) in enumerate(zip([active, *candidates], shares))])
    return experiment


def _traffic(*, mode: str, arms: int, traffic: Sequence[int] | None) -> list[int]:
    split = list(traffic) if traffic is not None else None
    expected = arms if mode == Experiment.Mode.SPLIT else arms - 1
    if split is None:
        equal = [100 // expected] * expected
        equal[0] += 100 - sum(equal)
        split = equal
    if len(split) != expected or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 100 for s in split):
        raise ExperimentError(f"traffic: expected {expected} whole percentages from 0 to 100"
                              + (" (the candidates' shares of the shadow choices)" if mode == Experiment.Mode.SHADOW else ""))
    if sum(split) != 100:
        raise ExperimentError(f"traffic: the percentages must sum to 100, got {sum(split)}")
    if mode == Experiment.Mode.SPLIT and (split[0] == 0 or not any(split[1:])):
        raise ExperimentError("traffic: the control and at least one candidate need a share")
    return split if mode == Experiment.Mode.SPLIT else [100, *split]


def start_experiment(*, experiment: Experiment) -> Experiment:
    """Start a draft: the control arm takes the version active now; from the next request the curriculum's learners
    are served by their arms (split) or the control with shadow choices logged (shadow). Raises ExperimentError when
    it is not a draft, a candidate has become the active version, or another experiment of the curriculum runs."""
    try:
        with transaction.atomic():
            Curriculum.objects.select_for_update(no_key=True).get(pk=experiment.curriculum_id)
            current = Experiment.objects.select_for_update().get(pk=experiment.pk)
            if current.status != Experiment.Status.DRAFT:
                raise ExperimentError(f"status: only a draft starts; this experiment is {current.status}")
            active = active_policy(curriculum=current.curriculum)
            arms = list(current.arms.all())
            if active is not None and any(a.policy_id == active.pk for a in arms if not a.is_control):
                raise ExperimentError(f"candidates: v{active.version} has become the active version; make a new experiment")
            ExperimentArm.objects.filter(experiment=current, is_control=True).update(policy=active)
            Experiment.objects.filter(pk=current.pk).update(status=Experiment.Status.RUNNING, started_at=timezone.now())
    except IntegrityError:
        raise ExperimentError(f"status: another experiment of {experiment.curriculum.key} is running; stop it first") from None
    experiment.refresh_from_db()
    return experiment


def stop_experiment(*, experiment: Experiment) -> Experiment:
    """Stop a running experiment: from the next request the active version serves everyone. Raises ExperimentError
    when it is not running."""
    updated = Experiment.objects.filter(pk=experiment.pk, status=Experiment.Status.RUNNING).update(
        status=Experiment.Status.STOPPED, stopped_at=timezone.now())
    if not updated:
        raise ExperimentError(f"status: only a running experiment stops; this one is {experiment.status}")
    experiment.refresh_from_db()
    return experiment


def promote_winner(*, experiment: Experiment, arm: ExperimentArm, actor, reason: str,
                   force: bool = False) -> PromotionEvent:
    """Promote a candidate arm's version through the promotion service (its gate, unless ``force``; its audit event
    links the experiment), stopping the experiment first if it runs. Raises ExperimentError for an arm of another
    experiment, the control, or the fallback; PromotionRefused as promote_policy does."""
    from ..services import promote_policy

    if arm.experiment_id != experiment.pk:
        raise ExperimentError("arm: not an arm of this experiment")
    if arm.is_control or arm.policy_id is None:
        raise ExperimentError(f"arm: {arm.label} is the control (already serving); promote a candidate")
    with transaction.atomic():
        if experiment.status == Experiment.Status.RUNNING:
            stop_experiment(experiment=experiment)
        return promote_policy(policy=arm.policy, actor=actor, reason=reason, force=force, experiment=experiment)
