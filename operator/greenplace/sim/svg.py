"""Time charts for the simulator's report, drawn by matplotlib as inline SVG.

Why this module exists: the report must open anywhere, offline, and a reader must be able to trust
its axes. Hand-drawn SVG put date labels at arbitrary sixths of the window and gave each chart
its own time range. matplotlib is the well-kept standard for this: its SVG backend draws offline
(no browser, no fonts or scripts fetched), and its date locators put ticks on real day or hour
boundaries. Every chart of a report is drawn on the same figure size with fixed margins and the
``x_range`` the caller gives (the scenario's window), so the time axes line up exactly from one
chart to the next.

The output is deterministic, so a report diffs cleanly and tests are stable: ``svg.hashsalt`` is
fixed per chart (ids stay unique when several charts share one page), the metadata has no date,
and text stays text (``svg.fonttype: none``): the browser draws it with its own fonts and a test
reads tick labels from the DOM. Parts carry ids a test can find: ``{chart}-plot`` (the plotting
area), ``{chart}-xaxis``, ``{chart}-series-{name}``, ``{chart}-markers`` and ``{chart}-legend``.
Long series are reduced to at most ``max_points`` bucket means so a year of half-hourly data
stays a small file.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib as mpl
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

__all__ = ["Marker", "Series", "line_chart"]

SIZE_IN = (10.0, 3.4)  # 960 x 326 CSS pixels at 96 per inch (matplotlib writes 72 pt per inch)
# Fixed, not fitted to the labels: every chart's plotting area is the same, so time axes align.
MARGINS = {"left": 0.085, "right": 0.83, "top": 0.88, "bottom": 0.14}
MARKER_AREA = 22.0  # points squared: a dot about 7 CSS pixels wide, ringed so it shows on its line
# matplotlib's date numbers are days since its epoch (1970-01-01 unless configured otherwise).
_EPOCH = float(mdates.date2num(datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)))  # type: ignore[no-untyped-call]
# Tick label format by the locator's step, in days: a label always names a whole date or instant.
_FORMATS = {
    365.0: "%Y",
    30.0: "%Y-%m",
    1.0: "%Y-%m-%d",
    1 / 24: "%Y-%m-%d %H:%M",
    1 / (24 * 60): "%Y-%m-%d %H:%M",
}
_ID = re.compile(r'((?:\bid|xlink:href)="#?)([^"]+)"')
_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "none",
    "svg.image_inline": True,
    "font.family": "sans-serif",
    "font.size": 9.0,
    "axes.titlesize": 10.5,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "timezone": "UTC",
}


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


def line_chart(
    chart_id: str,
    title: str,
    y_label: str,
    series: Sequence[Series],
    *,
    x_range: tuple[float, float],
    markers: Sequence[Marker] = (),
    max_points: int = 1200,
) -> str:
    """One chart as an ``<svg class="chart" data-chart=chart_id>`` element.

    ``x_range`` (epoch seconds) is the time axis; give every chart of a page the same one.
    """
    reduced = [_reduce(s, max_points) for s in series if s.xs]
    if not reduced and not markers:
        return f'<p class="empty-chart">{html.escape(title)}: no data</p>'
    with mpl.rc_context({**_STYLE, "svg.hashsalt": f"greenplace-{chart_id}"}):
        figure = Figure(figsize=SIZE_IN)
        figure.subplots_adjust(**MARGINS)
        axes = figure.add_subplot()
        axes.patch.set_gid(f"{chart_id}-plot")
        axes.xaxis.set_gid(f"{chart_id}-xaxis")
        for s in reduced:
            (line,) = axes.plot(_days(s.xs), s.ys, color=s.color, linewidth=1.2, label=s.name)
            line.set_gid(f"{chart_id}-series-{_safe(s.name)}")
        if markers:
            dots = axes.scatter(
                _days([m.x for m in markers]),
                [m.y for m in markers],
                s=MARKER_AREA,
                c=[m.color for m in markers],
                edgecolors="#222222",
                linewidths=0.6,
                alpha=0.9,
                zorder=3,
            )
            dots.set_gid(f"{chart_id}-markers")
        axes.set_xlim(_EPOCH + x_range[0] / 86400, _EPOCH + x_range[1] / 86400)
        axes.set_ylim(bottom=0)
        locator = mdates.AutoDateLocator(minticks=4, maxticks=11, interval_multiples=True)  # type: ignore[no-untyped-call]
        formatter = mdates.AutoDateFormatter(locator)  # type: ignore[no-untyped-call]
        formatter.scaled = dict(_FORMATS)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(formatter)
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: _tick(y)))
        axes.set_title(title, loc="left")
        axes.set_ylabel(y_label)
        legend = axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        legend.set_gid(f"{chart_id}-legend")
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata={"Date": None})
    return _inline(out.getvalue(), chart_id, title)


def _days(epoch_s: Sequence[float]) -> list[float]:
    """Epoch seconds as matplotlib's date numbers (days since its epoch)."""
    return [_EPOCH + x / 86400 for x in epoch_s]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _inline(document: str, chart_id: str, title: str) -> str:
    """The ``<svg>`` element of a standalone SVG file, tagged for the page and its tests.

    matplotlib numbers its ids per figure (``xtick_1``, ``line2d_1``, ...), so every chart of a
    page would repeat them; each id and each reference to one gets the chart's prefix.
    """
    element = document[document.index("<svg") :]
    prefix = f"{chart_id}-"
    element = _ID.sub(
        lambda m: m[0] if m[2].startswith(prefix) else f'{m[1]}{prefix}{m[2]}"', element
    )
    element = element.replace("url(#", f"url(#{prefix}")
    return element.replace(
        "<svg ",
        f'<svg class="chart" data-chart="{html.escape(chart_id)}" role="img" '
        f'aria-label="{html.escape(title)}" ',
        1,
    )


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


def _tick(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"
