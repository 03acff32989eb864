"""The server-side SVG charts, the toolkit (svg.py) and the domain's pictures (charts.py): valid SVG, labelled axes,
any number of points, escaped text."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from curriculum import charts, svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(drawn: str) -> ET.Element:
    root = ET.fromstring(str(drawn))  # raises on invalid XML
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    return root


def texts(root: ET.Element, cls: str) -> list[str]:
    """The text of the <text> elements of class ``cls`` or inside a group of that class."""
    return [t.text for el in root.iter() if el.get("class") == cls for t in el.iter(f"{SVG}text")]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 5000])
def test_line_chart_is_valid_svg_with_labelled_axes_for_any_number_of_points(n):
    points = [(float(i), 1.0 / (i + 1)) for i in range(n)]
    root = parse(svg.line_chart(series=[svg.Series("loss", points)], title="Loss", x_label="optimiser step",
                                y_label="loss"))
    assert texts(root, "x-label") == ["optimiser step"] and texts(root, "y-label") == ["loss"]
    assert len(texts(root, "y-ticks")) >= 2 and len(texts(root, "x-ticks")) >= (1 if n == 1 else 2)
    polylines = list(root.iter(f"{SVG}polyline"))
    if n >= 2:
        coords = polylines[0].get("points").split()
        assert 2 <= len(coords) <= svg.MAX_LINE_POINTS
    if n == 0:
        assert texts(root, "no-data") == ["no data"]
    if n == 1:
        assert len(list(root.iter(f"{SVG}circle"))) == 1  # one point is drawn as a dot


def test_thinning_keeps_the_ends_and_the_spikes():
    points = [(float(i), 1.0) for i in range(10_000)]
    points[4321] = (4321.0, 50.0)
    thinned = svg.thin(points, limit=200)
    assert len(thinned) <= 200
    assert thinned[0] == points[0] and thinned[-1] == points[-1] and (4321.0, 50.0) in thinned


def test_points_stay_inside_the_plot_area():
    drawn = svg.line_chart(series=[svg.Series("a", [(0, -3.0), (10, 7.5), (20, 2.0)])], title="t", x_label="x",
                          y_label="y", width=400, height=200)
    coords = [tuple(map(float, c.split(","))) for c in next(parse(drawn).iter(f"{SVG}polyline")).get("points").split()]
    assert all(svg.PAD_LEFT <= x <= 400 - svg.PAD_RIGHT and svg.PAD_TOP <= y <= 200 - svg.PAD_BOTTOM
               for x, y in coords)


def test_text_is_escaped():
    drawn = svg.bar_chart(labels=["<script>"], values=[1.0], title='a "b" & <c>', x_label="x<", y_label="y&")
    root = parse(drawn)
    assert "<script>" not in str(drawn) and root.get("aria-label") == 'a "b" & <c>'


def test_bar_chart_draws_intervals_and_refuses_mismatched_input():
    root = parse(svg.bar_chart(labels=["dt", "random"], values=[0.8, 0.5], intervals=[(0.7, 0.9), None],
                               title="Evaluation", x_label="policy", y_label="recall", y_range=(0, 1)))
    assert len([r for r in root.iter(f"{SVG}rect") if r.get("class") == "bar"]) == 2
    assert len([p for p in root.iter(f"{SVG}path") if p.get("class") == "interval"]) == 1
    with pytest.raises(ValueError, match="2 labels for 1 values"):
        svg.bar_chart(labels=["a", "b"], values=[1.0], title="t", x_label="x", y_label="y")


def test_histogram_checks_its_edges():
    root = parse(svg.histogram(edges=[0, 1, 2, 3], counts=[4, 0, 2], title="Returns", x_label="return"))
    assert texts(root, "x-label") == ["return"]
    with pytest.raises(ValueError, match="expected 4 edges"):
        svg.histogram(edges=[0, 1], counts=[1, 2, 3], title="t", x_label="x")


def test_distribution_chart_falls_back_to_quantiles_without_bins():
    summary = {"mean": 2.0, "std": 1.0, "min": 0.0, "max": 5.0, "p10": 0.5, "p50": 2.0, "p90": 4.0}
    assert "quantile-strip" in charts.distribution_chart(summary=summary, title="t", x_label="x")
    with_bins = {**summary, "histogram": {"edges": [0, 2.5, 5], "counts": [3, 1]}}
    assert "histogram" in charts.distribution_chart(summary=with_bins, title="t", x_label="x")
    parse(charts.distribution_chart(summary={"mean": None}, title="empty", x_label="x"))


def bar_titles(root: ET.Element) -> list[str]:
    return [t.text for r in root.iter(f"{SVG}rect") if r.get("class") == "bar" for t in r.iter(f"{SVG}title")]


def test_one_episode_length_is_one_bin_labelled_with_that_length():
    """An extraction of one learner's 6,220 reviews: one bin "6220" and integer ticks, not twenty bins of
    "6.22e+03 to 6.22e+03" around it, whether its statistics are new (one bin) or stored before (numpy's 20 bins
    over 6219.5 to 6220.5)."""
    summary = {"mean": 6220.0, "std": 0.0, "min": 6220.0, "max": 6220.0, "p10": 6220.0, "p50": 6220.0, "p90": 6220.0}
    new = {**summary, "histogram": {"edges": [6219.5, 6220.5], "counts": [1]}}
    old = {**summary, "histogram": {"edges": [6219.5 + 0.05 * i for i in range(21)],
                                    "counts": [0] * 10 + [1] + [0] * 9}}
    for stored in (new, old):
        drawn = charts.distribution_chart(summary=stored, title="Episode lengths", x_label="reviews per episode",
                                          integers=True)
        root = parse(drawn)
        assert bar_titles(root) == ["6220: 1"]
        assert "e+" not in str(drawn) and "6220" in texts(root, "x-ticks")
        assert texts(root, "y-ticks") == ["0", "1"]  # a count of episodes: no 0.2 of one


def test_integer_bins_are_labelled_by_the_whole_lengths_they_hold():
    from training.rl.dataset_statistics import histogram

    lengths = [float(n) for n in range(12_000, 12_100)] + [12_099.0]
    bins = histogram(__import__("numpy").array(lengths), integers=True)
    summary = {"min": 12_000.0, "max": 12_099.0, "histogram": bins}
    root = parse(charts.distribution_chart(summary=summary, title="Episode lengths", x_label="reviews per episode",
                                           integers=True))
    titles = bar_titles(root)
    assert titles[0] == "12000 to 12004: 5" and titles[-1] == "12095 to 12099: 6" and len(titles) == 20
    assert all(label.isdigit() for label in texts(root, "x-ticks"))  # plain integers, not 12k
    # stored float edges (older statistics): the lengths each bin holds
    older = {"min": 10.0, "max": 100.0, "histogram": {"edges": [10.0, 14.5, 19.0, 100.0], "counts": [5, 4, 82]}}
    titles = bar_titles(parse(charts.distribution_chart(summary=older, title="t", x_label="x", integers=True)))
    assert titles == ["10 to 14: 5", "15 to 18: 4", "19 to 100: 82"]


def test_a_distribution_of_one_value_is_one_bin_labelled_with_it():
    summary = {"mean": 0.75, "std": 0.0, "min": 0.75, "max": 0.75, "p10": 0.75, "p50": 0.75, "p90": 0.75,
               "histogram": {"edges": [0.25, 1.25], "counts": [3]}}
    assert bar_titles(parse(charts.distribution_chart(summary=summary, title="Returns", x_label="return"))) == [
        "0.75: 3"]


def test_loss_curve_is_per_step_when_steps_are_known_else_per_epoch():
    per_step = parse(charts.loss_curve(loss_steps=[[10, 2.0], [20, 1.5], [30, 1.2]], loss_history=[1.6]))
    assert texts(per_step, "x-label") == ["optimiser step"]
    per_epoch = parse(charts.loss_curve(loss_history=[2.0, 1.0]))
    assert texts(per_epoch, "x-label") == ["epoch"]


def _circles(root):
    return [(float(c.get("cx")), float(c.get("cy"))) for c in root.iter(f"{SVG}circle")]


def test_a_one_step_loss_curve_has_distinct_y_ticks_around_the_value_and_its_step_on_the_x_axis():
    # a one-step run: one step at 8 and an epoch mean equal to it but for float noise
    root = parse(charts.loss_curve(loss_steps=[[8, 2.96601]], loss_history=[2.96598]))
    y_labels = texts(root, "y-ticks")
    assert len(y_labels) >= 3 and len(set(y_labels)) == len(y_labels), y_labels
    y_values = [float(label) for label in y_labels]
    assert min(y_values) < 2.966 < max(y_values) and max(y_values) - min(y_values) < 1.0  # around it, not 0..10
    assert texts(root, "x-ticks") == ["8"]  # the one step, not 7..9 in halves
    (x1, y1), (x2, y2) = _circles(root)
    assert abs(y1 - y2) < 1 and abs(x1 - x2) < 1  # equal values drawn at one place


def test_flat_series_and_small_integer_ranges_get_sensible_axes():
    flat = parse(svg.line_chart(series=[svg.Series("loss", [(1, 0.5), (2, 0.5), (3, 0.5)])], title="t",
                                x_label="epoch", y_label="loss"))
    polyline = next(flat.iter(f"{SVG}polyline")).get("points").split()
    assert len({point.split(",")[1] for point in polyline}) == 1  # a flat line is drawn flat
    y_labels = texts(flat, "y-ticks")
    assert len(set(y_labels)) == len(y_labels) >= 3
    assert texts(flat, "x-ticks") == ["1", "2", "3"]  # whole epochs, no 1.5
    zero = parse(svg.line_chart(series=[svg.Series("z", [(0, 0.0)])], title="t", x_label="x", y_label="y"))
    assert "0" in texts(zero, "y-ticks") and len(set(texts(zero, "y-ticks"))) == len(texts(zero, "y-ticks"))
    # labels closer than format_number shows get the decimals that tell them apart
    assert svg.tick_labels([2.9660, 2.9662, 2.9664], svg.format_number) == ["2.9660", "2.9662", "2.9664"]
    bars = parse(svg.bar_chart(labels=["a", "b"], values=[5.0, 5.0], title="t", x_label="x", y_label="y"))
    assert len(set(texts(bars, "y-ticks"))) == len(texts(bars, "y-ticks"))


def test_nice_ticks_are_round_and_cover_the_range():
    ticks = svg.nice_ticks(0.13, 0.87)
    assert ticks[0] <= 0.13 and ticks[-1] >= 0.87
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1 and steps.pop() in {0.1, 0.2, 0.25, 0.5}
    assert svg.nice_ticks(3.0, 3.0)[0] < 3.0 < svg.nice_ticks(3.0, 3.0)[-1]
    with pytest.raises(ValueError):
        svg.nice_ticks(0.0, math.inf)


def test_time_axis_labels_dates():
    day = 1_700_006_400.0  # 2023-11-15 00:00 UTC
    root = parse(svg.line_chart(series=[svg.Series("r", [(day, 0.2), (day + 5 * 86400, 0.9)])], title="t",
                                x_label="time (UTC)", y_label="recall", x_time=True, y_range=(0, 1)))
    assert any(label.startswith("2023-11-") for label in texts(root, "x-ticks"))


def test_the_orchestrator_and_the_version_page_draw_the_policies_in_one_order():
    from curriculum.views import metrics_chart

    # as evaluate_policy lists them: the baselines in its order (not alphabetical), oracle a ceiling
    results = {"oracle": {"mean": 0.9}, "random": {"mean": 0.3}, "leitner": {"mean": 0.5}, "dt": {"mean": 0.6},
               "lowest_recall": {"mean": 0.55}}
    expected = ["dt", "random", "leitner", "lowest_recall", "oracle"]
    assert charts.ordered_policies(results) == expected
    assert [bar["name"] for bar in metrics_chart(metrics={"results": results})["bars"]] == expected
    root = parse(charts.evaluation_chart(metrics={"metric": "recall", "results": results}))
    assert texts(root, "x-ticks") == expected


def test_long_y_labels_fit_and_the_legend_never_covers_the_title():
    keys = [f"{1_700_000_000_000 + i}" for i in range(3)]  # 13-digit concept ids
    root = parse(svg.line_chart(series=[svg.Series("r", [(1.0, 0.0)])], title="Review timeline", x_label="t",
                                y_label="concept", y_ticks=[(i, k) for i, k in enumerate(keys)]))
    axis_x = float(root.find(f".//{SVG}g[@class='axes']/{SVG}line").get("x1"))
    assert axis_x - 6 >= 6.5 * 13  # the labels end 6 px left of the axis: room for 13 digits
    many = [svg.Series(f"concept-{i}", [(0.0, 0.1), (1.0, 0.2)]) for i in range(40)]
    title = "Estimated recall per concept (serving encoder)"
    root = parse(svg.line_chart(series=many, title=title, x_label="t", y_label="r", width=900))
    legend_x = [float(el.get("x")) for el in root.iter(f"{SVG}rect")] + [
        float(el.get("x")) for el in root.iter(f"{SVG}text") if el.get("class") == "legend-more"]
    assert legend_x and min(legend_x) >= svg.PAD_LEFT + 7.5 * len(title)
    assert any(el.get("class") == "legend-more" for el in root.iter(f"{SVG}text"))


def test_the_calibration_chart_draws_every_predictor_over_the_diagonal_with_labelled_ticks():
    bins = lambda *pts: [{"count": c, "predicted": p, "observed": o} for p, o, c in pts]  # noqa: E731
    drawn = str(charts.calibration_chart(title="Calibration", reliability={
        "model": bins((0.3, 0.35, 10), (0.8, 0.75, 40)),
        "avg": bins((0.7, 0.72, 50)),  # a constant predictor: one bin, drawn as a dot
        "moving_avg": bins((0.5, 0.4, 5), (0.9, 0.85, 5)) + [{"count": 0, "predicted": None, "observed": None}],
        "fsrs6_default": [],
    }))
    root = ET.fromstring(drawn)
    assert int(root.get("width")) >= 500
    drawn = {el.get("data-series") for el in root.iter()
             if el.get("data-series") and (el.tag.endswith("polyline") or len(el))}  # a line, or dots
    assert drawn == {"perfect calibration", "model", "avg", "moving_avg"}
    diagonal = next(el for el in root.iter() if el.get("data-series") == "perfect calibration")
    assert diagonal.get("stroke-dasharray")
    texts = [el.text for el in root.iter() if el.text]
    for label in ("0", "0.4", "1", "predicted recall (mean of the bin)", "observed recall", "fsrs6_default"):
        assert label in texts


@pytest.mark.parametrize("start, days, label, check", [
    ("2026-01-10", 100, "Feb 2026", lambda m: m.day == 1 and m.hour == 0),  # months start on the 1st
    ("2026-01-07", 25, "2026-01-12", lambda m: m.weekday() == 0 and m.hour == 0),  # weeks start on Mondays
    ("2019-05-01", 6 * 365, "2020", lambda m: (m.month, m.day, m.hour) == (1, 1, 0)),  # years on 1 January
    ("2026-01-07", 3, "2026-01-08", lambda m: m.hour == m.minute == 0),  # days at midnight
])
def test_a_time_axis_has_calendar_ticks_labelled_at_their_precision(start, days, label, check):
    import datetime as dt

    low = dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc).timestamp() + 3 * 3600 + 17
    high = low + days * 86400
    root = parse(svg.line_chart(series=[svg.Series("r", [(low, 0.2), (high, 0.9)])], title="t",
                                x_label="time (UTC)", y_label="recall", x_time=True, y_range=(0, 1)))
    labels = texts(root, "x-ticks")
    assert 2 <= len(labels) <= 5 and label in labels and len(set(labels)) == len(labels)
    ticks = svg.time_ticks(low, high)
    assert all(check(dt.datetime.fromtimestamp(t, tz=dt.timezone.utc)) for t in ticks)
    assert all(low <= t <= high for t in ticks)


def test_the_experiment_charts_draw_each_arms_outcome_with_its_interval_and_the_traffic_served():
    from curriculum.experiments.outcomes import ArmOutcome, Mean

    def arm(label, version, decisions, means):
        timeline = [(f"2026-01-0{d + 5}", Mean(m, (m - 0.05, m + 0.05), 40, 0.2)) for d, m in enumerate(means)]
        return ArmOutcome(1, label, version, label == "A", 50, decisions, 0, 40, {}, timeline)

    arms = [arm("A", None, 300, [0.50, 0.52, 0.51]), arm("B", 2, 120, [0.60, 0.58, 0.61])]
    root = parse(charts.experiment_chart(arms=arms))
    lines = list(root.iter(f"{SVG}polyline"))
    solid = [p for p in lines if p.get("stroke-dasharray") is None]
    dashed = [p for p in lines if p.get("stroke-dasharray") is not None]
    assert [p.find(f"{SVG}title").text for p in solid] == ["A (fallback)", "B (v2)"]
    assert sorted(p.find(f"{SVG}title").text for p in dashed) == ["A 95% high", "A 95% low", "B 95% high", "B 95% low"]
    assert all(len(p.get("points").split()) == 3 for p in lines)  # one point a day

    traffic = parse(charts.experiment_traffic_chart(arms=arms))
    bars = [r for r in traffic.iter(f"{SVG}rect") if r.get("class") == "bar"]
    heights = [float(b.get("height")) for b in bars]
    assert len(bars) == 2 and heights[0] / heights[1] == pytest.approx(300 / 120, rel=0.02)  # what each served
