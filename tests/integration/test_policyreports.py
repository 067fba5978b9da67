"""greenplace's verdicts as PolicyReports on the real API server (issue 17 item 3).

The Policy WG's own CRD (vendored in tests/integration/crds, with where it came from) is
installed as Kyverno or Policy Reporter would; the real ``greenplace operate --policy-reports``
writes one report per governed namespace, one result per workload for each of sovereignty,
carbon and budget, matching where the pods were placed; a workload its Budget holds shows
``fail`` under budget.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster

CRD = pathlib.Path(__file__).parent / "crds" / "wgpolicyk8s.io_policyreports.yaml"


@pytest.fixture(scope="module", autouse=True)
def policy_report_crd(kube: Kube) -> None:
    result = kube.kubectl("apply", "--server-side", "-f", str(CRD))
    assert result.returncode == 0, result.stderr
    result = kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                          "crd/policyreports.wgpolicyk8s.io")  # fmt: skip
    assert result.returncode == 0, result.stderr


def report(kube: Kube, namespace: str) -> dict[str, Any] | None:
    found = kube.kubectl("get", "policyreports.v1alpha2.wgpolicyk8s.io", "greenplace", "-n",
                         namespace, "-o", "json")  # fmt: skip
    if found.returncode != 0:
        return None
    body: dict[str, Any] = json.loads(found.stdout)
    return body


def verdicts(body: dict[str, Any] | None) -> dict[tuple[str, str], str]:
    """(workload name, rule) -> result."""
    return {
        (r["properties"]["workload"].split("/", 1)[1], r["rule"]): r["result"]
        for r in (body or {}).get("results") or ()
    }


def test_one_report_per_governed_namespace_matching_the_placements(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    ledger_ns = kube.namespace(governed=False)
    operator_process.start(f"--lease-namespace={ledger_ns}", "--policy-reports")
    budgeted, sovereign = kube.namespace(), kube.namespace()
    # One placement's worth of money (3.40 EUR: 1 GPU-hour in gcp-europe-west9): the second
    # pod would exceed it and is held.
    kube.apply_ok(k8s.budget(budgeted, "monthly", money=3.40))
    kube.apply_ok(k8s.policy(budgeted, "fr", ["FR"], budget="monthly"))
    kube.apply_ok(k8s.gpu_pod(budgeted, "first"))
    wait_for(lambda: kube.bound(budgeted, "first"), 60, "first placed")
    kube.apply_ok(k8s.gpu_pod(budgeted, "second"))
    wait_for(lambda: (kube.held_reason(budgeted, "second") or "").startswith("BudgetExceeded"),
             60, "second held by its budget")  # fmt: skip
    # Another namespace: a pod placed, one asking for a country no pool is in.
    kube.apply_ok(k8s.policy(sovereign, "de", ["DE"]))
    kube.apply_ok(k8s.policy(sovereign, "ch", ["CH"], select={"want": "ch"}))
    kube.apply_ok(k8s.gpu_pod(sovereign, "placed"))
    kube.apply_ok(k8s.gpu_pod(sovereign, "swiss", labels={"want": "ch"}))
    wait_for(lambda: kube.bound(sovereign, "placed"), 60, "placed bound")

    expected_budgeted = {
        ("first", "sovereignty"): "pass", ("first", "carbon"): "pass",
        ("first", "budget"): "pass",
        ("second", "sovereignty"): "skip", ("second", "carbon"): "skip",
        ("second", "budget"): "fail",
    }  # fmt: skip
    found = wait_for(lambda: (b := report(kube, budgeted)) and verdicts(b) == expected_budgeted
                     and b, 60, f"the report of {budgeted}")  # fmt: skip
    assert found["summary"] == {"pass": 3, "fail": 1, "warn": 0, "error": 0, "skip": 2}
    by_rule = {(r["properties"]["workload"], r["rule"]): r for r in found["results"]}
    first = by_rule[(f"{budgeted}/first", "sovereignty")]
    assert first["properties"]["pool"] == kube.placed_pool(budgeted, "first")
    assert first["policy"] == f"{budgeted}/fr" and first["source"] == "greenplace"
    uid = kube.pod(budgeted, "first")["metadata"]["uid"]
    assert first["resources"] == [{"apiVersion": "v1", "kind": "Pod", "namespace": budgeted,
                                   "name": "first", "uid": uid}]  # fmt: skip
    held = by_rule[(f"{budgeted}/second", "budget")]
    assert held["properties"]["reason"] == "BudgetExceeded" and "monthly" in held["message"]

    expected_sovereign = {
        ("placed", "sovereignty"): "pass", ("placed", "carbon"): "pass",
        ("placed", "budget"): "skip",
        ("swiss", "sovereignty"): "fail", ("swiss", "carbon"): "skip",
        ("swiss", "budget"): "skip",
    }  # fmt: skip
    other = wait_for(lambda: (b := report(kube, sovereign)) and verdicts(b) == expected_sovereign
                     and b, 60, f"the report of {sovereign}")  # fmt: skip
    placed = {r["properties"]["workload"]: r for r in other["results"]}[f"{sovereign}/placed"]
    assert placed["properties"]["pool"] == kube.placed_pool(sovereign, "placed")
    assert report(kube, ledger_ns) is None  # not governed: no report

    # A restarted operator reads the reports back: the placed pods keep their pass.
    operator_process.stop()
    operator_process.start(f"--lease-namespace={ledger_ns}", "--policy-reports")
    kube.apply_ok(k8s.gpu_pod(sovereign, "later"))
    wait_for(lambda: kube.bound(sovereign, "later"), 60, "later bound")
    wait_for(lambda: verdicts(report(kube, sovereign)).get(("later", "sovereignty")) == "pass",
             60, "the later pod's result")  # fmt: skip
    assert verdicts(report(kube, sovereign))[("placed", "sovereignty")] == "pass"
    assert verdicts(report(kube, budgeted)) == expected_budgeted
    assert "policy reports: not written" not in operator_process.log.read_text()
