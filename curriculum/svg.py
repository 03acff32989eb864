"""A small SVG chart toolkit for the operator's pages: inline SVG drawn on the server, no JavaScript, no external
files, no build step. It knows nothing of the domain; charts.py draws the domain's pictures with it.

Each chart (``line_chart``, ``bar_chart``, ``histogram``, ``quantile_strip``) returns a ``SafeString`` holding one
``<svg>`` element with ``role="img"``, an ``aria-label`` (the title), a ``<title>``, labelled axes with tick
values, and a ``<title>`` tooltip on every mark. All text is escaped. Any number of points is accepted: a line
with more than ``MAX_LINE_POINTS`` points is thinned to that many (first and last kept; min/max per bucket, so
spikes stay visible), an empty series draws an empty frame that says "no data".
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colours of the Django admin's palette, in the order series take them.
PALETTE = ("#417690", "#ba2121", "#5b8c2a", "#c18a00", "#7a4fa0", "#2b8a8a", "#8a5a2b", "#666666")
MAX_LINE_POINTS = 1200
DASH = ' stroke-dasharray="6 4"'
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 64, 16, 30, 44
Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One line or set of marks: ``points`` are (x, y) pairs in data units; ``color`` defaults to the palette."""

    name: str
    points: Sequence[tuple[float, float]]
    color: str | None = None
    markers: bool = False  # draw a dot per point (and no line when ``line`` is False)
    line: bool = True
    tooltips: Sequence[str] = field(default=())  # one per point, else "name: x, y"
    dashed: bool = False  # a reference line (e.g. perfect calibration), drawn dashed


# ------------------------------------------------------------------------------------------------ scales
def nice_ticks(low: float, high: float, *, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 x 10^k) covering [low, high]; equal ends widen."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"nice_ticks: expected finite bounds, got {low!r}, {high!r}")
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step + 1e-9) * step
    ticks = [round(first, 12)]
    while ticks[-1] < high - step * 1e-9:  # until a tick reaches the top
        ticks.append(round(first + len(ticks) * step, 12))
    return ticks


def format_number(value: float) -> str:
    """A tick label: integers without decimals, else at most 3 significant decimals; 1.2k / 3.4M for large."""
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}"


def format_time(value: float) -> str:
    """A time axis label from seconds since the epoch (UTC): date, plus the time when it is not midnight."""
    moment = dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d") if moment.hour == moment.minute == 0 else moment.strftime("%m-%d %H:%M")


# Calendar steps for a time axis, finest first: (unit, how many). Minutes, hours and days are fixed lengths;
# weeks start on Mondays, months on the 1st, years on 1 January (all UTC).
TIME_STEPS = (("minute", 1), ("minute", 5), ("minute", 15), ("minute", 30), ("hour", 1), ("hour", 3), ("hour", 6),
              ("hour", 12), ("day", 1), ("day", 2), ("week", 1), ("week", 2), ("month", 1), ("month", 2),
              ("month", 3), ("month", 6), ("year", 1), ("year", 2), ("year", 5), ("year", 10), ("year", 25),
              ("year", 50), ("year", 100))
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30.44 * 86400,
                 "year": 365.25 * 86400}
_UNIT_LABEL = {"minute": "%m-%d %H:%M", "hour": "%m-%d %H:%M", "day": "%Y-%m-%d", "week": "%Y-%m-%d",
               "month": "%b %Y", "year": "%Y"}
_MONDAY = 4 * 86400  # 1970-01-05, the first Monday after the epoch


def _calendar_ticks(low: float, high: float, unit: str, n: int) -> list[float]:
    """Every ``n``-th calendar boundary of ``unit`` (UTC) in [low, high], in seconds since the epoch."""
    if unit in ("minute", "hour", "day", "week"):
        step = _UNIT_SECONDS[unit] * n
        origin = _MONDAY if unit == "week" else 0
        first = math.ceil((low - origin) / step) * step + origin
        return [float(t) for t in range(int(first), int(high) + 1, int(step))]
    start = dt.datetime.fromtimestamp(low, tz=dt.timezone.utc)
    ticks = []
    if unit == "month":
        index = start.year * 12 + start.month - 1  # months since year 0
        index += (-index) % n  # the first month at or after ``low``'s that is a multiple of n (Jan, Apr, Jul...)
        while True:
            moment = dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.timezone.utc).timestamp()
            if moment > high:
                return ticks
            if moment >= low:
                ticks.append(moment)
            index += n
    year = start.year + (-start.year) % n
    while (moment := dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc).timestamp()) <= high:
        if moment >= low:
            ticks.append(moment)
        year += n
    return ticks


def time_axis(low: float, high: float, *, count: int = 5) -> list[tuple[float, str]]:
    """Calendar ticks (value, label) for a time axis over [low, high] seconds since the epoch (UTC): the finest
    step of TIME_STEPS that gives at most ``count`` ticks, at round minutes or hours, midnights, Mondays, the
    1st of months or 1 January, each labelled at that step's precision ("03-05 14:00", "2026-03-05",
    "Mar 2026", "2026"). A span shorter than a minute gets its two ends."""
    span = max(high - low, 1.0)
    unit, n = next(((u, k) for u, k in TIME_STEPS if span / (_UNIT_SECONDS[u] * k) <= count), TIME_STEPS[-1])
    ticks = _calendar_ticks(low, high, unit, n)
    if not ticks:
        return [(v, format_time(v)) for v in (low, high)]
    fmt = _UNIT_LABEL[unit]
    return [(t, dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).strftime(fmt)) for t in ticks]


def time_ticks(low: float, high: float, *, count: int = 5) -> list[float]:
    """The tick positions of ``time_axis`` (seconds since the epoch)."""
    return [value for value, _ in time_axis(low, high, count=count)]


def thin(points: Sequence[tuple[float, float]], *, limit: int = MAX_LINE_POINTS) -> list[tuple[float, float]]:
    """At most ``limit`` points of a line in x order: per bucket its lowest and highest point, first and last kept."""
    points = list(points)
    if len(points) <= limit:
        return points
    buckets = max(limit // 2 - 1, 1)
    size = (len(points) - 2) / buckets
    out = [points[0]]
    for b in range(buckets):
        chunk = points[1 + int(b * size): 1 + int((b + 1) * size)]
        if chunk:
            low = min(chunk, key=lambda p: p[1])
            high = max(chunk, key=lambda p: p[1])
            out.extend(sorted({low, high}, key=lambda p: p[0]))
    out.append(points[-1])
    return out


class _Frame:
    """The plot area and the data -> pixel mapping of one chart."""

    def __init__(self, *, width: int, height: int, x_range: tuple[float, float], y_range: tuple[float, float],
                 left: int = PAD_LEFT):
        self.width, self.height = width, height
        self.left, self.top = left, PAD_TOP
        self.right, self.bottom = width - PAD_RIGHT, height - PAD_BOTTOM
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range

    def x(self, value: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (self.right - self.left) * (value - self.x0) / span

    def y(self, value: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.bottom - (self.bottom - self.top) * (value - self.y0) / span


def _svg(*, title: str, width: int, height: int, body: list[str], css_class: str) -> SafeString:
    label = escape(title)
    return mark_safe(
        f'<svg class="crl-chart {escape(css_class)}" role="img" aria-label="{label}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" font-size="11" '
        f'style="max-width: 100%; height: auto; background: var(--body-bg, #fff); color: var(--body-fg, #333)">'
        f"<title>{label}</title>"
        f'<text x="{PAD_LEFT}" y="16" font-size="13" font-weight="bold" fill="currentColor">{label}</text>'
        + "".join(body) + "</svg>"
    )


def _axes(frame: _Frame, *, x_ticks: Sequence[tuple[float, str]], y_ticks: Sequence[tuple[float, str]],
          x_label: str, y_label: str) -> list[str]:
    parts = [
        '<g class="grid" stroke="#ddd" stroke-width="1">'
        + "".join(f'<line x1="{frame.left}" y1="{frame.y(v):.1f}" x2="{frame.right}" y2="{frame.y(v):.1f}"/>'
                  for v, _ in y_ticks)
        + "</g>",
        f'<g class="axes" stroke="#888" stroke-width="1"><line x1="{frame.left}" y1="{frame.top}" x2="{frame.left}" '
        f'y2="{frame.bottom}"/><line x1="{frame.left}" y1="{frame.bottom}" x2="{frame.right}" y2="{frame.bottom}"/></g>',
        '<g class="y-ticks" fill="currentColor" text-anchor="end">'
        + "".join(f'<text x="{frame.left - 6}" y="{frame.y(v) + 4:.1f}">{escape(text)}</text>' for v, text in y_ticks)
        + "</g>",
        '<g class="x-ticks" fill="currentColor" text-anchor="middle">'
        + "".join(f'<text x="{frame.x(v):.1f}" y="{frame.bottom + 15}">{escape(text)}</text>' for v, text in x_ticks)
        + "</g>",
        f'<text class="x-label" x="{(frame.left + frame.right) / 2:.1f}" y="{frame.height - 6}" text-anchor="middle" '
        f'fill="currentColor">{escape(x_label)}</text>',
        f'<text class="y-label" transform="translate(14 {(frame.top + frame.bottom) / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" fill="currentColor">{escape(y_label)}</text>',
    ]
    return parts


def _no_data(frame: _Frame) -> str:
    return (f'<text class="no-data" x="{(frame.left + frame.right) / 2:.1f}" y="{(frame.top + frame.bottom) / 2:.1f}" '
            f'text-anchor="middle" fill="#888">no data</text>')


def _legend(series: Sequence[tuple[str, str]], *, right: float, title: str = "") -> str:
    """Swatches right-aligned on the title's line, never over the title: those that do not fit are counted."""
    if len(series) < 2:
        return ""
    title_end = PAD_LEFT + 7.5 * len(title) + 16  # the bold 13 px title, about 7.5 px a character
    widths = [14 + 6.5 * len(name) for name, _ in series]
    more = ""
    if right - sum(widths) < title_end:  # keep the first that fit beside the title, and count the rest
        room, fit = right - title_end - 6.5 * len(f"+{len(series)} more") - 6, 0
        while fit < len(series) and sum(widths[: fit + 1]) <= room:
            fit += 1
        series, widths, more = series[:fit], widths[:fit], f"+{len(series) - fit} more"
    x = right - sum(widths) - (6.5 * len(more) + 4 if more else 0)
    items = []
    for (name, color), w in zip(series, widths):  # left to right in the series' order
        items.append(f'<rect x="{x:.1f}" y="7" width="10" height="10" fill="{escape(color)}"/>'
                     f'<text x="{x + 13:.1f}" y="16" fill="currentColor">{escape(name)}</text>')
        x += w
    if more:
        items.append(f'<text class="legend-more" x="{x + 4:.1f}" y="16" fill="#888">{more}</text>')
    return '<g class="legend">' + "".join(items) + "</g>"


def _visible_range(low: float, high: float) -> tuple[float, float]:
    """[low, high] widened around its centre when the data are flat, or differ by less than a tick label can
    show (below 0.1% of their size): one point, or a loss that did not move, gets an axis of +-5% (or +-1 for 0)
    instead of ticks that all read the same and equal values drawn a plot's height apart."""
    size = max(abs(low), abs(high))
    if high - low > size * 1e-3:
        return low, high
    centre = (low + high) / 2
    pad = abs(centre) * 0.05 or 1.0
    return centre - pad, centre + pad


def _x_axis(low: float, high: float, *, integers: bool) -> tuple[float, float, list[float]]:
    """The x range and tick values for data spanning [low, high]: one value gets a tick at itself (centred);
    whole-number data (steps, epochs) get whole-number ticks only."""
    if low == high:
        pad = 1.0 if integers else (abs(low) * 0.05 or 1.0)
        return low - pad, high + pad, [low]
    ticks = nice_ticks(low, high)
    if integers and ticks[1] - ticks[0] < 1:
        ticks = [float(v) for v in range(math.floor(low), math.ceil(high) + 1)]
    return min(low, ticks[0]), max(high, ticks[-1]), ticks


def tick_labels(values: Sequence[float], fmt: Formatter) -> list[str]:
    """``fmt`` of each tick value; when two would read the same (ticks closer than ``fmt`` shows), fixed-point
    labels with as many decimals as it takes to tell them apart."""
    labels = [fmt(v) for v in values]
    if len(set(labels)) == len(labels):
        return labels
    for decimals in range(1, 13):
        labels = [f"{v:.{decimals}f}" for v in values]
        if len(set(labels)) == len(labels):
            break
    return labels


def _range(values: Sequence[float], *, include_zero: bool = False) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return (0.0, 1.0)
    low, high = min(finite), max(finite)
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    return low, high


# ------------------------------------------------------------------------------------------------ charts
def line_chart(*, series: Sequence[Series], title: str, x_label: str, y_label: str, width: int = 640,
               height: int = 260, x_time: bool = False, y_range: tuple[float, float] | None = None,
               x_format: Formatter | None = None, y_format: Formatter = format_number,
               y_ticks: Sequence[tuple[float, str]] | None = None, css_class: str = "") -> SafeString:
    """Lines (and/or dots) of any number of (x, y) points; ``x_time``: x is seconds since the epoch (UTC).

    ``y_range`` fixes the y axis (e.g. (0, 1) for probabilities), else it covers the data; ``y_ticks`` gives
    the y ticks as (value, label) (e.g. concept names on a timeline). Non-finite points are skipped.
    """
    colored = [(s, s.color or PALETTE[i % len(PALETTE)]) for i, s in enumerate(series)]
    all_points = [(x, y) for s in series for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
    xs_low, xs_high = _range([p[0] for p in all_points])
    x_fmt = x_format or (format_time if x_time else format_number)
    if x_time:
        if xs_low == xs_high:
            xs_low, xs_high = xs_low - 3600, xs_high + 3600
        time_labels = dict(time_axis(xs_low, xs_high))
        x_tick_values = list(time_labels)
    else:
        integers = bool(all_points) and all(float(x).is_integer() for x, _ in all_points)
        xs_low, xs_high, x_tick_values = _x_axis(xs_low, xs_high, integers=integers)
    if y_ticks is not None:
        y_low, y_high = _range([v for v, _ in y_ticks] or [0.0, 1.0])
        y_low, y_high = y_low - 0.5, y_high + 0.5
        y_tick_pairs = list(y_ticks)
    else:
        y_low, y_high = y_range or _visible_range(*_range([p[1] for p in all_points]))
        tick_values = nice_ticks(y_low, y_high)
        if y_range is None:
            y_low, y_high = tick_values[0], tick_values[-1]
        shown = [v for v in tick_values if y_low - 1e-9 <= v <= y_high + 1e-9]
        y_tick_pairs = list(zip(shown, tick_labels(shown, y_format)))
    # room for the longest y label (about 6.5 px a character), e.g. 13-digit concept ids on a timeline
    left = max(PAD_LEFT, int(16 + 6.5 * max((len(text) for _, text in y_tick_pairs), default=0)))
    frame = _Frame(width=width, height=height, x_range=(xs_low, xs_high), y_range=(y_low, y_high), left=left)
    shown_x = [v for v in x_tick_values if xs_low <= v <= xs_high]
    if x_time:  # calendar labels at the step's precision, unless the caller formats them
        x_tick_pairs = [(v, x_fmt(v) if x_format else time_labels[v]) for v in shown_x]
    else:
        x_tick_pairs = list(zip(shown_x, tick_labels(shown_x, x_fmt)))
    body = _axes(frame, x_ticks=x_tick_pairs, y_ticks=y_tick_pairs, x_label=x_label, y_label=y_label)
    if not all_points:
        body.append(_no_data(frame))
    for s, color in colored:
        tips = list(s.tooltips)
        indexed = [(i, x, y) for i, (x, y) in enumerate(s.points) if math.isfinite(x) and math.isfinite(y)]
        if s.line and len(indexed) > 1:
            line = thin([(x, y) for _, x, y in indexed])
            coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in line)
            body.append(f'<polyline class="series" data-series="{escape(s.name)}" points="{coords}" fill="none" '
                        f'stroke="{escape(color)}" stroke-width="2"{DASH if s.dashed else ""}>'
                        f'<title>{escape(s.name)}</title></polyline>')
        if s.markers or len(indexed) == 1:
            if len(indexed) > MAX_LINE_POINTS:
                step = len(indexed) / MAX_LINE_POINTS
                indexed = [indexed[int(k * step)] for k in range(MAX_LINE_POINTS)]
            dots = "".join(
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3"><title>'
                f'{escape(tips[i] if i < len(tips) else f"{s.name}: {x_fmt(x)}, {y_format(y)}")}</title></circle>'
                for i, x, y in indexed
            )
            body.append(f'<g class="marks" data-series="{escape(s.name)}" fill="{escape(color)}">{dots}</g>')
    body.append(_legend([(s.name, c) for s, c in colored], right=width - PAD_RIGHT, title=title))
    return _svg(title=title, width=width, height=height, body=body, css_class=f"line-chart {css_class}".strip())


def bar_chart(*, labels: Sequence[str], values: Sequence[float], title: str, x_label: str, y_label: str,
              intervals: Sequence[tuple[float, float] | None] | None = None, highlight: str | None = None,
              width: int = 640, height: int = 260, y_range: tuple[float, float] | None = None,
              y_format: Formatter = format_number) -> SafeString:
    """One bar per label (any number: labels are thinned to fit), optional error bars ``intervals`` (lo, hi)
    per bar; the bar named ``highlight`` is drawn in the accent colour."""
    if len(labels) != len(values):
        raise ValueError(f"bar_chart: {len(labels)} labels for {len(values)} values")
    if intervals is not None and len(intervals) != len(values):
        raise ValueError(f"bar_chart: {len(intervals)} intervals for {len(values)} values")
    spans = [v for pair in (intervals or []) if pair for v in pair]
    y_low, y_high = y_range or _visible_range(*_range([*values, *spans], include_zero=True))
    ticks = nice_ticks(y_low, y_high)
    if y_range is None:
        y_low, y_high = ticks[0], ticks[-1]
    ticks = [v for v in ticks if y_low <= v <= y_high]
    frame = _Frame(width=width, height=height, x_range=(0, max(len(values), 1)), y_range=(y_low, y_high))
    # Show every label that fits (about 6.5 px per character), else every n-th.
    longest = max((len(label) for label in labels), default=1)
    every = max(1, math.ceil(len(labels) * (longest * 6.5 + 6) / max(frame.right - frame.left, 1)))
    x_ticks = [(i + 0.5, label) for i, label in enumerate(labels) if i % every == 0]
    body = _axes(frame, x_ticks=x_ticks, y_ticks=list(zip(ticks, tick_labels(ticks, y_format))),
                 x_label=x_label, y_label=y_label)
    if not values:
        body.append(_no_data(frame))
    slot = (frame.right - frame.left) / max(len(values), 1)
    bar_w = max(slot * 0.7, 0.5)
    base = frame.y(max(y_low, min(0.0, y_high)))
    bars = []
    for i, (label, value) in enumerate(zip(labels, values)):
        if not math.isfinite(value):
            continue
        top = frame.y(value)
        color = PALETTE[1] if highlight is not None and label == highlight else PALETTE[0]
        interval = intervals[i] if intervals else None
        tip = f"{label}: {y_format(value)}" + (f" (95% CI {y_format(interval[0])} to {y_format(interval[1])})"
                                                if interval else "")
        x = frame.left + slot * i + (slot - bar_w) / 2
        bars.append(f'<rect class="bar" x="{x:.1f}" y="{min(top, base):.1f}" width="{bar_w:.1f}" '
                    f'height="{abs(base - top):.1f}" fill="{color}"><title>{escape(tip)}</title></rect>')
        if interval:
            cx, lo, hi = x + bar_w / 2, frame.y(interval[0]), frame.y(interval[1])
            bars.append(f'<path class="interval" d="M{cx:.1f} {lo:.1f}V{hi:.1f}M{cx - 4:.1f} {lo:.1f}h8M{cx - 4:.1f} '
                        f'{hi:.1f}h8" stroke="#222" stroke-width="1.2" fill="none"/>')
    body.append("<g>" + "".join(bars) + "</g>")
    return _svg(title=title, width=width, height=height, body=body, css_class="bar-chart")


def histogram(*, edges: Sequence[float], counts: Sequence[int], title: str, x_label: str, y_label: str = "count",
              width: int = 640, height: int = 240, integers: bool = False,
              bin_labels: Sequence[str] | None = None) -> SafeString:
    """Counts per bin, ``edges`` the len(counts) + 1 bin boundaries in increasing order (each bin [lo, hi), the
    last [lo, hi], as numpy.histogram's). ``integers``: the values are whole numbers (counts, lengths): ticks on
    integers only and each bin labelled by the integers it holds, in full ("6220", "100 to 104"), not as a range of
    its float edges. ``bin_labels``: each bin's label instead (one per count)."""
    if len(edges) != len(counts) + 1:
        raise ValueError(f"histogram: expected {len(counts) + 1} edges for {len(counts)} counts, got {len(edges)}")
    if bin_labels is not None and len(bin_labels) != len(counts):
        raise ValueError(f"histogram: {len(bin_labels)} bin labels for {len(counts)} bins")
    y_ticks = nice_ticks(0, max(max(counts, default=0), 1))
    x_low, x_high = (edges[0], edges[-1]) if edges else (0.0, 1.0)
    frame = _Frame(width=width, height=height, x_range=(x_low, x_high if x_high > x_low else x_low + 1),
                   y_range=(0, y_ticks[-1]))
    y_ticks = [v for v in y_ticks if float(v).is_integer()]  # counts: no tick at 0.2 of an episode
    ticks = [v for v in nice_ticks(frame.x0, frame.x1) if frame.x0 <= v <= frame.x1]
    if integers:
        ticks = [v for v in ticks if float(v).is_integer()] or [v for v in (math.ceil(frame.x0),) if v <= frame.x1]
    x_ticks = [(v, str(int(v)) if integers else format_number(v)) for v in ticks]
    body = _axes(frame, x_ticks=x_ticks, y_ticks=[(v, format_number(v)) for v in y_ticks],
                 x_label=x_label, y_label=y_label)
    if not counts or not any(counts):
        body.append(_no_data(frame))
    if bin_labels is None:
        last = len(counts) - 1
        bin_labels = [_integer_bin(lo, hi, closed=i == last) if integers
                      else f"{format_number(lo)} to {format_number(hi)}"
                      for i, (lo, hi) in enumerate(zip(edges, edges[1:]))]
    bars = []
    for lo, hi, count, label in zip(edges, edges[1:], counts, bin_labels):
        x0, x1 = frame.x(lo), frame.x(hi)
        bars.append(f'<rect class="bar" x="{x0:.1f}" y="{frame.y(count):.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                    f'height="{frame.bottom - frame.y(count):.1f}" fill="{PALETTE[0]}"><title>'
                    f'{escape(f"{label}: {count}")}</title></rect>')
    body.append("<g>" + "".join(bars) + "</g>")
    return _svg(title=title, width=width, height=height, body=body, css_class="histogram")


def _integer_bin(lo: float, hi: float, *, closed: bool) -> str:
    """The whole numbers in the bin [lo, hi) ([lo, hi] when ``closed``, the last bin) as a label: "7", "5 to 9"; the
    edges themselves when it holds none."""
    first, last = math.ceil(lo), (math.floor(hi) if closed else math.ceil(hi) - 1)
    if first > last:
        return f"{format_number(lo)} to {format_number(hi)}"
    return str(first) if first == last else f"{first} to {last}"


def quantile_strip(*, summary: dict, title: str, x_label: str, width: int = 640, height: int = 110) -> SafeString:
    """A box plot from a summary {"min", "p10", "p50", "p90", "max", "mean"} (when no bins were recorded):
    whiskers min-max, box p10-p90, line at the median, dot at the mean."""
    keys = ("min", "p10", "p50", "p90", "max")
    if any(summary.get(k) is None for k in keys):
        frame = _Frame(width=width, height=height, x_range=(0, 1), y_range=(0, 1))
        return _svg(title=title, width=width, height=height, css_class="quantile-strip",
                    body=[*_axes(frame, x_ticks=[], y_ticks=[], x_label=x_label, y_label=""), _no_data(frame)])
    low, p10, p50, p90, high = (float(summary[k]) for k in keys)
    ticks = nice_ticks(low, high)
    frame = _Frame(width=width, height=height, x_range=(ticks[0], ticks[-1]), y_range=(0, 1))
    body = _axes(frame, x_ticks=[(v, format_number(v)) for v in ticks], y_ticks=[], x_label=x_label, y_label="")
    mid, box = frame.y(0.5), (frame.bottom - frame.top) * 0.35
    tip = escape(", ".join(f"{k} {format_number(float(summary[k]))}" for k in (*keys, "mean") if summary.get(k) is not None))
    body.append(
        f'<g class="box" stroke="{PALETTE[0]}" stroke-width="1.5"><title>{tip}</title>'
        f'<line x1="{frame.x(low):.1f}" y1="{mid:.1f}" x2="{frame.x(high):.1f}" y2="{mid:.1f}"/>'
        f'<rect x="{frame.x(p10):.1f}" y="{mid - box:.1f}" width="{max(frame.x(p90) - frame.x(p10), 1):.1f}" '
        f'height="{2 * box:.1f}" fill="#dbe7ee"/>'
        f'<line x1="{frame.x(p50):.1f}" y1="{mid - box:.1f}" x2="{frame.x(p50):.1f}" y2="{mid + box:.1f}" stroke-width="3"/>'
        + (f'<circle cx="{frame.x(float(summary["mean"])):.1f}" cy="{mid:.1f}" r="3" fill="{PALETTE[1]}" stroke="none"/>'
           if summary.get("mean") is not None else "")
        + "</g>"
    )
    return _svg(title=title, width=width, height=height, body=body, css_class="quantile-strip")
