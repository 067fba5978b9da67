"""Budgets hold pods once spent, and the new kinds behave under GitOps and ``kubectl wait``.

The cheapest-carbon FR pool (gcp-europe-west9-a100) costs 3.40 EUR per GPU-hour, so a Budget of
3.40 EUR is exactly used up by one 1-GPU pod of the default expected duration (1 h).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devcluster import fleet
from tests.integration.conftest import ROOT, Kube, RunningOperator, wait_for
from tests.integration.test_placement import bound, gpu_pod, held_reason
from tests.integration.test_signalsource import condition, custom

pytestmark = pytest.mark.cluster


def budget(namespace: str, name: str, money: float) -> dict[str, Any]:
    return {
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "Budget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"period": "Month", "currency": "EUR", "limits": {"money": money},
                 "alertThresholds": [0.8], "action": "Defer"},
    }  # fmt: skip


def charged_policy(namespace: str, budget_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "PlacementPolicy",
        "metadata": {"name": "fr", "namespace": namespace},
        "spec": {"sovereignty": {"allowedCountries": ["FR"]}, "budgetRef": {"name": budget_name}},
    }  # fmt: skip


def test_a_spent_budget_holds_further_pods_and_says_exceeded(
    kube: Kube, operator: RunningOperator
) -> None:
    ns = kube.namespace()
    assert kube.apply(json.dumps(budget(ns, "monthly", 3.40))).returncode == 0
    assert kube.apply(json.dumps(charged_policy(ns, "monthly"))).returncode == 0
    assert kube.apply(gpu_pod(ns, "first", 1)).returncode == 0
    wait_for(lambda: bound(kube, ns, "first"), 30, "first pod placed")

    def exceeded() -> dict[str, Any] | None:
        found = condition(custom(kube, "budget", "monthly", ns), "Exceeded")
        return found if found and found["status"] == "True" else None

    found = wait_for(exceeded, 30, "Budget Exceeded=True")
    assert found["reason"] == "LimitReached"
    status = custom(kube, "budget", "monthly", ns)["status"]
    assert status["spent"]["money"] == pytest.approx(3.40)
    assert status["remaining"]["money"] == pytest.approx(0.0, abs=1e-6)
    assert status["spent"]["kWh"] > 0 and status["periodStart"].endswith("T00:00:00Z")

    assert kube.apply(gpu_pod(ns, "second", 1)).returncode == 0
    reason = wait_for(lambda: held_reason(kube, ns, "second"), 30, "second pod held")
    assert reason.startswith("BudgetExceeded: "), reason
    assert kube.pod(ns, "second")["spec"]["schedulingGates"] == [
        {"name": "greenplace.dev/placement"}
    ]


def manifests(ns: str) -> str:
    """One object of every kind but EnergyReport (its own test waits for it): a GpuPool exactly
    as the fleet declares it, a PlacementPolicy, a SignalSource and a Budget."""
    (pool,) = [
        fleet.pool_manifest(p)
        for p in fleet.load_fleet(ROOT / "examples" / "fleet.yaml")
        if p.name == "ovh-gra-h100"
    ]
    source = {
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "SignalSource",
        "metadata": {"name": "gitops-grid"},
        "spec": {"zones": ["GB"], "sources": [
            {"name": "static", "kind": "Static", "static": {"values": {"GB": 136}}}]},
    }  # fmt: skip
    documents = (pool, charged_policy(ns, "quarterly"), source, budget(ns, "quarterly", 1000))
    return "\n---\n".join(json.dumps(d) for d in documents)


def test_applying_twice_is_a_no_op_and_ready_can_be_waited_for(
    kube: Kube, operator: RunningOperator
) -> None:
    ns = kube.namespace()
    first = kube.apply(manifests(ns))
    assert first.returncode == 0, first.stderr
    targets = (
        "gpupool/ovh-gra-h100",
        f"placementpolicy/fr -n {ns}",
        "signalsource/gitops-grid",
        f"budget/quarterly -n {ns}",
    )
    for target in targets:
        waited = kube.kubectl("wait", "--for=condition=Ready", *target.split(), "--timeout=30s")
        assert waited.returncode == 0, waited.stderr

    def state() -> list[tuple[int, Any]]:
        objects = [
            custom(kube, "gpupool", "ovh-gra-h100"),
            custom(kube, "placementpolicy", "fr", ns),
            custom(kube, "signalsource", "gitops-grid"),
            custom(kube, "budget", "quarterly", ns),
        ]
        return [(o["metadata"]["generation"], o["status"]) for o in objects]

    before = state()
    time.sleep(6)  # more than one resync of the test operator
    assert state() == before, "status changed with nothing to change it"
    second = kube.apply(manifests(ns))
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("unchanged") == 4, second.stdout
    time.sleep(6)
    assert state() == before
