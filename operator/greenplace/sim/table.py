"""The comparison as a plain-text table for the terminal.

Why this module exists: the first thing a person running ``greenplace simulate`` reads is one
screen that says, per strategy, what it cost, what it emitted, what it delayed and whether it broke
a rule; then the same per namespace. It reads the JSON record, so the screen and the file agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render"]

_COLUMNS = (
    ("strategy", "strategy", "{}"),
    ("money", "money", "{:,.0f}"),
    ("kwh", "kWh", "{:,.0f}"),
    ("kgco2e", "kgCO2e", "{:,.1f}"),
    ("gpu_hours", "GPU-h", "{:,.0f}"),
    ("deadline_misses", "misses", "{:,}"),
    ("never_started", "unrun", "{:,}"),
    ("held_hours", "held h", "{:,.0f}"),
    ("budget_overruns", "overruns", "{:,}"),
    ("sovereignty_violations", "sov.viol", "{:,}"),
    ("ceiling_breaches", "ceil.breach", "{:,}"),
)


def render(record: Mapping[str, Any]) -> str:
    scenario = record["scenario"]
    lines = [
        f"{scenario['jobs']:,} jobs on {scenario['pools']} pools ({scenario['gpus']} GPUs), "
        f"{scenario['start']} .. {scenario['end']}",
        "",
    ]
    rows = []
    for entry in record["strategies"]:
        saved = entry["savings_vs_baseline_pct"] or {}
        gap = entry["gap_to_oracle_pct"] or {}
        rows.append(
            [fmt.format(entry["total"].get(key, entry.get(key))) for key, _, fmt in _COLUMNS]
            + [_pct(saved.get("kgco2e")), _pct(saved.get("money")), _pct(gap.get("kgco2e"))]
        )
    header = [title for _, title, _ in _COLUMNS] + ["CO2e saved", "money saved", "CO2e gap"]
    lines += _grid(header, rows)
    lines += ["", f"saved: against {record['baseline']}; gap: above the oracle's optimum", ""]
    for entry in record["strategies"]:
        lines.append(f"{entry['strategy']} per namespace:")
        ns_rows = [
            [namespace] + [fmt.format(totals[key]) for key, _, fmt in _COLUMNS[1:]]
            for namespace, totals in entry["by_namespace"].items()
        ]
        lines += ["  " + line for line in _grid(["namespace", *header[1 : len(_COLUMNS)]], ns_rows)]
    for name, why in record["skipped"].items():
        lines.append(f"{name}: {why}")
    lines.append(
        "sovereignty violations by strategies that respect policies: "
        f"{record['sovereignty_violations_by_policy_respecting_strategies']}"
    )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}%"


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join(
            [first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        )

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]
