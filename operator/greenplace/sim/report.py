"""The comparison as one self-contained HTML page: tables and inline SVG charts, no network.

Why this module exists: a platform team decides from a page it can open, mail and archive. The
page needs nothing but itself (no scripts, fonts or images from anywhere): grid intensity per
zone over time with greenplace's placements on it, then cumulative CO2e and cumulative cost per
strategy, all three on the same time axis (the scenario's window, see ``svg``), then the totals
and per-namespace tables of the JSON record, under column names with their units and currency.
The charts are drawn once per report, after the replay, so they add little to a long run.
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
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 12.5px; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 6px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { vertical-align: bottom; font-weight: 600; }
td:first-child { white-space: nowrap; }
.chart { display: block; margin: 12px 0; background: #fff; max-width: 100%; height: auto; }
.note { color: #555; font-size: 13px; }
"""


def render(comparison: run.Comparison, record: Mapping[str, Any], featured: str = "") -> str:
    featured = featured or ("greenplace" if comparison.outcome("greenplace") else "")
    currency = _currency(comparison)
    window = (comparison.scenario.start.timestamp(), comparison.scenario.end.timestamp())
    charts = [
        _carbon_chart(comparison, comparison.outcome(featured), window),
        _cumulative_chart(comparison, "co2e", "Cumulative CO2e per strategy", "kgCO2e", window),
        _cumulative_chart(
            comparison, "money", "Cumulative cost per strategy", currency or "cost", window
        ),
    ]
    columns = _columns(currency)
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
        _totals_table(record["strategies"], columns),
    ]
    for entry in record["strategies"]:
        parts.append(f"<h3>{html.escape(entry['strategy'])} per namespace</h3>")
        parts.append(
            _table(["namespace", *columns[: len(_FIELDS)]], _namespace_rows(entry["by_namespace"]))
        )
    for name, why in record["skipped"].items():
        parts.append(f'<p class="note">{html.escape(name)}: {html.escape(why)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def _carbon_chart(
    comparison: run.Comparison, featured: metrics.Outcome | None, window: tuple[float, float]
) -> str:
    scenario = comparison.scenario
    start, end = window
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
                )
            )
    title = "Grid carbon intensity by zone" + (
        f", with {featured.strategy}'s placements (dots, start time)" if featured else ""
    )
    return svg.line_chart("carbon", title, "gCO2e/kWh", lines, x_range=window, markers=markers)


def _cumulative_chart(
    comparison: run.Comparison, axis: str, title: str, unit: str, window: tuple[float, float]
) -> str:
    lines = []
    for outcome in comparison.outcomes:
        xs, ys, running = [], [], 0.0
        for cost in outcome.costs:
            running += cost.kgco2e if axis == "co2e" else cost.money
            xs.append(cost.run.start.timestamp())
            ys.append(running)
        color = _STRATEGY_COLORS.get(outcome.strategy, "#333")
        lines.append(svg.Series(outcome.strategy, color, xs, ys))
    return svg.line_chart(f"cumulative-{axis}", title, unit, lines, x_range=window)


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


def _currency(comparison: run.Comparison) -> str:
    """The pools' currency, several joined by ``/`` (the totals then add unlike money)."""
    return "/".join(sorted({p.pool.currency for p in comparison.scenario.pools if p.pool.currency}))


def _columns(currency: str) -> list[str]:
    """Column titles, in ``_FIELDS`` order then the comparisons, each with its unit (savings
    are against the baseline the page's opening note names)."""
    return [
        f"cost ({currency})" if currency else "cost",
        "energy (kWh)",
        "CO2e (kg)",
        "GPU-hours",
        "deadline misses",
        "never started",
        "held (hours)",
        "budget overruns",
        "sovereignty violations",
        "carbon ceiling breaches",
        "CO2e saved (%)",
        "cost saved (%)",
        "CO2e above oracle (%)",
        "replay time (s)",
    ]


def _totals_table(entries: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
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
    return _table(["strategy", *columns], rows)


def _namespace_rows(by_namespace: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    return [[ns] + [_number(t[f]) for f in _FIELDS] for ns, t in by_namespace.items()]


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.1f}"
        return "0.0" if text == "-0.0" else text  # a saving rounded to nothing has no sign
    return f"{value:,}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
