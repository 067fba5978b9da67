"""Line charts with optional markers, as inline SVG text: no plotting library, no JavaScript.

Why this module exists: the simulator's report must open anywhere, offline, and be diffable and
testable as text. A chart is a handful of ``<polyline>`` and ``<circle>`` elements, each tagged
with a class and ``data-`` attributes (``chart``, ``series``) so a browser test can find and
measure them. Long series are reduced to at most ``max_points`` bucket means so a year of
half-hourly data stays a small file.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import math
from collections.abc import Sequence

__all__ = ["Marker", "Series", "line_chart"]

WIDTH, HEIGHT = 960, 300
LEFT, RIGHT, TOP, BOTTOM = 70, 150, 34, 36


@dataclasses.dataclass(frozen=True, slots=True)
class Series:
    name: str
    color: str
    xs: Sequence[float]  # epoch seconds, increasing
    ys: Sequence[float]


@dataclasses.dataclass(frozen=True, slots=True)
class Marker:
    x: float
    y: float
    color: str
    title: str = ""


def line_chart(
    chart_id: str,
    title: str,
    y_label: str,
    series: Sequence[Series],
    *,
    markers: Sequence[Marker] = (),
    max_points: int = 1200,
) -> str:
    reduced = [_reduce(s, max_points) for s in series if s.xs]
    xs = [x for s in reduced for x in s.xs] + [m.x for m in markers]
    ys = [y for s in reduced for y in s.ys] + [m.y for m in markers]
    if not xs:
        return f'<p class="empty-chart">{html.escape(title)}: no data</p>'
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = _nice_ceiling(max(ys))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return TOP + plot_h - (y / y1 * plot_h if y1 else 0)

    out = [
        f'<svg class="chart" data-chart="{chart_id}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">',
        f"<title>{html.escape(title)}</title>",
        f'<text x="{LEFT}" y="20" class="chart-title">{html.escape(title)}</text>',
        f'<text x="14" y="{TOP + plot_h / 2:.0f}" class="axis-label" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2:.0f})">{html.escape(y_label)}</text>',
    ]
    for i in range(6):
        y = y1 * i / 5
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(y):.1f}" '
            f'y2="{py(y):.1f}"/><text class="tick" x="{LEFT - 6}" y="{py(y) + 4:.1f}" '
            f'text-anchor="end">{_tick(y)}</text>'
        )
    for i in range(7):
        x = x0 + (x1 - x0) * i / 6
        label = datetime.datetime.fromtimestamp(x, datetime.UTC).strftime("%Y-%m-%d")
        out.append(
            f'<text class="tick" x="{px(x):.1f}" y="{HEIGHT - 14}" text-anchor="middle">'
            f"{label}</text>"
        )
    out.append(
        f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none"/>'
    )
    for index, s in enumerate(reduced):
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s.xs, s.ys, strict=True))
        out.append(
            f'<polyline class="series" data-series="{html.escape(s.name)}" fill="none" '
            f'stroke="{s.color}" stroke-width="1.4" points="{points}"/>'
        )
        ly = TOP + 14 + index * 18
        out.append(
            f'<line x1="{WIDTH - RIGHT + 12}" x2="{WIDTH - RIGHT + 32}" y1="{ly - 4}" '
            f'y2="{ly - 4}" stroke="{s.color}" stroke-width="3"/>'
            f'<text class="legend" x="{WIDTH - RIGHT + 38}" y="{ly}">{html.escape(s.name)}</text>'
        )
    for m in markers:
        out.append(
            f'<circle class="marker" cx="{px(m.x):.1f}" cy="{py(m.y):.1f}" r="2.2" '
            f'fill="{m.color}" fill-opacity="0.55"><title>{html.escape(m.title)}</title></circle>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _reduce(series: Series, max_points: int) -> Series:
    """At most ``max_points`` points: means of equal-width time buckets."""
    if len(series.xs) <= max_points:
        return series
    x0, x1 = series.xs[0], series.xs[-1]
    width = (x1 - x0) / max_points or 1.0
    sums: dict[int, list[float]] = {}
    for x, y in zip(series.xs, series.ys, strict=True):
        bucket = sums.setdefault(min(int((x - x0) / width), max_points - 1), [0.0, 0.0, 0.0])
        bucket[0] += x
        bucket[1] += y
        bucket[2] += 1
    ordered = [sums[k] for k in sorted(sums)]
    return Series(
        series.name,
        series.color,
        [b[0] / b[2] for b in ordered],
        [b[1] / b[2] for b in ordered],
    )


def _nice_ceiling(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10.0 ** math.floor(math.log10(value))
    for step in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _tick(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"
