"""The walk: one workload down its class's ranking, against what is left in this round.

Why this module exists: the walk is the planner's hot loop (it runs for every workload, again in
the improvement pass), and deciding whether a pool can take a workload and committing it belong
together, so "nothing is over-committed within a round" is checkable in one file: a placement is
the first pool in rank order with room for the whole gang, nodes big enough for its largest pod
(``obstacle``, the one room-and-fit check, which the deferral search and the improvement pass
use too), certifications valid for the whole expected run and room in every budget; and
``Walker.commit``/``uncommit`` are the only callers that change what the round has left
(``rounds.State.take``/``give_back``).
"""

from __future__ import annotations

import dataclasses
import datetime
import math

from greenplace.domain import model
from greenplace.engine import classes, objective, rounds, rules

__all__ = [
    "Left",
    "OverBudget",
    "Passed",
    "Placement",
    "Tightest",
    "Walk",
    "Walker",
    "obstacle",
    "over_budget",
]

R = model.Reason
_EPSILON = objective.EPSILON  # bound here: the walk is the hot loop


@dataclasses.dataclass(frozen=True, slots=True)
class Passed:
    """A pool the walk passed over, recorded cheaply: ``engine.decisions`` writes its message
    only for the final decision (most walks of a round are superseded by the improvement
    pass)."""

    pos: int  # in the class's ranking
    reason: model.Reason
    free: int  # free GPUs then


# The records a walk makes are not changed once made, but are not frozen either: a frozen
# dataclass sets each field through object.__setattr__, which made the 10,000-workload round
# several percent slower.


@dataclasses.dataclass(slots=True)
class OverBudget:
    """The budget a projection exceeds, and the rejection that says so."""

    budget: model.Budget
    rejection: model.Rejection


@dataclasses.dataclass(slots=True)
class Walk:
    """The outcome of walking one class's ranked pools for one workload."""

    pos: int | None = None
    # Where the walk stopped (the chosen pool, or the preferred one a budget blocked) and the
    # projection there; the pools ranked after it are outranked.
    stop: int | None = None
    estimate: objective.Estimate | None = None
    # The pools passed over, at most the detail limit: a budget's rejection, or a pool whose
    # rejection is written later.
    skipped: tuple[model.Rejection | Passed, ...] = ()
    # Every pool passed over, counted by reason.
    counts: dict[model.Reason, int] = dataclasses.field(default_factory=dict)
    # The preferred pool would exceed this budget and the budget's action is not Downgrade.
    blocked: OverBudget | None = None
    # The first budget rejection met on the way (the placement is a downgrade).
    downgraded: model.Rejection | None = None

    @property
    def stopped_by_budget(self) -> bool:
        """A budget blocked the walk, or passed over some pool."""
        return self.blocked is not None or bool(self.counts.get(R.BUDGET_EXCEEDED))


@dataclasses.dataclass(slots=True)
class Placement:
    """A workload a walk placed in this round, its GPUs and budgets committed."""

    index: int  # in arrival order
    workload: model.Workload
    cls: classes.Class
    # How many rejected pools of each kind its decision details.
    limit: int
    walk: Walk


@dataclasses.dataclass(slots=True)
class Tightest:
    """The least left of one kind (money, kgCO2e or kWh) in a class's budgets, and in which
    budget (None: no budget of the class limits it)."""

    amount: float
    budget: model.Budget | None


@dataclasses.dataclass(slots=True)
class Left:
    """What a class's budgets have left, the tightest of each kind."""

    money: Tightest
    kgco2e: Tightest
    kwh: Tightest


class Walker:
    """The walk that finds a pool in what is left of the round (``rounds.State``), and the only
    code that consumes it or gives it back."""

    def __init__(self, context: rounds.Context, state: rounds.State) -> None:
        self.pools = context.pools
        self.now = context.now
        self.state = state
        # A full pool passed over at each position of a ranking: the same record every time.
        self.full = tuple(Passed(pos, R.INSUFFICIENT_CAPACITY, 0) for pos in range(len(self.pools)))

    def walk(self, cls: classes.Class, workload: model.Workload, limit: int) -> Walk:
        """The first pool of ``cls``'s ranking that can take ``workload`` now, and the pools
        passed over on the way (``limit`` of them detailed, all counted)."""
        state = self.state
        ranked, free, pools = cls.ranked, state.free, self.pools
        count = len(ranked)
        cursor = state.first_with_room(cls, ranked)
        gpu_hours = workload.gpu_hours
        left = _left(cls, state)
        if left is None:
            money = kg = energy = math.inf
        else:
            money, kg, energy = left.money.amount, left.kgco2e.amount, left.kwh.amount
        if (
            left is not None
            and count
            and (
                gpu_hours * cls.min_price > money + _EPSILON
                or gpu_hours * cls.min_gco2 / 1000 > kg + _EPSILON
                or gpu_hours * cls.min_kwh > energy + _EPSILON
            )
        ):
            return self._unaffordable(cls, workload, limit, left)
        counts: dict[model.Reason, int] = {}
        skipped: list[model.Rejection | Passed] = []
        downgraded: model.Rejection | None = None
        if cursor:
            counts[R.INSUFFICIENT_CAPACITY] = cursor
            skipped.extend(self.full[: min(cursor, limit)])
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
                    cost <= money + _EPSILON
                    and gco2 / 1000 <= kg + _EPSILON
                    and kwh <= energy + _EPSILON
                ):
                    return Walk(
                        pos=pos,
                        stop=pos,
                        estimate=cls.estimate(pos, gpu_hours, pool.gco2_per_kwh),
                        skipped=tuple(skipped),
                        counts=counts,
                        downgraded=downgraded,
                    )
                assert left is not None  # nothing is over budget without a budget
                over = over_budget(pool, cost=cost, kgco2e=gco2 / 1000, kwh=kwh, left=left)
                downgraded = downgraded or over.rejection
                if cls.action is not model.BudgetAction.DOWNGRADE:
                    counts[R.BUDGET_EXCEEDED] = counts.get(R.BUDGET_EXCEEDED, 0) + 1
                    skipped.append(over.rejection)
                    return Walk(
                        stop=pos,
                        estimate=cls.estimate(pos, gpu_hours, pool.gco2_per_kwh),
                        skipped=tuple(skipped),
                        counts=counts,
                        blocked=over,
                        downgraded=downgraded,
                    )
                reason, rejection = R.BUDGET_EXCEEDED, over.rejection
            counts[reason] = counts.get(reason, 0) + 1
            if len(skipped) < limit:
                skipped.append(rejection or Passed(pos, reason, free[index]))
        return Walk(skipped=tuple(skipped), counts=counts, downgraded=downgraded)

    def commit(self, cls: classes.Class, workload: model.Workload, walk: Walk) -> None:
        """Consume the GPUs and budgets of a placement."""
        assert walk.pos is not None and walk.estimate is not None
        self.state.take(cls.ranked[walk.pos], workload.gpus, cls.budgets, walk.estimate)

    def uncommit(self, cls: classes.Class, workload: model.Workload, walk: Walk) -> None:
        """Give back the GPUs and budgets of a placement (``commit`` undone)."""
        assert walk.pos is not None and walk.estimate is not None
        self.state.give_back(cls.ranked[walk.pos], workload.gpus, cls.budgets, walk.estimate)

    def _unaffordable(
        self, cls: classes.Class, workload: model.Workload, limit: int, left: Left
    ) -> Walk:
        """Even the cheapest compliant pool would exceed a budget: every pool is rejected for
        it (checked first, so a round with an exhausted budget stays fast)."""
        gpu_hours = workload.gpu_hours

        def over(pos: int) -> OverBudget:
            return over_budget(
                self.pools[cls.ranked[pos]],
                cost=gpu_hours * cls.prices[pos],
                kgco2e=gpu_hours * cls.gco2s[pos] / 1000,
                kwh=gpu_hours * cls.kwhs[pos],
                left=left,
            )

        first = over(0)
        return Walk(
            skipped=tuple(over(pos).rejection for pos in range(min(len(cls.ranked), limit))),
            counts={R.BUDGET_EXCEEDED: len(cls.ranked)},
            blocked=None if cls.action is model.BudgetAction.DOWNGRADE else first,
            downgraded=first.rejection,
        )


def _left(cls: classes.Class, state: rounds.State) -> Left | None:
    """What the class's budgets have left (None: the class has no budget)."""
    if not cls.budgets:
        return None
    return Left(
        money=_tightest(cls, state.money),
        kgco2e=_tightest(cls, state.kgco2e),
        kwh=_tightest(cls, state.kwh),
    )


def _tightest(cls: classes.Class, left: dict[str, float | None]) -> Tightest:
    """The least left in any of the class's budgets (of money, kgCO2e or kWh), and which
    budget."""
    amount, tightest = math.inf, None
    for budget in cls.budgets:
        value = left[budget.key]
        if value is not None and value < amount:
            amount, tightest = value, budget
    return Tightest(amount, tightest)


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
    pool: model.Pool, *, cost: float, kgco2e: float, kwh: float, left: Left
) -> OverBudget:
    """The budget a projection exceeds, money first, then kgCO2e, then kWh, with the rejection
    that says so."""
    money, kg, energy = left.money, left.kgco2e, left.kwh
    if cost > money.amount + _EPSILON and money.budget is not None:
        budget = money.budget
        what = f"{cost:.2f} {budget.currency}"
        left_text = f"{money.amount:.2f} {budget.currency}"
    elif kgco2e > kg.amount + _EPSILON and kg.budget is not None:
        budget = kg.budget
        what, left_text = f"{kgco2e:.2f} kgCO2e", f"{kg.amount:.2f} kgCO2e"
    else:
        assert energy.budget is not None
        budget = energy.budget
        what, left_text = f"{kwh:.2f} kWh", f"{energy.amount:.2f} kWh"
    return OverBudget(
        budget,
        model.Rejection(
            pool.name,
            R.BUDGET_EXCEEDED,
            f"projected {what} exceeds the {left_text} left in Budget {budget.key}; fix: raise "
            "the budget, shorten the run, or wait for the next period",
        ),
    )
