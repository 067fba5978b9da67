"""The comparison as one self-contained HTML page: tables and inline SVG charts, no network.

Why this module exists: a platform team decides from a page it can open, mail and archive. The
page needs nothing but itself (no scripts, fonts or images from anywhere): grid intensity per
zone over time with greenplace's placements on it, then cumulative CO2e and cumulative cost per
strategy, then the totals and per-namespace tables of the JSON record.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from greenplace.sim import metrics, run, svg

__all__ = ["render"]

_PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")
_STRATEGY_COLORS = {
    "first-fit": "#7f7f7f",
    "cheapest": "#d95f02",
    "lowest-carbon": "#1b9e77",
    "greenplace": "#2166ac",
    "oracle": "#000000",
    "unguarded": "#e7298a",
}
MAX_MARKERS = 2500

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.chart { display: block; margin: 12px 0; background: #fff; }
.chart-title { font-size: 14px; font-weight: 600; }
.tick, .legend, .axis-label { font-size: 11px; fill: #444; }
.grid { stroke: #eee; } .frame { stroke: #999; }
.note { color: #555; font-size: 13px; }
"""


def render(comparison: run.Comparison, record: Mapping[str, Any], featured: str = "") -> str:
    featured = featured or ("greenplace" if comparison.outcome("greenplace") else "")
    charts = [
        _carbon_chart(comparison, comparison.outcome(featured)),
        _cumulative_chart(comparison, "co2e", "Cumulative CO2e per strategy", "kgCO2e"),
        _cumulative_chart(comparison, "money", "Cumulative cost per strategy", "money"),
    ]
    scenario = record["scenario"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>greenplace simulation</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>greenplace simulation</h1>",
        f'<p class="note">{scenario["jobs"]:,} jobs on {scenario["pools"]} pools '
        f"({scenario['gpus']} GPUs), {html.escape(scenario['start'])} .. "
        f"{html.escape(scenario['end'])}. Method: {html.escape(record['method'])}. Savings are "
        f"against {html.escape(record['baseline'])}; gaps are above the oracle's optimum.</p>",
        *charts,
        "<h2>Totals</h2>",
        _totals_table(record["strategies"]),
    ]
    for entry in record["strategies"]:
        parts.append(f"<h3>{html.escape(entry['strategy'])} per namespace</h3>")
        parts.append(_table(["namespace", *_FIELDS], _namespace_rows(entry["by_namespace"])))
    for name, why in record["skipped"].items():
        parts.append(f'<p class="note">{html.escape(name)}: {html.escape(why)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _carbon_chart(comparison: run.Comparison, featured: metrics.Outcome | None) -> str:
    scenario = comparison.scenario
    start, end = scenario.start.timestamp(), scenario.end.timestamp()
    zones = sorted({p.pool.location.grid_zone for p in scenario.pools})
    colors = dict(zip(zones, _PALETTE, strict=False))
    lines = []
    for zone in zones:
        trace = scenario.carbon.get(zone)
        if trace is None:
            continue
        if trace.is_constant:
            xs, ys = [start, end], [trace.constant_value] * 2
        else:
            times_s, values = trace.points()
            kept = [(t, v) for t, v in zip(times_s, values, strict=True) if start <= t <= end]
            xs, ys = [t for t, _ in kept], [v for _, v in kept]
        lines.append(svg.Series(zone, colors[zone], xs, ys))
    markers = []
    if featured is not None:
        step = max(1, len(featured.costs) // MAX_MARKERS)
        pools = {p.name: p for p in scenario.pools}
        for cost in featured.costs[::step]:
            zone = pools[cost.run.pool].pool.location.grid_zone
            at = cost.run.start
            markers.append(
                svg.Marker(
                    at.timestamp(),
                    scenario.grid_gco2_at(pools[cost.run.pool], at) or 0.0,
                    colors.get(zone, "#000"),
                    f"{cost.run.job.key} -> {cost.run.pool} at {at:%Y-%m-%d %H:%M}",
                )
            )
    title = "Grid carbon intensity by zone" + (
        f", with {featured.strategy}'s placements (dots, start time)" if featured else ""
    )
    return svg.line_chart("carbon", title, "gCO2e/kWh", lines, markers=markers)


def _cumulative_chart(comparison: run.Comparison, axis: str, title: str, unit: str) -> str:
    lines = []
    for outcome in comparison.outcomes:
        xs, ys, running = [], [], 0.0
        for cost in outcome.costs:
            running += cost.kgco2e if axis == "co2e" else cost.money
            xs.append(cost.run.start.timestamp())
            ys.append(running)
        color = _STRATEGY_COLORS.get(outcome.strategy, "#333")
        lines.append(svg.Series(outcome.strategy, color, xs, ys))
    return svg.line_chart(f"cumulative-{axis}", title, unit, lines)


_FIELDS = (
    "money",
    "kwh",
    "kgco2e",
    "gpu_hours",
    "deadline_misses",
    "never_started",
    "held_hours",
    "budget_overruns",
    "sovereignty_violations",
    "ceiling_breaches",
)


def _totals_table(entries: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for entry in entries:
        saved = entry["savings_vs_baseline_pct"] or {}
        gap = entry["gap_to_oracle_pct"] or {}
        rows.append(
            [entry["strategy"]]
            + [_number(entry["total"][f]) for f in _FIELDS]
            + [_number(saved.get("kgco2e")), _number(saved.get("money"))]
            + [_number(gap.get("kgco2e")), _number(entry["wall_s"])]
        )
    header = ["strategy", *_FIELDS, "CO2e saved %", "money saved %", "CO2e gap %", "wall s"]
    return _table(header, rows)


def _namespace_rows(by_namespace: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    return [[ns] + [_number(t[f]) for f in _FIELDS] for ns, t in by_namespace.items()]


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
