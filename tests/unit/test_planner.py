"""Table-driven tests of the planner's rules and reason codes."""

from __future__ import annotations

import pytest

from greenplace.domain import model
from greenplace.engine import planner
from tests import builders as b

R = model.Reason


def only(plan: model.Plan) -> model.Decision:
    (decision,) = plan.decisions
    return decision


@pytest.mark.parametrize(
    ("case", "pools", "policy", "want_pool", "want_reason"),
    [
        (
            "lowest carbon wins",
            [b.pool("a", gco2=300), b.pool("b", gco2=40)],
            b.policy(),
            "b",
            R.LOWEST_CARBON,
        ),
        (
            "PUE counts",
            [b.pool("a", gco2=50, pue=2.0), b.pool("b", gco2=90)],
            b.policy(),
            "b",
            R.LOWEST_CARBON,
        ),
        (
            "price breaks carbon ties",
            [b.pool("a", price=3), b.pool("b", price=1)],
            b.policy(),
            "b",
            R.LOWEST_CARBON,
        ),
        ("name breaks full ties", [b.pool("z"), b.pool("y")], b.policy(), "y", R.LOWEST_CARBON),
        (
            "country rule",
            [b.pool("us", country="US", gco2=1), b.pool("fr", gco2=90)],
            b.policy(countries={"FR"}),
            "fr",
            R.LOWEST_CARBON,
        ),
        (
            "no allowed country",
            [b.pool("us", country="US")],
            b.policy(countries={"FR"}),
            None,
            R.NO_COMPLIANT_POOL,
        ),
        ("ceiling", [b.pool("a", gco2=300)], b.policy(ceiling=200), None, R.NO_COMPLIANT_POOL),
        (
            "ceiling includes PUE",
            [b.pool("a", gco2=150, pue=1.5)],
            b.policy(ceiling=200),
            None,
            R.NO_COMPLIANT_POOL,
        ),
        (
            "unknown carbon under a ceiling fails closed",
            [b.pool("a", gco2=None)],
            b.policy(ceiling=200),
            None,
            R.NO_COMPLIANT_POOL,
        ),
        (
            "unknown carbon without ceiling is allowed, ranked last",
            [b.pool("a", gco2=None), b.pool("b", gco2=500)],
            b.policy(),
            "b",
            R.LOWEST_CARBON,
        ),
        ("no room", [b.pool("a", free=0)], b.policy(), None, R.NO_POOL_WITH_ROOM),
        (
            "policy of another namespace does not govern",
            [b.pool("a")],
            b.policy(namespace="other"),
            None,
            R.NO_POLICY,
        ),
        ("selector must match", [b.pool("a")], b.policy(match={"team": "x"}), None, R.NO_POLICY),
    ],
)
def test_single_workload(
    case: str,
    pools: list[model.Pool],
    policy: model.Policy,
    want_pool: str | None,
    want_reason: model.Reason,
) -> None:
    decision = only(planner.plan(b.snapshot(pools, [policy], [b.workload("w")]), b.T0))
    assert (decision.pool, decision.reason) == (want_pool, want_reason), case
    assert decision.outcome is (model.Outcome.PLACED if want_pool else model.Outcome.HELD)


@pytest.mark.parametrize(
    ("pool", "policy", "reason", "fragment"),
    [
        (
            b.pool("us", country="US"),
            b.policy("eu", countries={"FR", "DE"}),
            R.COUNTRY_NOT_ALLOWED,
            "PlacementPolicy ml/eu (country US not in allowed DE, FR)",
        ),
        (
            b.pool("a", gco2=300),
            b.policy("green", ceiling=100),
            R.CARBON_ABOVE_CEILING,
            "300 gCO2e/kWh above ceiling 100",
        ),
        (
            b.pool("a", gco2=None),
            b.policy("green", ceiling=100),
            R.CARBON_UNKNOWN,
            "grid zone FR unknown",
        ),
        (b.pool("a", free=1), b.policy(), R.INSUFFICIENT_CAPACITY, "needs 2 GPUs, 1 free"),
    ],
)
def test_every_rejected_pool_is_explained(
    pool: model.Pool, policy: model.Policy, reason: model.Reason, fragment: str
) -> None:
    decision = only(planner.plan(b.snapshot([pool], [policy], [b.workload("w", gpus=2)]), b.T0))
    (rejection,) = decision.alternatives
    assert rejection.pool == pool.name
    assert rejection.reason is reason
    assert fragment in rejection.message
    assert fragment in decision.message


def test_all_selecting_policies_apply() -> None:
    pools = [b.pool("fr", gco2=60), b.pool("de", country="DE", gco2=10)]
    policies = [b.policy("eu", countries={"FR", "DE"}), b.policy("fr-only", countries={"FR"})]
    decision = only(planner.plan(b.snapshot(pools, policies, [b.workload("w")]), b.T0))
    assert decision.pool == "fr"
    assert decision.policies == ("ml/eu", "ml/fr-only")


def test_capacity_is_not_overcommitted_within_a_round() -> None:
    pools = [b.pool("clean", gco2=10, free=4), b.pool("dirty", gco2=400, free=4)]
    workloads = [b.workload(f"w{i}", gpus=2, at=i) for i in range(5)]
    plan = planner.plan(b.snapshot(pools, [b.policy()], workloads), b.T0)
    assert [d.pool for d in plan.decisions] == ["clean", "clean", "dirty", "dirty", None]
    assert plan.decisions[-1].reason is R.NO_POOL_WITH_ROOM


@pytest.mark.parametrize(
    ("pools", "want_pool", "want_reason", "fragment"),
    [
        (
            [b.pool("clean", gco2=10, free=1), b.pool("cleaner", gco2=5, free=0, total=8)],
            "dirty",
            R.LOWEST_CARBON,
            "lowest carbon among the 1 compliant pool left (2 without room) under ml/pol",
        ),
        (
            [b.pool("clean", gco2=10, per_node=1), b.pool("cleaner", gco2=5, free=1)],
            "dirty",
            R.LOWEST_CARBON,
            "among the 1 compliant pool left (1 without room, 1 with nodes too small) under",
        ),
        (
            [b.pool("clean", gco2=10), b.pool("cleaner", gco2=5)],
            "cleaner",
            R.LOWEST_CARBON,
            "lowest carbon among 3 compliant pools under ml/pol",
        ),
        (
            [b.pool("cheap", gco2=100, price=1.0, free=1), b.pool("clean", gco2=5, price=9.0)],
            "dirty",
            R.BEST_OBJECTIVE,
            "lowest cost + carbon at 100 EUR/tCO2e among the 2 compliant pools left (1 without",
        ),
    ],
)
def test_a_placement_counts_only_the_compliant_pools_left(
    pools: list[model.Pool], want_pool: str, want_reason: model.Reason, fragment: str
) -> None:
    """When cleaner pools are full, the winner is the lowest carbon among those left, not all."""
    pools = [*pools, b.pool("dirty", gco2=400)]
    workload = b.workload("w", gpus=2, pods=(2,))
    decision = only(planner.plan(b.snapshot(pools, [b.policy()], [workload]), b.T0))
    assert (decision.pool, decision.reason) == (want_pool, want_reason)
    assert fragment in decision.message, decision.message


def test_oldest_workload_is_served_first() -> None:
    pools = [b.pool("only", free=1)]
    workloads = [b.workload("young", at=10), b.workload("old", at=1)]
    plan = planner.plan(b.snapshot(pools, [b.policy()], workloads), b.T0)
    assert [(d.workload, d.pool) for d in plan.decisions] == [
        ("ml/old", "only"),
        ("ml/young", None),
    ]


def test_outranked_alternatives_name_the_winner() -> None:
    pools = [b.pool("a", gco2=10), b.pool("b", gco2=20)]
    decision = only(planner.plan(b.snapshot(pools, [b.policy()], [b.workload("w")]), b.T0))
    (alt,) = decision.alternatives
    # Pools are now ranked by objective (cost + priced carbon), so the message also compares it.
    assert (alt.pool, alt.reason) == ("b", R.OUTRANKED)
    assert alt.message.startswith("20 gCO2e/kWh vs 10 gCO2e/kWh in a; objective ")
