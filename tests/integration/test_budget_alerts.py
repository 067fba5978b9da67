"""A Budget crossing 50%, 80% and 100%: one Warning Event per threshold, the condition, the metrics.

On the real control plane with the real operator. Spend is driven to exact fractions by real
placements: the cheapest-carbon FR pool (gcp-europe-west9-a100) costs 3.40 EUR per GPU-hour, so
against a 34 EUR Budget a 1-GPU pod expected to run 5 h is 50%, one of 3 h brings it to 80% and
one of 2 h to 100%. The operator is then stopped and started again in the same period: the
Budget's status says which thresholds were announced, so none is announced twice.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import parser

from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, run_operator, wait_for, wait_for_cycles

pytestmark = pytest.mark.cluster

DURATION = "greenplace.dev/expected-duration-hours"
STEPS = (("a", 5, 0.5, 17.0), ("b", 3, 0.8, 27.2), ("c", 2, 1.0, 34.0))


def alert_events(kube: Kube, namespace: str) -> list[Any]:
    selector = "involvedObject.kind=Budget,involvedObject.name=monthly"
    events = kube.core.list_namespaced_event(namespace, field_selector=selector).items
    return sorted(
        (e for e in events if e.reason == "BudgetThresholdReached"),
        key=lambda e: e.metadata.creation_timestamp,
    )


def sample(metrics: str, name: str, labels: dict[str, str]) -> float | None:
    """The value of series ``name`` with exactly ``labels`` on a /metrics page, if present."""
    for family in parser.text_string_to_metric_families(metrics):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def wait_for_events(kube: Kube, namespace: str, count: int) -> None:
    wait_for(lambda: len(alert_events(kube, namespace)) >= count, 30, f"{count} alert Events")


def test_each_threshold_is_announced_once_across_cycles_and_a_restart(kube: Kube) -> None:
    ns = kube.namespace()
    kube.apply_ok(k8s.budget(ns, "monthly", money=34.0, thresholds=(0.5, 0.8, 1.0)))
    kube.apply_ok(k8s.policy(ns, "fr", ["FR"], budget="monthly"))
    uid = kube.custom("budget", "monthly", ns)["metadata"]["uid"]
    labels = {"namespace": ns, "budget": "monthly"}

    def ratio(metrics: str) -> float | None:
        return sample(metrics, "greenplace_budget_spent_ratio", labels)

    def alerts_total(metrics: str, threshold: str) -> float | None:
        return sample(metrics, "greenplace_budget_alerts_total", {**labels, "threshold": threshold})

    def announced(threshold: float) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            status = kube.custom("budget", "monthly", ns).get("status") or {}
            return status if threshold in (status.get("alertedThresholds") or []) else None

        found: dict[str, Any] = wait_for(check, 30, f"threshold {threshold} announced")
        return found

    messages: list[str] = []
    with run_operator(kube) as operator:
        for name, hours, threshold, spent in STEPS:
            kube.apply_ok(k8s.gpu_pod(ns, name, 1, annotations={DURATION: str(hours)}))
            status = announced(threshold)
            assert status["spent"]["money"] == pytest.approx(spent), "placed elsewhere?"
            messages.append(f"{threshold:.0%} of 34 EUR spent this Month ({spent:.2f})")
            wait_for_events(kube, ns, len(messages))
            wait_for_cycles(operator.metrics)  # what was not posted again in them never will be
            events = alert_events(kube, ns)
            assert [e.message for e in events] == messages
            assert {(e.type, e.involved_object.uid) for e in events} == {("Warning", uid)}
            condition = k8s.condition(kube.custom("budget", "monthly", ns), "ThresholdReached")
            assert condition is not None
            assert (condition["status"], condition["reason"]) == ("True", "AlertThreshold")
            assert condition["message"] == messages[-1]
            metrics = operator.metrics()
            assert ratio(metrics) == pytest.approx(spent / 34.0)
            assert alerts_total(metrics, f"{threshold:g}") == 1.0

    with run_operator(kube) as restarted:
        wait_for_cycles(restarted.metrics)
        assert [e.message for e in alert_events(kube, ns)] == messages, "announced again"
        metrics = restarted.metrics()
        assert ratio(metrics) == pytest.approx(1.0)
        assert alerts_total(metrics, "1") is None
    status = kube.custom("budget", "monthly", ns)["status"]
    assert status["alertedThresholds"] == [0.5, 0.8, 1.0]
