"""Comparing policy versions of one curriculum: what differs between them (training parameters, the data they
learned from and its snapshot, final loss), their loss curves overlaid, and one evaluation axis scaled to their
results, so that the orchestrator's compare page shows what the operator decides with rather than every field."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.utils.safestring import SafeString

from curriculum.charts import ordered_policies
from curriculum.models import PolicyModel
from curriculum.svg import Series, line_chart, nice_ticks

from .spec import TrainingSpec

# The model's and the optimiser's parameters, as the exported config records them (training.rl.artifacts).
MODEL_PARAMETERS = ("hidden_dim", "num_layers", "num_heads", "attention_window", "context_length", "learning_rate",
                    "target_return",
                    "target_return_quantile", "temperature", "top_k", "device")
MISSING = "-"


@dataclass(frozen=True)
class Row:
    """One compared fact: ``values`` one per version, in the versions' order (``MISSING`` when a version does not
    record it); ``differs`` when at least two versions record different values (or one records it and one not)."""

    group: str  # "parameters", "data" or "result"
    name: str
    values: tuple[Any, ...]

    @property
    def differs(self) -> bool:
        return len(set(map(repr, self.values))) > 1


@dataclass(frozen=True)
class Comparison:
    """What ``compare_versions`` found. ``differences``: rows whose values differ, parameters then data then
    result; ``same``: the rows every version shares (shown folded, name = value); ``loss_chart``: the loss curves
    overlaid (None when no version recorded a loss); ``evaluation_range``: (low, high) of the evaluation axis that
    holds every compared version's means and 95% intervals (``evaluation_range``), None without evaluations."""

    versions: tuple[PolicyModel, ...]
    differences: tuple[Row, ...]
    same: tuple[Row, ...]
    loss_chart: SafeString | None
    evaluation_range: tuple[float, float] | None


def _run(policy: PolicyModel):
    return getattr(policy, "training_run", None)


def final_loss(policy: PolicyModel) -> float | None:
    """The last epoch's mean training loss (cross-entropy, nats): the run's ``loss``, else the last of its or the
    config's ``loss_history``; None when nothing recorded one."""
    run = _run(policy)
    if run is not None and run.loss is not None:
        return float(run.loss)
    history = (getattr(run, "loss_history", None) or (policy.config or {}).get("loss_history") or [])
    return float(history[-1]) if history else None


def _parameters(policy: PolicyModel) -> dict[str, Any]:
    run, config = _run(policy), policy.config or {}
    values: dict[str, Any] = {}
    if run is not None:
        values.update({name: getattr(run, name) for name in TrainingSpec.names() if hasattr(run, name)})
    values.update({name: config[name] for name in MODEL_PARAMETERS if name in config})
    if config and values.get("attention_window") is None:  # absent or null in a config: full attention
        values["attention_window"] = "full"
    for name in ("epochs", "batch_size", "seed"):  # a command-line version records them in its config only
        if name not in values and name in config:
            values[name] = config[name]
    return values


def _data(policy: PolicyModel) -> dict[str, Any]:
    """What the version learned from: data source, the dataset snapshot (version, rows read, when extracted), and the
    trajectories' size (metrics["training_data"]: episodes, i.e. learners, steps, concepts)."""
    run = _run(policy)
    values: dict[str, Any] = {}
    if run is not None:
        values["data source"] = run.get_data_source_display()
        dataset = run.dataset
        if dataset is not None:
            values["dataset snapshot"] = (f"dataset v{dataset.version}, extracted "
                                          f"{dataset.finished_at:%Y-%m-%d %H:%M:%S %Z}" if dataset.finished_at
                                          else f"dataset v{dataset.version}")
            values["reviews read"] = dataset.rows_read
        elif run.data_source == run.DataSource.REVIEW_LOG and run.started_at is not None:
            values["dataset snapshot"] = f"the review log as of {run.started_at:%Y-%m-%d %H:%M:%S %Z}"
    summary = (policy.metrics or {}).get("training_data") or {}
    for key, name in (("episodes", "episodes (learners)"), ("steps", "trajectory steps"), ("concepts", "concepts")):
        if key in summary:
            values[name] = summary[key]
    if "concepts" not in summary and (policy.config or {}).get("concept_keys"):
        values["concepts"] = len(policy.config["concept_keys"])
    return values


def _rows(group: str, per_version: Sequence[Mapping[str, Any]]) -> list[Row]:
    names = list(dict.fromkeys(name for values in per_version for name in values))
    return [Row(group=group, name=name, values=tuple(values.get(name, MISSING) for values in per_version))
            for name in names]


def loss_curves(policies: Sequence[PolicyModel], *, width: int = 760, height: int = 280) -> SafeString | None:
    """The versions' training losses overlaid, one line per version, on an axis that covers their data: against
    the optimiser step when every version recorded its steps (``TrainingRun.loss_steps``), else the per-epoch means
    against the epoch. None when no version recorded a loss."""
    steps = [list(getattr(_run(p), "loss_steps", None) or []) for p in policies]
    if all(steps):
        series = [Series(name=f"v{p.version}", points=[(float(s), float(v)) for s, v in points])
                  for p, points in zip(policies, steps)]
        x_label, y_label = "optimiser step", "cross-entropy loss"
    else:
        histories = [getattr(_run(p), "loss_history", None) or (p.config or {}).get("loss_history") or []
                     for p in policies]
        if not any(histories):
            return None
        series = [Series(name=f"v{p.version}", points=[(float(i + 1), float(v)) for i, v in enumerate(history)],
                         markers=len(history) <= 60)
                  for p, history in zip(policies, histories) if history]
        x_label, y_label = "epoch", "mean cross-entropy loss"
    return line_chart(series=series, title="Training loss, overlaid", x_label=x_label, y_label=y_label,
                      width=width, height=height, css_class="loss-curve compare-loss")


def evaluation_range(evaluations: Sequence[Mapping[str, Any] | None]) -> tuple[float, float] | None:
    """The y axis (low, high) for the evaluations' charts side by side: round ticks (``svg.nice_ticks``) around
    the lowest 95% bound and the highest one of every policy of every evaluation, clipped to [0, 1] (a recall),
    so differences of a few hundredths are visible and the charts compare. None when none has results."""
    bounds: list[float] = []
    for metrics in evaluations:
        results = (metrics or {}).get("results") or {}
        for name in ordered_policies(results):
            result = results[name] or {}
            if "mean" not in result:
                continue
            bounds += [float(v) for v in (result.get("ci95") or [result["mean"]] * 2)[:2]] + [float(result["mean"])]
    bounds = [v for v in bounds if math.isfinite(v)]
    if not bounds:
        return None
    low, high = min(bounds), max(bounds)
    if high - low < 0.02:  # one value, or values a tick label cannot tell apart: a 0.02-wide window around them
        low, high = (low + high) / 2 - 0.01, (low + high) / 2 + 0.01
    ticks = nice_ticks(low, high)
    return max(0.0, ticks[0]), min(1.0, ticks[-1])


def compare_versions(*, policies: Sequence[PolicyModel],
                     evaluations: Sequence[Mapping[str, Any] | None] | None = None) -> Comparison:
    """Compare ``policies`` (two or more versions, in the order shown; their ``training_run`` and its ``dataset``
    best selected with them): parameters (the run's TrainingSpec fields and the exported model's), data (source,
    dataset snapshot, size) and result (final loss, nats), split into what differs and what every version shares;
    the loss curves overlaid; ``evaluations`` (one per version, e.g. each under the curriculum's protocol, None
    where a version has none) give the common evaluation axis. ValueError for fewer than two versions."""
    policies = tuple(policies)
    if len(policies) < 2:
        raise ValueError(f"compare_versions: expected two or more versions, got {len(policies)}")
    rows = [*_rows("parameters", [_parameters(p) for p in policies]),
            *_rows("data", [_data(p) for p in policies]),
            Row(group="result", name="final training loss",
                values=tuple(MISSING if (v := final_loss(p)) is None else round(v, 4) for p in policies))]
    return Comparison(
        versions=policies,
        differences=tuple(row for row in rows if row.differs),
        same=tuple(row for row in rows if not row.differs),
        loss_chart=loss_curves(policies),
        evaluation_range=evaluation_range(evaluations or []),
    )
