"""Property-based tests: over random fleets, policies, budgets and forecasts, the plan never breaks
a hard rule, never over-commits GPUs or budgets, and depends only on its input."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from greenplace.domain import model
from greenplace.engine import objective, planner
from tests import builders as b
from tests.strategies import budgeted_snapshots, snapshots


def violations(snapshot: model.Snapshot, now: datetime.datetime, plan: model.Plan) -> list[str]:
    """An independent, deliberately naive re-check of every placement against the rules."""
    pools = {p.name: p for p in snapshot.pools}
    workloads = {w.key: w for w in snapshot.workloads}
    budgets = {x.key: x for x in snapshot.budgets}
    used: collections.Counter[str] = collections.Counter()
    money: collections.Counter[str] = collections.Counter()
    kg: collections.Counter[str] = collections.Counter()
    kwh: collections.Counter[str] = collections.Counter()
    found = []
    for decision in plan.placed():
        assert decision.pool is not None
        pool, work = pools[decision.pool], workloads[decision.workload]
        governing = [p for p in snapshot.policies if p.selects(work)]
        where = f"{work.key} in {pool.name}"
        waived = decision.reason is model.Reason.CEILING_WAIVED_AT_DEADLINE
        if waived and not _latest_start_has_come(work, governing, now):
            found.append(f"{where}: ceiling waived before the latest start")
        found += [
            f"{where}: {broken}"
            for broken in _broken(pool, work, governing, budgets, now, waived=waived)
        ]
        used[pool.name] += work.gpus
        price = max(p.carbon_price_per_tco2e for p in governing)
        estimate = objective.estimate(
            objective.rate(pool, spot=work.spot, carbon_price_per_tco2e=price),
            work.gpu_hours,
            pool.gco2_per_kwh,
        )
        for key in {f"{p.namespace}/{p.budget}" for p in governing if p.budget}:
            money[key] += estimate.cost
            kg[key] += estimate.kgco2e
            kwh[key] += estimate.kwh
    for name, gpus in used.items():
        if gpus > pools[name].gpus_free:
            found.append(f"{name}: {gpus} GPUs placed, {pools[name].gpus_free} free")
    for budget in snapshot.budgets:
        for spent, left in (
            (money, budget.money_remaining),
            (kg, budget.kgco2e_remaining),
            (kwh, budget.kwh_remaining),
        ):
            # A budget already overspent (left < 0) may be charged nothing more.
            if left is not None and spent[budget.key] > max(left, 0.0) + 1e-6:
                found.append(f"{budget.key}: {spent[budget.key]} spent, {left} left")
    return found


def _broken(
    pool: model.Pool,
    work: model.Workload,
    governing: list[model.Policy],
    budgets: dict[str, model.Budget],
    now: datetime.datetime,
    *,
    waived: bool = False,
) -> list[str]:
    """The rules ``pool`` breaks for ``work``; with ``waived``, ceilings that yield at the
    deadline may be above (only the planner's ``CeilingWaivedAtDeadline`` may do that)."""
    country, jurisdiction = pool.location.country, pool.jurisdiction
    end = now + datetime.timedelta(hours=work.duration_hours)
    broken = [] if governing else ["no policy"]
    if pool.gpus_per_node is not None and work.largest_pod_gpus > pool.gpus_per_node:
        broken.append("pod larger than a node")
    residency = work.data_residency
    if residency is not None:
        allowed = set(residency).union(*(model.REGIMES.get(r, set()) for r in residency))
        if country not in allowed:
            broken.append("residency")
    for policy in governing:
        if policy.allowed_countries is not None and country not in policy.allowed_countries:
            broken.append("country")
        if policy.allowed_regimes is not None:
            members = set().union(*(model.REGIMES[r] for r in policy.allowed_regimes))
            if jurisdiction is None or not {country, jurisdiction.legal_home} <= members:
                broken.append("regime")
        if policy.forbid_extraterritorial and (jurisdiction is None or jurisdiction.exposures):
            broken.append("extraterritorial")
        for req in policy.required_certifications:
            if not any(_satisfies(c, req, now, end) for c in pool.certifications):
                broken.append(f"certification {req.name}")
        ceiling = policy.max_gco2_per_kwh
        intensity = pool.effective_gco2_per_kwh
        unknown_allowed = intensity is None and policy.on_missing_carbon == "CostOnly"
        above = intensity is None or intensity > ceiling if ceiling is not None else False
        excused = waived and policy.carbon_ceiling_yields_at_deadline
        if above and not unknown_allowed and not excused:
            broken.append("carbon ceiling")
        budget = budgets.get(f"{policy.namespace}/{policy.budget}")
        if policy.budget and budget is None:
            broken.append("budget unknown")
        money_rule = budget is not None and budget.money_limit is not None
        if money_rule and budget is not None and budget.currency != pool.currency:
            broken.append("currency")
    return broken


def _latest_start_has_come(
    work: model.Workload, governing: list[model.Policy], now: datetime.datetime
) -> bool:
    delays = [p.max_delay for p in governing if p.max_delay is not None]
    delay = work.max_delay if work.max_delay is not None else min(delays, default=None)
    starts = [] if delay is None else [work.created + delay]
    if work.deadline is not None:
        starts.append(work.deadline - datetime.timedelta(hours=work.duration_hours))
    return bool(starts) and min(starts) <= now


def _satisfies(
    cert: model.Certification,
    req: model.CertificationRequirement,
    now: datetime.datetime,
    end: datetime.datetime,
) -> bool:
    minimum, level = model.level_rank(req.min_level), model.level_rank(cert.level)
    if cert.name != req.name or minimum is None or level is None:
        return False
    return level >= minimum and cert.valid_over(now, end)


def sound_plan(snapshot: model.Snapshot, offset_h: int) -> tuple[datetime.datetime, model.Plan]:
    """Plan ``offset_h`` hours after T0; no rule, capacity or budget broken, nobody forgotten."""
    now = b.T0 + offset_h * b.HOUR
    plan = planner.plan(snapshot, now)
    assert violations(snapshot, now, plan) == []
    assert len(plan.decisions) == len(snapshot.workloads)
    return now, plan


@settings(max_examples=150, deadline=None)
@given(snapshots(), st.integers(0, 3))
def test_no_hard_rule_capacity_or_budget_is_ever_broken(
    snapshot: model.Snapshot, offset_h: int
) -> None:
    now, plan = sound_plan(snapshot, offset_h)
    for decision in plan.decisions:
        assert decision.message.startswith(decision.workload)
        if decision.outcome is model.Outcome.DEFERRED and decision.not_before is not None:
            assert decision.not_before > now


@settings(max_examples=60, deadline=None)
@given(snapshots(), st.randoms(use_true_random=False))
def test_same_input_same_plan_whatever_the_order(
    snapshot: model.Snapshot, rnd: random.Random
) -> None:
    first = planner.plan(snapshot, b.T0)
    assert planner.plan(snapshot, b.T0) == first
    shuffled = dataclasses.replace(
        snapshot,
        pools=tuple(rnd.sample(snapshot.pools, len(snapshot.pools))),
        policies=tuple(rnd.sample(snapshot.policies, len(snapshot.policies))),
        workloads=tuple(rnd.sample(snapshot.workloads, len(snapshot.workloads))),
    )
    assert planner.plan(shuffled, b.T0) == first


@settings(max_examples=60, deadline=None)
@given(snapshots())
def test_full_detail_never_changes_a_decision(snapshot: model.Snapshot) -> None:
    keys = {w.key for w in snapshot.workloads}
    brief, full = planner.plan(snapshot, b.T0), planner.plan(snapshot, b.T0, detail_for=keys)
    for short, long in zip(brief.decisions, full.decisions, strict=True):
        assert (short.outcome, short.reason, short.pool) == (long.outcome, long.reason, long.pool)
        assert short.rejected_by_reason == long.rejected_by_reason
        assert sum(n for _, n in long.rejected_by_reason) >= len(long.alternatives)
        if long.reason not in (model.Reason.NO_POLICY, model.Reason.BUDGET_UNKNOWN):
            losers = {r.pool for r in long.alternatives}
            assert losers | {long.pool} >= {p.name for p in snapshot.pools} - {None}


@settings(max_examples=300, deadline=None)
@given(budgeted_snapshots(), st.integers(0, 3))
def test_tight_budgets_of_every_action_never_crash_nor_overspend(
    snapshot: model.Snapshot, offset_h: int
) -> None:
    _, plan = sound_plan(snapshot, offset_h)
    actions = {x.key: x.action for x in snapshot.budgets}
    for decision in plan.placed():
        charged = [
            actions[f"{p.namespace}/{p.budget}"]
            for p in snapshot.policies
            if p.key in decision.policies and p.budget
        ]
        if any(a is not model.BudgetAction.DOWNGRADE for a in charged):
            # The walk never downgrades a Defer or Reject class; neither may the improvement.
            assert decision.reason is not model.Reason.DOWNGRADED_FOR_BUDGET


@settings(max_examples=150, deadline=None)
@given(snapshots() | budgeted_snapshots(), st.integers(0, 3))
def test_the_wording_says_what_was_decided_and_nothing_else(
    snapshot: model.Snapshot, offset_h: int
) -> None:
    now = b.T0 + offset_h * b.HOUR
    verdicts, plan = planner.decide(snapshot, now), planner.plan(snapshot, now)
    assert [v.workload.key for v in verdicts] == [d.workload for d in plan.decisions]
    for verdict, decision in zip(verdicts, plan.decisions, strict=True):
        placed = verdict.outcome is model.Outcome.PLACED
        assert verdict.pool is not None or not placed
        chosen = verdict.pool.name if placed and verdict.pool is not None else None
        said = (decision.outcome, decision.reason, decision.pool, decision.not_before)
        assert said == (verdict.outcome, verdict.reason, chosen, verdict.not_before)
