"""Admin-side views of the curriculum domain: the orchestrator (versions under the curriculum's evaluation
protocol, lift over the baselines, comparison, lineage, promote / roll back through confirmation pages) and
artifact downloads. State changes are POSTs that go through curriculum.services; long work (evaluating a version
under the protocol) is queued to a worker, never done in the request."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from training.comparison import compare_versions
from training.jobs import job_status, launch_protocol_evaluation, unfinished_evaluations

from . import charts, selectors, services
from .admin_text import format_when
from .evaluation_protocol import (
    REVIEWS_PER_CONCEPT, EvaluationProtocol, ProtocolError, dt_mean, encoder_fitted_to, lift, protocol_of,
    students_like,
)
from .models import Curriculum, PolicyModel
from .services import artifact_storage
from .svg import nice_ticks

PROMOTE_PERMISSION = "curriculum.promote_policymodel"


@staff_member_required
def policy_artifact(request, pk: int, name: str):
    """Stream one artifact file of a policy version to a staff member allowed to view versions."""
    if not request.user.has_perm("curriculum.view_policymodel"):
        raise PermissionDenied
    policy = get_object_or_404(PolicyModel, pk=pk)
    entry = policy.artifacts.get(name)
    if not entry or not artifact_storage().exists(entry["path"]):
        raise Http404(f"{name} is not stored for {policy}")
    # the type by what the file is, not the system's guess from its extension (.pt: a "SNES page table")
    kind = "application/json" if name.endswith(".json") else "application/octet-stream"
    return FileResponse(artifact_storage().open(entry["path"], "rb"), as_attachment=True, filename=name,
                        content_type=kind)


# ------------------------------------------------------------------------------------------ orchestrator
def _require_promote_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PROMOTE_PERMISSION):
        raise PermissionDenied(f"the orchestrator needs the {PROMOTE_PERMISSION} permission")


@staff_member_required
def orchestrator(request: HttpRequest) -> HttpResponse:
    """Per curriculum: its protocol, the active version, candidates ranked by evaluation under the protocol, retired
    versions, concepts the active version does not cover, rollback target, comparison and history."""
    _require_promote_permission(request)
    may_change = request.user.has_perm("curriculum.change_curriculum")
    panels = [_curriculum_panel(curriculum, may_change_protocol=may_change)
              for curriculum in Curriculum.objects.order_by("key")]
    context = {**admin.site.each_context(request), "title": "Policy orchestrator", "panels": panels}
    return render(request, "admin/curriculum/orchestrator.html", context)


def _version_entry(policy: PolicyModel, *, active: PolicyModel | None,
                   keys: tuple[str, ...] | None = None) -> dict[str, Any]:
    """What the pages show of one version: its evaluation under the curriculum's protocol (or the protocol it was
    measured under when that differs), lift over the baselines, chart, delta to the active version (None when the two
    are evaluated over different numbers of concepts: ``unlike_decks``), lineage."""
    protocol = policy.curriculum.protocol
    under = selectors.evaluation_under(policy=policy, protocol=protocol)
    active_under = selectors.evaluation_under(policy=active, protocol=protocol) if active is not None else None
    value, active_value = dt_mean(under), dt_mean(active_under)
    measured = protocol_of(policy.metrics)
    shown = under or policy.metrics or {}
    run = getattr(policy, "training_run", None)
    fitted_to = encoder_fitted_to(policy)  # for evaluations that do not say what their students were fitted to
    like = students_like(under, fitted_to=fitted_to)
    # a mean over another number of concepts than the active version's is not comparable with its mean
    # (services.promotion_gate holds a version over more concepts to the fallback, and refuses one over fewer)
    unlike = services.compared_decks(candidate=policy, active=active,
                                     concept_count=None if keys is None else len(keys))
    return {
        "policy": policy,
        "under_protocol": under is not None,
        "recall": value,
        "measured_protocol": None if under is not None else measured,
        "other_recall": None if under is not None else dt_mean(policy.metrics),
        "delta": (None if value is None or active_value is None or policy == active or unlike is not None
                  else value - active_value),
        "unlike_decks": unlike,  # (this version's concept count, the active version's) when they differ
        "lift": lift(under),
        # students like the curriculum's own: under the protocol, else the training-time evaluation's (not comparable)
        "students_like": like or students_like(policy.metrics, fitted_to=fitted_to),
        "students_like_under_protocol": like is not None,
        "students_like_id": f"students-like-{policy.curriculum.key}-{policy.version}",
        "data_warnings": ((policy.metrics or {}).get("training_data") or {}).get("warnings") or [],
        "chart": metrics_chart(metrics=shown),
        "run": run,
        "dataset": getattr(run, "dataset", None) if run is not None else None,
        "concepts": len((policy.config or {}).get("concept_keys") or []),
        "coverage": selectors.policy_coverage(curriculum=policy.curriculum, policy=policy, keys=keys),
    }


def _curriculum_panel(curriculum: Curriculum, *, may_change_protocol: bool = False) -> dict[str, Any]:
    active = selectors.active_policy(curriculum=curriculum)
    versions = list(
        selectors.policy_versions(curriculum=curriculum).select_related("curriculum", "training_run__dataset")
    )
    keys = selectors.concept_keys(curriculum_id=curriculum.pk)
    entries = {p.pk: _version_entry(p, active=active, keys=keys) for p in versions}
    for policy_id, job in unfinished_evaluations(policies=versions).items():  # its progress instead of the button
        entries[policy_id]["evaluation_job"] = job
        entries[policy_id]["evaluation_status"] = job_status(job=job)
    candidates = [entries[p.pk] for p in versions if p.status == PolicyModel.Status.CANDIDATE]
    # Best evaluation under the protocol first; versions without one last, newest first among equals.
    candidates.sort(key=lambda e: (e["recall"] is None, -(e["recall"] or 0.0), -e["policy"].version))
    retired = [entries[p.pk] for p in versions if p.status == PolicyModel.Status.RETIRED]
    for entry in candidates + retired:
        entry["gate"] = services.promotion_gate(candidate=entry["policy"], active=active, concept_count=len(keys))
    return {
        "curriculum": curriculum,
        "protocol": curriculum.protocol,
        "may_change_protocol": may_change_protocol,
        "versions": versions,
        "active": entries[active.pk] if active else None,
        "rollback_target": selectors.rollback_target(curriculum=curriculum, active=active) if active else None,
        "concept_count": len(keys),
        # the protocol sized for the deck when the curriculum's meets too few of its concepts (concepts were added
        # since it was set): the orchestrator says so and proposes it in the protocol form
        "protocol_for_deck": _protocol_for_deck(curriculum.protocol, len(keys)),
        "reviews_per_concept": REVIEWS_PER_CONCEPT,
        "fallback_name": curriculum.fallback_rule,
        "fallback_recall": None if active else dt_mean(selectors.fallback_evaluation(
            curriculum=curriculum, protocol=curriculum.protocol, num_concepts=len(keys)), curriculum.fallback_rule),
        "candidates": candidates,
        "retired": retired,
        "history": list(selectors.promotion_history(curriculum=curriculum)[:20]),
    }


def _protocol_for_deck(protocol: EvaluationProtocol, concept_count: int) -> EvaluationProtocol | None:
    """``protocol.sized_for`` the deck when that raises its reviews (``protocol`` gives a student fewer than
    REVIEWS_PER_CONCEPT reviews a concept, up to the sizing's cap), else None (a protocol that meets the deck, or an
    operator's above the cap, is left alone)."""
    sized = protocol.sized_for(num_concepts=concept_count)
    return None if sized == protocol else sized


def metrics_chart(*, metrics: dict[str, Any], width: int = 420, height: int = 170,
                  y_range: tuple[float, float] | None = None) -> dict[str, Any] | None:
    """Bar geometry for an inline SVG: each policy's mean (dt first, then the baselines) with its 95% CI whiskers,
    on a fixed 0..1 recall axis so charts of different versions compare at a glance; ``y_range`` (low, high) gives
    another axis shared by the charts shown together (the comparison's, scaled to their data:
    ``training.comparison.evaluation_range``), bars then rising from ``low``."""
    results = (metrics or {}).get("results") or {}
    names = charts.ordered_policies(results)
    if not names:
        return None
    left, bottom, top = 34, 34, 8
    plot_h = height - bottom - top
    slot = (width - left - 4) / len(names)

    low, high = y_range or (0.0, 1.0)

    def y(value: float) -> float:
        return round(top + plot_h * (1.0 - (min(max(value, low), high) - low) / (high - low)), 1)

    bars = []
    for i, name in enumerate(names):
        result = results[name] or {}
        mean = float(result.get("mean", 0.0))
        lo, hi = (result.get("ci95") or [mean, mean])[:2]
        x = left + slot * i + slot * 0.15
        bars.append({
            "name": name, "mean": mean, "lo": float(lo), "hi": float(hi),
            "x": round(x, 1), "w": round(slot * 0.7, 1), "y": y(mean), "h": round(y(low) - y(mean), 1),
            "cx": round(x + slot * 0.35, 1), "cap_l": round(x + slot * 0.35 - 4, 1), "cap_r": round(x + slot * 0.35 + 4, 1),
            "y_lo": y(float(lo)), "y_hi": y(float(hi)),
            "kind": "dt" if name == "dt" else ("oracle" if name == "oracle" else "baseline"),
        })
    values = (0.0, 0.25, 0.5, 0.75, 1.0) if y_range is None else [v for v in nice_ticks(low, high)
                                                                   if low - 1e-9 <= v <= high + 1e-9]
    ticks = [{"value": v, "y": y(v)} for v in values]
    return {
        "width": width, "height": height, "left": left, "right": width - 4, "tick_x": left - 4, "bars": bars, "ticks": ticks,
        "axis_y": y(low), "label_y": height - bottom + 14, "metric": (metrics or {}).get("metric", "metric"),
    }


def _orchestrator_url(curriculum: Curriculum, *, version: int | None = None) -> str:
    anchor = f"version-{curriculum.key}-{version}" if version is not None else f"curriculum-{curriculum.key}"
    return reverse("curriculum:orchestrator") + f"#{anchor}"


def _confirm_context(request: HttpRequest, *, curriculum: Curriculum, target: PolicyModel, kind: str) -> dict[str, Any]:
    active = selectors.active_policy(curriculum=curriculum)
    for policy in (target, active):
        if policy is not None:
            policy.curriculum = curriculum
    keys = selectors.concept_keys(curriculum_id=curriculum.pk)
    return {
        **admin.site.each_context(request),
        "title": f"{'Roll back' if kind == 'rollback' else 'Promote'} {curriculum.key}: "
                 f"{f'v{active.version}' if active else 'no active version'} \u2192 v{target.version}",
        "kind": kind,
        "curriculum": curriculum,
        "protocol": curriculum.protocol,
        "target": _version_entry(target, active=active, keys=keys),
        "active": _version_entry(active, active=active, keys=keys) if active else None,
        "concept_count": len(keys),
        "gate": (services.promotion_gate(candidate=target, active=active, concept_count=len(keys))
                 if kind == "promote" else None),
        # a rollback undoes the promotion that activated the active version, whichever version numbers they carry
        "undone": _undone_promotion(curriculum=curriculum, active=active) if kind == "rollback" else None,
        "fallback_name": curriculum.fallback_rule,
        "reason": request.POST.get("reason", ""),
    }


def _undone_promotion(*, curriculum: Curriculum, active: PolicyModel | None) -> dict[str, Any] | None:
    """The promotion a rollback undoes, for the confirmation's wording: ``event``, ``when`` (formatted), ``who``."""
    event = selectors.activation_event(curriculum=curriculum, active=active)
    if event is None:
        return None
    who = event.actor.get_username() if event.actor else (event.actor_name or "someone")
    return {"event": event, "when": format_when(event.at), "who": who}


@staff_member_required
def orchestrator_promote(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation page (from vN to vM, both under the protocol, concepts covered, the gate's verdict).
    POST: promote through the gate (reason required; force only with a reason)."""
    _require_promote_permission(request)
    policy = get_object_or_404(PolicyModel.objects.select_related("curriculum"), pk=pk)
    if request.method == "POST":
        try:
            services.promote_policy(
                policy=policy, actor=request.user, reason=request.POST.get("reason", ""),
                force=request.POST.get("force") == "on",
            )
        except services.PolicyError as exc:
            messages.error(request, f"Promotion refused: {exc}")
        else:
            messages.success(request, f"Promoted: {policy.curriculum.key} v{policy.version} is now the active version.")
            return HttpResponseRedirect(_orchestrator_url(policy.curriculum))
    context = _confirm_context(request, curriculum=policy.curriculum, target=policy, kind="promote")
    return render(request, "admin/curriculum/orchestrator_confirm.html", context)


@staff_member_required
def orchestrator_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation page naming the target version; POST: roll back (reason required)."""
    _require_promote_permission(request)
    curriculum = get_object_or_404(Curriculum, pk=pk)
    target = selectors.rollback_target(curriculum=curriculum)
    if target is None:
        messages.error(request, f"Curriculum {curriculum.key}: there is no version to roll back to.")
        return HttpResponseRedirect(_orchestrator_url(curriculum))
    if request.method == "POST":
        try:
            event = services.rollback_policy(curriculum=curriculum, actor=request.user, reason=request.POST.get("reason", ""))
        except services.PolicyError as exc:
            messages.error(request, f"Rollback refused: {exc}")
        else:
            messages.success(request, f"Curriculum {curriculum.key}: rolled back from v{event.from_version} to v{event.to_version}.")
            return HttpResponseRedirect(_orchestrator_url(curriculum))
    context = _confirm_context(request, curriculum=curriculum, target=target, kind="rollback")
    return render(request, "admin/curriculum/orchestrator_confirm.html", context)


@require_POST
@staff_member_required
def orchestrator_evaluate(request: HttpRequest, pk: int) -> HttpResponseRedirect:
    """Launch a ProtocolEvaluationJob for a version under its curriculum's protocol (or find the one queued or
    running), then go back to ``next`` when it is a URL of this site, else to the version on the orchestrator, where
    the job's progress shows; needs the orchestrator's permission and ``training.add_protocolevaluationjob``."""
    _require_promote_permission(request)
    if not request.user.has_perm("training.add_protocolevaluationjob"):
        raise PermissionDenied("evaluating under the protocol needs the training.add_protocolevaluationjob permission")
    policy = get_object_or_404(PolicyModel.objects.select_related("curriculum"), pk=pk)
    try:
        job, launched = launch_protocol_evaluation(policy=policy, created_by=request.user)
    except ValidationError as exc:
        messages.error(request, f"Version {policy.curriculum.key} v{policy.version}: cannot evaluate: "
                                f"{'; '.join(exc.messages)}")
    else:
        url = reverse("admin:training_protocolevaluationjob_change", args=[job.pk])
        text = ("evaluation under the protocol queued" if launched
                else "an evaluation under the protocol is already " + job.status)
        messages.info(request, format_html('Version {} v{}: {} (<a href="{}">{}</a>); its progress shows here.',
                                           policy.curriculum.key, policy.version, text, url, job))
    wanted = request.POST.get("next") or ""
    if url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return HttpResponseRedirect(wanted)
    return HttpResponseRedirect(_orchestrator_url(policy.curriculum, version=policy.version))


@require_POST
@staff_member_required
def orchestrator_protocol(request: HttpRequest, pk: int) -> HttpResponseRedirect:
    """Change a curriculum's evaluation protocol (students, seed, reviews per student; a reason is required and
    recorded in the curriculum's history). Needs the orchestrator's permission and curriculum.change_curriculum."""
    _require_promote_permission(request)
    if not request.user.has_perm("curriculum.change_curriculum"):
        raise PermissionDenied("changing the evaluation protocol needs the curriculum.change_curriculum permission")
    curriculum = get_object_or_404(Curriculum, pk=pk)
    try:
        protocol = EvaluationProtocol.from_dict({name: _integer(request.POST.get(name))
                                                 for name in ("students", "seed", "interactions")})
        old = services.set_evaluation_protocol(curriculum=curriculum, protocol=protocol, actor=request.user,
                                               reason=request.POST.get("reason", ""))
    except (ProtocolError, services.PolicyError) as exc:
        messages.error(request, f"Curriculum {curriculum.key}: protocol not changed: {exc}")
    else:
        messages.success(request, f"Curriculum {curriculum.key}: evaluation protocol changed from {old.label} to "
                                  f"{protocol.label}. Versions evaluated under the old one are shown as not evaluated "
                                  f"under the current protocol: use Evaluate under the protocol on each.")
    return HttpResponseRedirect(_orchestrator_url(curriculum))


def _integer(value: str | None) -> int | str | None:
    """A form value as an integer when it is one (EvaluationProtocol.from_dict then names the field otherwise)."""
    try:
        return int((value or "").strip())
    except ValueError:
        return value


@require_POST
@staff_member_required
def orchestrator_describe(request: HttpRequest, pk: int) -> HttpResponseRedirect:
    """Save a version's description."""
    _require_promote_permission(request)
    policy = get_object_or_404(PolicyModel.objects.select_related("curriculum"), pk=pk)
    try:
        services.set_policy_description(policy=policy, description=request.POST.get("description", ""))
    except services.PolicyError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Version {policy.curriculum.key} v{policy.version}: description saved.")
    return HttpResponseRedirect(_orchestrator_url(policy.curriculum))


@staff_member_required
def orchestrator_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Two or more versions of a curriculum side by side (``?v=1&v=3``): what differs between them (parameters,
    data size and snapshot, final loss: ``training.comparison``), the loss curves overlaid, evaluation under the
    protocol with charts on one axis scaled to their results, lift over the baselines and lineage."""
    _require_promote_permission(request)
    curriculum = get_object_or_404(Curriculum, pk=pk)
    try:
        wanted = sorted({int(v) for v in request.GET.getlist("v")})
    except ValueError:
        wanted = []
    if len(wanted) < 2:
        messages.error(request, "Compare: tick two or more versions.")
        return HttpResponseRedirect(_orchestrator_url(curriculum))
    active = selectors.active_policy(curriculum=curriculum)
    versions = list(selectors.policy_versions(curriculum=curriculum).filter(version__in=wanted)
                    .select_related("curriculum", "training_run__dataset").order_by("version"))
    missing = sorted(set(wanted) - {p.version for p in versions})
    if missing:  # back to the orchestrator with the reason (a bare 404 page said only "Not Found")
        messages.error(request, f"Compare: {curriculum.key} has no version{'s' if len(missing) > 1 else ''} "
                                f"{', '.join(map(str, missing))}.")
        return HttpResponseRedirect(_orchestrator_url(curriculum))
    keys = selectors.concept_keys(curriculum_id=curriculum.pk)
    entries = [_version_entry(p, active=active, keys=keys) for p in versions]
    shown = [selectors.evaluation_under(policy=p, protocol=curriculum.protocol) or p.metrics for p in versions]
    comparison = compare_versions(policies=versions, evaluations=shown)
    for entry, metrics in zip(entries, shown):  # every chart on the one axis that holds all their results
        entry["chart"] = metrics_chart(metrics=metrics, y_range=comparison.evaluation_range)
    baselines = sorted({name for e in entries for name in e["lift"]})
    lift_rows = [{"name": name, "values": [e["lift"].get(name) for e in entries]} for name in baselines]
    context = {
        **admin.site.each_context(request), "title": f"Compare {curriculum.key} versions", "curriculum": curriculum,
        "protocol": curriculum.protocol, "entries": entries, "lift_rows": lift_rows, "comparison": comparison,
    }
    return render(request, "admin/curriculum/orchestrator_compare.html", context)
