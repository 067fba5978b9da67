"""The placement planner: one pure function from a snapshot to a plan.

Why this module exists: every placement greenplace makes — in the operator, the simulator and the
benchmarks — goes through ``plan``. It reads only its arguments (no clock, no I/O, no Kubernetes),
so the same snapshot always gives the same plan, and the plan says for every workload which pools
were weighed and why each one lost. ``docs/planner.md`` is the user-facing description.

A round, for the workloads in arrival order (oldest first, then by key):

1. **Governance**: the workload must be selected by at least one ``Policy`` of its namespace
   (fail-closed); every selecting policy applies (their rules intersect).
2. **Hard rules** (``engine.rules``), computed once per round for each *class* of workloads that
   share policies, data residency and spot flag: location, legal regime, extraterritorial
   exposure, certifications (valid now), budget currency, carbon ceiling on grid x PUE.
3. **Ranking**: compliant pools sorted once per class by the objective rate per GPU-hour
   (``engine.objective``), then effective intensity, price and name, so ties are deterministic.
4. **Walk**: the first pool in rank order with room for the whole gang, nodes big enough for its
   largest pod, certifications valid for the whole expected run, and room in every budget. When a
   budget would be exceeded the budget's action decides: Downgrade keeps walking to cheaper pools,
   Defer waits for the next period, Reject refuses.
5. **Deferral**: a workload with a deferral window (max delay, deadline) waits for a later slot
   when the grid forecasts promise at least ``deferral_min_saving_fraction`` less carbon and a lower
   objective; with no compliant pool under its carbon ceiling now, it waits for the first slot
   under the ceiling.
6. **Commit**: GPUs and budgets are consumed, so nothing is over-committed within the round.

Then an improvement pass re-assigns the admitted workloads longest-first (long runs gain most from
the cheapest capacity) and keeps the result only if every one of them still fits and the total
objective drops; workloads that found no room may then backfill the space that freed up. Who is
admitted stays decided by arrival order, so the pass never trades an old workload for a young one.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
from collections.abc import Collection, Mapping, Sequence

from greenplace.domain import model, series
from greenplace.engine import objective, rules

__all__ = ["DEFERRAL_STEP", "DETAIL_LIMIT", "plan", "why_not"]

R = model.Reason
_Hard = model.Rejection | rules.CertificateWindow
_Window = rules.CertificateWindow | None
_Rejection = model.Rejection | None

# How many rejected pools of each kind (passed over, outranked, excluded) a decision details;
# ``rejected_by_reason`` still counts all of them, and ``why_not`` details every pool.
DETAIL_LIMIT = 3
# Granularity of the later start times the planner considers when deferring.
DEFERRAL_STEP = datetime.timedelta(minutes=30)
# How many orders the improvement pass tries before keeping the arrival-order assignment.
IMPROVEMENT_ATTEMPTS = 4
# ... and how many walks they may take in all (a 10,000-workload round gets one attempt).
IMPROVEMENT_WALKS = 12_000
# How many (workload, better pool) pairs the local improvement may look at in one round ...
SWAP_CHECKS = 20_000
# ... and, for large rounds, at most this many divided by the placed workloads (a 10,000-workload
# round gets 5,000, like IMPROVEMENT_WALKS gives it one attempt): keeps a round near linear.
SWAP_CHECKS_SCALE = 25_000_000
SWAP_CHECKS_FLOOR = 5_000
# The furthest ahead a deferral looks, whatever the window says.
MAX_DEFERRAL = datetime.timedelta(days=7)
_EPSILON = 1e-9


def plan(
    snapshot: model.Snapshot, now: datetime.datetime, *, detail_for: Collection[str] = ()
) -> model.Plan:
    """Decide where each workload of ``snapshot`` runs now, or why it waits.

    ``detail_for`` names workloads (``namespace/name``) whose decisions list every rejected pool
    instead of the most telling few; it never changes what is decided.
    """
    return _Round(snapshot, now, frozenset(detail_for)).run()


def why_not(
    snapshot: model.Snapshot, now: datetime.datetime, workload: str, pool: str
) -> tuple[model.Decision | None, model.Rejection | None]:
    """The decision for ``workload`` with every alternative, and why ``pool`` was not chosen.

    The rejection is None when ``pool`` was chosen; the decision is None when the snapshot has no
    such workload. A pool that was never weighed (no policy governs the workload, a budget is
    missing) gets the decision's own reason.
    """
    decision = plan(snapshot, now, detail_for={workload}).decision(workload)
    if decision is None or decision.pool == pool:
        return decision, None
    for rejection in decision.alternatives:
        if rejection.pool == pool:
            return decision, rejection
    if all(p.name != pool for p in snapshot.pools):
        return decision, model.Rejection(pool, R.NO_COMPLIANT_POOL, "no GpuPool of that name")
    return decision, model.Rejection(pool, decision.reason, decision.message)


@dataclasses.dataclass(slots=True)
class _Class:
    """Workloads with the same policies, data residency and spot flag see the same compliant
    pools in the same order: computed once per round, not once per workload."""

    policies: tuple[model.Policy, ...]
    keys: tuple[str, ...]
    budgets: tuple[model.Budget, ...]
    missing_budget: str | None
    action: model.BudgetAction
    carbon_price: float
    max_delay: datetime.timedelta | None
    min_saving: float
    # Compliant now, best first, with aligned per-pool facts.
    ranked: list[int]
    # Pool index -> position in ``ranked``.
    position: dict[int, int]
    rates: list[objective.Rate]
    windows: list[rules.CertificateWindow | None]
    # Per GPU-hour at the live intensity: money and gCO2e (budgets are checked on these).
    prices: list[float]
    gco2s: list[float]
    min_price: float
    min_gco2: float
    # Some policy sets a carbon ceiling.
    ceiling: bool
    # Lowest effective intensity from each position on (what "lowest carbon with room" means).
    min_intensity_from: list[float]
    # Pools excluded by a hard rule, and their count per reason.
    static: tuple[model.Rejection, ...]
    static_counts: collections.Counter[model.Reason]
    # Pools passing sovereignty (even if above a ceiling now), per grid zone, best first.
    zones: dict[str, list[tuple[int, objective.Rate, rules.CertificateWindow | None]]]
    largest_pool_gpus: int
    # Positions from ``above`` on are above a carbon ceiling now (only in a waived class, see
    # ``_Round._waived``); before it, every pool is compliant.
    above: int
    # Some pool is excluded only by ceilings that yield at the deadline: a workload whose latest
    # start has come may use the waived class.
    waivable: bool
    # Every policy ranks a pool of unknown intensity on cost + embodied carbon only (CostOnly).
    cost_only: bool
    residency: frozenset[str] | None
    spot: bool
    waived: bool = False
    # First position in ``ranked`` (and in each zone's list) that may still have free GPUs:
    # free GPUs only drop within a round, so these only move forward.
    cursor: int = 0
    zone_cursors: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(slots=True)
class _Walk:
    """The outcome of walking one class's ranked pools for one workload."""

    pos: int | None = None
    # Where the walk stopped (the chosen pool, or the preferred one a budget blocked) and the
    # projection there; the pools ranked after it are outranked.
    stop: int | None = None
    estimate: objective.Estimate | None = None
    # The pools passed over, at most the detail limit: a budget's rejection, or (position in
    # the ranking, reason, free GPUs then) whose message ``_Round._skipped`` writes only for the
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
class _Result:
    index: int
    workload: model.Workload
    cls: _Class | None
    limit: int
    walk: _Walk | None = None
    # Set when the workload is not placed this round.
    decision: model.Decision | None = None


class _Round:
    """The mutable state of one planning round; ``plan`` wraps it in a pure function."""

    def __init__(
        self, snapshot: model.Snapshot, now: datetime.datetime, detail_for: frozenset[str]
    ) -> None:
        self.now = now
        self.detail_for = detail_for
        self.pools = sorted(snapshot.pools, key=lambda p: p.name)
        self.free = [p.gpus_free for p in self.pools]
        self.budgets = {b.key: b for b in sorted(snapshot.budgets, key=lambda b: b.key)}
        self.money = {k: b.money_remaining for k, b in self.budgets.items()}
        self.kg = {k: b.kgco2e_remaining for k, b in self.budgets.items()}
        self.by_namespace: dict[str, list[model.Policy]] = collections.defaultdict(list)
        for policy in sorted(snapshot.policies, key=lambda p: p.key):
            self.by_namespace[policy.namespace].append(policy)
        self.forecasts = snapshot.forecasts
        self.workloads = sorted(snapshot.workloads, key=lambda w: (w.created, w.key))
        self.classes: dict[tuple[object, ...], _Class] = {}
        # Per policy, per pool: its hard rules (a rejection or a certificate window) and its
        # carbon ceiling now; per residency label, per pool: the residency rule.
        self.facts: dict[str, list[tuple[_Hard, model.Rejection | None]]] = {}
        self.residency: dict[frozenset[str], list[model.Rejection | None]] = {}
        self.rates: dict[tuple[int, bool, float, bool], objective.Rate] = {}
        self.full: dict[tuple[int, int], model.Rejection] = {}
        self.compliance: dict[
            tuple[object, ...], list[tuple[int, _Window, _Rejection, _Rejection]]
        ] = {}
        self.excluded: dict[tuple[object, ...], list[model.Rejection]] = {}
        self.cumulative = {z: series.Cumulative(s) for z, s in sorted(snapshot.forecasts.items())}
        self.means: dict[tuple[str, int, float], float | None] = {}
        self.zone_slots: dict[tuple[object, ...], tuple[float, int, int, float] | None] = {}
        self.best_slots: dict[tuple[str, float, int], tuple[int, float] | None] = {}

    def run(self) -> model.Plan:
        results = [self._decide(i, w) for i, w in enumerate(self.workloads)]
        self._improve(results)
        return model.Plan(at=self.now, decisions=tuple(self._finish(r) for r in results))

    # -- phase A: arrival order ----------------------------------------------------------------

    def _decide(self, index: int, workload: model.Workload) -> _Result:
        governing = tuple(
            p for p in self.by_namespace.get(workload.namespace, ()) if p.selects(workload)
        )
        if not governing:
            return _Result(index, workload, None, 0, decision=_no_policy(workload))
        cls = self._class(governing, workload)
        limit = len(self.pools) if workload.key in self.detail_for else DETAIL_LIMIT
        result = _Result(index, workload, cls, limit)
        self._try(result)
        return result

    def _try(self, result: _Result) -> None:
        cls, workload = result.cls, result.workload
        assert cls is not None
        if cls.missing_budget is not None:
            result.decision = _budget_unknown(workload, cls)
            return
        walk = self._walk(cls, workload, result.limit)
        result.walk = walk
        if walk.pos is None:
            waived = self._waive(cls, workload, walk, result.limit)
            if waived is not None:
                result.cls, result.walk = waived
                self._commit(waived[0], workload, waived[1])
                return
            result.decision = self._not_placed(cls, workload, walk, result.limit)
            return
        result.decision = self._cleaner_slot(cls, workload, walk, result.limit)
        if result.decision is None:
            self._commit(cls, workload, walk)

    def _waive(
        self, cls: _Class, workload: model.Workload, walk: _Walk, limit: int
    ) -> tuple[_Class, _Walk] | None:
        """Past its latest start, a workload no pool under its ceilings can take now (and that
        no budget holds) walks the class whose yielding ceilings are waived: the compliant pools
        first, then those above a ceiling, best objective first. None when that does not place
        it either (the decision then stays the one without waiver)."""
        if not cls.waivable or walk.blocked is not None or walk.counts.get(R.BUDGET_EXCEEDED):
            return None
        latest = _latest_start(cls, workload)
        if latest is None or latest > self.now:
            return None
        waived = self._waived(cls)
        found = self._walk(waived, workload, limit)
        return None if found.pos is None else (waived, found)

    def _waived(self, cls: _Class) -> _Class:
        key = (cls.keys, cls.residency, cls.spot, "waived")
        waived = self.classes.get(key)
        if waived is None:
            waived = self.classes[key] = self._build_class(
                cls.policies, cls.residency, cls.spot, waive=True
            )
        return waived

    def _class(self, governing: tuple[model.Policy, ...], workload: model.Workload) -> _Class:
        residency = workload.data_residency
        key = (tuple(p.key for p in governing), residency, workload.spot)
        cls = self.classes.get(key)
        if cls is None:
            cls = self.classes[key] = self._build_class(governing, residency, workload.spot)
        return cls

    def _build_class(
        self,
        policies: tuple[model.Policy, ...],
        residency: frozenset[str] | None,
        spot: bool,
        *,
        waive: bool = False,
    ) -> _Class:
        """The class of workloads governed by ``policies``; with ``waive``, the pools above a
        ceiling that yields at the deadline rank after the compliant ones instead of being
        excluded (for workloads whose latest start has come)."""
        budget_keys = sorted({f"{p.namespace}/{p.budget}" for p in policies if p.budget})
        missing = next((k for k in budget_keys if k not in self.budgets), None)
        budgets = tuple(self.budgets[k] for k in budget_keys if k in self.budgets)
        actions = {b.action for b in budgets}
        action = next(
            (a for a in (model.BudgetAction.REJECT, model.BudgetAction.DEFER) if a in actions),
            model.BudgetAction.DOWNGRADE,
        )
        carbon_price = max(p.carbon_price_per_tco2e for p in policies)
        delays = [p.max_delay for p in policies if p.max_delay is not None]
        cost_only = all(p.on_missing_carbon == "CostOnly" for p in policies)
        ok: list[tuple[bool, tuple[float, float, float, str], int, objective.Rate, _Window]] = []
        zones: dict[str, list[tuple[float, int, objective.Rate, _Window]]]
        zones = collections.defaultdict(list)
        largest = 0
        sovereign, static = self._compliance(policies, residency, budgets)
        static = list(static)
        waivable = False
        for index, window, ceiling, strict in sovereign:
            pool = self.pools[index]
            blind = cost_only and pool.gco2_per_kwh is None
            rate = self._rate(index, spot, carbon_price, blind)
            per_gpu_hour = rate.objective_per_gpu_hour(pool.gco2_per_kwh)
            zones[pool.location.grid_zone].append((per_gpu_hour, index, rate, window))
            largest = max(largest, pool.gpus_total)
            if ceiling is not None:
                waivable = waivable or strict is None
                if not waive or strict is not None:
                    static.append(strict or ceiling)
                    continue
            intensity = pool.effective_gco2_per_kwh
            order = (
                per_gpu_hour,
                math.inf if intensity is None else intensity,
                pool.price_per_gpu_hour,
                pool.name,
            )
            ok.append((ceiling is not None, order, index, rate, window))
        ok.sort(key=lambda entry: entry[:2])
        prices = [rate.price_per_gpu_hour for _, _, _, rate, _ in ok]
        # Budgets count an unknown intensity at the pessimistic value, CostOnly or not.
        gco2s = [
            self._rate(i, spot, carbon_price, False).gco2_per_gpu_hour(self.pools[i].gco2_per_kwh)
            for _, _, i, _, _ in ok
        ]
        min_from = [entry[1][1] for entry in ok] + [math.inf]
        for pos in range(len(ok) - 1, -1, -1):
            min_from[pos] = min(min_from[pos], min_from[pos + 1])
        return _Class(
            policies=policies,
            keys=tuple(p.key for p in policies),
            budgets=budgets,
            missing_budget=missing,
            action=action,
            carbon_price=carbon_price,
            max_delay=min(delays) if delays else None,
            min_saving=max(p.deferral_min_saving_fraction for p in policies),
            ranked=[entry[2] for entry in ok],
            position={entry[2]: pos for pos, entry in enumerate(ok)},
            rates=[entry[3] for entry in ok],
            windows=[entry[4] for entry in ok],
            prices=prices,
            gco2s=gco2s,
            min_price=min(prices, default=math.inf),
            min_gco2=min(gco2s, default=math.inf),
            ceiling=any(p.max_gco2_per_kwh is not None for p in policies),
            min_intensity_from=min_from,
            static=tuple(static),
            static_counts=collections.Counter(r.reason for r in static),
            zones={
                zone: [(i, rate, win) for _, i, rate, win in sorted(entries, key=lambda e: e[:2])]
                for zone, entries in sorted(zones.items())
            },
            largest_pool_gpus=largest,
            above=sum(1 for entry in ok if not entry[0]),
            waivable=waivable and not waive,
            cost_only=cost_only,
            residency=residency,
            spot=spot,
            waived=waive,
        )

    def _compliance(
        self,
        policies: tuple[model.Policy, ...],
        residency: frozenset[str] | None,
        budgets: tuple[model.Budget, ...],
    ) -> tuple[list[tuple[int, _Window, _Rejection, _Rejection]], list[model.Rejection]]:
        """Pools passing sovereignty (with certificate window, ceiling rejection now, and the
        rejection by a ceiling that does not yield at the deadline), and the rejections of the
        others; shared by the spot and on-demand classes of a policy set."""
        key = (tuple(p.key for p in policies), residency)
        if key in self.compliance:
            return self.compliance[key], self.excluded[key]
        facts = [self._facts(policy) for policy in policies]
        yields = [policy.carbon_ceiling_yields_at_deadline for policy in policies]
        residency_rules = None if residency is None else self._residency(residency)
        sovereign: list[tuple[int, _Window, _Rejection, _Rejection]] = []
        static: list[model.Rejection] = []
        for index, pool in enumerate(self.pools):
            rejection, window, ceiling, strict = self._combine(facts, yields, index)
            if rejection is None and residency_rules is not None:
                rejection = residency_rules[index]
            rejection = rejection or _currency_mismatch(pool, budgets)
            if rejection is not None:
                static.append(rejection)
            else:
                sovereign.append((index, window, ceiling, strict))
        self.compliance[key] = sovereign
        self.excluded[key] = static
        return sovereign, static

    def _facts(self, policy: model.Policy) -> list[tuple[_Hard, model.Rejection | None]]:
        facts = self.facts.get(policy.key)
        if facts is None:
            facts = self.facts[policy.key] = [
                (
                    rules.sovereignty_violation(pool, (policy,), None)
                    or rules.certificate_window(pool, (policy,), self.now),
                    rules.ceiling_violation(pool, (policy,), pool.gco2_per_kwh),
                )
                for pool in self.pools
            ]
        return facts

    def _residency(self, residency: frozenset[str]) -> list[model.Rejection | None]:
        checks = self.residency.get(residency)
        if checks is None:
            checks = self.residency[residency] = [
                rules.residency_violation(pool, residency) for pool in self.pools
            ]
        return checks

    @staticmethod
    def _combine(
        facts: Sequence[list[tuple[_Hard, model.Rejection | None]]],
        yields: Sequence[bool],
        index: int,
    ) -> tuple[_Rejection, _Window, _Rejection, _Rejection]:
        """The first hard rejection of one pool across policies, else the joint certificate
        window (None when nothing is required), the first ceiling it breaks now, and the first
        one that does not yield at the deadline."""
        window: rules.CertificateWindow | None = None
        ceiling: model.Rejection | None = None
        strict: model.Rejection | None = None
        for per_pool, yielding in zip(facts, yields, strict=True):
            hard, above = per_pool[index]
            if isinstance(hard, model.Rejection):
                return hard, None, None, None
            if hard.names:
                window = hard if window is None else window.intersect(hard)
            ceiling = ceiling or above
            if not yielding:
                strict = strict or above
        return None, window, ceiling, strict

    def _rate(self, index: int, spot: bool, carbon_price: float, blind: bool) -> objective.Rate:
        """The pool's rate; ``blind`` (unknown intensity, CostOnly) counts no grid carbon."""
        key = (index, spot, carbon_price, blind)
        rate = self.rates.get(key)
        if rate is None:
            rate = objective.rate(self.pools[index], spot=spot, carbon_price_per_tco2e=carbon_price)
            if blind:
                rate = dataclasses.replace(rate, kwh_per_gpu_hour=0.0)
            self.rates[key] = rate
        return rate

    def _walk(self, cls: _Class, workload: model.Workload, limit: int) -> _Walk:
        ranked, free, pools = cls.ranked, self.free, self.pools
        count = len(ranked)
        cursor = cls.cursor
        while cursor < count and free[ranked[cursor]] == 0:
            cursor += 1
        cls.cursor = cursor
        walk = _Walk()
        gpus, gpu_hours = workload.gpus, workload.gpu_hours
        money = self._tightest(cls, self.money)
        kg = self._tightest(cls, self.kg)
        if count and (
            gpu_hours * cls.min_price > money[0] + _EPSILON
            or gpu_hours * cls.min_gco2 / 1000 > kg[0] + _EPSILON
        ):
            return self._unaffordable(cls, workload, walk, limit, budgets_left=(money, kg))
        if cursor:
            walk.counts[R.INSUFFICIENT_CAPACITY] = cursor
            walk.skipped.extend((j, R.INSUFFICIENT_CAPACITY, 0) for j in range(min(cursor, limit)))
        pod_gpus = workload.largest_pod_gpus
        end = self.now + datetime.timedelta(hours=workload.duration_hours)
        prices, gco2s, windows = cls.prices, cls.gco2s, cls.windows
        for pos in range(cursor, count):
            index = ranked[pos]
            pool = pools[index]
            window = windows[pos]
            rejection: model.Rejection | None = None
            if free[index] < gpus:
                reason = R.INSUFFICIENT_CAPACITY
            elif pool.gpus_per_node is not None and pod_gpus > pool.gpus_per_node:
                reason = R.POD_TOO_LARGE_FOR_NODE
            elif window is not None and not window.covers(self.now, end):
                reason = R.CERTIFICATION_EXPIRES_DURING_RUN
            else:
                cost, gco2 = gpu_hours * prices[pos], gpu_hours * gco2s[pos]
                if cost <= money[0] + _EPSILON and gco2 / 1000 <= kg[0] + _EPSILON:
                    walk.pos = walk.stop = pos
                    walk.estimate = _estimate(cls, pos, gpu_hours, pool)
                    return walk
                over = _over_budget(pool, cost, gco2 / 1000, money, kg)
                walk.downgraded = walk.downgraded or over[1]
                if cls.action is not model.BudgetAction.DOWNGRADE:
                    walk.stop, walk.blocked = pos, over
                    walk.estimate = _estimate(cls, pos, gpu_hours, pool)
                    walk.counts[R.BUDGET_EXCEEDED] = walk.counts.get(R.BUDGET_EXCEEDED, 0) + 1
                    walk.skipped.append(over[1])
                    return walk
                reason, rejection = R.BUDGET_EXCEEDED, over[1]
            walk.counts[reason] = walk.counts.get(reason, 0) + 1
            if len(walk.skipped) < limit:
                walk.skipped.append(rejection or (pos, reason, free[index]))
        return walk

    def _skipped(
        self, cls: _Class, walk: _Walk, workload: model.Workload
    ) -> tuple[model.Rejection, ...]:
        """The walk's passed-over pools as rejections, written for the final decision only."""
        end = self.now + datetime.timedelta(hours=workload.duration_hours)
        gpus = workload.gpus
        return tuple(
            entry
            if isinstance(entry, model.Rejection)
            else self._full(cls.ranked[entry[0]], gpus)
            if entry[1] is R.INSUFFICIENT_CAPACITY and entry[2] == 0
            else self._passed_over(
                self.pools[cls.ranked[entry[0]]],
                reason=entry[1],
                workload=workload,
                free=entry[2],
                window=cls.windows[entry[0]],
                end=end,
            )
            for entry in walk.skipped
        )

    def _full(self, index: int, gpus: int) -> model.Rejection:
        """A full pool's rejection: the same value for every workload of that size."""
        key = (index, gpus)
        rejection = self.full.get(key)
        if rejection is None:
            rejection = self.full[key] = _no_room(self.pools[index], gpus, 0)
        return rejection

    def _tightest(
        self, cls: _Class, left: dict[str, float | None]
    ) -> tuple[float, model.Budget | None]:
        """The least left in any of the class's budgets (money or kgCO2e), and which budget."""
        tightest: tuple[float, model.Budget | None] = (math.inf, None)
        for budget in cls.budgets:
            value = left[budget.key]
            if value is not None and value < tightest[0]:
                tightest = (value, budget)
        return tightest

    def _unaffordable(
        self,
        cls: _Class,
        workload: model.Workload,
        walk: _Walk,
        limit: int,
        *,
        budgets_left: tuple[tuple[float, model.Budget | None], tuple[float, model.Budget | None]],
    ) -> _Walk:
        """Even the cheapest compliant pool would exceed a budget: every pool is rejected for
        it (checked first, so a round with an exhausted budget stays fast)."""
        gpu_hours = workload.gpu_hours
        money, kg = budgets_left
        walk.counts[R.BUDGET_EXCEEDED] = len(cls.ranked)
        for pos in range(min(len(cls.ranked), limit)):
            pool = self.pools[cls.ranked[pos]]
            cost, kgco2e = gpu_hours * cls.prices[pos], gpu_hours * cls.gco2s[pos] / 1000
            walk.skipped.append(_over_budget(pool, cost, kgco2e, money, kg)[1])
        first = _over_budget(
            self.pools[cls.ranked[0]],
            gpu_hours * cls.prices[0],
            gpu_hours * cls.gco2s[0] / 1000,
            money,
            kg,
        )
        walk.downgraded = first[1]
        if cls.action is not model.BudgetAction.DOWNGRADE:
            walk.blocked = first
        return walk

    def _passed_over(
        self,
        pool: model.Pool,
        *,
        reason: model.Reason,
        workload: model.Workload,
        free: int,
        window: rules.CertificateWindow | None,
        end: datetime.datetime,
    ) -> model.Rejection:
        if reason is R.INSUFFICIENT_CAPACITY:
            return _no_room(pool, workload.gpus, free)
        if reason is R.POD_TOO_LARGE_FOR_NODE:
            return model.Rejection(
                pool.name,
                reason,
                f"a pod needs {workload.largest_pod_gpus} GPUs, nodes offer "
                f"{pool.gpus_per_node}; fix: split the pod or choose a pool with bigger nodes",
            )
        assert window is not None and window.valid_until is not None
        return model.Rejection(
            pool.name,
            reason,
            f"certification {window.names} valid until {window.valid_until:%Y-%m-%d %H:%M}, "
            f"before the expected end {end:%Y-%m-%d %H:%M} of a {workload.duration_hours:g} h "
            "run; fix: renew the certification or shorten the run",
        )

    def _commit(self, cls: _Class, workload: model.Workload, walk: _Walk, sign: int = 1) -> None:
        """Consume (or with ``sign`` -1 give back) the GPUs and budgets of a placement."""
        assert walk.pos is not None and walk.estimate is not None
        self.free[cls.ranked[walk.pos]] -= sign * workload.gpus
        for budget in cls.budgets:
            money, kg = self.money[budget.key], self.kg[budget.key]
            if money is not None:
                self.money[budget.key] = money - sign * walk.estimate.cost
            if kg is not None:
                self.kg[budget.key] = kg - sign * walk.estimate.kgco2e

    def _uncommit(self, cls: _Class, workload: model.Workload, walk: _Walk) -> None:
        self._commit(cls, workload, walk, sign=-1)

    # -- not placed ----------------------------------------------------------------------------

    def _not_placed(
        self, cls: _Class, workload: model.Workload, walk: _Walk, limit: int
    ) -> model.Decision:
        tail, tail_counts = self._tail(cls, walk, workload, limit)
        alternatives = (*self._skipped(cls, walk, workload), *tail, *cls.static[:limit])
        counts = _counts(cls.static_counts, walk.counts, tail_counts)
        summary = _summary(alternatives, counts)
        keys = ", ".join(cls.keys)
        common = {
            "workload": workload.key,
            "policies": cls.keys,
            "alternatives": alternatives,
            "rejected_by_reason": counts,
        }
        if walk.blocked is not None or walk.counts.get(R.BUDGET_EXCEEDED):
            budget, rejection = walk.blocked or (_first_budget(cls), walk.downgraded)
            refuse = budget.action is model.BudgetAction.REJECT
            when = "" if budget.period_end is None else f" until {_at(budget.period_end)}"
            verb = "refused" if refuse else f"deferred{when}"
            return model.Decision(
                outcome=model.Outcome.REFUSED if refuse else model.Outcome.DEFERRED,
                reason=R.BUDGET_EXCEEDED,
                message=f"{workload.key} {verb}: {rejection.message if rejection else ''} "
                f"(Budget {budget.key} action {budget.action.value}; {summary})",
                not_before=None if refuse else budget.period_end,
                **common,  # type: ignore[arg-type]
            )
        # A class whose pools have no GPUs at all (scaled to zero) says nothing about gang size.
        if 0 < cls.largest_pool_gpus < workload.gpus:
            return model.Decision(
                outcome=model.Outcome.REFUSED,
                reason=R.GANG_TOO_LARGE,
                message=f"{workload.key} refused: its {len(workload.pods) or 1} pods need "
                f"{workload.gpus} GPUs together, more than the largest pool allowed by {keys} "
                f"({cls.largest_pool_gpus} GPUs); fix: split the job or add a larger GpuPool "
                f"({summary})",
                **common,  # type: ignore[arg-type]
            )
        if not cls.ranked:
            slot = self._first_slot_under_ceiling(cls, workload)
            if slot is not None:
                start, pool = slot
                return model.Decision(
                    outcome=model.Outcome.DEFERRED,
                    reason=R.DEFERRED_UNTIL_UNDER_CEILING,
                    message=f"{workload.key} deferred until {_at(start)}: no pool allowed by "
                    f"{keys} is under its carbon ceiling now; {pool.name} is forecast to be "
                    f"under it then, within the deferral window ({summary})",
                    not_before=start,
                    **common,  # type: ignore[arg-type]
                )
        if walk.counts.get(R.INSUFFICIENT_CAPACITY):
            reason, what = R.NO_POOL_WITH_ROOM, "no allowed pool has room"
        else:
            reason, what = R.NO_COMPLIANT_POOL, "no pool satisfies"
        return model.Decision(
            outcome=model.Outcome.HELD,
            reason=reason,
            message=f"{workload.key} held: {what} {keys} ({summary})",
            **common,  # type: ignore[arg-type]
        )

    # -- deferral ------------------------------------------------------------------------------

    def _steps(self, cls: _Class, workload: model.Workload) -> int:
        """How many ``DEFERRAL_STEP`` the workload may still wait."""
        delay = workload.max_delay if workload.max_delay is not None else cls.max_delay
        latest = None if delay is None else workload.created + min(delay, MAX_DEFERRAL)
        if workload.deadline is not None:
            by_deadline = workload.deadline - datetime.timedelta(hours=workload.duration_hours)
            latest = by_deadline if latest is None else min(latest, by_deadline)
        if latest is None or latest <= self.now:
            return 0
        return min(latest - self.now, MAX_DEFERRAL) // DEFERRAL_STEP

    def _mean(self, zone: str, step: int, hours: float) -> float | None:
        """Forecast mean grid intensity of ``zone`` over a run starting ``step`` steps ahead."""
        key = (zone, step, hours)
        if key not in self.means:
            forecast = self.cumulative.get(zone)
            start = self.now + step * DEFERRAL_STEP
            self.means[key] = (
                None
                if forecast is None
                else forecast.mean(start, start + datetime.timedelta(hours=hours))
            )
        return self.means[key]

    def _best_slot(self, zone: str, hours: float, steps: int) -> tuple[int, float] | None:
        """The later step with the lowest forecast mean intensity in ``zone`` (earliest on ties)."""
        key = (zone, hours, steps)
        if key not in self.best_slots:
            best: tuple[int, float] | None = None
            for step in range(1, steps + 1):
                mean = self._mean(zone, step, hours)
                if mean is not None and (best is None or mean < best[1]):
                    best = (step, mean)
            self.best_slots[key] = best
        return self.best_slots[key]

    def _cleaner_slot(
        self, cls: _Class, workload: model.Workload, walk: _Walk, limit: int
    ) -> model.Decision | None:
        if not self.forecasts or cls.carbon_price <= 0:
            return None
        steps = self._steps(cls, workload)
        if steps < 1:
            return None
        assert walk.pos is not None and walk.estimate is not None
        here = self.pools[cls.ranked[walk.pos]]
        # Forecast means are taken over the run rounded to the half hour (an estimate to decide
        # whether to wait; the placement itself is planned again when the time comes).
        hours = max(0.5, round(workload.duration_hours * 2) / 2)
        now_mean = self._mean(here.location.grid_zone, 0, hours)
        now_intensity = here.gco2_per_kwh if now_mean is None else now_mean
        now_rate = cls.rates[walk.pos]
        now_objective = now_rate.objective_per_gpu_hour(now_intensity)
        now_gco2 = now_rate.gco2_per_gpu_hour(now_intensity)
        best: tuple[float, int, int, float] | None = None  # objective, step, pool, intensity
        for zone, entries in cls.zones.items():
            found = self._zone_slot(cls, workload, zone, entries, (hours, steps))
            if found is not None and (best is None or found[:3] < best[:3]):
                best = found
        if best is None:
            return None
        later_objective, step, index, intensity = best
        later = self.pools[index]
        later_rate = objective.rate(
            later, spot=workload.spot, carbon_price_per_tco2e=cls.carbon_price
        )
        later_gco2 = later_rate.gco2_per_gpu_hour(intensity)
        saving = 1 - later_gco2 / now_gco2 if now_gco2 > 0 else 0.0
        if later_objective >= now_objective - _EPSILON or saving < cls.min_saving:
            return None
        start = self.now + step * DEFERRAL_STEP
        gpu_hours = workload.gpu_hours
        waiting = model.Rejection(
            here.name,
            R.DEFERRED_FOR_CLEANER_SLOT,
            f"best pool now, but {later.name} from {_at(start)} is forecast {saving:.0%} cleaner",
        )
        tail, tail_counts = self._tail(cls, walk, workload, limit)
        return model.Decision(
            workload=workload.key,
            outcome=model.Outcome.DEFERRED,
            reason=R.DEFERRED_FOR_CLEANER_SLOT,
            message=f"{workload.key} deferred until {_at(start)}: running then in {later.name} "
            f"is forecast to emit {gpu_hours * later_gco2 / 1000:.2f} kgCO2e instead of "
            f"{gpu_hours * now_gco2 / 1000:.2f} in {here.name} now ({saving:.0%} less; "
            f"objective {gpu_hours * later_objective:.2f} vs {gpu_hours * now_objective:.2f}), "
            f"within its deferral window under {', '.join(cls.keys)}",
            pool=None,
            policies=cls.keys,
            alternatives=(
                *self._skipped(cls, walk, workload),
                waiting,
                *tail,
                *cls.static[:limit],
            ),
            not_before=start,
            rejected_by_reason=_counts(
                cls.static_counts,
                walk.counts,
                tail_counts,
                {R.DEFERRED_FOR_CLEANER_SLOT: 1},
            ),
        )

    def _zone_slot(
        self,
        cls: _Class,
        workload: model.Workload,
        zone: str,
        entries: Sequence[tuple[int, objective.Rate, rules.CertificateWindow | None]],
        run: tuple[float, int],
    ) -> tuple[float, int, int, float] | None:
        """Best later (objective rate, step, pool, intensity) in one zone, for the first pool of
        the zone that can take the workload; ``run`` is (hours, steps it may wait)."""
        first = cls.zone_cursors.get(zone, 0)
        while first < len(entries) and self.free[entries[first][0]] == 0:
            first += 1
        cls.zone_cursors[zone] = first
        found = next((e for e in entries[first:] if self._fits(e[0], workload)), None)
        if found is None:
            return None
        key = (id(cls), zone, found[0], *run)
        if key not in self.zone_slots:
            self.zone_slots[key] = self._slot_in(cls, zone, found, run)
        return self.zone_slots[key]

    def _slot_in(
        self,
        cls: _Class,
        zone: str,
        entry: tuple[int, objective.Rate, rules.CertificateWindow | None],
        run: tuple[float, int],
    ) -> tuple[float, int, int, float] | None:
        index, rate, window = entry
        hours, steps = run
        slot = self._best_slot(zone, hours, steps)
        if slot is None:
            return None
        step, mean = slot
        if not self._allowed_at(cls, index, window, step, hours):
            allowed = [
                s for s in range(1, steps + 1) if self._allowed_at(cls, index, window, s, hours)
            ]
            means = [(m, s) for s in allowed if (m := self._mean(zone, s, hours)) is not None]
            if not means:
                return None
            mean, step = min(means)
        return rate.objective_per_gpu_hour(mean), step, index, mean

    def _fits(self, index: int, workload: model.Workload) -> bool:
        pool = self.pools[index]
        node = pool.gpus_per_node
        return self.free[index] >= workload.gpus and (
            node is None or workload.largest_pod_gpus <= node
        )

    def _allowed_at(
        self,
        cls: _Class,
        index: int,
        window: rules.CertificateWindow | None,
        step: int,
        hours: float,
    ) -> bool:
        """Certifications cover a run starting ``step`` steps ahead, under every ceiling."""
        if window is None and not cls.ceiling:
            return True
        start = self.now + step * DEFERRAL_STEP
        end = start + datetime.timedelta(hours=hours)
        if window is not None and not window.covers(start, end):
            return False
        pool = self.pools[index]
        forecast = self.forecasts.get(pool.location.grid_zone)
        intensity = None if forecast is None else forecast.at(start)
        return rules.ceiling_violation(pool, cls.policies, intensity) is None

    def _first_slot_under_ceiling(
        self, cls: _Class, workload: model.Workload
    ) -> tuple[datetime.datetime, model.Pool] | None:
        steps = self._steps(cls, workload) if self.forecasts else 0
        for step in range(1, steps + 1):
            for entries in cls.zones.values():
                for index, _, window in entries:
                    if self._fits(index, workload) and self._allowed_at(
                        cls, index, window, step, workload.duration_hours
                    ):
                        return self.now + step * DEFERRAL_STEP, self.pools[index]
        return None

    # -- phase B: improvement ------------------------------------------------------------------

    def _improve(self, results: list[_Result]) -> None:
        placed = [r for r in results if r.decision is None]
        if len(placed) < 2:
            return
        before = sum(_objective(r.walk) for r in placed)
        saved = (list(self.free), dict(self.money), dict(self.kg))
        first: list[_Result] = []  # workloads that did not fit in an earlier attempt go first
        attempts = max(1, min(IMPROVEMENT_ATTEMPTS, IMPROVEMENT_WALKS // len(placed)))
        for _ in range(attempts):
            rest = sorted(
                (r for r in placed if r not in first),
                key=lambda r: (-r.workload.duration_hours, -r.workload.gpus, r.index),
            )
            order = first + rest
            walks, failed = self._assign(order)
            if not failed:
                break
            first += sorted(failed, key=lambda r: r.index)
        if failed or sum(_objective(w) for w in walks) >= before - _EPSILON:
            self.free, self.money, self.kg = saved
        else:
            for result, walk in zip(order, walks, strict=True):
                result.walk = walk
        self._reset_cursors()
        self._swap(placed)
        for result in results:
            decision = result.decision
            if decision is not None and decision.reason is R.NO_POOL_WITH_ROOM:
                result.decision = None
                self._try(result)

    def _swap(self, placed: list[_Result]) -> None:
        """Local improvement: move a workload to a better-ranked pool, or swap it with one
        there, when that lowers the total objective and every budget still holds. Bounded by
        ``SWAP_CHECKS`` (fewer for large rounds) so a round stays fast; moved workloads are walked
        again so their explanation matches the final state."""
        mobile = [r for r in placed if r.cls is not None]
        where: _Where = collections.defaultdict(lambda: collections.defaultdict(list))
        for r in mobile:
            assert r.cls is not None and r.walk is not None and r.walk.pos is not None
            where[r.cls.ranked[r.walk.pos]][_swap_kind(r)].append(r)
        moved: set[int] = set()
        checks = 0
        order = sorted(mobile, key=lambda r: (-r.workload.gpu_hours, r.index))
        improved = True
        limit = max(SWAP_CHECKS_FLOOR, min(SWAP_CHECKS, SWAP_CHECKS_SCALE // max(1, len(mobile))))
        while improved and checks < limit:
            improved = False
            for r in order:
                cls, walk = r.cls, r.walk
                assert cls is not None and walk is not None and walk.pos is not None
                for better in range(walk.pos):
                    checks += 1
                    if checks > limit:
                        break
                    exchanged = self._exchange(r, better, where)
                    if exchanged:
                        moved.update(x.index for x in exchanged)
                        improved = True
                        break
        for r in sorted((r for r in mobile if r.index in moved), key=lambda r: r.index):
            assert r.cls is not None and r.walk is not None and r.walk.pos is not None
            self._uncommit(r.cls, r.workload, r.walk)
            r.cls.cursor = 0
            walk = self._walk(r.cls, r.workload, r.limit)
            assert walk.pos is not None
            self._commit(r.cls, r.workload, walk)
            r.walk = walk
        self._reset_cursors()

    def _exchange(self, r: _Result, better: int, where: _Where) -> list[_Result]:
        """Move ``r`` to position ``better`` of its ranking, alone or swapping with a workload
        there; return the workloads moved (none if no move lowers the objective)."""
        cls, walk = r.cls, r.walk
        assert cls is not None and walk is not None and walk.pos is not None
        here, there = cls.ranked[walk.pos], cls.ranked[better]
        if not self._can_run(cls, better, r.workload):
            return []
        gain = r.workload.gpu_hours * (
            cls.rates[walk.pos].objective_per_gpu_hour(self.pools[here].gco2_per_kwh)
            - cls.rates[better].objective_per_gpu_hour(self.pools[there].gco2_per_kwh)
        )
        gpus = r.workload.gpus
        # Alike workloads give alike swaps: one candidate of each kind is enough.
        candidates: list[_Result | None] = [None, *(alike[0] for alike in where[there].values())]
        for other in candidates:
            other_gpus = 0 if other is None else other.workload.gpus
            if self.free[there] + other_gpus < gpus or self.free[here] + gpus < other_gpus:
                continue
            loss = 0.0
            if other is not None:
                assert other.cls is not None and other.walk is not None
                back = other.cls.position.get(here)
                if back is None or not self._can_run(other.cls, back, other.workload):
                    continue
                mine = other.walk.pos
                assert mine is not None
                loss = other.workload.gpu_hours * (
                    other.cls.rates[back].objective_per_gpu_hour(self.pools[here].gco2_per_kwh)
                    - other.cls.rates[mine].objective_per_gpu_hour(self.pools[there].gco2_per_kwh)
                )
            if gain - loss <= _EPSILON:
                continue
            moves = [(r, better)]
            if other is not None:
                assert other.cls is not None
                moves.append((other, other.cls.position[here]))
            if not self._budgets_hold(moves):
                continue
            for mover, pos in moves:
                self._relocate(mover, pos, where)
            return [mover for mover, _ in moves]
        return []

    def _budgets_hold(self, moves: list[tuple[_Result, int]]) -> bool:
        """Whether every budget still holds after moving each workload to its new position."""
        money: dict[str, float] = {}
        kg: dict[str, float] = {}
        for r, pos in moves:
            assert r.cls is not None and r.walk is not None and r.walk.estimate is not None
            pool = self.pools[r.cls.ranked[pos]]
            after = _estimate(r.cls, pos, r.workload.gpu_hours, pool)
            for budget in r.cls.budgets:
                money[budget.key] = money.get(budget.key, 0.0) + after.cost - r.walk.estimate.cost
                kg[budget.key] = kg.get(budget.key, 0.0) + after.kgco2e - r.walk.estimate.kgco2e
        for left, delta in ((self.money, money), (self.kg, kg)):
            for key, change in delta.items():
                value = left[key]
                if value is not None and change > value + _EPSILON:
                    return False
        return True

    def _can_run(self, cls: _Class, pos: int, workload: model.Workload) -> bool:
        pool = self.pools[cls.ranked[pos]]
        if pool.gpus_per_node is not None and workload.largest_pod_gpus > pool.gpus_per_node:
            return False
        window = cls.windows[pos]
        end = self.now + datetime.timedelta(hours=workload.duration_hours)
        return window is None or window.covers(self.now, end)

    def _relocate(self, r: _Result, pos: int, where: _Where) -> None:
        cls, walk = r.cls, r.walk
        assert cls is not None and walk is not None and walk.pos is not None
        old, new = cls.ranked[walk.pos], cls.ranked[pos]
        alike = where[old][_swap_kind(r)]
        alike.remove(r)
        if not alike:
            del where[old][_swap_kind(r)]
        self._uncommit(cls, r.workload, walk)
        walk.pos = walk.stop = pos
        where[new][_swap_kind(r)].append(r)
        walk.estimate = _estimate(cls, pos, r.workload.gpu_hours, self.pools[new])
        self._commit(cls, r.workload, walk)

    def _assign(self, order: list[_Result]) -> tuple[list[_Walk], list[_Result]]:
        """Walk ``order`` from the round's initial capacity and budgets; return the walks and
        the workloads that found no pool."""
        self.free = [p.gpus_free for p in self.pools]
        self.money = {k: b.money_remaining for k, b in self.budgets.items()}
        self.kg = {k: b.kgco2e_remaining for k, b in self.budgets.items()}
        self._reset_cursors()
        walks: list[_Walk] = []
        failed: list[_Result] = []
        for result in order:
            assert result.cls is not None
            walk = self._walk(result.cls, result.workload, result.limit)
            if walk.pos is None:
                failed.append(result)
            else:
                self._commit(result.cls, result.workload, walk)
            walks.append(walk)
        return walks, failed

    def _reset_cursors(self) -> None:
        for cls in self.classes.values():
            cls.cursor = 0
            cls.zone_cursors.clear()

    # -- decisions -----------------------------------------------------------------------------

    def _finish(self, result: _Result) -> model.Decision:
        if result.decision is not None:
            return result.decision
        cls, walk, workload = result.cls, result.walk, result.workload
        assert cls is not None and walk is not None
        assert walk.pos is not None and walk.estimate is not None
        pos, estimate, limit = walk.pos, walk.estimate, result.limit
        best = self.pools[cls.ranked[pos]]
        outranked, tail_counts = self._tail(cls, walk, workload, limit)
        counts = _counts(cls.static_counts, walk.counts, tail_counts)
        intensity = best.effective_gco2_per_kwh
        where = (
            f"{best.name} ({best.location.country}, {_carbon(best)}, "
            f"{estimate.cost:.2f} {best.currency}, {estimate.kgco2e:.2f} kgCO2e)"
        )
        compliant = f"{cls.above} compliant pools"
        if pos >= cls.above:
            reason = R.CEILING_WAIVED_AT_DEADLINE
            latest = _latest_start(cls, workload)
            assert latest is not None
            why = (
                f"carbon ceiling waived at the deadline: its latest start {_at(latest)} has come "
                f"and none of the {compliant} under the ceiling had room, so it runs above it, "
                f"in the pool with the lowest cost + carbon among the {len(cls.ranked)} that pass "
                "every other rule (set carbon.ceilingYieldsAtDeadline false to hold instead)"
            )
        elif walk.downgraded is not None:
            reason = R.DOWNGRADED_FOR_BUDGET
            why = f"downgraded: {walk.downgraded.pool} {walk.downgraded.message}"
        elif (math.inf if intensity is None else intensity) <= cls.min_intensity_from[pos + 1]:
            reason, why = R.LOWEST_CARBON, f"lowest carbon among {compliant} with room"
        else:
            reason = R.BEST_OBJECTIVE
            why = (
                f"lowest cost + carbon at {cls.carbon_price:g} {best.currency}/tCO2e among "
                f"{compliant} with room"
            )
        if best.gco2_per_kwh is None and cls.cost_only:
            why += (
                f"; carbon of grid zone {best.location.grid_zone} unknown, ranked on cost + "
                "embodied carbon only (onMissingSignal CostOnly)"
            )
        return model.Decision(
            workload=workload.key,
            outcome=model.Outcome.PLACED,
            reason=reason,
            message=f"{workload.key} placed in {where}: {why} under {', '.join(cls.keys)}",
            pool=best.name,
            policies=cls.keys,
            alternatives=(*self._skipped(cls, walk, workload), *outranked, *cls.static[:limit]),
            cost=estimate.cost,
            kgco2e=estimate.kgco2e,
            objective=estimate.objective,
            rejected_by_reason=counts,
        )

    def _tail(
        self, cls: _Class, walk: _Walk, workload: model.Workload, limit: int
    ) -> tuple[tuple[model.Rejection, ...], dict[model.Reason, int]]:
        """The pools ranked after the one the walk stopped at: outranked by it."""
        if walk.stop is None or walk.estimate is None:
            return (), {}
        best = self.pools[cls.ranked[walk.stop]]
        chosen = f"{walk.estimate.objective:.2f} {best.currency}"
        rejections = []
        for pos in range(walk.stop + 1, min(len(cls.ranked), walk.stop + 1 + limit)):
            pool = self.pools[cls.ranked[pos]]
            rate = cls.rates[pos].objective_per_gpu_hour(pool.gco2_per_kwh)
            rejections.append(
                model.Rejection(
                    pool.name,
                    R.OUTRANKED,
                    f"{_carbon(pool)} vs {_carbon(best)} in {best.name}; objective "
                    f"{workload.gpu_hours * rate:.2f} vs {chosen}",
                )
            )
        count = len(cls.ranked) - walk.stop - 1
        return tuple(rejections), {R.OUTRANKED: count}


# Placed workloads by pool index, then by kind (``_swap_kind``), for the swap search.
_SwapKind = tuple[int, int, int, float, int | None]
_Where = collections.defaultdict[int, collections.defaultdict[_SwapKind, list["_Result"]]]


def _swap_kind(r: _Result) -> _SwapKind:
    """Workloads of one kind are interchangeable in a swap: same class, size, shape, duration
    and position in the class's ranking."""
    w = r.workload
    return (id(r.cls), w.gpus, w.largest_pod_gpus, w.gpu_hours, r.walk.pos if r.walk else None)


def _estimate(cls: _Class, pos: int, gpu_hours: float, pool: model.Pool) -> objective.Estimate:
    """The projection in the pool at ``pos`` of ``cls``: objective from the class's rate (which
    counts no grid carbon for an unknown intensity under CostOnly), cost and kgCO2e as budgets
    count them (an unknown intensity at the pessimistic value)."""
    return objective.Estimate(
        cost=gpu_hours * cls.prices[pos],
        kgco2e=gpu_hours * cls.gco2s[pos] / 1000,
        objective=gpu_hours * cls.rates[pos].objective_per_gpu_hour(pool.gco2_per_kwh),
    )


def _latest_start(cls: _Class, workload: model.Workload) -> datetime.datetime | None:
    """When the workload must start at the latest: deadline - duration, or created + max delay
    (its own, else the tightest policy's); None when it has neither."""
    delay = workload.max_delay if workload.max_delay is not None else cls.max_delay
    latest = None if delay is None else workload.created + delay
    if workload.deadline is not None:
        by_deadline = workload.deadline - datetime.timedelta(hours=workload.duration_hours)
        latest = by_deadline if latest is None else min(latest, by_deadline)
    return latest


def _objective(walk: _Walk | None) -> float:
    assert walk is not None and walk.estimate is not None
    return walk.estimate.objective


def _over_budget(
    pool: model.Pool,
    cost: float,
    kgco2e: float,
    money: tuple[float, model.Budget | None],
    kg: tuple[float, model.Budget | None],
) -> tuple[model.Budget, model.Rejection]:
    """The budget a projection exceeds (money first), with the rejection that says so."""
    if cost > money[0] + _EPSILON and money[1] is not None:
        budget = money[1]
        what = f"{cost:.2f} {budget.currency}"
        left = f"{money[0]:.2f} {budget.currency}"
    else:
        assert kg[1] is not None
        budget = kg[1]
        what, left = f"{kgco2e:.2f} kgCO2e", f"{kg[0]:.2f} kgCO2e"
    return budget, model.Rejection(
        pool.name,
        R.BUDGET_EXCEEDED,
        f"projected {what} exceeds the {left} left in Budget {budget.key}; fix: raise "
        "the budget, shorten the run, or wait for the next period",
    )


def _first_budget(cls: _Class) -> model.Budget:
    """The budget whose period ends first: the earliest a deferred workload may fit again."""
    never = datetime.datetime.max.replace(tzinfo=datetime.UTC)
    return min(cls.budgets, key=lambda b: (b.period_end or never, b.key))


def _currency_mismatch(pool: model.Pool, budgets: Sequence[model.Budget]) -> model.Rejection | None:
    for budget in budgets:
        if budget.money_limit is not None and budget.currency != pool.currency:
            return model.Rejection(
                pool.name,
                R.CURRENCY_MISMATCH,
                f"priced in {pool.currency}, Budget {budget.key} counts {budget.currency}; fix: "
                "price the GpuPool in the budget's currency",
            )
    return None


def _no_room(pool: model.Pool, gpus: int, free: int) -> model.Rejection:
    return model.Rejection(pool.name, R.INSUFFICIENT_CAPACITY, f"needs {gpus} GPUs, {free} free")


def _counts(*counters: Mapping[model.Reason, int]) -> tuple[tuple[model.Reason, int], ...]:
    total: dict[model.Reason, int] = {}
    for counter in counters:
        for reason, n in counter.items():
            total[reason] = total.get(reason, 0) + n
    return tuple(sorted((reason, n) for reason, n in total.items() if n > 0))


def _summary(
    alternatives: Sequence[model.Rejection], counts: Sequence[tuple[model.Reason, int]]
) -> str:
    if not alternatives and not counts:
        return "no GpuPool exists"
    detail = "; ".join(f"{r.pool}: {r.message}" for r in alternatives)
    total = sum(n for _, n in counts)
    if total <= len(alternatives):
        return detail
    tally = ", ".join(f"{n} {reason.value}" for reason, n in counts)
    return f"{detail}; {total} pools in all: {tally}"


def _no_policy(workload: model.Workload) -> model.Decision:
    return model.Decision(
        workload=workload.key,
        outcome=model.Outcome.HELD,
        reason=R.NO_POLICY,
        message=(
            f"{workload.key} held: no PlacementPolicy in namespace {workload.namespace} "
            "selects it; create one (greenplace never places a governed pod without rules)"
        ),
    )


def _budget_unknown(workload: model.Workload, cls: _Class) -> model.Decision:
    return model.Decision(
        workload=workload.key,
        outcome=model.Outcome.HELD,
        reason=R.BUDGET_UNKNOWN,
        message=f"{workload.key} held: {', '.join(cls.keys)} charges Budget "
        f"{cls.missing_budget}, which does not exist; fix: create it or remove the reference",
        policies=cls.keys,
    )


def _carbon(pool: model.Pool) -> str:
    intensity = pool.effective_gco2_per_kwh
    return "carbon unknown" if intensity is None else f"{intensity:.0f} gCO2e/kWh"


def _at(when: datetime.datetime) -> str:
    return when.isoformat(timespec="minutes")
