"""What one planning round knows, and what it has left.

Why this module exists: every part of a round (the catalog of classes, the walk, the deferral
search, the improvement pass, the wording) reads the same facts: the pools in name order, the
budgets by key, the forecasts and the instant. ``Context`` holds them once. The walk, the
deferral search and the improvement pass change the same few things as workloads are placed:
free GPUs per pool, money, kgCO2e and kWh left per budget, and the cursors past full pools.
``State`` holds those in one object the round owns, and every change goes through its methods,
so saving and restoring a round (the improvement pass tries assignments and undoes them) copies
all of it and no cursor can be left pointing past a pool that has room again.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Hashable, Mapping, Sequence

from greenplace.domain import model, series
from greenplace.engine import objective

__all__ = ["Context", "State"]

_Left = dict[str, float | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Context:
    """The facts one round plans against; a pool's index in ``pools`` is its name in the round."""

    # In name order, so the same snapshot gives the same plan in any input order.
    pools: tuple[model.Pool, ...]
    # By key, in key order.
    budgets: Mapping[str, model.Budget]
    # Forecast grid intensity per grid zone, for the deferral search.
    forecasts: Mapping[str, series.TimeSeries]
    now: datetime.datetime
    # How far apart the later starts of a deferral are (``model.Snapshot.deferral_step``).
    deferral_step: datetime.timedelta = model.DEFAULT_DEFERRAL_STEP

    @classmethod
    def of(cls, snapshot: model.Snapshot, now: datetime.datetime) -> Context:
        return cls(
            pools=tuple(sorted(snapshot.pools, key=lambda p: p.name)),
            budgets={b.key: b for b in sorted(snapshot.budgets, key=lambda b: b.key)},
            forecasts=snapshot.forecasts,
            now=now,
            deferral_step=snapshot.deferral_step,
        )

    def run_end(self, workload: model.Workload) -> datetime.datetime:
        """When ``workload`` ends if it starts now."""
        return self.now + datetime.timedelta(hours=workload.duration_hours)


@dataclasses.dataclass(slots=True, eq=False)
class State:
    """What is left in the round, and where walks may start; changed only by its methods."""

    context: Context
    # Free GPUs per pool index.
    free: list[int]
    # Left per budget key (None: that budget sets no such limit).
    money: _Left
    kgco2e: _Left
    kwh: _Left
    # Per ranking (a class's, or one grid zone's of a class), the first position that may still
    # have free GPUs: free GPUs only drop until something is given back, so the positions before
    # it are full. Cleared whenever GPUs are given back.
    cursors: dict[Hashable, int]

    @classmethod
    def initial(cls, context: Context) -> State:
        """The snapshot's free GPUs and budgets, as at the start of the round."""
        budgets = context.budgets
        return cls(
            context=context,
            free=[p.gpus_free for p in context.pools],
            money={k: b.money_remaining for k, b in budgets.items()},
            kgco2e={k: b.kgco2e_remaining for k, b in budgets.items()},
            kwh={k: b.kwh_remaining for k, b in budgets.items()},
            cursors={},
        )

    def reset(self) -> None:
        """Back to the start of the round."""
        self.restore(State.initial(self.context))

    def save(self) -> State:
        """A copy to ``restore`` later."""
        return State(
            context=self.context,
            free=list(self.free),
            money=dict(self.money),
            kgco2e=dict(self.kgco2e),
            kwh=dict(self.kwh),
            cursors=dict(self.cursors),
        )

    def restore(self, saved: State) -> None:
        """Back to ``saved`` (which stays as it was, so it may be restored again)."""
        self.free = list(saved.free)
        self.money = dict(saved.money)
        self.kgco2e = dict(saved.kgco2e)
        self.kwh = dict(saved.kwh)
        self.cursors = dict(saved.cursors)

    def take(
        self,
        pool: int,
        gpus: int,
        budgets: Sequence[model.Budget],
        projected: objective.Estimate,
    ) -> None:
        """Consume ``gpus`` of pool index ``pool`` and the ``projected`` run from ``budgets``."""
        self._charge(pool, gpus, budgets, projected, 1)

    def give_back(
        self,
        pool: int,
        gpus: int,
        budgets: Sequence[model.Budget],
        projected: objective.Estimate,
    ) -> None:
        """Undo one ``take``; the cursors start over, since a pool before one may have room."""
        self._charge(pool, gpus, budgets, projected, -1)
        self.cursors.clear()

    def first_with_room(self, ranking: Hashable, pools: Sequence[int]) -> int:
        """The first position of ``pools`` (pool indices in rank order, named ``ranking``) that
        may have free GPUs; moves that ranking's cursor past the full ones."""
        cursor = self.cursors.get(ranking, 0)
        free, count = self.free, len(pools)
        while cursor < count and free[pools[cursor]] == 0:
            cursor += 1
        self.cursors[ranking] = cursor
        return cursor

    def _charge(
        self,
        pool: int,
        gpus: int,
        budgets: Sequence[model.Budget],
        projected: objective.Estimate,
        sign: int,
    ) -> None:
        self.free[pool] -= sign * gpus
        for budget in budgets:
            key = budget.key
            money, kgco2e, kwh = self.money[key], self.kgco2e[key], self.kwh[key]
            if money is not None:
                self.money[key] = money - sign * projected.cost
            if kgco2e is not None:
                self.kgco2e[key] = kgco2e - sign * projected.kgco2e
            if kwh is not None:
                self.kwh[key] = kwh - sign * projected.kwh
