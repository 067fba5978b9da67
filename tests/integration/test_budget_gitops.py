"""Budgets hold pods once spent, and the new kinds behave under GitOps and ``kubectl wait``.

The cheapest-carbon FR pool (gcp-europe-west9-a100) costs 3.40 EUR per GPU-hour, so a Budget of
3.40 EUR is exactly used up by one 1-GPU pod of the default expected duration (1 h).
"""

from __future__ import annotations

from typing import Any

import pytest

from devcluster import fleet
from tests import kubeobjects as k8s
from tests.integration.conftest import ROOT, Kube, RunningOperator, wait_for, wait_for_cycles

pytestmark = pytest.mark.cluster


def test_a_spent_budget_holds_further_pods_and_says_exceeded(
    kube: Kube, operator: RunningOperator
) -> None:
    ns = kube.namespace()
    assert kube.apply(k8s.budget(ns, "monthly", money=3.40)).returncode == 0
    assert kube.apply(k8s.policy(ns, "fr", ["FR"], budget="monthly")).returncode == 0
    assert kube.apply(k8s.gpu_pod(ns, "first", 1)).returncode == 0
    wait_for(lambda: kube.bound(ns, "first"), 30, "first pod placed")

    def exceeded() -> dict[str, Any] | None:
        found = k8s.condition(kube.custom("budget", "monthly", ns), "Exceeded")
        return found if found and found["status"] == "True" else None

    found = wait_for(exceeded, 30, "Budget Exceeded=True")
    assert found["reason"] == "LimitReached"
    status = kube.custom("budget", "monthly", ns)["status"]
    assert status["spent"]["money"] == pytest.approx(3.40)
    assert status["remaining"]["money"] == pytest.approx(0.0, abs=1e-6)
    assert status["spent"]["kWh"] > 0 and status["periodStart"].endswith("T00:00:00Z")

    assert kube.apply(k8s.gpu_pod(ns, "second", 1)).returncode == 0
    reason = wait_for(lambda: kube.held_reason(ns, "second"), 30, "second pod held")
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
    source = k8s.signal_source("gitops-grid", [k8s.static_source({"GB": 136})], ["GB"])
    return k8s.manifest(
        pool,
        k8s.policy(ns, "fr", ["FR"], budget="quarterly"),
        source,
        k8s.budget(ns, "quarterly", money=1000),
    )


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
            kube.custom("gpupool", "ovh-gra-h100"),
            kube.custom("placementpolicy", "fr", ns),
            kube.custom("signalsource", "gitops-grid"),
            kube.custom("budget", "quarterly", ns),
        ]
        return [(o["metadata"]["generation"], o["status"]) for o in objects]

    before = state()
    # Every cycle records status; with nothing to change it, two cycles write none.
    wait_for_cycles(operator.metrics)
    assert state() == before, "status changed with nothing to change it"
    second = kube.apply(manifests(ns))
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("unchanged") == 4, second.stdout
    wait_for_cycles(operator.metrics)
    assert state() == before
