"""A decision's sovereignty, carbon and budget results in a PolicyReport (audit.policyreport):
which reason makes which rule pass, fail, warn, skip or error, and the report's summary."""

from __future__ import annotations

import datetime

import pytest

from greenplace.audit import policyreport
from greenplace.domain import model

AT = datetime.datetime(2026, 3, 1, 10, 0, 0, 250000, tzinfo=datetime.UTC)
R, Out = model.Reason, model.Outcome


def results(
    outcome: model.Outcome, reason: model.Reason, *, budgeted: bool = True
) -> dict[str, str]:
    decision = model.Decision("ml/job", outcome, reason, "why", pool="fr-1" if outcome is
                              Out.PLACED else None, policies=("ml/eu",))  # fmt: skip
    found = policyreport.results_of(decision, [("job", "u1")], budgeted=budgeted, at=AT)
    return {r["rule"]: r["result"] for r in found}


@pytest.mark.parametrize(
    ("outcome", "reason", "budgeted", "expected"),
    [
        (Out.PLACED, R.LOWEST_CARBON, True, ("pass", "pass", "pass")),
        (Out.PLACED, R.BEST_OBJECTIVE, False, ("pass", "pass", "skip")),
        (Out.PLACED, R.DOWNGRADED_FOR_BUDGET, True, ("pass", "pass", "pass")),
        (Out.PLACED, R.CEILING_WAIVED_AT_DEADLINE, True, ("pass", "warn", "pass")),
        (Out.DEFERRED, R.BUDGET_EXCEEDED, True, ("skip", "skip", "fail")),
        (Out.HELD, R.CURRENCY_MISMATCH, True, ("skip", "skip", "fail")),
        (Out.HELD, R.COUNTRY_NOT_ALLOWED, True, ("fail", "skip", "skip")),
        (Out.HELD, R.CERTIFICATION_EXPIRES_DURING_RUN, True, ("fail", "skip", "skip")),
        (Out.HELD, R.CERTIFICATION_UNVERIFIED, True, ("fail", "skip", "skip")),
        (Out.HELD, R.CARBON_ABOVE_CEILING, True, ("skip", "fail", "skip")),
        (Out.DEFERRED, R.DEFERRED_UNTIL_UNDER_CEILING, True, ("skip", "fail", "skip")),
        (Out.DEFERRED, R.DEFERRED_FOR_CLEANER_SLOT, True, ("skip", "warn", "skip")),
        (Out.HELD, R.INSUFFICIENT_CAPACITY, True, ("skip", "skip", "skip")),
        (Out.REFUSED, R.GANG_TOO_LARGE, True, ("skip", "skip", "skip")),
        (Out.HELD, R.PLANNING_FAILED, True, ("error", "error", "error")),
    ],
)
def test_each_reason_gives_each_rule_its_result(
    outcome: model.Outcome, reason: model.Reason, budgeted: bool, expected: tuple[str, ...]
) -> None:
    assert results(outcome, reason, budgeted=budgeted) == dict(
        zip(policyreport.RULES, expected, strict=True)
    )


def test_a_result_names_the_policy_the_pods_and_the_decision() -> None:
    decision = model.Decision("ml/job", Out.PLACED, R.LOWEST_CARBON, "x" * 5000, pool="fr-1",
                              policies=("ml/eu", "ml/gpu"))  # fmt: skip
    (first, *_) = policyreport.results_of(decision, [("job", "u1")], budgeted=False, at=AT)
    assert first["policy"] == "ml/eu" and first["source"] == "greenplace"
    assert first["properties"] == {"workload": "ml/job", "outcome": "Placed",
                                   "reason": "LowestCarbon", "pool": "fr-1",
                                   "policies": "ml/eu,ml/gpu"}  # fmt: skip
    assert first["resources"] == [{"apiVersion": "v1", "kind": "Pod", "namespace": "ml",
                                   "name": "job", "uid": "u1"}]  # fmt: skip
    assert first["timestamp"] == {"seconds": int(AT.timestamp()), "nanos": 250000000}
    assert len(first["message"]) == policyreport.MESSAGE_LIMIT
    assert policyreport.workload_of(first) == "ml/job"
    assert policyreport.workload_of({**first, "source": "kyverno"}) is None


def test_the_report_sorts_its_results_and_counts_them() -> None:
    held = model.Decision("ml/b", Out.DEFERRED, R.BUDGET_EXCEEDED, "over")
    placed = model.Decision("ml/a", Out.PLACED, R.LOWEST_CARBON, "ok", pool="fr-1")
    found = [*policyreport.results_of(held, [], budgeted=True, at=AT),
             *policyreport.results_of(placed, [], budgeted=True, at=AT)]  # fmt: skip
    body = policyreport.report_body("ml", found)
    assert body["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and body["kind"] == "PolicyReport"
    assert body["metadata"]["name"] == "greenplace" and body["metadata"]["namespace"] == "ml"
    assert [(r["properties"]["workload"], r["rule"]) for r in body["results"]][:3] == [
        ("ml/a", "budget"),
        ("ml/a", "carbon"),
        ("ml/a", "sovereignty"),
    ]
    assert body["summary"] == {"pass": 3, "fail": 1, "warn": 0, "error": 0, "skip": 2}
