"""The online placement strategies compared by the simulator, all behind one signature.

Why this module exists: "what would it have saved us" needs the same inputs replayed under what a
cluster does without greenplace and under greenplace itself. Each strategy sees exactly what the
planner sees, a ``domain.model.Snapshot`` at one instant, and answers which waiting workload starts
in which pool now (anything not named keeps waiting):

- ``first-fit``: carbon- and price-blind, the first pool (in fleet order) with room and allowed by
  the namespace's sovereignty rules (the planner's hard rules, ``scenario.breaches``), as
  kube-scheduler with a hand-written region affinity or Kueue's "first flavor with room" does;
- ``cheapest``: the allowed pool with room and the lowest price per GPU-hour now;
- ``lowest-carbon``: the allowed pool with room and the lowest effective intensity now, placed at
  once (no ceiling, no waiting);
- ``greenplace``: ``greenplace.engine.planner.plan`` itself, unchanged;
- ``unguarded``: first-fit that ignores every policy (kube-scheduler without affinity); it exists
  to show that sovereignty violations are counted, not assumed away.

Baselines place ungoverned workloads anywhere; greenplace holds them (fail-closed).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Mapping

from greenplace.domain import model
from greenplace.engine import planner
from greenplace.sim import scenario

__all__ = ["ONLINE", "Choice", "OnlineStrategy", "by_name"]


@dataclasses.dataclass(frozen=True, slots=True)
class Choice:
    """A strategy's answer at one instant; a waiting workload not named keeps waiting."""

    placed: Mapping[str, str]  # workload key -> pool name: starts now
    refused: tuple[str, ...] = ()  # will never be placed as things stand
    # Deferred on purpose: workload key -> not_before (left alone until then, then re-planned).
    deferred: Mapping[str, datetime.datetime] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class OnlineStrategy:
    name: str
    description: str
    respects_policies: bool
    choose: Callable[[model.Snapshot, datetime.datetime], Choice]


def _greenplace(snapshot: model.Snapshot, now: datetime.datetime) -> Choice:
    plan = planner.plan(snapshot, now)
    return Choice(
        placed={d.workload: d.pool for d in plan.placed() if d.pool is not None},
        refused=tuple(d.workload for d in plan.refused()),
        deferred={d.workload: d.not_before for d in plan.deferred() if d.not_before is not None},
    )


PoolRank = Callable[[int, model.Pool], tuple[float, ...]]


def _greedy(rank: PoolRank, *, respect_policies: bool) -> Callable[..., Choice]:
    """Oldest workload first, each into the best-ranked pool that is allowed and has room."""

    def choose(snapshot: model.Snapshot, now: datetime.datetime) -> Choice:
        ordered = sorted(enumerate(snapshot.pools), key=lambda item: rank(*item))
        free = {pool.name: pool.gpus_free for pool in snapshot.pools}
        chosen: dict[str, str] = {}
        for workload in sorted(snapshot.workloads, key=lambda w: (w.created, w.key)):
            governing = (
                tuple(p for p in snapshot.policies if p.selects(workload))
                if respect_policies
                else ()
            )
            for _, pool in ordered:
                if free[pool.name] >= workload.gpus and not (
                    respect_policies and scenario.breaches(governing, pool, workload, now)
                ):
                    chosen[workload.key] = pool.name
                    free[pool.name] -= workload.gpus
                    break
        return Choice(chosen)

    return choose


def _fleet_order(index: int, pool: model.Pool) -> tuple[float, ...]:
    return (index,)


def _price(index: int, pool: model.Pool) -> tuple[float, ...]:
    return (pool.price_per_gpu_hour, index)


def _carbon(index: int, pool: model.Pool) -> tuple[float, ...]:
    intensity = pool.effective_gco2_per_kwh
    return (math.inf if intensity is None else intensity, pool.price_per_gpu_hour, index)


ONLINE: tuple[OnlineStrategy, ...] = (
    OnlineStrategy(
        "first-fit",
        "carbon- and price-blind: first allowed pool with room, in fleet order",
        True,
        _greedy(_fleet_order, respect_policies=True),
    ),
    OnlineStrategy(
        "cheapest",
        "lowest price per GPU-hour among allowed pools with room, placed at once",
        True,
        _greedy(_price, respect_policies=True),
    ),
    OnlineStrategy(
        "lowest-carbon",
        "lowest effective intensity among allowed pools with room, placed at once",
        True,
        _greedy(_carbon, respect_policies=True),
    ),
    OnlineStrategy(
        "greenplace",
        "greenplace.engine.planner.plan, as the operator runs it",
        True,
        _greenplace,
    ),
    OnlineStrategy(
        "unguarded",
        "first pool with room in fleet order, ignoring every policy (no affinity at all)",
        False,
        _greedy(_fleet_order, respect_policies=False),
    ),
)


def by_name(name: str) -> OnlineStrategy:
    for strategy in ONLINE:
        if strategy.name == name:
            return strategy
    known = ", ".join(s.name for s in ONLINE)
    raise KeyError(f"unknown strategy {name!r}; known: {known}, oracle")
