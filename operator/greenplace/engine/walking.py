"""The walk: one workload down its class's ranking, against what is left in this round.

Why this module exists: the walk is the planner's hot loop (it runs for every workload, again in
the improvement pass) and the only place that reads and consumes the round's free GPUs and
budgets. Keeping the two together makes "nothing is over-committed within a round" checkable in
one file: a placement is the first pool in rank order with room for the whole gang, nodes big
enough for its largest pod, certifications valid for the whole expected run and room in every
budget, and ``Walker.commit`` is the only write.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Mapping, Sequence

from greenplace.domain import model
from greenplace.engine import classes, objective, rules

__all__ = ["EPSILON", "Result", "Walk", "Walker", "obstacle", "over_budget"]

R = model.Reason
# Tolerance on money, kgCO2e, kWh and objective comparisons.
EPSILON = 1e-9
# The least left in a class's budgets (money, kgCO2e or kWh), and which budget.
_Left = tuple[float, model.Budget | None]
# ... for each of money, kgCO2e and kWh.
_Lefts = tuple[_Left, _Left, _Left]
_Amounts = dict[str, float | None]
_Saved = tuple[list[int], _Amounts, _Amounts, _Amounts]


@dataclasses.dataclass(slots=True)
class Walk:
    """The outcome of walking one class's ranked pools for one workload."""

    pos: int | None = None
    # Where the walk stopped (the chosen pool, or the preferred one a budget blocked) and the
    # projection there; the pools ranked after it are outranked.
    stop: int | None = None
    estimate: objective.Estimate | None = None
    # The pools passed over, at most the detail limit: a budget's rejection, or (position in
    # the ranking, reason, free GPUs then) whose message ``decisions`` writes only for the
    # final decision (most walks of a round are superseded by the improvement pass).
    skipped: list[model.Rejection | tuple[int, model.Reason, int]] = dataclasses.field(
        default_factory=list
    )
    # Every pool passed over, counted by reason (a plain dict: built for every walk).
    counts: dict[model.Reason, int] = dataclasses.field(default_factory=dict)
    # The preferred pool would exceed this budget and the budget's action is not Downgrade.
    blocked: tuple[model.Budget, model.Rejection] | None = None
    # The first budget rejection met on the way (the placement is a downgrade).
    downgraded: model.Rejection | None = None


@dataclasses.dataclass(slots=True)
class Result:
    """One workload in the round: placed (``walk`` set) or stopped by ``decision``."""

    index: int
    workload: model.Workload
    cls: classes.Class | None
    limit: int
    walk: Walk | None = None
    # Set when the workload is not placed this round.
    decision: model.Decision | None = None


class Walker:
    """What is left in the round (free GPUs per pool, money, kgCO2e and kWh per budget), and the
    walk that finds a pool in it."""

    def __init__(
        self,
        pools: Sequence[model.Pool],
        budgets: Mapping[str, model.Budget],
        now: datetime.datetime,
    ) -> None:
        self.pools = pools
        self.budgets = budgets
        self.now = now
        self.reset()

    def reset(self) -> None:
        """Back to the snapshot's free GPUs and budgets, as at the start of the round."""
        self.free = [p.gpus_free for p in self.pools]
        self.money = {k: b.money_remaining for k, b in self.budgets.items()}
        self.kg = {k: b.kgco2e_remaining for k, b in self.budgets.items()}
        self.kwh = {k: b.kwh_remaining for k, b in self.budgets.items()}

    def save(self) -> _Saved:
        return list(self.free), dict(self.money), dict(self.kg), dict(self.kwh)

    def restore(self, saved: _Saved) -> None:
        self.free, self.money, self.kg, self.kwh = saved

    def walk(self, cls: classes.Class, workload: model.Workload, limit: int) -> Walk:
        """The first pool of ``cls``'s ranking that can take ``workload`` now, and the pools
        passed over on the way (``limit`` of them detailed, all counted)."""
        ranked, free, pools = cls.ranked, self.free, self.pools
        count = len(ranked)
        cursor = cls.cursor
        while cursor < count and free[ranked[cursor]] == 0:
            cursor += 1
        cls.cursor = cursor
        walk = Walk()
        gpu_hours = workload.gpu_hours
        money = self._tightest(cls, self.money)
        kg = self._tightest(cls, self.kg)
        energy = self._tightest(cls, self.kwh)
        if count and (
            gpu_hours * cls.min_price > money[0] + EPSILON
            or gpu_hours * cls.min_gco2 / 1000 > kg[0] + EPSILON
            or gpu_hours * cls.min_kwh > energy[0] + EPSILON
        ):
            return self._unaffordable(cls, workload, walk, limit, left=(money, kg, energy))
        if cursor:
            walk.counts[R.INSUFFICIENT_CAPACITY] = cursor
            walk.skipped.extend((j, R.INSUFFICIENT_CAPACITY, 0) for j in range(min(cursor, limit)))
        now = self.now
        prices, gco2s, kwhs, windows = cls.prices, cls.gco2s, cls.kwhs, cls.windows
        for pos in range(cursor, count):
            index = ranked[pos]
            pool = pools[index]
            rejection: model.Rejection | None = None
            reason = obstacle(pool, workload, free=free[index], window=windows[pos], start=now)
            if reason is None:
                cost, gco2 = gpu_hours * prices[pos], gpu_hours * gco2s[pos]
                kwh = gpu_hours * kwhs[pos]
                if (
                    cost <= money[0] + EPSILON
                    and gco2 / 1000 <= kg[0] + EPSILON
                    and kwh <= energy[0] + EPSILON
                ):
                    walk.pos = walk.stop = pos
                    walk.estimate = cls.estimate(pos, gpu_hours, pool.gco2_per_kwh)
                    return walk
                over = over_budget(pool, (cost, gco2 / 1000, kwh), (money, kg, energy))
                walk.downgraded = walk.downgraded or over[1]
                if cls.action is not model.BudgetAction.DOWNGRADE:
                    walk.stop, walk.blocked = pos, over
                    walk.estimate = cls.estimate(pos, gpu_hours, pool.gco2_per_kwh)
                    walk.counts[R.BUDGET_EXCEEDED] = walk.counts.get(R.BUDGET_EXCEEDED, 0) + 1
                    walk.skipped.append(over[1])
                    return walk
                reason, rejection = R.BUDGET_EXCEEDED, over[1]
            walk.counts[reason] = walk.counts.get(reason, 0) + 1
            if len(walk.skipped) < limit:
                walk.skipped.append(rejection or (pos, reason, free[index]))
        return walk

    def commit(
        self, cls: classes.Class, workload: model.Workload, walk: Walk, sign: int = 1
    ) -> None:
        """Consume (or with ``sign`` -1 give back) the GPUs and budgets of a placement."""
        assert walk.pos is not None and walk.estimate is not None
        self.free[cls.ranked[walk.pos]] -= sign * workload.gpus
        for budget in cls.budgets:
            key = budget.key
            money, kg, kwh = self.money[key], self.kg[key], self.kwh[key]
            if money is not None:
                self.money[key] = money - sign * walk.estimate.cost
            if kg is not None:
                self.kg[key] = kg - sign * walk.estimate.kgco2e
            if kwh is not None:
                self.kwh[key] = kwh - sign * walk.estimate.kwh

    def uncommit(self, cls: classes.Class, workload: model.Workload, walk: Walk) -> None:
        self.commit(cls, workload, walk, sign=-1)

    def _tightest(self, cls: classes.Class, left: _Amounts) -> _Left:
        """The least left in any of the class's budgets (of money, kgCO2e or kWh), and which
        budget."""
        tightest: _Left = (math.inf, None)
        for budget in cls.budgets:
            value = left[budget.key]
            if value is not None and value < tightest[0]:
                tightest = (value, budget)
        return tightest

    def _unaffordable(
        self,
        cls: classes.Class,
        workload: model.Workload,
        walk: Walk,
        limit: int,
        *,
        left: _Lefts,
    ) -> Walk:
        """Even the cheapest compliant pool would exceed a budget: every pool is rejected for
        it (checked first, so a round with an exhausted budget stays fast)."""
        gpu_hours = workload.gpu_hours

        def projected(pos: int) -> tuple[float, float, float]:
            return (
                gpu_hours * cls.prices[pos],
                gpu_hours * cls.gco2s[pos] / 1000,
                gpu_hours * cls.kwhs[pos],
            )

        walk.counts[R.BUDGET_EXCEEDED] = len(cls.ranked)
        for pos in range(min(len(cls.ranked), limit)):
            pool = self.pools[cls.ranked[pos]]
            walk.skipped.append(over_budget(pool, projected(pos), left)[1])
        first = over_budget(self.pools[cls.ranked[0]], projected(0), left)
        walk.downgraded = first[1]
        if cls.action is not model.BudgetAction.DOWNGRADE:
            walk.blocked = first
        return walk


def obstacle(
    pool: model.Pool,
    workload: model.Workload,
    *,
    free: int | None = None,
    window: rules.CertificateWindow | None = None,
    start: datetime.datetime | None = None,
) -> model.Reason | None:
    """Why ``pool`` cannot take ``workload``, if it cannot: fewer GPUs ``free`` than the whole
    gang needs, a node smaller than its largest pod, or certifications whose joint ``window``
    ends before a run from ``start`` does. The one room-and-fit check of the walk, the
    improvement pass (which passes no ``free``: a swap weighs room with its partner) and the
    deferral search (which passes no ``window``: it checks certifications at each later
    start)."""
    if free is not None and free < workload.gpus:
        return R.INSUFFICIENT_CAPACITY
    node = pool.gpus_per_node
    if node is not None and workload.largest_pod_gpus > node:
        return R.POD_TOO_LARGE_FOR_NODE
    if window is not None:
        assert start is not None
        end = start + datetime.timedelta(hours=workload.duration_hours)
        if not window.covers(start, end):
            return R.CERTIFICATION_EXPIRES_DURING_RUN
    return None


def over_budget(
    pool: model.Pool, projected: tuple[float, float, float], left: _Lefts
) -> tuple[model.Budget, model.Rejection]:
    """The budget a projection (cost, kgCO2e, kWh) exceeds, money first, then kgCO2e, then kWh,
    with the rejection that says so."""
    cost, kgco2e, kwh = projected
    money, kg, energy = left
    if cost > money[0] + EPSILON and money[1] is not None:
        budget = money[1]
        what = f"{cost:.2f} {budget.currency}"
        left_text = f"{money[0]:.2f} {budget.currency}"
    elif kgco2e > kg[0] + EPSILON and kg[1] is not None:
        budget = kg[1]
        what, left_text = f"{kgco2e:.2f} kgCO2e", f"{kg[0]:.2f} kgCO2e"
    else:
        assert energy[1] is not None
        budget = energy[1]
        what, left_text = f"{kwh:.2f} kWh", f"{energy[0]:.2f} kWh"
    return budget, model.Rejection(
        pool.name,
        R.BUDGET_EXCEEDED,
        f"projected {what} exceeds the {left_text} left in Budget {budget.key}; fix: raise "
        "the budget, shorten the run, or wait for the next period",
    )
