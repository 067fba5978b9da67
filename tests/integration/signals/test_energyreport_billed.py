"""EnergyReports on both bases, by the real operator, against the real Prometheus fixture and a
FOCUS export built for the fixture's billing period (January 2026).

The export bills fr-a100 (2.00 EUR per GPU-hour in its spec) 40 h on demand (64.00) and 60 h
covered by a commitment (EffectiveCost 84.00, its 84.00 fee a Purchase): (64.00 + 84.00) / 100
= 1.48 EUR per GPU-hour effective; de-h100 (3.00 in its spec) 10 h for 25.00: 2.50. The
fixture's figures by hand (``prometheus_fixture``): on fr-a100, team-a's llama-8b has 1.25
GPU-hours for 10,800 requests and mistral-7b 0.75 for 3,600; on de-h100's MIG GPU, llama-8b
3/7 (3g.40gb), mistral-7b 2/7, team-b's qwen-32b 1/7, and 1/7 is free: the idle cost.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests import kubeobjects as k8s
from tests.integration.conftest import LOCAL_FEEDS, Kube, RunningOperator, run_operator, wait_for

from . import prometheus_fixture as fx

pytestmark = pytest.mark.cluster
PRICES = {"fr-a100": 2.0, "de-h100": 3.0}
EFFECTIVE = {"fr-a100": Decimal("148.00") / 100, "de-h100": Decimal("25.00") / 10}
OPERATOR_NAMESPACE = "greenplace-system"
COLUMNS = ("BilledCost,BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,"
           "ChargeCategory,ChargePeriodStart,ChargePeriodEnd,CommitmentDiscountId,"
           "CommitmentDiscountStatus,ConsumedQuantity,ConsumedUnit,EffectiveCost,ListCost,"
           "ServiceName,Tags")  # fmt: skip
PERIOD = "2026-01-01T00:00:00Z,2026-02-01T00:00:00Z"


def _row(pool: str | None, day: str, fields: str) -> str:
    """One charge of ``pool`` on January ``day``: ``fields`` from BilledCost to ListCost, with
    BillingAccountId, BillingCurrency, the billing period and the charge period put in."""
    billed, category, commitment, status, quantity, unit, effective, listed = fields.split(",")
    tags = '"{""greenplace.dev/pool"": ""' + pool + '""}"' if pool else ""
    charge = f"2026-01-{day}T00:00:00Z,2026-01-{day}T12:00:00Z"
    return (f"{billed},acct-1,EUR,{PERIOD},{category},{charge},{commitment},{status},"
            f"{quantity},{unit},{effective},{listed},Compute,{tags}")  # fmt: skip


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    rows = [
        _row("fr-a100", "02", "64.00,Usage,,,40,Hours,64.00,80.00"),
        _row("fr-a100", "03", "0.00,Usage,cd-1,Used,60,Hours,84.00,120.00"),
        _row("fr-a100", "01", "84.00,Purchase,cd-1,,,,0.00,0.00"),
        _row("de-h100", "04", "25.00,Usage,,,10,Hours,25.00,30.00"),
        _row(None, "01", "34.60,Tax,,,,,34.60,34.60"),
    ]
    path = tmp_path_factory.mktemp("focus") / "january.csv"
    path.write_text("\n".join([COLUMNS, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def operator(kube: Kube, export: pathlib.Path) -> Iterator[RunningOperator]:
    with run_operator(kube, namespace=OPERATOR_NAMESPACE, focus_exports=(export,),
                      **LOCAL_FEEDS) as running:  # fmt: skip
        yield running


def _report(namespace: str, url: str, name: str, scope: str) -> dict[str, Any]:
    return k8s.energy_report(
        namespace, name, window="1h", windowEnd=fx.END.isoformat().replace("+00:00", "Z"),
        prometheus={"url": url}, serving="vLLM", migSlicesTotal=7, scope=scope,
    )  # fmt: skip


def _namespace(kube: Kube, name: str) -> str:
    kube.apply_ok({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def _costed(kube: Kube, ns: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        status = kube.custom("energyreport", name, ns).get("status") or {}
        costs = status.get("costs") or []
        billed = [c for c in costs if c.get("billedTotal") is not None]
        return status if len(billed) == 2 and len(status.get("rows") or []) >= 4 else None

    found: dict[str, Any] = wait_for(check, 60, f"{name}: both pools on the billed basis")
    return found


def _cents(value: Any) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal("0.01"))


def test_cost_per_request_on_the_billed_basis_and_the_idle_cost(
    kube: Kube, operator: RunningOperator, prometheus: fx.PrometheusServer
) -> None:
    for name, (zone, pue) in fx.POOLS.items():
        billing = {"match": {"tags": {"greenplace.dev/pool": name}}}
        kube.apply_ok(k8s.gpu_pool(name, zone, price=PRICES[name], pue=pue, billing=billing))
    static = k8s.static_source({"FR": 50, "DE": 500}, name="fixture")
    kube.apply_ok(k8s.signal_source("fixture-grid", [static], ["FR", "DE"]))
    team = _namespace(kube, fx.NAMESPACE)
    kube.apply_ok(_report(team, prometheus.url, "billed", "Namespace"))
    status = _costed(kube, team, "billed")
    rows = {(r["model"], r["pool"]): r for r in status["rows"]}
    # Per request on the billed basis, by hand: GPU-hours x effective price / requests.
    by_hand = {
        ("llama-8b", "fr-a100"): (Decimal("1.25"), 10800),
        ("mistral-7b", "fr-a100"): (Decimal("0.75"), 3600),
        ("llama-8b", "de-h100"): (Decimal(3) / 7, 5400),
        ("mistral-7b", "de-h100"): (Decimal(2) / 7, 1800),
    }
    for (model, pool), (hours, requests) in by_hand.items():
        row = rows[(model, pool)]
        exact = hours * EFFECTIVE[pool]
        assert row["billedCost"] == pytest.approx(float(exact), abs=0.01), (model, pool)
        assert row["billedCostPerRequest"] == pytest.approx(float(exact / requests), rel=0.01)
        # The price basis is still there, at the pool's spec price.
        listed = float(hours) * PRICES[pool] / requests
        assert row["costPerRequest"] == pytest.approx(listed, rel=0.01), (model, pool)
    costs = {c["pool"]: c for c in status["costs"]}
    for cost in costs.values():  # to the cent, per pool and period, on both bases
        assert _cents(cost["allocated"]) + _cents(cost["idle"]) == _cents(cost["total"])
        assert _cents(cost["billedAllocated"]) + _cents(cost["billedIdle"]) == _cents(
            cost["billedTotal"]
        )
        assert cost["billedPeriodStart"] == "2026-01-01T00:00:00Z"
    # team-a's pods all served: no idle cost of its own; fr-a100's two GPUs: 2 x 1.48.
    assert (costs["fr-a100"]["idleGpuHours"], costs["fr-a100"]["billedIdle"]) == (0, 0)
    assert _cents(costs["fr-a100"]["billedTotal"]) == Decimal("2.96")
    assert costs["fr-a100"]["effectivePerGpuHour"] == pytest.approx(1.48)

    # The Cluster report (the operator's namespace) sees de-h100's free MIG slice: its cost.
    own = _namespace(kube, OPERATOR_NAMESPACE)
    kube.apply_ok(_report(own, prometheus.url, "billed-all", "Cluster"))
    everything = {c["pool"]: c for c in _costed(kube, own, "billed-all")["costs"]}
    de = everything["de-h100"]
    assert de["idleGpuHours"] == pytest.approx(1 / 7, rel=0.01)
    # Billed: 1 GPU-hour x 2.50; the free 1/7 is 0.3571 -> 0.36; at the spec price 0.43.
    assert _cents(de["billedTotal"]) == Decimal("2.50")
    assert _cents(de["billedIdle"]) == Decimal("0.36")
    assert _cents(de["idle"]) == Decimal("0.43") and _cents(de["total"]) == Decimal("3.00")
    assert _cents(de["billedAllocated"]) + _cents(de["billedIdle"]) == Decimal("2.50")
    kube.kubectl("delete", "energyreport", "billed-all", "-n", own)
    kube.kubectl("delete", "energyreport", "billed", "-n", team)
    for name in fx.POOLS:
        json_patch = json.dumps({"spec": {"billing": None}})
        kube.kubectl("patch", "gpupool", name, "--type=merge", "-p", json_patch)
