"""Turn a strategy's schedule into money, energy, CO2e, delay, violations and budget overruns.

Why this module exists: every strategy, the oracle included, is judged by the same arithmetic, and
it is done here only, after the fact, from the runs alone. Nothing a strategy says about itself is
trusted: sovereignty violations are counted by re-checking every run against the policies that
select its job.

Per run of ``g`` GPUs for ``h`` hours in pool ``p`` started at ``t``:

- GPU-hours = g x h; kWh = g x h x tdpWatts/1000 x PUE (grid draw, attributional);
- kgCO2e = kWh x mean grid intensity of p's zone over [t, t+h) / 1000 (location-based), plus
  the pool's embodied gCO2e per GPU-hour x GPU-hours / 1000;
- money = g x h x mean price of p over [t, t+h) (``Scenario.run_cost``);
- held hours = t - arrival; a deadline miss when t + h > deadline;
- a carbon-ceiling breach when p's effective intensity at t (grid x PUE) is above the ceiling
  of a policy that selects the job (an unknown intensity is not counted as one).

A job never started before the end of the simulation counts as held until the end, and as a miss
if its deadline fell inside the simulation. A budget's spend is summed per period of the run's
start; each limit exceeded in a period counts as one overrun.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from collections.abc import Mapping

from greenplace.sim import replay
from greenplace.sim import scenario as sc

__all__ = ["Outcome", "Overrun", "RunCost", "Totals", "Violation", "change_pct", "evaluate"]


@dataclasses.dataclass(frozen=True, slots=True)
class Totals:
    jobs: int = 0
    jobs_run: int = 0
    gpu_hours: float = 0.0
    kwh: float = 0.0
    kgco2e: float = 0.0
    money: float = 0.0
    held_hours: float = 0.0
    deadline_misses: int = 0
    never_started: int = 0
    budget_overruns: int = 0
    sovereignty_violations: int = 0
    # Runs started while the pool's effective intensity (grid x PUE) was above the carbon ceiling
    # of a policy selecting the job: not a sovereignty violation (greenplace lets a ceiling yield
    # at the deadline; the baselines ignore ceilings), but counted so nobody has to assume.
    ceiling_breaches: int = 0

    def plus(self, other: Totals) -> Totals:
        return Totals(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )


@dataclasses.dataclass(frozen=True, slots=True)
class RunCost:
    run: replay.Run
    grid_gco2_per_kwh: float
    kwh: float
    kgco2e: float
    money: float


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    job: str
    pool: str
    country: str
    # The policies breached (``scenario.RESIDENCY_RULE`` for the data-residency label) and the
    # planner's reason code for each, in the same order.
    policies: tuple[str, ...]
    reasons: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Overrun:
    budget: str
    period_start: datetime.date
    metric: str
    spent: float
    limit: float


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """One strategy's result on one scenario."""

    strategy: str
    respects_policies: bool
    total: Totals
    by_namespace: Mapping[str, Totals]
    costs: tuple[RunCost, ...]
    violations: tuple[Violation, ...]
    overruns: tuple[Overrun, ...]
    decisions: int
    wall_s: float
    note: str = ""


def evaluate(
    scenario: sc.Scenario, schedule: replay.Schedule, *, respects_policies: bool, note: str = ""
) -> Outcome:
    pools = {p.name: p for p in scenario.pools}
    per_ns: dict[str, Totals] = defaultdict(Totals)
    costs: list[RunCost] = []
    violations: list[Violation] = []
    for run in schedule.runs:
        job, pool = run.job, pools[run.pool]
        cost = _cost(scenario, run, pool)
        costs.append(cost)
        breached = sc.breaches(scenario.governing(job), pool.pool, job.workload(), run.start)
        if breached:
            violations.append(
                Violation(
                    job.key,
                    pool.name,
                    pool.pool.location.country,
                    tuple(b.rule for b in breached),
                    tuple(str(b.reason) for b in breached),
                )
            )
        per_ns[job.namespace] = per_ns[job.namespace].plus(
            Totals(
                jobs=1,
                jobs_run=1,
                gpu_hours=job.gpus * job.hours,
                kwh=cost.kwh,
                kgco2e=cost.kgco2e,
                money=cost.money,
                held_hours=_hours(run.start - job.arrival),
                deadline_misses=int(run.end > scenario.deadline(job)),
                sovereignty_violations=int(bool(breached)),
                ceiling_breaches=int(_above_ceiling(scenario, run, pool)),
            )
        )
    for job in schedule.never_started:
        per_ns[job.namespace] = per_ns[job.namespace].plus(
            Totals(
                jobs=1,
                held_hours=max(0.0, _hours(scenario.end - job.arrival)),
                deadline_misses=int(scenario.deadline(job) <= scenario.end),
                never_started=1,
            )
        )
    overruns = _overruns(scenario, costs)
    for overrun in overruns:
        namespace = overrun.budget.split("/", 1)[0]
        per_ns[namespace] = per_ns[namespace].plus(Totals(budget_overruns=1))
    total = Totals()
    for totals in per_ns.values():
        total = total.plus(totals)
    return Outcome(
        strategy=schedule.strategy,
        respects_policies=respects_policies,
        total=total,
        by_namespace=dict(sorted(per_ns.items())),
        costs=tuple(sorted(costs, key=lambda c: (c.run.start, c.run.job.key))),
        violations=tuple(violations),
        overruns=overruns,
        decisions=schedule.decisions,
        wall_s=schedule.wall_s,
        note=note,
    )


def change_pct(value: float, reference: float) -> float | None:
    """(value - reference) / reference in percent; None when the reference is zero."""
    return None if reference == 0 else (value - reference) / reference * 100.0


def _cost(scenario: sc.Scenario, run: replay.Run, pool: sc.SimPool) -> RunCost:
    cost = scenario.run_cost(run.job, pool, run.start)
    return RunCost(run, cost.grid_gco2_per_kwh, cost.kwh, cost.kgco2e, cost.money)


def _above_ceiling(scenario: sc.Scenario, run: replay.Run, pool: sc.SimPool) -> bool:
    """Whether the run started above the carbon ceiling of a policy that selects its job."""
    grid = scenario.grid_gco2_at(pool, run.start)
    if grid is None:
        return False
    effective = grid * pool.pool.pue
    return any(
        p.max_gco2_per_kwh is not None and effective > p.max_gco2_per_kwh
        for p in scenario.governing(run.job)
    )


def _overruns(scenario: sc.Scenario, costs: list[RunCost]) -> tuple[Overrun, ...]:
    found: list[Overrun] = []
    for budget in scenario.budgets:
        spent: dict[datetime.date, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for cost in costs:
            if cost.run.job.namespace == budget.namespace:
                bucket = spent[budget.period.start_of(cost.run.start)]
                bucket[0] += cost.money
                bucket[1] += cost.kgco2e
                bucket[2] += cost.kwh
        for period_start, (money, kg, kwh) in sorted(spent.items()):
            for metric, value, limit in (
                ("money", money, budget.money_limit),
                ("kgco2e", kg, budget.kgco2e_limit),
                ("kwh", kwh, budget.kwh_limit),
            ):
                if limit is not None and value > limit:
                    found.append(Overrun(budget.key, period_start, metric, value, limit))
    return tuple(found)


def _hours(delta: datetime.timedelta) -> float:
    return delta.total_seconds() / 3600.0
