"""Workload classes: the compliant pools of one set of policies, ranked once per round.

Why this module exists: the hard rules (``engine.rules``) and the ranking depend only on the
governing policies, the data residency and the spot flag, not on the workload itself. Computing
them once per *class* of workloads sharing those (and each rule once per policy and pool) instead
of once per workload is what keeps a 10,000-workload round fast; this module owns that
precomputation and its caches, so the walk only reads a sorted list.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import math
from collections.abc import Mapping, Sequence

from greenplace.domain import model
from greenplace.engine import objective, rules

__all__ = ["Catalog", "Class", "Window", "ZoneEntry"]

R = model.Reason
Window = rules.CertificateWindow | None
# One pool of a grid zone for the deferral search: pool index, rate, certificate window.
ZoneEntry = tuple[int, objective.Rate, Window]
_Hard = model.Rejection | rules.CertificateWindow
_Rejection = model.Rejection | None
# A pool passing sovereignty: its index, certificate window, the ceiling it breaks now and the
# ceiling it breaks that does not yield at the deadline.
_Sovereign = tuple[int, Window, _Rejection, _Rejection]


@dataclasses.dataclass(slots=True)
class Class:
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
    # The rate each pool is ranked by, and the one budgets count (they differ only for a pool of
    # unknown intensity under CostOnly: ranked without grid carbon, counted at the pessimistic
    # value).
    rates: list[objective.Rate]
    budget_rates: list[objective.Rate]
    windows: list[rules.CertificateWindow | None]
    # Per GPU-hour at the live intensity: money, gCO2e and facility kWh (budgets are checked on
    # these).
    prices: list[float]
    gco2s: list[float]
    kwhs: list[float]
    min_price: float
    min_gco2: float
    min_kwh: float
    # Some policy sets a carbon ceiling.
    ceiling: bool
    # Lowest effective intensity from each position on (what "lowest carbon with room" means).
    min_intensity_from: list[float]
    # Pools excluded by a hard rule, and their count per reason.
    static: tuple[model.Rejection, ...]
    static_counts: collections.Counter[model.Reason]
    # Pools passing sovereignty (even if above a ceiling now), per grid zone, best first.
    zones: dict[str, list[ZoneEntry]]
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
    # First position in ``ranked`` (and in each zone's list) that may still have free GPUs:
    # free GPUs only drop within a round, so these only move forward.
    cursor: int = 0
    zone_cursors: dict[str, int] = dataclasses.field(default_factory=dict)

    def estimate(
        self, pos: int, gpu_hours: float, gco2_per_kwh: float | None
    ) -> objective.Estimate:
        """The projection of ``gpu_hours`` in the pool at ``pos`` (whose grid intensity is
        ``gco2_per_kwh``): cost, kgCO2e and kWh as budgets count them, the objective as ranked;
        the same figures ``controller.budgets`` charges once the workload is placed."""
        return objective.estimate(
            self.budget_rates[pos], gpu_hours, gco2_per_kwh, ranked_by=self.rates[pos]
        )


class Catalog:
    """The classes of one round, and the per-policy and per-pool facts they are built from."""

    def __init__(
        self,
        pools: Sequence[model.Pool],
        budgets: Mapping[str, model.Budget],
        now: datetime.datetime,
    ) -> None:
        self.pools = pools
        self.budgets = budgets
        self.now = now
        self.classes: dict[tuple[object, ...], Class] = {}
        # Per policy, per pool: its hard rules (a rejection or a certificate window) and its
        # carbon ceiling now; per residency label, per pool: the residency rule.
        self.facts: dict[str, list[tuple[_Hard, model.Rejection | None]]] = {}
        self.residency: dict[frozenset[str], list[model.Rejection | None]] = {}
        self.rates: dict[tuple[int, bool, float, bool], objective.Rate] = {}
        self.compliance: dict[tuple[object, ...], list[_Sovereign]] = {}
        self.excluded: dict[tuple[object, ...], list[model.Rejection]] = {}

    def of(self, governing: tuple[model.Policy, ...], workload: model.Workload) -> Class:
        """The class of ``workload``, governed by ``governing``."""
        residency = workload.data_residency
        fits = workload.fits_pools
        key = (tuple(p.key for p in governing), residency, workload.spot, fits)
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

    def reset_cursors(self) -> None:
        """Back to the first pool of every ranking (after capacity was given back)."""
        for cls in self.classes.values():
            cls.cursor = 0
            cls.zone_cursors.clear()

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
        ok: list[tuple[bool, tuple[float, float, float, str], int, objective.Rate, Window]] = []
        zones: dict[str, list[tuple[float, int, objective.Rate, Window]]]
        zones = collections.defaultdict(list)
        largest = 0
        sovereign, static = self._compliance(policies, residency, budgets, fits)
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
        # Budgets count an unknown intensity at the pessimistic value, CostOnly or not (and the
        # energy drawn: a CostOnly rate counts no kWh for grid carbon).
        counted = [self._rate(i, spot, carbon_price, False) for _, _, i, _, _ in ok]
        gco2s = [
            rate.gco2_per_gpu_hour(self.pools[i].gco2_per_kwh)
            for rate, (_, _, i, _, _) in zip(counted, ok, strict=True)
        ]
        kwhs = [rate.kwh_per_gpu_hour for rate in counted]
        min_from = [entry[1][1] for entry in ok] + [math.inf]
        for pos in range(len(ok) - 1, -1, -1):
            min_from[pos] = min(min_from[pos], min_from[pos + 1])
        return Class(
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
            budget_rates=counted,
            windows=[entry[4] for entry in ok],
            prices=prices,
            gco2s=gco2s,
            kwhs=kwhs,
            min_price=min(prices, default=math.inf),
            min_gco2=min(gco2s, default=math.inf),
            min_kwh=min(kwhs, default=math.inf),
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
            fits=fits,
        )

    def _compliance(
        self,
        policies: tuple[model.Policy, ...],
        residency: frozenset[str] | None,
        budgets: tuple[model.Budget, ...],
        fits: frozenset[str] | None = None,
    ) -> tuple[list[_Sovereign], list[model.Rejection]]:
        """Pools passing sovereignty (with certificate window, ceiling rejection now, and the
        rejection by a ceiling that does not yield at the deadline), and the rejections of the
        others; shared by the spot and on-demand classes of a policy set."""
        key = (tuple(p.key for p in policies), residency, fits)
        if key in self.compliance:
            return self.compliance[key], self.excluded[key]
        facts = [self._facts(policy) for policy in policies]
        yields = [policy.carbon_ceiling_yields_at_deadline for policy in policies]
        residency_rules = None if residency is None else self._residency(residency)
        sovereign: list[_Sovereign] = []
        static: list[model.Rejection] = []
        for index, pool in enumerate(self.pools):
            rejection, window, ceiling, strict = _combine(facts, yields, index)
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
    facts: Sequence[list[tuple[_Hard, model.Rejection | None]]],
    yields: Sequence[bool],
    index: int,
) -> tuple[_Rejection, Window, _Rejection, _Rejection]:
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
