"""SignalSource on the real API server and operator: signals move pods, failures only degrade.

The example fleet's fallback intensities put a 1-GPU FR/DE pod on gcp-europe-west9-a100 (FR,
34 gCO2e/kWh). A static SignalSource that says FR is dirty and DE clean sends it to DE instead;
a SignalSource whose only feed is a closed 127.0.0.1 port is Degraded (Unavailable), the pools
keep their fallback, and which countries are allowed never changes. The operator of this module
allows 127.0.0.1 over http explicitly (``allow_signal_hosts``, ``allow_insecure_signal_http``):
by default a SignalSource may not reach it (tests/integration/signals/test_signal_access.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests import kubeobjects as k8s
from tests.integration.conftest import LOCAL_FEEDS, Kube, RunningOperator, run_operator, wait_for
from tests.integration.signals import prometheus_fixture

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def operator(kube: Kube) -> Iterator[RunningOperator]:
    """The real operator (as conftest's), allowed to reach the local feeds."""
    with run_operator(kube, **LOCAL_FEEDS) as running:
        yield running


def test_a_static_signal_changes_the_pool_and_shows_its_readings(
    kube: Kube, operator: RunningOperator
) -> None:
    static = k8s.static_source({"FR": 900, "DE": 20}, name="grid")
    result = kube.apply(k8s.signal_source("eu-grid", [static], ["FR", "DE"]))
    assert result.returncode == 0, result.stderr
    waited = kube.kubectl("wait", "--for=condition=Ready", "signalsource/eu-grid", "--timeout=30s")
    assert waited.returncode == 0, waited.stderr
    wait_for(
        lambda: (
            k8s.pool_carbon(kube.custom("gpupool", "gcp-europe-west9-a100"))
            == (900, "SignalSource eu-grid/grid")
        ),
        30,
        "pool status shows the signal's value",
    )
    ns = kube.namespace()
    assert kube.apply(k8s.policy(ns, "fr-de", ["FR", "DE"])).returncode == 0
    assert kube.apply(k8s.gpu_pod(ns, "p", 1)).returncode == 0
    pod = wait_for(lambda: kube.bound(ns, "p"), 30, "pod bound")
    assert kube.node_pool(pod["spec"]["nodeName"]) == "stackit-eu01-h100"

    body = kube.custom("signalsource", "eu-grid")
    readings = {r["subject"]: r for r in body["status"]["readings"]}
    assert readings["FR"]["value"] == 900 and readings["FR"]["source"] == "grid"
    assert readings["FR"]["reason"] == "Fresh"
    assert "observedAt" not in readings["FR"] or readings["FR"]["observedAt"] is None
    degraded = k8s.condition(body, "Degraded")
    assert degraded is not None and degraded["status"] == "False"
    assert 'greenplace_signal_value{kind="carbon_intensity",subject="DE"} 20.0' in (
        operator.metrics()
    )
    assert kube.kubectl("delete", "signalsource", "eu-grid").returncode == 0


def test_an_unreachable_feed_degrades_falls_back_and_never_changes_sovereignty(
    kube: Kube, operator: RunningOperator
) -> None:
    dead = f"http://127.0.0.1:{prometheus_fixture.free_port()}"
    prom = {
        "name": "prom", "kind": "Prometheus", "timeout": "1s",
        "prometheus": {"url": dead, "query": 'greenplace_grid_carbon_intensity{zone="$subject"}'},
    }  # fmt: skip
    assert kube.apply(k8s.signal_source("down", [prom], ["FR"])).returncode == 0

    def degraded() -> dict[str, Any] | None:
        found = k8s.condition(kube.custom("signalsource", "down"), "Degraded")
        return found if found and found["status"] == "True" else None

    found = wait_for(degraded, 30, "Degraded condition")
    assert found["reason"] == "Unavailable"
    body = kube.custom("signalsource", "down")
    (reading,) = body["status"]["readings"]
    assert reading.get("value") is None and reading["reason"] == "Unavailable"
    assert "Unreachable" in reading["message"]
    assert k8s.condition(body, "Ready")["status"] == "False"  # type: ignore[index]
    wait_for(
        lambda: (
            k8s.pool_carbon(kube.custom("gpupool", "gcp-europe-west9-a100"))
            == (34, "spec.carbonIntensity.fallbackGramsPerKwh")
        ),
        30,
        "the pool's fallback intensity is used",
    )

    ns = kube.namespace()
    assert kube.apply(k8s.policy(ns, "fr-only", ["FR"])).returncode == 0
    assert kube.apply(k8s.policy(ns, "swiss", ["CH"])).returncode == 0
    # Both policies govern every pod: FR and CH together allow no pool, whatever the feeds say.
    assert kube.apply(k8s.gpu_pod(ns, "q", 1)).returncode == 0
    reason = wait_for(lambda: kube.held_reason(ns, "q"), 30, "held")
    assert reason.startswith("NoCompliantPool: ")

    ns2 = kube.namespace()
    assert kube.apply(k8s.policy(ns2, "fr-only", ["FR"])).returncode == 0
    assert kube.apply(k8s.gpu_pod(ns2, "r", 1)).returncode == 0
    pod = wait_for(lambda: kube.bound(ns2, "r"), 30, "pod placed on fallback values")
    assert kube.node_pool(pod["spec"]["nodeName"]).startswith(("gcp-europe-west9", "ovh-gra"))
    metrics = operator.metrics()
    assert (
        'greenplace_signal_state{kind="carbon_intensity",reason="Unavailable",subject="FR"} 1.0'
        in metrics
    )
    assert kube.kubectl("delete", "signalsource", "down").returncode == 0
