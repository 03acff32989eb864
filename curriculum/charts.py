"""The admin's pictures of the domain, as inline SVG drawn with the toolkit in svg.py: loss curves, evaluation
results, calibration, dataset distributions, a learner's review timeline and estimated recall.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.utils.safestring import SafeString

from .svg import PALETTE, Series, bar_chart, format_number, format_time, histogram, line_chart, quantile_strip

if TYPE_CHECKING:
    from .learner_history import RecallHistory


def loss_curve(*, loss_steps: Sequence[Sequence[float]] = (), loss_history: Sequence[float] = (),
               width: int = 640, height: int = 260) -> SafeString:
    """Training loss against the optimiser step (TrainingRun.loss_steps: [[step, loss], ...]); the per-epoch
    means (``loss_history``) are drawn as dots at each epoch's last step when the steps are known, else alone
    against the epoch."""
    steps = [(float(s), float(v)) for s, v in loss_steps]
    if steps:
        series = [Series(name="loss per step", points=steps)]
        if loss_history:
            per_epoch = steps[-1][0] / len(loss_history)
            series.append(Series(
                name="epoch mean", points=[((i + 1) * per_epoch, float(v)) for i, v in enumerate(loss_history)],
                markers=True, line=False,
                tooltips=[f"epoch {i + 1}: {v:.4f}" for i, v in enumerate(loss_history)],
            ))
        return line_chart(series=series, title="Training loss", x_label="optimiser step",
                          y_label="cross-entropy loss", width=width, height=height, css_class="loss-curve")
    points = [(float(i + 1), float(v)) for i, v in enumerate(loss_history)]
    return line_chart(series=[Series(name="epoch mean", points=points, markers=len(points) <= 60,
                                     tooltips=[f"epoch {i + 1}: {v:.4f}" for i, v in enumerate(loss_history)])],
                      title="Training loss", x_label="epoch", y_label="mean cross-entropy loss",
                      width=width, height=height, css_class="loss-curve")


def calibration_chart(*, reliability: dict[str, Sequence[dict]], title: str, width: int = 640,
                      height: int = 420) -> SafeString:
    """A reliability diagram: per predictor (in the given order), the (mean predicted, observed) recall of its
    non-empty probability bins (training.rl.calibration.reliability: ``{"count", "predicted", "observed"}``), as a
    line with dots (one bin: a dot), over the dashed diagonal of perfect calibration; both axes 0 to 1."""
    series = [Series(name="perfect calibration", points=[(0.0, 0.0), (1.0, 1.0)], color="#999999", dashed=True)]
    for name, bins in reliability.items():
        shown = [b for b in bins or () if b.get("count") and b.get("predicted") is not None]
        series.append(Series(
            name=name, points=[(float(b["predicted"]), float(b["observed"])) for b in shown], markers=True,
            tooltips=[f"{name}: predicted {b['predicted']:.3f}, observed {b['observed']:.3f} ({b['count']} reviews)"
                      for b in shown],
        ))
    return line_chart(series=series, title=title, x_label="predicted recall (mean of the bin)",
                      y_label="observed recall", width=width, height=height, y_range=(0.0, 1.0),
                      css_class="calibration-plot")


def ordered_policies(results: dict) -> list[str]:
    """The one order of an evaluation's policies on every page: the Decision Transformer ("dt") first, then the
    baselines in the order evaluate_policy lists them, the oracle (a ceiling, not a baseline) last."""
    names = list(results)
    return sorted(names, key=lambda name: (name != "dt", name == "oracle", names.index(name)))


def evaluation_chart(*, metrics: dict, width: int = 640, height: int = 260) -> SafeString:
    """A version's closed-loop evaluation ({"metric", "results": {policy: {"mean", "ci95"}}}) as bars with
    95% intervals; the Decision Transformer ("dt") in the accent colour."""
    results = (metrics or {}).get("results") or {}
    names = ordered_policies(results)
    values = [float(results[n].get("mean", float("nan"))) for n in names]
    intervals = [tuple(results[n]["ci95"]) if results[n].get("ci95") else None for n in names]
    metric = (metrics or {}).get("metric", "metric").replace("_", " ")
    return bar_chart(labels=names, values=values, intervals=intervals, highlight="dt", title=f"Evaluation: {metric}",
                     x_label="policy", y_label=metric, width=width, height=height,
                     y_range=(0.0, 1.0) if all(0 <= v <= 1 for v in values if math.isfinite(v)) else None)


def distribution_chart(*, summary: dict, title: str, x_label: str, width: int = 640,
                       integers: bool = False) -> SafeString:
    """A statistics summary (training.rl.dataset_statistics.dataset_statistics) as a histogram when it has bins,
    else as a box plot of its quantiles. ``integers``: whole-number values (episode lengths): integer ticks and bins
    labelled by the lengths they hold. When every value is the same (one episode, say) one bin, labelled with that
    value, whatever bins the summary stored (statistics stored before dataset_statistics made one bin there hold
    twenty bins of that one value)."""
    bins = (summary or {}).get("histogram")
    if bins and bins.get("counts"):
        edges, counts, labels = bins["edges"], bins["counts"], None
        low, high = (summary or {}).get("min"), (summary or {}).get("max")
        if low is not None and low == high:
            if len(counts) > 1:
                edges, counts = [float(low) - 0.5, float(low) + 0.5], [sum(counts)]
            if not integers:  # (whole numbers: the histogram's own label of that one bin is the value)
                labels = [format_number(float(low))]
        return histogram(edges=edges, counts=counts, title=title, x_label=x_label, y_label="episodes", width=width,
                         integers=integers, bin_labels=labels)
    return quantile_strip(summary=summary or {}, title=title, x_label=x_label, width=width)


def review_timeline(*, history: RecallHistory) -> SafeString:
    """A learner's reviews (learner_history.RecallHistory) as dots against time, one row per reviewed concept
    (in action order, then any others by key); correct and wrong reviews in two colours."""
    h = history
    keys = sorted({key for _, key, _, _ in h.reviews}, key=lambda k: (k not in h.concepts, h.concepts.index(k)
                                                                       if k in h.concepts else k))
    row = {key: i for i, key in enumerate(keys)}

    def marks(correct: bool) -> Series:
        chosen = [r for r in h.reviews if r[2] is correct]
        return Series(
            name="correct" if correct else "wrong", points=[(t, row[key]) for t, key, _, _ in chosen],
            color=PALETTE[2] if correct else PALETTE[1], markers=True, line=False,
            tooltips=[f"{format_time(t)} UTC {key}: {'correct' if c else 'wrong'}"
                      + (f", grade {g}" if g else "") for t, key, c, g in chosen],
        )

    return line_chart(series=[marks(True), marks(False)], title="Review timeline", x_label="time (UTC)",
                      y_label="concept", x_time=True, y_ticks=[(i, key) for key, i in row.items()],
                      height=max(160, 90 + 18 * len(keys)), width=900)


def estimated_recall(*, history: RecallHistory) -> SafeString:
    """Each reviewed concept's estimated recall over time (learner_history.RecallHistory), one line a concept."""
    series = [Series(name=key, points=list(zip(history.times.tolist(), history.recall[:, k].tolist())))
              for k, key in enumerate(history.concepts)]
    return line_chart(series=series, title="Estimated recall per concept (serving encoder)",
                      x_label="time (UTC)", y_label="estimated recall", x_time=True, y_range=(0.0, 1.0),
                      width=900, height=300)


def experiment_chart(*, arms: Sequence, width: int = 640, height: int = 260) -> SafeString:
    """Each arm's recall at the next review over the days of an experiment (cumulative), a solid line per arm with
    its 95% interval as dashed lines of the same colour (curriculum.experiments.outcomes.ArmOutcome.timeline)."""
    series = []
    for i, arm in enumerate(arms):
        color = PALETTE[i % len(PALETTE)]
        days = [(_day_seconds(day), mean) for day, mean in arm.timeline if mean.mean is not None]
        name = f"{arm.label} ({'v' + str(arm.version) if arm.version else 'fallback'})"
        series.append(Series(name=name, points=[(x, m.mean) for x, m in days], color=color, markers=len(days) <= 60,
                             tooltips=[f"{name}: {m.mean:.3f} ({m.n} learners)" for _, m in days]))
        bounded = [(x, m) for x, m in days if m.ci95]
        for side in (0, 1):
            series.append(Series(name=f"{arm.label} 95% {'low' if side == 0 else 'high'}",
                                 points=[(x, m.ci95[side]) for x, m in bounded], color=color, dashed=True))
    return line_chart(series=[s for s in series if s.points], title="Recall at the next review, by arm (cumulative)",
                      x_label="day", y_label="recall at the next review", width=width, height=height, x_time=True,
                      y_range=(0.0, 1.0), css_class="experiment-chart")


def experiment_traffic_chart(*, arms: Sequence, width: int = 420, height: int = 170) -> SafeString:
    """The recommendations each arm actually served (shadow choices are not served)."""
    return bar_chart(labels=[a.label for a in arms], values=[float(a.decisions) for a in arms],
                     title="Traffic served per arm", x_label="arm", y_label="recommendations served", width=width,
                     height=height)


def _day_seconds(day: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp()
