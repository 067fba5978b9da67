"""SignalSource on the real API server and operator: signals move pods, failures only degrade.

The example fleet's fallback intensities put a 1-GPU FR/DE pod on gcp-europe-west9-a100 (FR,
34 gCO2e/kWh). A static SignalSource that says FR is dirty and DE clean sends it to DE instead;
a SignalSource whose only feed is a closed 127.0.0.1 port is Degraded (Unavailable), the pools
keep their fallback, and which countries are allowed never changes. The operator of this module
allows 127.0.0.1 over http explicitly (``allow_signal_hosts``, ``allow_insecure_signal_http``):
by default a SignalSource may not reach it (tests/integration/signals/test_signal_access.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import Kube, RunningOperator, run_operator, wait_for
from tests.integration.signals import prometheus_fixture
from tests.integration.test_placement import bound, gpu_pod, held_reason, node_pool, policy

pytestmark = pytest.mark.cluster

# The local feeds of these tests: 127.0.0.1, plain http. Allowed explicitly, as an operator would.
LOCAL_FEEDS = {"allow_signal_hosts": ("127.0.0.1",), "allow_insecure_signal_http": True}


@pytest.fixture(scope="module")
def operator(kube: Kube) -> Iterator[RunningOperator]:
    """The real operator (as conftest's), allowed to reach the local feeds."""
    with run_operator(kube, **LOCAL_FEEDS) as running:
        yield running


def signal_source(name: str, sources: list[dict[str, Any]], zones: list[str]) -> str:
    return json.dumps({
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "SignalSource",
        "metadata": {"name": name}, "spec": {"zones": zones, "sources": sources},
    })  # fmt: skip


def custom(kube: Kube, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    where = ["-n", namespace] if namespace else []
    result = kube.kubectl("get", kind, name, *where, "-o", "json")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next(
        (c for c in (body.get("status") or {}).get("conditions", []) if c["type"] == kind), None
    )


def pool_carbon(kube: Kube, pool: str) -> tuple[Any, Any]:
    status = custom(kube, "gpupool", pool).get("status") or {}
    return status.get("carbonGramsPerKwh"), status.get("carbonSource")


def test_a_static_signal_changes_the_pool_and_shows_its_readings(
    kube: Kube, operator: RunningOperator
) -> None:
    static = {"name": "grid", "kind": "Static", "static": {"values": {"FR": 900, "DE": 20}}}
    result = kube.apply(signal_source("eu-grid", [static], ["FR", "DE"]))
    assert result.returncode == 0, result.stderr
    waited = kube.kubectl("wait", "--for=condition=Ready", "signalsource/eu-grid", "--timeout=30s")
    assert waited.returncode == 0, waited.stderr
    wait_for(
        lambda: pool_carbon(kube, "gcp-europe-west9-a100") == (900, "SignalSource eu-grid/grid"),
        30,
        "pool status shows the signal's value",
    )
    ns = kube.namespace()
    assert kube.apply(policy(ns, "fr-de", ["FR", "DE"])).returncode == 0
    assert kube.apply(gpu_pod(ns, "p", 1)).returncode == 0
    pod = wait_for(lambda: bound(kube, ns, "p"), 30, "pod bound")
    assert node_pool(kube, pod["spec"]["nodeName"]) == "stackit-eu01-h100"

    body = custom(kube, "signalsource", "eu-grid")
    readings = {r["subject"]: r for r in body["status"]["readings"]}
    assert readings["FR"]["value"] == 900 and readings["FR"]["source"] == "grid"
    assert readings["FR"]["reason"] == "Fresh"
    assert "observedAt" not in readings["FR"] or readings["FR"]["observedAt"] is None
    degraded = condition(body, "Degraded")
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
    assert kube.apply(signal_source("down", [prom], ["FR"])).returncode == 0

    def degraded() -> dict[str, Any] | None:
        found = condition(custom(kube, "signalsource", "down"), "Degraded")
        return found if found and found["status"] == "True" else None

    found = wait_for(degraded, 30, "Degraded condition")
    assert found["reason"] == "Unavailable"
    body = custom(kube, "signalsource", "down")
    (reading,) = body["status"]["readings"]
    assert reading.get("value") is None and reading["reason"] == "Unavailable"
    assert "Unreachable" in reading["message"]
    assert condition(body, "Ready")["status"] == "False"  # type: ignore[index]
    wait_for(
        lambda: (
            pool_carbon(kube, "gcp-europe-west9-a100")
            == (34, "spec.carbonIntensity.fallbackGramsPerKwh")
        ),
        30,
        "the pool's fallback intensity is used",
    )

    ns = kube.namespace()
    assert kube.apply(policy(ns, "fr-only", ["FR"])).returncode == 0
    assert kube.apply(policy(ns, "swiss", ["CH"])).returncode == 0
    # Both policies govern every pod: FR and CH together allow no pool, whatever the feeds say.
    assert kube.apply(gpu_pod(ns, "q", 1)).returncode == 0
    reason = wait_for(lambda: held_reason(kube, ns, "q"), 30, "held")
    assert reason.startswith("NoCompliantPool: ")

    ns2 = kube.namespace()
    assert kube.apply(policy(ns2, "fr-only", ["FR"])).returncode == 0
    assert kube.apply(gpu_pod(ns2, "r", 1)).returncode == 0
    pod = wait_for(lambda: bound(kube, ns2, "r"), 30, "pod placed on fallback values")
    assert node_pool(kube, pod["spec"]["nodeName"]).startswith(("gcp-europe-west9", "ovh-gra"))
    metrics = operator.metrics()
    assert (
        'greenplace_signal_state{kind="carbon_intensity",reason="Unavailable",subject="FR"} 1.0'
        in metrics
    )
    assert kube.kubectl("delete", "signalsource", "down").returncode == 0
