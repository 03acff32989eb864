"""An experiment's outcomes per arm, from the reviews that follow its served recommendations, with 95% intervals, the
difference of each candidate from the control, and the learners still needed to confirm the smallest difference
worth acting on.

Per arm, over the learners it served (learners are the independent units; a learner's decisions are not):

* **recall at the next review** of the recommended concept: per decision, the outcome (``correct``) of the review
  that carries its recommendation_id back, else of the learner's first review of that concept at or after the
  decision; per learner the mean over its decisions with such a review, then the mean over learners;
* **estimated recall at the horizon**: the memory model's (the curriculum's serving encoder) mean recall over all
  the curriculum's concepts ``horizon_s`` after the learner's newest review, per learner, then the mean;
* **reviews per learner** since the experiment started.

Each mean comes with a 95% normal interval ``mean +- 1.96 s / sqrt(n)`` (s the sample standard deviation over
learners), the difference B - A with ``+- 1.96 sqrt(s_A^2 / n_A + s_B^2 / n_B)`` (Welch's standard error), and the
learners per arm needed to detect ``min_effect`` with a two-sided 5% test at 80% power (Chow, Shao & Wang 2008,
"Sample Size Calculations in Clinical Research", 2nd ed., section 3.2.1, two-sample parallel design, equality):
``n = (z_{0.975} + z_{0.8})^2 (s_A^2 + s_B^2) / min_effect^2``, of which the learners already served are subtracted.

A big experiment stays fast: the decisions, shadow choices and learners per arm are counted in the database, and the
metrics read at most ``MAX_LEARNERS_PER_ARM`` learners per arm: a uniform random sample of the arm's learners, seeded by
the experiment's id (``assignment.sample``: the same learners on every page load while the arm has the same learners),
their decisions and reviews only. A metric's ``n`` below the arm's ``learners`` says it was computed on that sample;
its interval is the sample's (an unbiased estimate of the whole arm's mean, wider than the whole arm's would be).
"""
from __future__ import annotations

import bisect
import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from django.db.models import Count
from django.utils import timezone

from .. import selectors
from . import assignment
from ..learner_states import histories, state_from_history
from ..models import Experiment, Learner, RecommendationLog, ReviewLog

MAX_LEARNERS_PER_ARM = 2000  # learners per arm whose outcomes are read at a page load (see the module)
Z95 = NormalDist().inv_cdf(0.975)
Z_POWER = NormalDist().inv_cdf(0.8)
METRICS = ("recall_next", "horizon_recall", "reviews")
METRIC_NAMES = {"recall_next": "recall at the next review", "horizon_recall": "estimated recall at the horizon",
                "reviews": "reviews per learner"}


@dataclass(frozen=True)
class Mean:
    """A mean over ``n`` learners with its 95% interval (None bounds below 2 learners) and standard deviation."""

    mean: float | None
    ci95: tuple[float, float] | None
    n: int
    sd: float | None

    @classmethod
    def of(cls, values) -> Mean:
        v = np.asarray(list(values), dtype=np.float64)
        if v.size == 0:
            return cls(None, None, 0, None)
        m = float(v.mean())
        if v.size < 2:
            return cls(m, None, 1, None)
        sd = float(v.std(ddof=1))
        half = Z95 * sd / math.sqrt(v.size)
        return cls(m, (m - half, m + half), int(v.size), sd)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": list(self.ci95) if self.ci95 else None, "learners": self.n}


@dataclass(frozen=True)
class ArmOutcome:
    """One arm: its label, version (None: the fallback), traffic share, what it logged (decisions, and shadow
    choices in shadow mode), the learners it served (these three counted in the database over the whole arm), each
    metric's Mean (over at most the cap of learners, see the module), and ``timeline``: per day since the start
    (ISO date) the cumulative recall at the next review (Mean, same learners)."""

    arm_id: int
    label: str
    version: int | None
    is_control: bool
    traffic_percent: int
    decisions: int
    shadow_decisions: int
    learners: int
    metrics: dict[str, Mean]
    timeline: list[tuple[str, Mean]] = field(default_factory=list)


@dataclass(frozen=True)
class Difference:
    """A candidate arm's recall at the next review minus the control's, its 95% interval, the learners per arm still
    needed to confirm ``min_effect`` (None: not estimable yet), and the sentence that says it."""

    label: str
    difference: float | None
    ci95: tuple[float, float] | None
    more_learners_per_arm: int | None
    sentence: str


@dataclass(frozen=True)
class ExperimentOutcomes:
    experiment: Experiment
    arms: list[ArmOutcome]
    differences: list[Difference]

    def to_dict(self) -> dict:
        """The outcomes as the API returns them (JSON-ready)."""
        return {
            "arms": [{"label": a.label, "version": a.version, "control": a.is_control, "traffic_percent": a.traffic_percent,
                      "decisions": a.decisions, "shadow_decisions": a.shadow_decisions, "learners": a.learners,
                      **{name: a.metrics[name].to_dict() for name in METRICS}} for a in self.arms],
            "differences": [{"label": d.label, "metric": "recall_next", "difference": d.difference,
                             "ci95": list(d.ci95) if d.ci95 else None, "more_learners_per_arm": d.more_learners_per_arm,
                             "summary": d.sentence} for d in self.differences],
        }


def experiment_outcomes(*, experiment: Experiment, now: dt.datetime | None = None,
                        max_learners_per_arm: int = MAX_LEARNERS_PER_ARM) -> ExperimentOutcomes:
    """Every arm's outcomes and each candidate's difference from the control, as the database says now (see the
    module). Counts the experiment's log rows per arm in the database; reads the served rows of at most
    ``max_learners_per_arm`` learners per arm (>= 2; ValueError naming it otherwise; a uniform sample seeded by the
    experiment's id when the arm has more), their reviews since the start and their histories."""
    if isinstance(max_learners_per_arm, bool) or not isinstance(max_learners_per_arm, int) or max_learners_per_arm < 2:
        raise ValueError(f"max_learners_per_arm: expected an integer >= 2, got {max_learners_per_arm!r}")
    now = now or timezone.now()
    arms = list(experiment.arms.select_related("policy").order_by("label"))
    start = experiment.started_at or experiment.created_at
    end = experiment.stopped_at  # while it runs, every review so far (a client's clock may run a little ahead)
    logged = RecommendationLog.objects.filter(arm__experiment=experiment)
    counts = {(arm_id, served): (n, learners) for arm_id, served, n, learners in logged.order_by().values(
        "arm_id", "served").annotate(n=Count("id"), learners=Count("learner", distinct=True)).values_list(
        "arm_id", "served", "n", "learners")}
    learners_of: dict[int, set[str]] = {}
    served = []
    for arm in arms:
        sample = assignment.sample(logged.filter(arm=arm, served=True).order_by().values_list(
            "learner", flat=True).distinct().iterator(chunk_size=5000), max_learners_per_arm, seed=experiment.pk)
        learners_of[arm.pk] = set(sample)
        for chunk in range(0, len(sample), 500):
            served += logged.filter(arm=arm, served=True, learner__in=sample[chunk:chunk + 500]).order_by().values_list(
                "id", "arm_id", "learner", "concept", "at", "served")
    served.sort(key=lambda r: r[4])
    everyone = sorted(set().union(*learners_of.values())) if learners_of else []
    ids = dict(Learner.objects.filter(external_id__in=everyone).values_list("external_id", "id")) if everyone else {}
    reviews = _reviews(curriculum_id=experiment.curriculum_id, learner_ids=list(ids.values()), start=start, end=end)
    by_id = {v: k for k, v in ids.items()}
    reviews = {by_id[k]: v for k, v in reviews.items()}
    horizon = _horizon_recall(curriculum_id=experiment.curriculum_id, learner_ids=ids, horizon_s=experiment.horizon_s)

    outcomes, days = [], _days(start, end or now)
    for arm in arms:
        decisions = [r for r in served if r[1] == arm.pk]
        learners = sorted(learners_of.get(arm.pk, ()))
        per_learner = _recall_next(decisions, reviews)
        metrics = {
            "recall_next": Mean.of(per_learner.values()),
            "horizon_recall": Mean.of(horizon[l] for l in learners if l in horizon),
            "reviews": Mean.of(len(reviews.get(l, {}).get("all", ())) for l in learners),
        }
        timeline = [(day.date().isoformat(), Mean.of(_recall_next([d for d in decisions if d[4] < day], reviews,
                                                                   until=day).values()))
                    for day in days]
        outcomes.append(ArmOutcome(arm.pk, arm.label, arm.policy.version if arm.policy_id else None, arm.is_control,
                                   arm.traffic_percent, counts.get((arm.pk, True), (0, 0))[0],
                                   counts.get((arm.pk, False), (0, 0))[0], counts.get((arm.pk, True), (0, 0))[1],
                                   metrics, timeline))
    control = next((a for a in outcomes if a.is_control), None)
    differences = [] if control is None else [
        compare(control=control.metrics["recall_next"], candidate=a.metrics["recall_next"], label=a.label,
                control_label=control.label, min_effect=experiment.min_effect)
        for a in outcomes if not a.is_control and a.decisions]
    return ExperimentOutcomes(experiment, outcomes, differences)


def compare(*, control: Mean, candidate: Mean, label: str, control_label: str = "A", min_effect: float) -> Difference:
    """The candidate's mean minus the control's with its 95% interval, the learners per arm still needed to confirm
    ``min_effect`` (Chow, Shao & Wang; see the module), and a sentence such as "B is ahead by 0.031 [0.012, 0.050];
    about 1,400 more learners per arm to confirm a 0.01 difference"."""
    if control.n < 2 or candidate.n < 2:
        return Difference(label, None, None, None, f"{label}: not enough learners with outcomes yet "
                          f"({control_label}: {control.n}, {label}: {candidate.n}; at least 2 each)")
    d = candidate.mean - control.mean
    se = math.sqrt(control.sd**2 / control.n + candidate.sd**2 / candidate.n)
    ci = (d - Z95 * se, d + Z95 * se)
    needed = (Z95 + Z_POWER) ** 2 * (control.sd**2 + candidate.sd**2) / min_effect**2
    more = max(0, math.ceil(needed) - min(control.n, candidate.n))
    way = "ahead of" if d > 0 else "behind" if d < 0 else "level with"
    head = f"{label} is {way} {control_label} by {abs(d):.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    tail = (f"about {more:,} more learners per arm to confirm a {min_effect:g} difference" if more
            else f"enough learners per arm to confirm a {min_effect:g} difference")
    return Difference(label, d, ci, more, f"{head}; {tail}")


def _reviews(*, curriculum_id: int, learner_ids: list[int], start: dt.datetime,
             end: dt.datetime | None) -> dict[int, dict]:
    """Per learner id: "all" (times from start to end, sorted; end None: no bound), "concepts": per concept key the
    sorted (time, correct) of its reviews ("times": their times alone, for bisect), and "by_recommendation"
    {recommendation_id: (time, correct)}."""
    out: dict[int, dict] = {}
    bound = {"reviewed_at__lte": end} if end is not None else {}
    for chunk in range(0, len(learner_ids), 500):
        for learner_id, concept, at, correct, rec in ReviewLog.objects.filter(
                curriculum_id=curriculum_id, learner_id__in=learner_ids[chunk:chunk + 500], reviewed_at__gte=start,
                **bound).order_by("reviewed_at", "id").values_list(
                "learner_id", "concept__key", "reviewed_at", "correct", "recommendation_id"):
            entry = out.setdefault(learner_id, {"all": [], "concepts": defaultdict(list), "times": defaultdict(list),
                                                "by_recommendation": {}})
            entry["all"].append(at)
            entry["concepts"][concept].append((at, correct))
            entry["times"][concept].append(at)
            if rec is not None:
                entry["by_recommendation"][str(rec)] = (at, correct)
    return out


def _recall_next(decisions, reviews, *, until: dt.datetime | None = None) -> dict[str, float]:
    """Per learner, the mean outcome of the review that follows each decision (see the module), counting only reviews
    before ``until`` (None: all of ``reviews``), whether they carry the decision's recommendation_id or not."""
    outcomes: dict[str, list[float]] = defaultdict(list)
    for rec_id, _, learner, concept, at, _ in decisions:
        entry = reviews.get(learner)
        if entry is None:
            continue
        exact = entry["by_recommendation"].get(str(rec_id))
        if exact is not None:
            if until is None or exact[0] < until:
                outcomes[learner].append(float(exact[1]))
            continue
        seq = entry["concepts"].get(concept, ())
        i = bisect.bisect_left(entry["times"].get(concept, ()), at)
        if i < len(seq) and (until is None or seq[i][0] < until):
            outcomes[learner].append(float(seq[i][1]))
    return {learner: float(np.mean(v)) for learner, v in outcomes.items()}


def _horizon_recall(*, curriculum_id: int, learner_ids: dict[str, int], horizon_s: int) -> dict[str, float]:
    if not learner_ids:
        return {}
    spec = selectors.serving_spec(curriculum_id=curriculum_id)
    found = histories(learner_ids=list(learner_ids.values()), curriculum_id=curriculum_id)
    out = {}
    for external_id, learner_id in learner_ids.items():
        history = found.get(learner_id)
        if not history:
            continue
        state, _ = state_from_history(history, spec=spec)
        t = history[-1].at.timestamp() + horizon_s
        out[external_id] = float(state.encoder.recall(state.memory, np.array([t]))[0].mean())
    return out


def _days(start: dt.datetime, end: dt.datetime, *, most: int = 60) -> list[dt.datetime]:
    """Day ends (midnight UTC after each day from the start's to the end's), at most ``most`` (the last ones)."""
    first = start.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(days=1)
    days = []
    day = first
    while day < end + dt.timedelta(days=1):
        days.append(day)
        day += dt.timedelta(days=1)
    return days[-most:]
