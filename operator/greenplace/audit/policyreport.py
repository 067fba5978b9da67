"""greenplace's verdicts as ``wgpolicyk8s.io`` PolicyReports, the format Kyverno, Trivy and
Policy Reporter use, so compliance dashboards that already read them show greenplace's too.

Why this module exists: a platform team's dashboard lists, per namespace, each workload's
result for each rule; greenplace's rules are sovereignty, carbon and budget. This module turns
one planner decision into those three results (pure: decisions in, plain JSON out), and a
namespace's results into the PolicyReport body (``report_body``); ``controller.policyreports``
writes it. The mapping, by the decision's reason code:

- placed: every rule the pool met ``pass`` (budget ``skip`` when no Budget governs); placed
  above a carbon ceiling waived at the deadline: carbon ``warn``;
- held, deferred or refused by a rule (its reason is a sovereignty, carbon or budget reason):
  that rule ``fail`` (a workload a Budget holds shows ``fail`` under budget), the others
  ``skip`` (not judged to the end); deferred for a cleaner slot is carbon ``warn`` (a choice,
  not a rule broken);
- waiting for anything else (capacity, a gang, node constraints): ``skip`` for all three;
  a planning failure: ``error``.

The ``wgpolicyk8s.io/v1alpha2`` version is written: the one Kyverno and Policy Reporter read
(the working group's CRD, vendored in tests/integration/crds, serves it).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from greenplace.domain import model

__all__ = ["API_VERSION", "REPORT_NAME", "RULES", "report_body", "results_of"]

GROUP = "wgpolicyk8s.io"
VERSION = "v1alpha2"
API_VERSION = f"{GROUP}/{VERSION}"
PLURAL = "policyreports"
REPORT_NAME = "greenplace"
SOURCE = "greenplace"
RULES = ("sovereignty", "carbon", "budget")
MESSAGE_LIMIT = 1024  # a result's message; the decision's full text is on the pod's Events

_R = model.Reason
_BY_RULE: dict[str, frozenset[model.Reason]] = {
    "sovereignty": frozenset({
        _R.NO_POLICY, _R.COUNTRY_NOT_ALLOWED, _R.NO_COMPLIANT_POOL, _R.LOCATION_UNKNOWN,
        _R.REGIME_NOT_ALLOWED, _R.JURISDICTION_UNKNOWN, _R.EXTRATERRITORIAL_EXPOSURE,
        _R.RESIDENCY_NOT_MET, _R.CERTIFICATION_MISSING, _R.CERTIFICATION_LEVEL_TOO_LOW,
        _R.CERTIFICATION_NOT_VALID, _R.CERTIFICATION_EXPIRES_DURING_RUN,
        _R.CERTIFICATION_UNVERIFIED,
    }),
    "carbon": frozenset({
        _R.CARBON_ABOVE_CEILING, _R.CARBON_UNKNOWN, _R.DEFERRED_UNTIL_UNDER_CEILING,
    }),
    "budget": frozenset({_R.BUDGET_EXCEEDED, _R.BUDGET_UNKNOWN, _R.CURRENCY_MISMATCH}),
}  # fmt: skip


def _verdicts(decision: model.Decision, budgeted: bool) -> dict[str, str]:
    """Rule -> pass, fail, warn, skip or error for ``decision``."""
    reason = decision.reason
    if decision.outcome is model.Outcome.PLACED:
        carbon = "warn" if reason is _R.CEILING_WAIVED_AT_DEADLINE else "pass"
        return {"sovereignty": "pass", "carbon": carbon, "budget": "pass" if budgeted else "skip"}
    if reason is _R.PLANNING_FAILED:
        return dict.fromkeys(RULES, "error")
    verdicts = dict.fromkeys(RULES, "skip")
    if reason is _R.DEFERRED_FOR_CLEANER_SLOT:
        verdicts["carbon"] = "warn"
    for rule, reasons in _BY_RULE.items():
        if reason in reasons:
            verdicts[rule] = "fail"
    return verdicts


def results_of(
    decision: model.Decision,
    pods: Sequence[tuple[str, str]],
    *,
    budgeted: bool,
    at: datetime.datetime,
) -> list[dict[str, Any]]:
    """The three results of one decision: ``pods`` are the (name, uid) it concerns, all in
    the workload's namespace; ``budgeted``: a Budget governs the workload."""
    namespace = decision.workload.partition("/")[0]
    policy = decision.policies[0] if decision.policies else "greenplace"
    properties = {
        "workload": decision.workload,
        "outcome": decision.outcome.value,
        "reason": decision.reason.value,
        **({"pool": decision.pool} if decision.pool else {}),
        **({"policies": ",".join(decision.policies)} if decision.policies else {}),
    }
    resources = [
        {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": name, "uid": uid}
        for name, uid in pods
    ]
    stamp = {"seconds": int(at.timestamp()), "nanos": at.microsecond * 1000}
    return [
        {
            "source": SOURCE,
            "policy": policy,
            "rule": rule,
            "category": "greenplace placement",
            "result": verdict,
            "scored": True,
            "message": decision.message[:MESSAGE_LIMIT],
            "properties": properties,
            "resources": resources,
            "timestamp": stamp,
        }
        for rule, verdict in _verdicts(decision, budgeted).items()
    ]


def workload_of(result: Mapping[str, Any]) -> str | None:
    """Which workload a result is about (None: not one greenplace wrote)."""
    properties = result.get("properties")
    if result.get("source") != SOURCE or not isinstance(properties, Mapping):
        return None
    workload = properties.get("workload")
    return workload if isinstance(workload, str) else None


def report_body(namespace: str, results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The PolicyReport of ``namespace`` holding ``results`` (sorted: one text per state)."""
    ordered = sorted(results, key=lambda r: (workload_of(r) or "", r["rule"]))
    summary = dict.fromkeys(("pass", "fail", "warn", "error", "skip"), 0)
    for result in ordered:
        summary[result["result"]] += 1
    return {
        "apiVersion": API_VERSION,
        "kind": "PolicyReport",
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "greenplace"},
        },
        "summary": summary,
        "results": ordered,
    }
