"""An EnergyReport reconciled by the real operator against the real Prometheus fixture.

The figures are the library's hand-checked ones (``test_accounting_prometheus.EXPECTED``): the
operator must publish exactly them in the report's status. Pools fr-a100 and de-h100 are the
fixture's (PUE 1.2 / 1.3, 2 / 3 EUR per GPU-hour, 20 gCO2e embodied per GPU-hour); a static
SignalSource gives FR 50 and DE 500 gCO2e/kWh, the fixture's intensities.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Kube, RunningOperator, wait_for
from tests.integration.test_signalsource import condition, custom, signal_source

from . import prometheus_fixture as fx
from .test_accounting_prometheus import EXPECTED, POOLS

pytestmark = pytest.mark.cluster
PRICES = {"fr-a100": 2.0, "de-h100": 3.0}


def gpu_pool(name: str, zone: str, pue: float) -> str:
    return json.dumps({
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "GpuPool", "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"greenplace.dev/pool": name},
            "location": {"provider": "p", "region": "r", "country": zone, "gridZone": zone},
            "gpu": {"model": "A100", "tdpWatts": 400},
            "price": {"currency": "EUR", "onDemandPerGpuHour": PRICES[name]},
            "pue": pue, "embodiedGramsPerGpuHour": 20,
        },
    })  # fmt: skip


def energy_report(namespace: str, url: str) -> str:
    return json.dumps({
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "EnergyReport",
        "metadata": {"name": "serving", "namespace": namespace},
        "spec": {"window": "1h", "windowEnd": fx.END.isoformat().replace("+00:00", "Z"),
                 "prometheus": {"url": url}, "serving": "vLLM", "migSlicesTotal": 7},
    })  # fmt: skip


def report(kube: Kube, ns: str) -> dict[str, Any]:
    return custom(kube, "energyreport", "serving", ns)


def test_the_operator_reports_the_hand_checked_figures(
    kube: Kube, operator: RunningOperator, prometheus: fx.PrometheusServer
) -> None:
    for name, (zone, pue) in POOLS.items():
        assert kube.apply(gpu_pool(name, zone, pue)).returncode == 0
    static = {"name": "fixture", "kind": "Static", "static": {"values": {"FR": 50, "DE": 500}}}
    assert kube.apply(signal_source("fixture-grid", [static], ["FR", "DE"])).returncode == 0
    ns = kube.namespace()
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
    assert status["unattributedGpuWh"]["de-h100"] == pytest.approx(200.0, rel=0.01)
    rows = {(r["model"], r["pool"]): r for r in status["rows"]}
    assert set(rows) == set(EXPECTED)
    for key, (wh, grams, eur, energy_grade, carbon_grade) in EXPECTED.items():
        row = rows[key]
        assert row["gpuWhPerRequest"] == pytest.approx(wh, rel=0.01), key
        assert row["gCO2ePerRequest"] == pytest.approx(grams, rel=0.01), key
        assert row["costPerRequest"] == pytest.approx(eur, rel=0.01), key
        assert (row["energyGrade"], row["carbonGrade"]) == (energy_grade, carbon_grade), key
    labels = 'model="llama-8b",pool="de-h100",zone="DE"'
    assert f"greenplace_request_energy_wh{{{labels}}}" in operator.metrics()

    # Prometheus unreachable: the rows stay, Degraded says why.
    dead = f"http://127.0.0.1:{fx.free_port()}"
    patched = kube.kubectl(
        "patch", "energyreport", "serving", "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"prometheus": {"url": dead}}}),
    )  # fmt: skip
    assert patched.returncode == 0, patched.stderr

    def degraded() -> dict[str, Any] | None:
        found = condition(report(kube, ns), "Degraded")
        return found if found and found["status"] == "True" else None

    assert wait_for(degraded, 30, "Degraded")["reason"] == "Unreachable"
    kept = report(kube, ns)["status"]
    assert len(kept["rows"]) == len(EXPECTED)
    assert condition(report(kube, ns), "Ready")["status"] == "True"  # type: ignore[index]
