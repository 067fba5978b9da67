"""The one number the planner minimises among compliant pools, and the projections behind it.

Why this module exists: cost, energy, carbon and the internal carbon price must be computed the
same way by the planner, the explain command, the budgets (``controller.budgets`` charges each
placed pod ``estimate`` of what the planner projected) and the optimality benchmark (which hands
the same numbers to an exact MILP solver). Everything is linear in GPU-hours, so a pool's
objective is a *rate* per GPU-hour times the workload's GPU-hours:

    objective = cost + (operational + embodied gCO2e) / 1e6 x carbon price per tCO2e
    cost      = GPUs x hours x price per GPU-hour (spot price for preemptible workloads)
    kWh       = GPUs x hours x GPU kW (TDP) x PUE (facility energy at full power)
    gCO2e     = kWh x grid gCO2e/kWh + GPUs x hours x embodied gCO2e per GPU-hour

A pool whose grid intensity is unknown is valued at ``UNKNOWN_GCO2_PER_KWH`` (pessimistic), so it
is only chosen when nothing with a known signal is allowed.
"""

from __future__ import annotations

import dataclasses

from greenplace.domain import model

__all__ = [
    "EPSILON",
    "UNKNOWN_GCO2_PER_KWH",
    "Estimate",
    "Rate",
    "estimate",
    "rate",
]

# A coal-fired grid: what an unknown intensity is assumed to be when ranking and budgeting.
UNKNOWN_GCO2_PER_KWH = 1000.0
# Tolerance on money, kgCO2e, kWh and objective comparisons.
EPSILON = 1e-9


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    """Per GPU-hour in one pool: money, gCO2e at a grid intensity, and their priced sum."""

    price_per_gpu_hour: float
    # gCO2e per GPU-hour = fixed (embodied) + per_kwh x grid intensity
    fixed_gco2_per_gpu_hour: float
    kwh_per_gpu_hour: float
    carbon_price_per_tco2e: float

    def gco2_per_gpu_hour(self, gco2_per_kwh: float | None) -> float:
        grid = UNKNOWN_GCO2_PER_KWH if gco2_per_kwh is None else gco2_per_kwh
        return self.fixed_gco2_per_gpu_hour + self.kwh_per_gpu_hour * grid

    def objective_per_gpu_hour(self, gco2_per_kwh: float | None) -> float:
        carbon = self.gco2_per_gpu_hour(gco2_per_kwh) * self.carbon_price_per_tco2e / 1e6
        return self.price_per_gpu_hour + carbon


def rate(pool: model.Pool, *, spot: bool, carbon_price_per_tco2e: float) -> Rate:
    price = pool.price_per_gpu_hour
    if spot and pool.spot_price_per_gpu_hour is not None:
        price = min(price, pool.spot_price_per_gpu_hour)
    return Rate(
        price_per_gpu_hour=price,
        fixed_gco2_per_gpu_hour=pool.embodied_gco2_per_gpu_hour,
        kwh_per_gpu_hour=pool.gpu_watts / 1000 * pool.pue,
        carbon_price_per_tco2e=carbon_price_per_tco2e,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Estimate:
    """Projection for one workload's whole expected run in one pool."""

    cost: float
    kgco2e: float
    objective: float
    # Facility kWh: GPU TDP x PUE x GPU-hours.
    kwh: float


def estimate(
    pool_rate: Rate,
    gpu_hours: float,
    gco2_per_kwh: float | None,
    *,
    ranked_by: Rate | None = None,
) -> Estimate:
    """The projection of ``gpu_hours`` at ``pool_rate`` and a grid intensity (before PUE; None
    is unknown, counted at ``UNKNOWN_GCO2_PER_KWH``), the objective taken from ``ranked_by``
    when the ranking used another rate (a pool of unknown intensity ranked under CostOnly
    counts no grid carbon in its objective, while budgets still count it)."""
    return Estimate(
        cost=gpu_hours * pool_rate.price_per_gpu_hour,
        kgco2e=gpu_hours * pool_rate.gco2_per_gpu_hour(gco2_per_kwh) / 1000,
        objective=gpu_hours * (ranked_by or pool_rate).objective_per_gpu_hour(gco2_per_kwh),
        kwh=gpu_hours * pool_rate.kwh_per_gpu_hour,
    )
