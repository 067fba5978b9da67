"""Turn signal readings into the planner's inputs, and nothing else.

Why this module exists: the planner reasons over ``domain.model.Pool`` values. This module is the
only place where readings become a pool's ``gco2_per_kwh`` and ``price_per_gpu_hour``, and it
only ever replaces those two fields: a signal can never change a pool's location, jurisdiction
or certifications, so sovereignty never depends on a signal (tests check this field by field).

When carbon is missing, the policy decides (``MissingCarbon``, the value of
``Policy.on_missing_carbon``; ``missing_carbon`` reads it):

- ``HOLD`` (the default, fail-closed): the pool's intensity is None; a policy with a carbon
  ceiling then excludes the pool with reason ``CarbonUnknown`` and pods wait, up to their deadline.
- ``COST_ONLY``: the pool's intensity is None and ``PlannerCarbon.carbon_rules_apply`` is False;
  the planner does not let that policy's ceiling exclude the pool, and ranks it on cost +
  embodied carbon only when every governing policy says CostOnly (``engine.rules`` and
  ``engine.planner`` honour ``Policy.on_missing_carbon``). Either way the pool's intensity stays
  None here: the choice is the policy's, made in the planner, so one pool can be held for one
  team and ranked on cost for another.

A missing price falls back to the pool's list price from its spec (the chain's static link);
with no price at all the pool keeps its spec price and the status says so.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping

from greenplace.domain import model, series
from greenplace.signals import chain, contract

__all__ = [
    "MissingCarbon",
    "PlannerCarbon",
    "apply_to_pools",
    "carbon_for_planner",
    "forecasts_for_planner",
    "missing_carbon",
]


class MissingCarbon(enum.StrEnum):
    """A PlacementPolicy's choice when no source gives a usable carbon intensity."""

    HOLD = "Hold"
    COST_ONLY = "CostOnly"


@dataclasses.dataclass(frozen=True, slots=True)
class PlannerCarbon:
    """The carbon value the planner needs for one grid zone, with why it is what it is."""

    gco2_per_kwh: float | None
    status: contract.SignalStatus
    carbon_rules_apply: bool
    source: str | None = None


def missing_carbon(policy: model.Policy) -> MissingCarbon:
    """What ``policy`` does when a pool's carbon intensity is unknown."""
    return MissingCarbon(policy.on_missing_carbon)


def carbon_for_planner(reading: contract.Reading, on_missing: MissingCarbon) -> PlannerCarbon:
    """Map a carbon reading to planner input following the policy's ``on_missing`` choice."""
    if reading.key.kind is not contract.SignalKind.CARBON_INTENSITY:
        raise ValueError(
            f"carbon_for_planner got a {reading.key.kind} reading for {reading.key.subject}; "
            "pass a carbon_intensity reading"
        )
    if reading.value is not None:
        return PlannerCarbon(reading.value, reading.status, True, reading.source)
    return PlannerCarbon(None, reading.status, on_missing is MissingCarbon.HOLD, None)


def apply_to_pools(
    pools: Iterable[model.Pool],
    carbon_by_zone: Mapping[str, PlannerCarbon],
    price_by_pool: Mapping[str, contract.Reading],
) -> tuple[model.Pool, ...]:
    """Pools with intensity and price from the signals; every other field is left untouched."""
    updated = []
    for pool in pools:
        carbon = carbon_by_zone.get(pool.location.grid_zone)
        price = price_by_pool.get(pool.name)
        updated.append(
            dataclasses.replace(
                pool,
                gco2_per_kwh=None if carbon is None else carbon.gco2_per_kwh,
                price_per_gpu_hour=(
                    pool.price_per_gpu_hour if price is None or price.value is None else price.value
                ),
            )
        )
    return tuple(updated)


def forecasts_for_planner(
    readings: Iterable[chain.ForecastReading],
) -> dict[str, series.TimeSeries]:
    """``Snapshot.forecasts``: the grid zones whose forecast is known (absent = no deferral)."""
    return {
        r.key.subject: r.series
        for r in readings
        if r.series is not None and r.key.kind is contract.SignalKind.CARBON_INTENSITY
    }
