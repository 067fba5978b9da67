"""Tables for the two policy choices about carbon that are not sovereignty.

``carbon_ceiling_yields_at_deadline``: a ceiling holds a workload while it can wait; once its
latest start has come (deadline - duration, or created + max delay) it runs above the ceiling in
the best pool passing every other rule (``CeilingWaivedAtDeadline``). ``on_missing_carbon``: an
unknown intensity is excluded by a ceiling (``Hold``) or ranked on cost + embodied carbon only
(``CostOnly``).
"""

from __future__ import annotations

import pytest

from greenplace.domain import model
from greenplace.engine import planner, rules
from tests import builders as b

R = model.Reason
OUT = model.Outcome

DIRTY = [b.pool("de", country="DE", gco2=400, price=3), b.pool("pl", country="PL", gco2=700)]
PAST = {"deadline_h": 1.0}  # a 1 h run due at T0 + 1 h: its latest start is now


def decide(
    pools: list[model.Pool], policies: list[model.Policy], workload: model.Workload
) -> model.Decision:
    (decision,) = planner.plan(b.snapshot(pools, policies, [workload]), b.T0).decisions
    return decision


@pytest.mark.parametrize(
    ("case", "pools", "policies", "workload", "outcome", "reason", "pool"),
    [
        (
            "latest start has come: best objective above the ceiling",
            DIRTY,
            [b.policy(ceiling=200)],
            b.workload("w", **PAST),
            OUT.PLACED,
            R.CEILING_WAIVED_AT_DEADLINE,
            "pl",
        ),
        (
            "latest start from the policy's max delay",
            DIRTY,
            [b.policy(ceiling=200, max_delay_h=0)],
            b.workload("w"),
            OUT.PLACED,
            R.CEILING_WAIVED_AT_DEADLINE,
            "pl",
        ),
        (
            "latest start past (created an hour before its deadline minus duration)",
            DIRTY,
            [b.policy(ceiling=200)],
            b.workload("w", deadline_h=0.5, hours=1.0),
            OUT.PLACED,
            R.CEILING_WAIVED_AT_DEADLINE,
            "pl",
        ),
        (
            "latest start still ahead: held as before",
            DIRTY,
            [b.policy(ceiling=200)],
            b.workload("w", deadline_h=3.0),
            OUT.HELD,
            R.NO_COMPLIANT_POOL,
            None,
        ),
        (
            "no deadline and no max delay: held as before",
            DIRTY,
            [b.policy(ceiling=200)],
            b.workload("w"),
            OUT.HELD,
            R.NO_COMPLIANT_POOL,
            None,
        ),
        (
            "ceiling that does not yield: held as before",
            DIRTY,
            [b.policy(ceiling=200, yields=False)],
            b.workload("w", **PAST),
            OUT.HELD,
            R.NO_COMPLIANT_POOL,
            None,
        ),
        (
            "a ceiling that does not yield still excludes, the other yields",
            DIRTY,
            [b.policy("a", ceiling=200), b.policy("b", ceiling=500, yields=False)],
            b.workload("w", **PAST),
            OUT.PLACED,
            R.CEILING_WAIVED_AT_DEADLINE,
            "de",
        ),
        (
            "sovereignty is never waived",
            [b.pool("us", country="US", gco2=10), b.pool("de", country="DE", gco2=400)],
            [b.policy(countries={"DE"}, ceiling=200)],
            b.workload("w", **PAST),
            OUT.PLACED,
            R.CEILING_WAIVED_AT_DEADLINE,
            "de",
        ),
        (
            "a pool under the ceiling with room goes first, even if dearer",
            [*DIRTY, b.pool("fr", gco2=100, price=50)],
            [b.policy(ceiling=200)],
            b.workload("w", **PAST),
            OUT.PLACED,
            R.LOWEST_CARBON,
            "fr",
        ),
        (
            "the pool under the ceiling is full: above it",
            [*DIRTY, b.pool("fr", gco2=100, free=0)],
            [b.policy(ceiling=200)],
            b.workload("w", **PAST),
            OUT.PLACED,
            R.CEILING_WAIVED_AT_DEADLINE,
            "pl",
        ),
        (
            "above-ceiling pools full too: held for room",
            [b.pool("de", gco2=400, free=0), b.pool("fr", gco2=100, free=0)],
            [b.policy(ceiling=200)],
            b.workload("w", **PAST),
            OUT.HELD,
            R.NO_POOL_WITH_ROOM,
            None,
        ),
    ],
)
def test_ceiling_yields_at_deadline(
    *,
    case: str,
    pools: list[model.Pool],
    policies: list[model.Policy],
    workload: model.Workload,
    outcome: model.Outcome,
    reason: model.Reason,
    pool: str | None,
) -> None:
    decision = decide(pools, policies, workload)
    assert (decision.outcome, decision.reason, decision.pool) == (outcome, reason, pool), case


def test_waiver_says_so_and_still_explains_every_pool() -> None:
    pools = [*DIRTY, b.pool("us", country="US", gco2=10)]
    workload = b.workload("w", **PAST)
    snapshot = b.snapshot(pools, [b.policy(countries={"DE", "PL"}, ceiling=200)], [workload])
    decision = planner.plan(snapshot, b.T0, detail_for={workload.key}).decision(workload.key)
    assert decision is not None
    assert "carbon ceiling waived at the deadline" in decision.message
    assert "latest start 2026-01-01T00:00:00+00:00 has come" in decision.message
    assert "ceilingYieldsAtDeadline false" in decision.message
    assert dict(decision.rejected_by_reason) == {R.OUTRANKED: 1, R.COUNTRY_NOT_ALLOWED: 1}
    assert {r.pool for r in decision.alternatives} == {"de", "us"}


def test_waived_workloads_do_not_take_a_younger_ones_compliant_pool_first() -> None:
    """Arrival order still decides who gets the pool under the ceiling."""
    pools = [b.pool("fr", gco2=100, free=1), b.pool("de", country="DE", gco2=400, free=1)]
    old, young = b.workload("old", **PAST), b.workload("young", at=1, **PAST)
    plan = planner.plan(b.snapshot(pools, [b.policy(ceiling=200)], [old, young]), b.T0)
    assert [(d.workload, d.pool, d.reason) for d in plan.decisions] == [
        ("ml/old", "fr", R.LOWEST_CARBON),
        ("ml/young", "de", R.CEILING_WAIVED_AT_DEADLINE),
    ]


@pytest.mark.parametrize(
    ("case", "pools", "policies", "reason", "pool"),
    [
        (
            "Hold: unknown intensity under a ceiling fails closed",
            [b.pool("a", gco2=None)],
            [b.policy(ceiling=200)],
            R.NO_COMPLIANT_POOL,
            None,
        ),
        (
            "CostOnly: not excluded by the ceiling",
            [b.pool("a", gco2=None)],
            [b.policy(ceiling=200, on_missing="CostOnly")],
            R.LOWEST_CARBON,
            "a",
        ),
        (
            "CostOnly: ranked on cost + embodied, so the cheaper unknown pool wins",
            [b.pool("a", gco2=None, price=1), b.pool("b", gco2=100, price=1.05)],
            [b.policy(ceiling=200, on_missing="CostOnly")],
            R.BEST_OBJECTIVE,
            "a",
        ),
        (
            "CostOnly: embodied carbon still counts",
            [b.pool("a", gco2=None, embodied=1e6), b.pool("b", gco2=100, price=2.05)],
            [b.policy(ceiling=200, on_missing="CostOnly")],
            R.LOWEST_CARBON,
            "b",
        ),
        (
            "Hold without a ceiling: unknown ranked pessimistically (as before)",
            [b.pool("a", gco2=None, price=1), b.pool("b", gco2=100, price=1.05)],
            [b.policy()],
            R.LOWEST_CARBON,
            "b",
        ),
        (
            "another selecting policy holds: its ceiling still excludes",
            [b.pool("a", gco2=None)],
            [b.policy("x", ceiling=200, on_missing="CostOnly"), b.policy("y", ceiling=300)],
            R.NO_COMPLIANT_POOL,
            None,
        ),
    ],
)
def test_missing_carbon(
    case: str,
    pools: list[model.Pool],
    policies: list[model.Policy],
    reason: model.Reason,
    pool: str | None,
) -> None:
    decision = decide(pools, policies, b.workload("w"))
    assert (decision.reason, decision.pool) == (reason, pool), case


def test_cost_only_placement_says_why_and_budgets_stay_pessimistic() -> None:
    policy = b.policy(ceiling=200, on_missing="CostOnly")
    decision = decide([b.pool("a", gco2=None, price=1)], [policy], b.workload("w", gpus=2))
    assert "carbon of grid zone FR unknown, ranked on cost + embodied carbon only" in (
        decision.message
    )
    assert "onMissingSignal CostOnly" in decision.message
    # 2 GPU-h x 0.7 kW x 1,000 g (the pessimistic value) = 1.4 kgCO2e, as budgets count it.
    assert decision.kgco2e == pytest.approx(1.4)
    assert decision.objective == pytest.approx(2.0)


def test_ceiling_rule_lets_unknown_through_only_for_cost_only() -> None:
    pool = b.pool("a", gco2=None)
    held = rules.ceiling_violation(pool, [b.policy(ceiling=200)], None)
    assert held is not None and held.reason is R.CARBON_UNKNOWN
    assert (
        rules.ceiling_violation(pool, [b.policy(ceiling=200, on_missing="CostOnly")], None) is None
    )
    above = rules.ceiling_violation(pool, [b.policy(ceiling=200, on_missing="CostOnly")], 300)
    assert above is not None and above.reason is R.CARBON_ABOVE_CEILING
