"""An EnergyReport reconciled by the real operator against the real Prometheus fixture.

The figures are the library's hand-checked ones (``prometheus_fixture.EXPECTED``): the
operator must publish exactly them in the report's status. Pools fr-a100 and de-h100 are the
fixture's (PUE 1.2 / 1.3, 2 / 3 EUR per GPU-hour, 20 gCO2e embodied per GPU-hour); a static
SignalSource gives FR 50 and DE 500 gCO2e/kWh, the fixture's intensities.

The report lives in the fixture's namespace team-a: team-b's pods and models (same pod name,
same model on the same pool, a slice of team-a's MIG GPU) must not show in it. A Cluster report
is refused outside the operator's namespace (``--namespace``, given here as the chart does).

The fixture's Prometheus listens on 127.0.0.1 over http, which EnergyReport URLs may reach only
when the operator allows it, as SignalSource URLs: the operator here is started with
``--allow-signal-hosts=127.0.0.1 --allow-insecure-signal-http``, and a report naming that same
Prometheus as ``localhost`` (an internal name, not listed) is refused with ``SourceNotAllowed``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests import kubeobjects as k8s
from tests.integration.conftest import LOCAL_FEEDS, Kube, RunningOperator, run_operator, wait_for

from . import prometheus_fixture as fx

pytestmark = pytest.mark.cluster
PRICES = {"fr-a100": 2.0, "de-h100": 3.0}
OPERATOR_NAMESPACE = "greenplace-system"


def gpu_pool(name: str, zone: str, pue: float) -> dict[str, Any]:
    return k8s.gpu_pool(name, zone, price=PRICES[name], pue=pue, embodiedGramsPerGpuHour=20)


def energy_report(
    namespace: str, url: str, name: str = "serving", scope: str | None = None
) -> dict[str, Any]:
    return k8s.energy_report(
        namespace, name, window="1h", windowEnd=fx.END.isoformat().replace("+00:00", "Z"),
        prometheus={"url": url}, serving="vLLM", migSlicesTotal=7,
        **({"scope": scope} if scope else {}),
    )  # fmt: skip


def report(kube: Kube, ns: str, name: str = "serving") -> dict[str, Any]:
    return kube.custom("energyreport", name, ns)


def namespace(kube: Kube, name: str) -> str:
    kube.apply_ok({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def pools_and_grid(kube: Kube) -> None:
    for name, (zone, pue) in fx.POOLS.items():
        kube.apply_ok(gpu_pool(name, zone, pue))
    static = k8s.static_source({"FR": 50, "DE": 500}, name="fixture")
    kube.apply_ok(k8s.signal_source("fixture-grid", [static], ["FR", "DE"]))


@pytest.fixture(scope="module")
def operator(kube: Kube) -> Iterator[RunningOperator]:
    """The operator knowing its own namespace, as the chart gives it (``--namespace``)."""
    with run_operator(kube, namespace=OPERATOR_NAMESPACE, **LOCAL_FEEDS) as running:
        yield running


def test_the_operator_reports_the_hand_checked_figures(
    kube: Kube, operator: RunningOperator, prometheus: fx.PrometheusServer
) -> None:
    pools_and_grid(kube)
    ns = namespace(kube, fx.NAMESPACE)
    applied = kube.apply(energy_report(ns, prometheus.url))
    assert applied.returncode == 0, applied.stderr
    waited = kube.kubectl(
        "wait", "--for=condition=Ready", "energyreport/serving", "-n", ns, "--timeout=60s"
    )
    assert waited.returncode == 0, waited.stderr

    def complete() -> dict[str, Any] | None:
        status = report(kube, ns)["status"]
        rows = status.get("rows") or []
        intensities = {r["gridZone"]: r.get("gCO2PerKWh") for r in rows}
        return status if intensities == {"FR": 50, "DE": 500} else None

    status = wait_for(complete, 30, "rows computed with the signal's intensities")
    assert status["energySource"] == "DcgmEnergyCounter"
    assert status["intensitySources"]["FR"] == "SignalSource fixture-grid"
    # Free MIG slices and team-b's pods are not team-a's business; its pods all served.
    assert not status.get("unattributedGpuWh")
    rows = {(r["model"], r["pool"]): r for r in status["rows"]}
    assert set(rows) == set(fx.EXPECTED)  # no qwen-32b (team-b)
    assert rows[("llama-8b", "fr-a100")]["gpuWh"] == pytest.approx(362.5, rel=0.01)  # not +400
    assert rows[("llama-8b", "fr-a100")]["requests"] == pytest.approx(10800, rel=0.01)
    for key, (wh, grams, eur, energy_grade, carbon_grade) in fx.EXPECTED.items():
        row = rows[key]
        assert row["gpuWhPerRequest"] == pytest.approx(wh, rel=0.01), key
        assert row["gCO2ePerRequest"] == pytest.approx(grams, rel=0.01), key
        assert row["costPerRequest"] == pytest.approx(eur, rel=0.01), key
        assert (row["energyGrade"], row["carbonGrade"]) == (energy_grade, carbon_grade), key
    labels = f'model="llama-8b",namespace="{ns}",pool="de-h100",report="serving",zone="DE"'
    exported = operator.metrics()
    assert f"greenplace_request_energy_wh{{{labels}}}" in exported
    assert "qwen-32b" not in exported

    # Prometheus unreachable: the rows stay, Degraded says why.
    dead = f"http://127.0.0.1:{fx.free_port()}"
    patched = kube.kubectl(
        "patch", "energyreport", "serving", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"prometheus": {"url": dead}}}),
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr

    def degraded() -> dict[str, Any] | None:
        found = k8s.condition(report(kube, ns), "Degraded")
        return found if found and found["status"] == "True" else None

    assert wait_for(degraded, 30, "Degraded")["reason"] == "Unreachable"
    kept = report(kube, ns)["status"]
    assert len(kept["rows"]) == len(fx.EXPECTED)
    assert k8s.condition(report(kube, ns), "Ready")["status"] == "True"  # type: ignore[index]


def test_cluster_scope_is_refused_outside_the_operator_namespace(
    kube: Kube,
    operator: RunningOperator,
    prometheus: fx.PrometheusServer,
) -> None:
    pools_and_grid(kube)
    ns = namespace(kube, fx.NAMESPACE)
    applied = kube.apply(energy_report(ns, prometheus.url, "everything", "Cluster"))
    assert applied.returncode == 0, applied.stderr

    def refused() -> dict[str, Any] | None:
        found = k8s.condition(report(kube, ns, "everything"), "Ready")
        return found if found and found["reason"] == "ClusterScopeNotAllowed" else None

    ready = wait_for(refused, 30, "Ready False, ClusterScopeNotAllowed")
    assert ready["status"] == "False"
    assert OPERATOR_NAMESPACE in ready["message"]
    status = report(kube, ns, "everything")["status"]
    assert not status.get("rows") and not status.get("unattributedGpuWh")
    assert 'report="everything"' not in operator.metrics()

    # The same report in the operator's namespace sees every tenant, and the free MIG slice.
    own = namespace(kube, OPERATOR_NAMESPACE)
    applied = kube.apply(energy_report(own, prometheus.url, "everything", "Cluster"))
    assert applied.returncode == 0, applied.stderr

    def complete() -> dict[str, Any] | None:
        status = report(kube, own, "everything").get("status") or {}
        rows = status.get("rows") or []
        intensities = {r["gridZone"]: r.get("gCO2PerKWh") for r in rows}
        return status if intensities == {"FR": 50, "DE": 500} else None

    status = wait_for(complete, 30, "the Cluster report computed")
    rows = {(r["model"], r["pool"]): r for r in status["rows"]}
    assert set(rows) == {*fx.EXPECTED, ("qwen-32b", "de-h100")}
    assert rows[("llama-8b", "fr-a100")]["gpuWh"] == pytest.approx(762.5, rel=0.01)
    assert status["unattributedGpuWh"] == {"de-h100": pytest.approx(100.0, rel=0.01)}

    # Deleted: its gauges go too.
    deleted = kube.kubectl("delete", "energyreport", "everything", "-n", own)
    assert deleted.returncode == 0, deleted.stderr
    wait_for(
        lambda: 'report="everything"' not in operator.metrics(), 30, "the deleted report's gauges"
    )


def test_a_url_the_operator_does_not_allow_is_refused(
    kube: Kube, operator: RunningOperator, prometheus: fx.PrometheusServer
) -> None:
    pools_and_grid(kube)
    ns = namespace(kube, fx.NAMESPACE)
    # The same Prometheus, named localhost: an internal name, which 127.0.0.1 does not allow.
    port = prometheus.url.rsplit(":", 1)[1]
    applied = kube.apply(energy_report(ns, f"http://localhost:{port}", "inside"))
    assert applied.returncode == 0, applied.stderr

    def refused() -> dict[str, Any] | None:
        found = k8s.condition(report(kube, ns, "inside"), "Ready")
        return found if found and found["reason"] == "SourceNotAllowed" else None

    ready = wait_for(refused, 30, "Ready False, SourceNotAllowed")
    assert ready["status"] == "False"
    assert "spec.prometheus.url refused: host localhost is a local" in ready["message"]
    assert "--allow-signal-hosts=localhost" in ready["message"]
    assert "signals.allowHosts" in ready["message"]
    status = report(kube, ns, "inside")["status"]
    assert not status.get("rows")
    assert 'report="inside"' not in operator.metrics()  # no traceback: run_operator checks it
