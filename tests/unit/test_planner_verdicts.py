"""The planner decides (a typed verdict), then words it: the verdict is the answer, the message
only says it (issue 11 item 2; the property over generated snapshots is in
``test_planner_properties``)."""

from __future__ import annotations

import pytest

from greenplace.domain import model
from greenplace.engine import planner
from tests import builders as b

R = model.Reason
OUT = model.Outcome
A = model.BudgetAction


@pytest.mark.parametrize(
    ("action", "outcome", "not_before"),
    [(A.REJECT, OUT.REFUSED, None), (A.DEFER, OUT.DEFERRED, b.T0 + 24 * b.HOUR)],
)
def test_a_spent_budget_at_the_latest_start_is_the_verdict_not_the_ceiling(
    action: model.BudgetAction, outcome: model.Outcome, not_before: object
) -> None:
    # Issue 11's smallest case: one FR pool at 56 g, a 10 g ceiling that yields at the latest
    # start, Budget team with 100 of 100 spent, a workload with max delay 1 h created 1 h ago.
    # The ceiling no longer holds it; the spent budget does.
    snapshot = b.snapshot(
        [b.pool("fr", country="FR", gco2=56.0)],
        [b.policy(ceiling=10.0, budget="team")],
        [b.workload("w", at=-3600, max_delay_h=1)],
        budgets=[b.budget("team", money=100, spent=100, action=action)],
    )
    (verdict,) = planner.decide(snapshot, b.T0)
    assert (verdict.outcome, verdict.reason) == (outcome, R.BUDGET_EXCEEDED)
    assert verdict.pool is None and verdict.not_before == not_before
    assert verdict.over_budget is not None and verdict.over_budget.budget.key == "ml/team"
    (decision,) = planner.plan(snapshot, b.T0).decisions
    assert (decision.outcome, decision.reason, decision.not_before) == (
        outcome,
        R.BUDGET_EXCEEDED,
        not_before,
    )
    assert "Budget ml/team" in decision.message
    assert "above ceiling" not in decision.message
