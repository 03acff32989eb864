"""Admin-side views of the curriculum domain: the orchestrator page (compare, promote, roll back) and
artifact downloads. State changes are POSTs that go through the promotion service."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import selectors, services
from .models import Curriculum, PolicyModel
from .services import artifact_storage

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
    return FileResponse(artifact_storage().open(entry["path"], "rb"), as_attachment=True, filename=name)


# ------------------------------------------------------------------------------------------ orchestrator
def _require_promote_permission(request: HttpRequest) -> None:
    if not request.user.has_perm(PROMOTE_PERMISSION):
        raise PermissionDenied(f"the orchestrator needs the {PROMOTE_PERMISSION} permission")


@staff_member_required
def orchestrator(request: HttpRequest) -> HttpResponse:
    """Per curriculum: the active version, the candidates ranked by evaluation, rollback and history."""
    _require_promote_permission(request)
    panels = [_curriculum_panel(curriculum) for curriculum in Curriculum.objects.order_by("key")]
    context = {**admin.site.each_context(request), "title": "Policy orchestrator", "panels": panels}
    return render(request, "admin/curriculum/orchestrator.html", context)


def _curriculum_panel(curriculum: Curriculum) -> dict[str, Any]:
    active = selectors.active_policy(curriculum=curriculum)
    candidates = list(selectors.policy_versions(curriculum=curriculum).filter(status=PolicyModel.Status.CANDIDATE))
    # Best evaluation first; unevaluated versions last, newest first among equals.
    candidates.sort(key=lambda p: (p.dt_mean_final_recall is None, -(p.dt_mean_final_recall or 0.0), -p.version))
    baseline = active.dt_mean_final_recall if active else None

    def entry(policy: PolicyModel) -> dict[str, Any]:
        value = policy.dt_mean_final_recall
        return {
            "policy": policy,
            "recall": value,
            "delta": None if value is None or baseline is None or policy == active else value - baseline,
            "chart": metrics_chart(metrics=policy.metrics),
        }

    return {
        "curriculum": curriculum,
        "active": entry(active) if active else None,
        "candidates": [entry(p) for p in candidates],
        "history": list(selectors.promotion_history(curriculum=curriculum)[:20]),
    }


def metrics_chart(*, metrics: dict[str, Any], width: int = 420, height: int = 170) -> dict[str, Any] | None:
    """Bar geometry for an inline SVG: each policy's mean (dt first, then the baselines) with its 95% CI whiskers,
    on a fixed 0..1 recall axis so charts of different versions compare at a glance."""
    results = (metrics or {}).get("results") or {}
    names = sorted(results, key=lambda name: (name != "dt", name == "oracle", name))
    if not names:
        return None
    left, bottom, top = 34, 34, 8
    plot_h = height - bottom - top
    slot = (width - left - 4) / len(names)

    def y(value: float) -> float:
        return round(top + plot_h * (1.0 - min(max(value, 0.0), 1.0)), 1)

    bars = []
    for i, name in enumerate(names):
        result = results[name] or {}
        mean = float(result.get("mean", 0.0))
        lo, hi = (result.get("ci95") or [mean, mean])[:2]
        x = left + slot * i + slot * 0.15
        bars.append({
            "name": name, "mean": mean, "lo": float(lo), "hi": float(hi),
            "x": round(x, 1), "w": round(slot * 0.7, 1), "y": y(mean), "h": round(y(0.0) - y(mean), 1),
            "cx": round(x + slot * 0.35, 1), "cap_l": round(x + slot * 0.35 - 4, 1), "cap_r": round(x + slot * 0.35 + 4, 1),
            "y_lo": y(float(lo)), "y_hi": y(float(hi)),
            "kind": "dt" if name == "dt" else ("oracle" if name == "oracle" else "baseline"),
        })
    ticks = [{"value": v, "y": y(v)} for v in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return {
        "width": width, "height": height, "left": left, "right": width - 4, "tick_x": left - 4, "bars": bars, "ticks": ticks,
        "axis_y": y(0.0), "label_y": height - bottom + 14, "metric": (metrics or {}).get("metric", "metric"),
    }


@require_POST
@staff_member_required
def orchestrator_promote(request: HttpRequest, pk: int) -> HttpResponseRedirect:
    _require_promote_permission(request)
    policy = get_object_or_404(PolicyModel.objects.select_related("curriculum"), pk=pk)
    try:
        services.promote_policy(
            policy=policy, actor=request.user, reason=request.POST.get("reason", ""), force=request.POST.get("force") == "on"
        )
    except services.PolicyError as exc:
        messages.error(request, f"Promotion refused: {exc}")
    else:
        messages.success(request, f"{policy.curriculum.key} v{policy.version} is now the active version.")
    return HttpResponseRedirect(reverse("curriculum:orchestrator") + f"#curriculum-{policy.curriculum.key}")


@require_POST
@staff_member_required
def orchestrator_rollback(request: HttpRequest, pk: int) -> HttpResponseRedirect:
    _require_promote_permission(request)
    curriculum = get_object_or_404(Curriculum, pk=pk)
    try:
        event = services.rollback_policy(curriculum=curriculum, actor=request.user, reason=request.POST.get("reason", ""))
    except services.PolicyError as exc:
        messages.error(request, f"Rollback refused: {exc}")
    else:
        messages.success(request, f"{curriculum.key}: rolled back from v{event.from_version} to v{event.to_version}.")
    return HttpResponseRedirect(reverse("curriculum:orchestrator") + f"#curriculum-{curriculum.key}")
