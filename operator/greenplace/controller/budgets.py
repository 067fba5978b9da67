"""What each Budget has spent this period, estimated from the placements greenplace made.

Why this module exists: the planner needs a Budget's money, kgCO2e and kWh already spent in the
current period, and the Budget's status needs the same figures with a forecast. greenplace has
no billing feed, so spending is an *estimate* from what it decided: for every pod it placed in
the period (its placement annotation's ``at``) under a policy whose ``budgetRef`` names the
budget, charged once per pod what the planner projected for it, with the same functions
(``engine.objective.rate`` and ``estimate``, as the walk counts budgets):

- cost   = GPUs x expected hours x the pool's price per GPU-hour (now; on-demand: the operator's
  snapshot builds no workload as spot, so the planner projected the on-demand price too);
- kWh    = GPUs x expected hours x the pool's GPU TDP / 1000 x PUE (full power: an upper bound);
- kgCO2e = (kWh x the grid gCO2e/kWh at placement + GPUs x expected hours x the pool's embodied
  gCO2e per GPU-hour) / 1000. The placement record holds the *effective* intensity (grid x PUE)
  under ``gco2PerKwh``, so the grid intensity is that divided by the pool's PUE, and kWh x grid
  is TDP x hours x the recorded effective intensity whatever the PUE is now. A record without
  an intensity (unknown at placement) is counted at the planner's pessimistic 1,000 gCO2e/kWh.

Expected hours come from the pod annotation ``greenplace.dev/expected-duration-hours``, else 1 h.
Only pods that still exist are counted (a deleted pod's spending is forgotten), and actual run
time is not measured: the EnergyReport gives measured figures.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping

from greenplace.accounting import budget as burn
from greenplace.api import convert
from greenplace.controller import cache as cache_
from greenplace.controller import podspec
from greenplace.domain import model
from greenplace.engine import objective

__all__ = [
    "DURATION_ANNOTATION",
    "Spend",
    "charge",
    "domain_budgets",
    "expected_hours",
    "spending",
    "status",
]

DURATION_ANNOTATION = "greenplace.dev/expected-duration-hours"


@dataclasses.dataclass(frozen=True)
class Spend:
    money: float = 0.0
    kg_co2e: float = 0.0
    kwh: float = 0.0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.money + other.money, self.kg_co2e + other.kg_co2e, self.kwh + other.kwh)


def expected_hours(body: Mapping[str, object]) -> float:
    """The pod's expected run time; 1 h when absent or unreadable (never fatal)."""
    meta = body.get("metadata")
    annotations = (meta.get("annotations") if isinstance(meta, dict) else None) or {}
    try:
        hours = float(annotations.get(DURATION_ANNOTATION, 1.0))
    except (TypeError, ValueError):
        return 1.0
    return hours if math.isfinite(hours) and hours > 0 else 1.0


def spending(
    budgets: tuple[cache_.CachedBudget, ...],
    policies: tuple[cache_.CachedPolicy, ...],
    pods: tuple[cache_.CachedPod, ...],
    pools: Mapping[str, model.Pool],
    now: datetime.datetime,
) -> dict[tuple[str, str], Spend]:
    """Spend per budget (namespace, name) in its current period."""
    budget_of = {
        f"{p.namespace}/{p.name}": (p.namespace, p.spec.budget_ref.name)
        for p in policies
        if p.spec.budget_ref is not None
    }
    bounds = {(b.namespace, b.name): convert.period_bounds(b.spec.period, now) for b in budgets}
    spent = {key: Spend() for key in bounds}
    for pod in pods:
        record = _record(pod)
        if record is None or record.pool not in pools:
            continue
        charged = {budget_of[p] for p in record.policies if p in budget_of}
        for key in charged & set(bounds):
            start, end = bounds[key]
            if start <= record.at < end:
                spent[key] = spent[key] + charge(pod, pools[record.pool], record.gco2)
    return spent


@dataclasses.dataclass(frozen=True)
class _Record:
    pool: str
    at: datetime.datetime
    policies: tuple[str, ...]
    # Effective intensity (grid x PUE) at placement; None when it was unknown.
    gco2: float | None


def _record(pod: cache_.CachedPod) -> _Record | None:
    record = podspec.placement_record(pod.body)
    if not record:
        return None  # not placed by greenplace, or a garbage annotation: not charged
    try:
        at = datetime.datetime.fromisoformat(str(record["at"]))
        policies = [str(p) for p in record.get("policies") or []]
        gco2 = record.get("gco2PerKwh")
        return _Record(
            str(record["pool"]),
            at if at.tzinfo else at.replace(tzinfo=datetime.UTC),
            tuple(policies),
            float(gco2) if isinstance(gco2, int | float) and not isinstance(gco2, bool) else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a record missing its pool or time: not charged


def charge(pod: cache_.CachedPod, pool: model.Pool, effective_gco2_per_kwh: float | None) -> Spend:
    """What ``pod``, placed in ``pool`` when the effective intensity (grid x PUE) was
    ``effective_gco2_per_kwh`` (None: unknown), is charged: the planner's estimate of its
    expected run there."""
    # The planner projects on-demand prices in the operator: ``controller.snapshot`` builds
    # every workload with ``spot`` False (no pod says it accepts preemption).
    rate = objective.rate(pool, spot=False, carbon_price_per_tco2e=0.0)
    grid = (
        None
        if effective_gco2_per_kwh is None or pool.pue <= 0
        else effective_gco2_per_kwh / pool.pue
    )
    estimate = objective.estimate(rate, pod.gpus * expected_hours(pod.body), grid)
    return Spend(estimate.cost, estimate.kgco2e, estimate.kwh)


def domain_budgets(
    budgets: tuple[cache_.CachedBudget, ...],
    spent: Mapping[tuple[str, str], Spend],
    now: datetime.datetime,
) -> tuple[model.Budget, ...]:
    return tuple(
        convert.budget_to_domain(
            b.namespace,
            b.name,
            b.spec,
            money_spent=spent[(b.namespace, b.name)].money,
            kgco2e_spent=spent[(b.namespace, b.name)].kg_co2e,
            kwh_spent=spent[(b.namespace, b.name)].kwh,
            period_end=convert.period_bounds(b.spec.period, now)[1],
        )
        for b in sorted(budgets, key=lambda b: (b.namespace, b.name))
    )


def status(
    cached: cache_.CachedBudget, spent: Spend, now: datetime.datetime
) -> tuple[dict[str, object], list[str]]:
    """The status fields of a Budget, and the limits reached (for the Exceeded condition)."""
    start, end = convert.period_bounds(cached.spec.period, now)
    limits = cached.spec.limits
    amounts = {"money": spent.money, "kgCO2e": spent.kg_co2e, "kWh": spent.kwh}
    caps = {"money": limits.money, "kgCO2e": limits.kg_co2e, "kWh": limits.kwh}
    forecast, remaining, reached = {}, {}, []
    for unit, value in amounts.items():
        cap = caps[unit]
        figures = burn.burn(value, cap or 1.0, start, end, now)
        # Three significant figures: the linear forecast drifts every second while spending
        # is flat; unrounded, it would rewrite the status every cycle.
        forecast[unit] = float(f"{figures.forecast_at_end:.3g}")
        if cap is not None:
            remaining[unit] = round(figures.remaining, 6)
            if value >= cap - 1e-9:
                reached.append(f"{unit} {value:.2f} of {cap:g}")
    fields: dict[str, object] = {
        "periodStart": _iso(start),
        "periodEnd": _iso(end),
        "spent": {unit: round(v, 6) for unit, v in amounts.items()},
        "forecastAtPeriodEnd": forecast,
        "remaining": remaining,
    }
    return fields, reached


def _iso(at: datetime.datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")
