"""Workload classes: the compliant pools of one set of policies, ranked once per round.

Why this module exists: the hard rules (``engine.rules``) and the ranking depend only on the
governing policies, the data residency, the spot flag and the pod's own node constraints, not on
the workload itself. Computing them once per *class* of workloads sharing those (and each rule
once per policy and pool) instead of once per workload is what keeps a 10,000-workload round
fast; this module owns that precomputation and its caches. A ``Class`` is a frozen value: what
a round uses up (free GPUs, budgets, cursors) lives in ``engine.rounds.State``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
from collections.abc import Mapping, Sequence

from greenplace.domain import model
from greenplace.engine import objective, rounds, rules

__all__ = ["Catalog", "Class", "Window", "ZoneEntry"]

R = model.Reason
Window = rules.CertificateWindow | None


@dataclasses.dataclass(slots=True)
class ZoneEntry:
    """One pool of a grid zone for the deferral search (never changed once built; not frozen,
    which would make the tens of thousands a large round builds several times slower to
    make)."""

    index: int
    rate: objective.Rate
    window: Window


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Class:
    """Workloads with the same policies, data residency, spot flag and node constraints see the
    same compliant pools in the same order: computed once per round, not once per workload.

    Compared and hashed by identity: a round's cursors (``rounds.State``) are kept per class.
    """

    policies: tuple[model.Policy, ...]
    keys: tuple[str, ...]
    budgets: tuple[model.Budget, ...]
    missing_budget: str | None
    action: model.BudgetAction
    carbon_price: float
    max_delay: datetime.timedelta | None
    min_saving: float
    # Compliant now, best first, with aligned per-pool facts.
    ranked: tuple[int, ...]
    # Pool index -> position in ``ranked``.
    position: Mapping[int, int]
    # The rate each pool is ranked by, and the one budgets count (they differ only for a pool of
    # unknown intensity under CostOnly: ranked without grid carbon, counted at the pessimistic
    # value).
    rates: tuple[objective.Rate, ...]
    budget_rates: tuple[objective.Rate, ...]
    windows: tuple[Window, ...]
    # Per GPU-hour at the live intensity: money, gCO2e and facility kWh (budgets are checked on
    # these).
    prices: tuple[float, ...]
    gco2s: tuple[float, ...]
    kwhs: tuple[float, ...]
    min_price: float
    min_gco2: float
    min_kwh: float
    # Some policy sets a carbon ceiling.
    ceiling: bool
    # Lowest effective intensity from each position on (what "lowest carbon with room" means).
    min_intensity_from: tuple[float, ...]
    # Pools excluded by a hard rule, and their count per reason.
    static: tuple[model.Rejection, ...]
    static_counts: Mapping[model.Reason, int]
    # Pools passing sovereignty (even if above a ceiling now), per grid zone, best first, and
    # their pool indices (the ranking the zone's cursor walks).
    zones: Mapping[str, tuple[ZoneEntry, ...]]
    zone_pools: Mapping[str, tuple[int, ...]]
    largest_pool_gpus: int
    # Positions from ``above`` on are above a carbon ceiling now (only in a waived class, see
    # ``Catalog.waived``); before it, every pool is compliant.
    above: int
    # Some pool is excluded only by ceilings that yield at the deadline: a workload whose latest
    # start has come may use the waived class.
    waivable: bool
    # Every policy ranks a pool of unknown intensity on cost + embodied carbon only (CostOnly).
    cost_only: bool
    residency: frozenset[str] | None
    spot: bool
    waived: bool = False
    # Pools the workload's own node constraints admit (None: all); see ``Workload.fits_pools``.
    fits: frozenset[str] | None = None

    def estimate(
        self, pos: int, gpu_hours: float, gco2_per_kwh: float | None
    ) -> objective.Estimate:
        """The projection of ``gpu_hours`` in the pool at ``pos`` (whose grid intensity is
        ``gco2_per_kwh``): cost, kgCO2e and kWh as budgets count them, the objective as ranked;
        the same figures ``controller.budgets`` charges once the workload is placed."""
        return objective.estimate(
            self.budget_rates[pos], gpu_hours, gco2_per_kwh, ranked_by=self.rates[pos]
        )


@dataclasses.dataclass(slots=True)
class PoolFacts:
    """What one policy says of one pool, whoever the workload: its hard rules (a rejection, or
    the window its certifications are valid in) and the carbon ceiling it breaks now."""

    hard: model.Rejection | rules.CertificateWindow
    above_ceiling: model.Rejection | None


@dataclasses.dataclass(slots=True)
class Sovereign:
    """A pool passing every hard rule of a policy set but the carbon ceilings (like
    ``PoolFacts`` and ``_Candidate``, a record of the build, never changed)."""

    index: int
    window: Window
    # The first ceiling it breaks now, and the first one that does not yield at the deadline.
    above_ceiling: model.Rejection | None
    above_strict_ceiling: model.Rejection | None


@dataclasses.dataclass(slots=True)
class _Candidate:
    """A pool of a class being built, with its sort key."""

    above_ceiling: bool
    # Objective per GPU-hour, effective intensity, price, name: ties are deterministic.
    order: tuple[float, float, float, str]
    index: int
    rate: objective.Rate
    window: Window


class Catalog:
    """The classes of one round, and the per-policy and per-pool facts they are built from."""

    def __init__(self, context: rounds.Context) -> None:
        self.pools = context.pools
        self.budgets = context.budgets
        self.now = context.now
        self.classes: dict[tuple[object, ...], Class] = {}
        # Per policy, per pool: its hard rules and its carbon ceiling now; per residency label,
        # per pool: the residency rule.
        self.facts: dict[str, list[PoolFacts]] = {}
        self.residency: dict[frozenset[str], list[model.Rejection | None]] = {}
        self.rates: dict[tuple[int, bool, float, bool], objective.Rate] = {}
        self.compliance: dict[tuple[object, ...], list[Sovereign]] = {}
        self.excluded: dict[tuple[object, ...], list[model.Rejection]] = {}

    def of(self, governing: tuple[model.Policy, ...], workload: model.Workload) -> Class:
        """The class of ``workload``, governed by ``governing``."""
        residency = workload.data_residency
        fits = workload.fits_pools
        # The policies by identity: the round holds each for its whole length, and writing
        # their keys for every workload is a cost a 10,000-workload round notices.
        key = (tuple(map(id, governing)), residency, workload.spot, fits)
        cls = self.classes.get(key)
        if cls is None:
            cls = self.classes[key] = self._build(governing, residency, workload.spot, fits=fits)
        return cls

    def waived(self, cls: Class) -> Class:
        """``cls`` with its yielding ceilings waived (see ``_build``)."""
        key = (cls.keys, cls.residency, cls.spot, cls.fits, "waived")
        waived = self.classes.get(key)
        if waived is None:
            waived = self.classes[key] = self._build(
                cls.policies, cls.residency, cls.spot, waive=True, fits=cls.fits
            )
        return waived

    def _build(
        self,
        policies: tuple[model.Policy, ...],
        residency: frozenset[str] | None,
        spot: bool,
        *,
        waive: bool = False,
        fits: frozenset[str] | None = None,
    ) -> Class:
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
        ok: list[_Candidate] = []
        # Per grid zone: (objective per GPU-hour, entry), to sort.
        zones: dict[str, list[tuple[float, ZoneEntry]]] = collections.defaultdict(list)
        largest = 0
        sovereign, static = self._compliance(policies, residency, budgets, fits)
        static = list(static)
        waivable = False
        for passing in sovereign:
            index, window = passing.index, passing.window
            ceiling, strict = passing.above_ceiling, passing.above_strict_ceiling
            pool = self.pools[index]
            blind = cost_only and pool.gco2_per_kwh is None
            rate = self._rate(index, spot, carbon_price, blind)
            per_gpu_hour = rate.objective_per_gpu_hour(pool.gco2_per_kwh)
            zones[pool.location.grid_zone].append((per_gpu_hour, ZoneEntry(index, rate, window)))
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
            ok.append(_Candidate(ceiling is not None, order, index, rate, window))
        ok.sort(key=lambda c: (c.above_ceiling, c.order))
        prices = tuple(c.rate.price_per_gpu_hour for c in ok)
        # Budgets count an unknown intensity at the pessimistic value, CostOnly or not (and the
        # energy drawn: a CostOnly rate counts no kWh for grid carbon).
        counted = tuple(self._rate(c.index, spot, carbon_price, False) for c in ok)
        gco2s = tuple(
            rate.gco2_per_gpu_hour(self.pools[c.index].gco2_per_kwh)
            for rate, c in zip(counted, ok, strict=True)
        )
        kwhs = tuple(rate.kwh_per_gpu_hour for rate in counted)
        min_from = [c.order[1] for c in ok] + [math.inf]
        for pos in range(len(ok) - 1, -1, -1):
            min_from[pos] = min(min_from[pos], min_from[pos + 1])
        by_zone = {
            zone: tuple(entry for _, entry in sorted(pairs, key=lambda p: (p[0], p[1].index)))
            for zone, pairs in sorted(zones.items())
        }
        return Class(
            policies=policies,
            keys=tuple(p.key for p in policies),
            budgets=budgets,
            missing_budget=missing,
            action=action,
            carbon_price=carbon_price,
            max_delay=min(delays) if delays else None,
            min_saving=max(p.deferral_min_saving_fraction for p in policies),
            ranked=tuple(c.index for c in ok),
            position={c.index: pos for pos, c in enumerate(ok)},
            rates=tuple(c.rate for c in ok),
            budget_rates=counted,
            windows=tuple(c.window for c in ok),
            prices=prices,
            gco2s=gco2s,
            kwhs=kwhs,
            min_price=min(prices, default=math.inf),
            min_gco2=min(gco2s, default=math.inf),
            min_kwh=min(kwhs, default=math.inf),
            ceiling=any(p.max_gco2_per_kwh is not None for p in policies),
            min_intensity_from=tuple(min_from),
            static=tuple(static),
            static_counts=collections.Counter(r.reason for r in static),
            zones=by_zone,
            zone_pools={zone: tuple(e.index for e in entries) for zone, entries in by_zone.items()},
            largest_pool_gpus=largest,
            above=sum(1 for c in ok if not c.above_ceiling),
            waivable=waivable and not waive,
            cost_only=cost_only,
            residency=residency,
            spot=spot,
            waived=waive,
            fits=fits,
        )

    def _compliance(
        self,
        policies: tuple[model.Policy, ...],
        residency: frozenset[str] | None,
        budgets: tuple[model.Budget, ...],
        fits: frozenset[str] | None = None,
    ) -> tuple[list[Sovereign], list[model.Rejection]]:
        """Pools passing sovereignty (with certificate window, ceiling rejection now, and the
        rejection by a ceiling that does not yield at the deadline), and the rejections of the
        others; shared by the spot and on-demand classes of a policy set."""
        key = (tuple(p.key for p in policies), residency, fits)
        if key in self.compliance:
            return self.compliance[key], self.excluded[key]
        facts = [self._facts(policy) for policy in policies]
        yields = [policy.carbon_ceiling_yields_at_deadline for policy in policies]
        residency_rules = None if residency is None else self._residency(residency)
        sovereign: list[Sovereign] = []
        static: list[model.Rejection] = []
        for index, pool in enumerate(self.pools):
            combined = _combine(facts, yields, index)
            rejection = combined if isinstance(combined, model.Rejection) else None
            if rejection is None and residency_rules is not None:
                rejection = residency_rules[index]
            rejection = rejection or _currency_mismatch(pool, budgets)
            if rejection is None and fits is not None and pool.name not in fits:
                rejection = model.Rejection(
                    pool.name,
                    R.NODE_CONSTRAINTS_NOT_MET,
                    "no node of the pool matches the pod's own nodeSelector, node affinity or "
                    "accelerator resources; fix: relax them, or ask for a pool whose nodes match",
                )
            if rejection is not None:
                static.append(rejection)
            else:
                assert isinstance(combined, Sovereign)
                sovereign.append(combined)
        self.compliance[key] = sovereign
        self.excluded[key] = static
        return sovereign, static

    def _facts(self, policy: model.Policy) -> list[PoolFacts]:
        facts = self.facts.get(policy.key)
        if facts is None:
            facts = self.facts[policy.key] = [
                PoolFacts(
                    hard=rules.sovereignty_violation(pool, (policy,), None)
                    or rules.certificate_window(pool, (policy,), self.now),
                    above_ceiling=rules.ceiling_violation(pool, (policy,), pool.gco2_per_kwh),
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


def _combine(
    facts: Sequence[list[PoolFacts]], yields: Sequence[bool], index: int
) -> model.Rejection | Sovereign:
    """The first hard rejection of one pool across policies, else the pool with its joint
    certificate window (None when nothing is required), the first ceiling it breaks now, and
    the first one that does not yield at the deadline."""
    window: rules.CertificateWindow | None = None
    ceiling: model.Rejection | None = None
    strict: model.Rejection | None = None
    for per_pool, yielding in zip(facts, yields, strict=True):
        pool_facts = per_pool[index]
        hard, above = pool_facts.hard, pool_facts.above_ceiling
        if isinstance(hard, model.Rejection):
            return hard
        if hard.names:
            window = hard if window is None else window.intersect(hard)
        ceiling = ceiling or above
        if not yielding:
            strict = strict or above
    return Sovereign(index, window, ceiling, strict)


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
