"""Run the chosen strategies on one scenario and put their outcomes side by side.

Why this module exists: the CLI, the benchmark and the tests all want the same comparison
(savings against the carbon-blind baseline, gap to the oracle, zero violations for every strategy
that respects policies) and the same JSON record of it, which the table and the HTML report read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from greenplace.sim import metrics, oracle, replay, strategies
from greenplace.sim import scenario as sc

__all__ = ["BASELINE", "DEFAULT_STRATEGIES", "Comparison", "compare", "record"]

BASELINE = "first-fit"
DEFAULT_STRATEGIES = ("first-fit", "cheapest", "lowest-carbon", "greenplace", "oracle")
DEFAULT_ORACLE = oracle.Settings()


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    scenario: sc.Scenario
    outcomes: tuple[metrics.Outcome, ...]
    # Strategies asked for but not run, with why (an oracle instance over its size).
    skipped: Mapping[str, str]

    def outcome(self, name: str) -> metrics.Outcome | None:
        return next((o for o in self.outcomes if o.strategy == name), None)

    @property
    def policy_violations(self) -> int:
        """Sovereignty violations by strategies that claim to respect policies: must be 0."""
        return sum(o.total.sovereignty_violations for o in self.outcomes if o.respects_policies)


def compare(
    scenario: sc.Scenario,
    names: Sequence[str] = DEFAULT_STRATEGIES,
    oracle_settings: oracle.Settings = DEFAULT_ORACLE,
    progress: replay.Progress | None = None,
    oracle_progress: oracle.Progress | None = None,
) -> Comparison:
    outcomes: list[metrics.Outcome] = []
    skipped: dict[str, str] = {}
    for name in names:
        if name == "oracle":
            try:
                solution = oracle.solve(scenario, oracle_settings, oracle_progress)
            except oracle.OracleSkippedError as error:
                skipped[name] = str(error)
                continue
            outcomes.append(
                metrics.evaluate(
                    scenario, solution.schedule, respects_policies=True, note=solution.note
                )
            )
            continue
        strategy = strategies.by_name(name)
        schedule = replay.replay(scenario, strategy, progress)
        outcomes.append(
            metrics.evaluate(
                scenario,
                schedule,
                respects_policies=strategy.respects_policies,
                note=strategy.description,
            )
        )
    return Comparison(scenario, tuple(outcomes), skipped)


def record(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON-ready data: inputs in brief, then one entry per strategy."""
    base = comparison.outcome(BASELINE)
    best = comparison.outcome("oracle")
    scenario = comparison.scenario
    entries = []
    for outcome in comparison.outcomes:
        total = outcome.total
        entries.append(
            {
                "strategy": outcome.strategy,
                "respects_policies": outcome.respects_policies,
                "note": outcome.note,
                "wall_s": round(outcome.wall_s, 3),
                "decisions": outcome.decisions,
                "total": dataclasses.asdict(total),
                "by_namespace": {
                    ns: dataclasses.asdict(t) for ns, t in outcome.by_namespace.items()
                },
                "savings_vs_baseline_pct": _relative(total, base.total, saving=True)
                if base
                else None,
                "gap_to_oracle_pct": _relative(total, best.total, saving=False) if best else None,
                "violations": [dataclasses.asdict(v) for v in outcome.violations[:50]],
                "overruns": [
                    {**dataclasses.asdict(o), "period_start": o.period_start.isoformat()}
                    for o in outcome.overruns[:50]
                ],
            }
        )
    return {
        "scenario": {
            "start": scenario.start.isoformat(),
            "end": scenario.end.isoformat(),
            "pools": len(scenario.pools),
            "gpus": sum(p.pool.gpus_total for p in scenario.pools),
            "policies": len(scenario.policies),
            "budgets": len(scenario.budgets),
            "jobs": len(scenario.jobs),
            "signals": {zone: s.source for zone, s in sorted(scenario.carbon.items())},
        },
        "baseline": BASELINE,
        "method": (
            "location-based: kWh = GPUs x hours x tdpWatts x PUE; kgCO2e = kWh x mean grid "
            "intensity of the pool's zone over the run (+ embodied); money = GPU-hours x price"
        ),
        "strategies": entries,
        "skipped": dict(comparison.skipped),
        "sovereignty_violations_by_policy_respecting_strategies": comparison.policy_violations,
    }


def _relative(
    total: metrics.Totals, reference: metrics.Totals, *, saving: bool
) -> dict[str, float | None]:
    """Per axis, % saved against ``reference`` (saving) or % above it (gap)."""
    sign = -1.0 if saving else 1.0
    out: dict[str, float | None] = {}
    for axis in ("kgco2e", "money", "kwh"):
        change = metrics.change_pct(getattr(total, axis), getattr(reference, axis))
        out[axis] = None if change is None else round(sign * change, 3)
    return out
