"""A curriculum's evaluation protocol: the one set of held-out simulated students (count, seed, reviews per
student, recall horizon) under which all its policy versions are evaluated, so that their numbers compare.

A version's evaluation (``training.rl.evaluation.evaluate``'s JSON) carries the protocol it was run under in
``metrics["protocol"]``; evaluations without one (older versions) are of an unknown protocol and compare with
nothing. Lift is a version's DT mean minus a baseline's mean, from the same evaluation.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from training.rl.evaluation import (
    EVALUATION_BOUNDS, EVALUATION_INTERACTIONS, EVALUATION_SEED, EVALUATION_STUDENTS, FINAL_RECALL_DELAY_S,
)
from training.rl.policies import LowestRecallPolicy, RoundRobinPolicy
from training.rl.students import BUILTIN

LIFT_BASELINES = ("random", "round_robin", "leitner", "lowest_recall")
# The rule that serves while a curriculum has no active version (curriculum.serving's fallback), with the unfitted
# default encoder serving uses then: the bar a first promotion must beat (curriculum.services.promotion_gate).
FALLBACK_POLICY = LowestRecallPolicy.name
# The rules a curriculum may choose as its fallback (Curriculum.fallback_rule; the default FALLBACK_POLICY): each is
# the evaluation's baseline of that name, so the gate's bar is the rule that would serve.
FALLBACK_RULES = (FALLBACK_POLICY, RoundRobinPolicy.name)
# Sizing a curriculum's first protocol from its deck (EvaluationProtocol.sized_for): each held-out student gets at
# least REVIEWS_PER_CONCEPT reviews per concept (one to meet it, two to space it: fewer and every policy's final
# recall on a large deck is about 0, so none compares), up to SIZED_INTERACTIONS_CAP reviews (the evaluation's time
# grows with students x reviews x concepts: 30 students x 1,830 reviews on 610 concepts take about 9 s per policy
# on one core), but never fewer than one review per concept.
REVIEWS_PER_CONCEPT = 3
SIZED_INTERACTIONS_CAP = 5000
# ... and where that raises the reviews, fewer students so that students x reviews stays within
# SIZED_STUDENT_REVIEWS_CAP (or the unsized protocol's own product, if larger), never fewer than SIZED_MIN_STUDENTS
# (nor more than asked): the Decision Transformer's closed loop costs about 1.5 ms of one core per student-review on
# 610 concepts (its 20-step context is recomputed at every review), so 200 students x 1,830 reviews took about 9
# minutes per population on a 2-core machine (bench/real_deck.py), 54 x 1,830 take about 2.5.
SIZED_STUDENT_REVIEWS_CAP = 100_000
SIZED_MIN_STUDENTS = 30


class ProtocolError(ValueError):
    """An evaluation protocol that cannot be used; the message names the field."""


@dataclass(frozen=True)
class EvaluationProtocol:
    """students: held-out simulated students; seed: their cohort's seed; interactions: reviews per student;
    horizon_s: seconds after each student's last review at which true recall is measured (the evaluation's
    ``FINAL_RECALL_DELAY_S``, fixed)."""

    students: int = EVALUATION_STUDENTS
    seed: int = EVALUATION_SEED
    interactions: int = EVALUATION_INTERACTIONS
    horizon_s: float = FINAL_RECALL_DELAY_S

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EvaluationProtocol:
        """A protocol from stored JSON; missing keys take the defaults. ProtocolError naming the field."""
        data = dict(data or {})
        unknown = sorted(set(data) - {"students", "seed", "interactions", "horizon_s"})
        if unknown:
            raise ProtocolError(f"evaluation protocol: unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, (lo, hi) in EVALUATION_BOUNDS.items():
            if name not in data:
                continue
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ProtocolError(f"evaluation protocol: {name} must be an integer in [{lo}, {hi}], got {value!r}")
            values[name] = value
        if "horizon_s" in data and float(data["horizon_s"]) != FINAL_RECALL_DELAY_S:
            raise ProtocolError(
                f"evaluation protocol: horizon_s is fixed at {FINAL_RECALL_DELAY_S:g} s by the evaluation, "
                f"got {data['horizon_s']!r}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sized_for(self, *, num_concepts: int) -> EvaluationProtocol:
        """This protocol with enough reviews per student to meet every one of ``num_concepts`` concepts:
        ``max(interactions, min(REVIEWS_PER_CONCEPT * num_concepts, max(SIZED_INTERACTIONS_CAP, num_concepts)))``,
        within the evaluation's bounds (EVALUATION_BOUNDS). Where that raises the reviews, the students are reduced
        so that students x reviews stays within ``max(SIZED_STUDENT_REVIEWS_CAP, students x interactions)``, but
        never below ``min(students, SIZED_MIN_STUDENTS)``: e.g. 200 x 100 on 610 concepts -> 54 students x 1,830
        reviews. Seed and horizon are kept; a protocol that needs no more reviews is returned unchanged."""
        low, high = EVALUATION_BOUNDS["interactions"]
        wanted = min(REVIEWS_PER_CONCEPT * num_concepts, max(SIZED_INTERACTIONS_CAP, num_concepts))
        interactions = max(self.interactions, min(max(wanted, low), high))
        if interactions == self.interactions:
            return self
        budget = max(SIZED_STUDENT_REVIEWS_CAP, self.students * self.interactions)
        students = max(min(self.students, SIZED_MIN_STUDENTS), min(self.students, budget // interactions))
        return replace(self, students=students, interactions=interactions)

    @property
    def key(self) -> str:
        """A stable string naming the protocol (the key of PolicyModel.evaluations)."""
        return f"students={self.students},seed={self.seed},interactions={self.interactions},horizon_s={self.horizon_s:g}"

    @property
    def label(self) -> str:
        """One line for pages and messages."""
        return (f"{self.students} students, seed {self.seed}, {self.interactions} reviews each, "
                f"recall {self.horizon_s / 3600:g} h after the last review")


def fallback_key(protocol: EvaluationProtocol, num_concepts: int, rule: str = FALLBACK_POLICY) -> str:
    """The key of the fallback ``rule``'s evaluation under ``protocol`` over ``num_concepts`` concepts in
    ``Curriculum.fallback_evaluations`` (mean final recall is a mean over concepts: it depends on their number); the
    default rule's key names no rule (the keys stored before rules could be chosen)."""
    return f"{protocol.key},concepts={int(num_concepts)}" + ("" if rule == FALLBACK_POLICY else f",rule={rule}")


def protocol_of(metrics: Mapping[str, Any] | None) -> EvaluationProtocol | None:
    """The protocol an evaluation was run under, or None when it does not say (or says something unreadable)."""
    stored = (metrics or {}).get("protocol")
    if not isinstance(stored, Mapping):
        return None
    try:
        return EvaluationProtocol.from_dict(stored)
    except (ProtocolError, TypeError, ValueError):
        return None


def dt_mean(metrics: Mapping[str, Any] | None, name: str = "dt") -> float | None:
    """The mean of one policy ("dt" or a baseline) in an evaluation, or None."""
    try:
        return float(metrics["results"][name]["mean"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def lift(metrics: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per baseline in the evaluation: {"mean": dt - baseline, "ci95": [lo, hi], "paired": bool}.

    When the evaluation has the built-in students' family block (``metrics["families"]["builtin"]["paired"]``,
    written by ``training.rl.evaluation.family_block``: the per-student differences dt - baseline on the same
    students, times and dice, with their 95% normal interval), that is the lift (``"paired": True``), as the version's
    page shows it. Else (evaluations without families) the interval treats the two means as independent: half-width
    sqrt(h_dt^2 + h_baseline^2) from their stored 95% half-widths (conservative: the policies meet the same students,
    which correlates them positively; ``"paired": False``).
    """
    results = (metrics or {}).get("results") or {}
    dt = results.get("dt")
    if not isinstance(dt, Mapping) or "mean" not in dt:
        return {}
    families = (metrics or {}).get("families")
    builtin = families.get(BUILTIN) if isinstance(families, Mapping) else None
    paired = (builtin.get("paired") if isinstance(builtin, Mapping) else None) or {}
    out: dict[str, dict[str, Any]] = {}
    for name in LIFT_BASELINES:
        base = results.get(name)
        if not isinstance(base, Mapping) or "mean" not in base:
            continue
        same = paired.get(name)
        if isinstance(same, Mapping) and "mean" in same and len(same.get("ci95") or ()) == 2:
            out[name] = {"mean": float(same["mean"]), "ci95": [float(v) for v in same["ci95"]], "paired": True}
            continue
        diff = float(dt["mean"]) - float(base["mean"])
        half = math.hypot(_half_width(dt), _half_width(base))
        out[name] = {"mean": diff, "ci95": [diff - half, diff + half], "paired": False}
    return out


def _half_width(result: Mapping[str, Any]) -> float:
    lo, hi = (result.get("ci95") or [result["mean"], result["mean"]])[:2]
    return (float(hi) - float(lo)) / 2.0


# What the evaluation's fitted students ("students_like", family "fitted") had their FSRS-6 fitted to: a curriculum's
# review log (training on it, or on a dataset extracted from it; or ``--students-like CURRICULUM``), or the simulated
# pilot cohort of synthetic training (training.pipeline.build_synthetic_dataset fits the encoder to the pilot's log:
# then they are students like the simulated training cohort, not like any review log). Recorded by the pipeline in
# dt_lite_config.json's "extra" as "encoder_fitted_to" and in the evaluation as "students_like_fitted_to".
FITTED_TO_REVIEW_LOG = "review_log"
FITTED_TO_SIMULATED_PILOT = "simulated_pilot"
# (heading, detail) of that population on the pages and in the commands' output, by what it was fitted to; None: not
# recorded (a version trained before the record, without a training run that says)
STUDENTS_LIKE_LABELS: dict[str | None, tuple[str, str]] = {
    FITTED_TO_REVIEW_LOG: ("Students like the curriculum's own", "FSRS-6 fitted to its review log"),
    FITTED_TO_SIMULATED_PILOT: ("Students like the training cohort",
                                "FSRS-6 fitted to the simulated pilot of synthetic training, not to a review log"),
    None: ("Students like the log its encoder was fitted to", "FSRS-6 fitted to that log: the curriculum's review "
           "log, or the simulated pilot of synthetic training; this version does not record which"),
}
FITTED_TO = (FITTED_TO_REVIEW_LOG, FITTED_TO_SIMULATED_PILOT)
# A training run's data source -> what its encoder was fitted to (training.spec's sources), for versions whose config
# predates the record
_FITTED_TO_BY_SOURCE = {"synthetic": FITTED_TO_SIMULATED_PILOT, "review_log": FITTED_TO_REVIEW_LOG,
                        "dataset": FITTED_TO_REVIEW_LOG}


def students_like_label(fitted_to: str | None) -> tuple[str, str]:
    """(heading, detail) naming the fitted students of an evaluation whose FSRS-6 was fitted to ``fitted_to``
    (FITTED_TO_REVIEW_LOG, FITTED_TO_SIMULATED_PILOT, or None / anything else: not recorded)."""
    return STUDENTS_LIKE_LABELS.get(fitted_to, STUDENTS_LIKE_LABELS[None])


def encoder_fitted_to(policy: Any) -> str | None:
    """What a policy version's encoder was fitted to: its config's record (dt_lite_config.json's "extra":
    "encoder_fitted_to"), else what the data source of the training run that made it says ("synthetic": the simulated
    pilot; "review_log", "dataset": the curriculum's review log); None when neither says (a version registered from
    the command line before the record)."""
    extra = (getattr(policy, "config", None) or {}).get("extra")
    recorded = extra.get("encoder_fitted_to") if isinstance(extra, Mapping) else None
    if recorded in FITTED_TO:
        return recorded
    run = getattr(policy, "training_run", None)  # a reverse one-to-one: None (AttributeError) without one
    return _FITTED_TO_BY_SOURCE.get(getattr(run, "data_source", None) or "")


def students_like(metrics: Mapping[str, Any] | None, *, fitted_to: str | None = None) -> dict[str, Any] | None:
    """What an evaluation says about its fitted simulated students (FSRS-6 fitted to the log the version's encoder was
    fitted to: the "fitted" family of ``training.rl.students``), or None when it has no such block (the version's
    encoder has no fitted FSRS-6, or the evaluation predates it). Students like the curriculum's own when that log is
    the curriculum's review log; students like the training cohort when it is synthetic training's simulated pilot
    (``metrics["students_like_fitted_to"]``, else ``fitted_to``, the version's ``encoder_fitted_to``; None: not
    recorded): ``heading`` and ``detail`` say which (``students_like_label``).

    Reads ``metrics["students_like"]`` (``{policy: {"mean", "ci95"}}``, written by ``training.rl.evaluation.evaluate``
    whenever fitted parameters exist) and, when the evaluation also has it, ``metrics["families"]["fitted"]`` (the
    paired differences dt - policy on the same students, ``best_behaviour`` and ``gap_closed``). Returns::

        {"rows": [{"name", "mean", "ci95", "diff": {"mean", "ci95", "paired": bool} | None}, ...],
         "dt": float | None,                        # the DT's mean final recall there (a recall, in [0, 1])
         "lift": {baseline: row's "diff"},          # for the LIFT_BASELINES present, with a "dt"
         "gap_closed": float | None, "best_behaviour": str | None,
         "fitted_to": str | None, "heading": str, "detail": str}

    Rows: "dt" first, then the best mean first. ``diff`` is dt - policy (None for dt itself, or without a dt): the
    paired interval when the family block has one (narrower: same students, review times and dice), else the
    independent one as ``lift`` computes it (half-widths combined in quadrature).
    """
    block = (metrics or {}).get("students_like")
    if not isinstance(block, Mapping):
        return None
    results = {name: r for name, r in block.items() if isinstance(r, Mapping) and "mean" in r}
    if not results:
        return None
    fitted = ((metrics or {}).get("families") or {}).get("fitted")
    fitted = fitted if isinstance(fitted, Mapping) else {}
    paired = fitted.get("paired") if isinstance(fitted.get("paired"), Mapping) else {}
    dt = results.get("dt")
    rows = []
    for name, result in results.items():
        mean = float(result["mean"])
        diff = None
        if dt is not None and name != "dt":
            known = paired.get(name)
            if isinstance(known, Mapping) and "mean" in known:
                diff = {"mean": float(known["mean"]), "ci95": [float(v) for v in known["ci95"][:2]], "paired": True}
            else:
                d = float(dt["mean"]) - mean
                half = math.hypot(_half_width(dt), _half_width(result))
                diff = {"mean": d, "ci95": [d - half, d + half], "paired": False}
        rows.append({"name": name, "mean": mean, "ci95": [float(v) for v in (result.get("ci95") or [mean, mean])[:2]],
                     "diff": diff})
    rows.sort(key=lambda row: (row["name"] != "dt", -row["mean"]))
    gap = fitted.get("gap_closed")
    source = (metrics or {}).get("students_like_fitted_to")
    source = source if source in FITTED_TO else fitted_to if fitted_to in FITTED_TO else None
    heading, detail = students_like_label(source)
    return {"rows": rows, "dt": None if dt is None else float(dt["mean"]),
            "lift": {row["name"]: row["diff"] for row in rows if row["name"] in LIFT_BASELINES and row["diff"]},
            "gap_closed": None if gap is None else float(gap), "best_behaviour": fitted.get("best_behaviour"),
            "fitted_to": source, "heading": heading, "detail": detail}
