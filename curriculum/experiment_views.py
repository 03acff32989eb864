"""The orchestrator's experiment pages: a curriculum's experiments (create one: control against candidates, split
or shadow), and one experiment (start, stop, outcomes per arm over time with intervals, the traffic served per arm,
logged off-policy estimates of each version, promote the winner). Needs the ``curriculum.run_experiment``
permission; state changes are CSRF-protected POSTs that call curriculum.experiments.services."""
from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import charts, selectors
from .admin_text import permission_denied
from .experiments.logged_estimates import MAX_DECISIONS, logged_estimates
from .experiments.outcomes import METRIC_NAMES, METRICS, experiment_outcomes
from .experiments.services import (
    ExperimentError, create_experiment, promote_winner, start_experiment, stop_experiment,
)
from .models import Curriculum, Experiment, PolicyModel
from .services import PolicyError

ESTIMATOR_NAMES = {"ips": "IPS", "snips": "SNIPS", "pdis": "per-decision IS", "dr": "doubly robust"}
_MAX_ID = 2**31 - 1  # the largest value every database Django supports stores in a PositiveIntegerField or AutoField


def _require_run_experiment(request: HttpRequest) -> None:
    if not request.user.has_perm("curriculum.run_experiment"):
        raise permission_denied(request, app_label="curriculum", codename="run_experiment",
                                doing="run experiments between policy versions")


@staff_member_required
def experiments(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the curriculum's experiments and the form for a new one; POST: create it (a draft) from the form."""
    _require_run_experiment(request)
    curriculum = get_object_or_404(Curriculum, pk=pk)
    active = selectors.active_policy(curriculum=curriculum)
    versions = [p for p in selectors.policy_versions(curriculum=curriculum).order_by("-version")
                if active is None or p.pk != active.pk]
    if request.method == "POST":
        try:
            candidates = _versions(curriculum, request.POST.getlist("candidate"))
            traffic = _integers(request.POST.get("traffic", "").replace(",", " ").split(), field="traffic",
                                expected="whole percentages separated by commas, e.g. 50, 50") or None
            experiment = create_experiment(
                curriculum=curriculum, name=request.POST.get("name", ""), candidates=candidates,
                traffic=traffic, mode=request.POST.get("mode", Experiment.Mode.SPLIT), actor=request.user,
            )
        except (ExperimentError, ValueError) as exc:
            messages.error(request, f"Experiment not created: {exc}")
        else:
            messages.success(request, f"Experiment \u201c{experiment.name}\u201d created as a draft; start it when ready.")
            return HttpResponseRedirect(reverse("curriculum:experiment", args=[experiment.pk]))
    context = {
        **admin.site.each_context(request), "title": f"Experiments on {curriculum.key}", "curriculum": curriculum,
        "active": active, "versions": versions, "experiments": curriculum.experiments.prefetch_related("arms__policy"),
        "modes": Experiment.Mode.choices, "max_candidates": Experiment.MAX_CANDIDATES,
    }
    return render(request, "admin/curriculum/experiments.html", context)


def _integers(values, *, field: str, expected: str) -> list[int]:
    """``values`` (form strings) as ints; ValueError naming ``field`` and saying what was ``expected`` otherwise."""
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{field}: expected {expected}") from None


def _versions(curriculum: Curriculum, values) -> list[PolicyModel]:
    """The curriculum's versions numbered ``values`` (the form's ``candidate`` strings), in version order; ValueError
    naming ``candidate`` for a value that is not a version number or a number no version of it has."""
    numbers = _integers(values, field="candidate", expected="version numbers, e.g. 3")
    # a number past the column's range is no version: never sent to the database (SQLite: OverflowError)
    found = {p.version: p for p in PolicyModel.objects.filter(
        curriculum=curriculum, version__in=[n for n in numbers if 0 < n <= _MAX_ID])}
    missing = [n for n in dict.fromkeys(numbers) if n not in found]
    if missing:
        raise ValueError(f"candidate: {curriculum.key} has no version {', '.join(map(str, missing))}")
    return sorted(found.values(), key=lambda p: p.version)


@staff_member_required
def experiment(request: HttpRequest, pk: int) -> HttpResponse:
    """One experiment: arms, status, outcomes per arm (table and chart over time with intervals), traffic per arm,
    the plain-sentence comparison, logged off-policy estimates per version, and the start/stop/promote buttons."""
    _require_run_experiment(request)
    experiment = get_object_or_404(Experiment.objects.select_related("curriculum"), pk=pk)
    outcomes = experiment_outcomes(experiment=experiment)
    rows = [{"arm": a, "metrics": [(METRIC_NAMES[m], a.metrics[m]) for m in METRICS]} for a in outcomes.arms]
    versions = {arm.policy_id: arm.policy for arm in experiment.arms.select_related("policy__curriculum") if arm.policy_id}
    window_end = experiment.stopped_at
    estimates = [(policy, logged_estimates(policy=policy, since=experiment.started_at, until=window_end))
                 for policy in versions.values()] if experiment.started_at else []
    context = {
        **admin.site.each_context(request), "title": f"Experiment \u201c{experiment.name}\u201d",
        "curriculum": experiment.curriculum, "experiment": experiment, "outcomes": outcomes, "rows": rows,
        "metric_names": [METRIC_NAMES[m] for m in METRICS],
        "chart": charts.experiment_chart(arms=outcomes.arms),
        "traffic_chart": charts.experiment_traffic_chart(arms=outcomes.arms),
        "estimates": [{"policy": p, "result": r, "rows": [(ESTIMATOR_NAMES[k], e) for k, e in r.estimates.items()]}
                      for p, r in estimates],
        "max_decisions": MAX_DECISIONS,
        "candidates": [a for a in experiment.arms.select_related("policy") if not a.is_control and a.policy_id],
    }
    return render(request, "admin/curriculum/experiment.html", context)


@staff_member_required
@require_POST
def experiment_action(request: HttpRequest, pk: int) -> HttpResponseRedirect:
    """POST ``action`` = start | stop | promote (with ``arm`` and a written ``reason``; ``force`` to pass the gate)."""
    _require_run_experiment(request)
    experiment = get_object_or_404(Experiment.objects.select_related("curriculum"), pk=pk)
    action = request.POST.get("action")
    try:
        if action == "start":
            start_experiment(experiment=experiment)
            messages.success(request, "Experiment started: the curriculum's learners are now served by their arms.")
        elif action == "stop":
            stop_experiment(experiment=experiment)
            messages.success(request, "Experiment stopped: the active version serves everyone again.")
        elif action == "promote":
            if not request.user.has_perm("curriculum.promote_policymodel"):
                raise permission_denied(request, app_label="curriculum", codename="promote_policymodel",
                                        doing="promote a policy version")
            arm = _arm(experiment, request.POST.get("arm", ""))
            event = promote_winner(experiment=experiment, arm=arm, actor=request.user,
                                   reason=request.POST.get("reason", ""), force=bool(request.POST.get("force")))
            messages.success(request, f"v{event.to_version} (arm {arm.label}) promoted; the experiment is stopped.")
        else:
            messages.error(request, "Unknown action: expected start, stop or promote.")
    except (ExperimentError, PolicyError) as exc:
        messages.error(request, f"Not done: {exc}")
    return HttpResponseRedirect(reverse("curriculum:experiment", args=[experiment.pk]))


def _arm(experiment: Experiment, value: str):
    """The experiment's arm whose id is ``value`` (the form's ``arm``); ExperimentError naming ``arm`` otherwise."""
    try:
        pk = int(value)
    except ValueError:
        pk = None
    arm = experiment.arms.select_related("policy").filter(pk=pk).first() if pk and 0 < pk <= _MAX_ID else None
    if arm is None:
        raise ExperimentError(f"arm: this experiment has no arm {value[:40]!r}; reload the page and choose one in "
                              "the list")
    return arm
