"""Issue 18's proof, as one scenario on the real API server with the real Prometheus fixture:
FOCUS exports read by the operator correct a Budget's spend to the bill, give EnergyReports a
cost per request on the billed basis equal to a hand computation, and show the idle cost.

One cluster and one operator for both, so the slow parts (the control plane, the operator's
start, the Prometheus history) are paid once. Two exports, as two invoices arrive:

- **January 2026**, the Prometheus fixture's billing period, built here: fr-a100 (2.00 EUR per
  GPU-hour in its spec) billed 40 h on demand (64.00) and 60 h covered by a commitment
  (EffectiveCost 84.00, its 84.00 fee a Purchase): (64.00 + 84.00) / 100 = 1.48 EUR per
  GPU-hour effective; de-h100 (3.00 in its spec) 10 h for 25.00: 2.50. The fixture's figures
  by hand (``prometheus_fixture``): on fr-a100, team-a's llama-8b has 1.25 GPU-hours for
  10,800 requests and mistral-7b 0.75 for 3,600; on de-h100's MIG GPU, llama-8b 3/7
  (3g.40gb), mistral-7b 2/7, team-b's qwen-32b 1/7, and 1/7 is free: the idle cost.
- **This month**, from the example fleet's export (tests/data/focus/example-fleet.csv:
  paris-h100's December rows, renamed to the example fleet's ovh-gra-h100 and moved to the
  current month, since a Budget is charged in the UTC month of the placement). ovh-gra-h100
  (2.99 EUR per GPU-hour in its spec) bills (180.00 + 312.00) / ((10 + 24) x 8) per GPU-hour.
  A pod of 2 GPUs expected for 3 h, placed there under a Budget, is charged 6 x 2.99 = 17.94;
  the Budget's status shows 6 x 492 / 272 = 10.85 spent and a correction of -7.09. The
  operator restarted without the exports keeps the correction, and corrects a new placement at
  the price it kept: no charge counted twice.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from decimal import Decimal
from typing import Any

import pytest

from greenplace.cli import main as cli
from tests import kubeobjects as k8s
from tests.integration.conftest import (
    LOCAL_FEEDS,
    Kube,
    run_operator,
    wait_for,
    wait_for_cycles,
)

from . import prometheus_fixture as fx

pytestmark = pytest.mark.cluster
CENT = Decimal("0.01")
OPERATOR_NAMESPACE = "greenplace-system"

# January 2026: the Prometheus fixture's pools and period.
PRICES = {"fr-a100": 2.0, "de-h100": 3.0}
EFFECTIVE = {"fr-a100": Decimal("148.00") / 100, "de-h100": Decimal("25.00") / 10}
COLUMNS = ("BilledCost,BillingAccountId,BillingCurrency,BillingPeriodStart,BillingPeriodEnd,"
           "ChargeCategory,ChargePeriodStart,ChargePeriodEnd,CommitmentDiscountId,"
           "CommitmentDiscountStatus,ConsumedQuantity,ConsumedUnit,EffectiveCost,ListCost,"
           "ServiceName,Tags")  # fmt: skip
JANUARY = "2026-01-01T00:00:00Z,2026-02-01T00:00:00Z"

# This month: the example fleet's ovh-gra-h100, the Budget's pool.
POOL = "ovh-gra-h100"
SOURCE = pathlib.Path(__file__).resolve().parents[2] / "data" / "focus" / "example-fleet.csv"
RULE = {"match": {"tags": {"greenplace.dev/pool": POOL}}, "gpusPerConsumedHour": 8}
DURATION = "greenplace.dev/expected-duration-hours"
SECNUMCLOUD = {"requiredCertifications": [{"name": "SecNumCloud"}]}  # ovh-gra-h100 alone
PRICE = Decimal("492.00") / 272  # December's two rows of paris-h100, by hand


def _row(pool: str | None, day: str, fields: str) -> str:
    """One charge of ``pool`` on January ``day``: ``fields`` from BilledCost to ListCost, with
    BillingAccountId, BillingCurrency, the billing period and the charge period put in."""
    billed, category, commitment, status, quantity, unit, effective, listed = fields.split(",")
    tags = '"{""greenplace.dev/pool"": ""' + pool + '""}"' if pool else ""
    charge = f"2026-01-{day}T00:00:00Z,2026-01-{day}T12:00:00Z"
    return (f"{billed},acct-1,EUR,{JANUARY},{category},{charge},{commitment},{status},"
            f"{quantity},{unit},{effective},{listed},Compute,{tags}")  # fmt: skip


def _january(directory: pathlib.Path) -> pathlib.Path:
    rows = [
        _row("fr-a100", "02", "64.00,Usage,,,40,Hours,64.00,80.00"),
        _row("fr-a100", "03", "0.00,Usage,cd-1,Used,60,Hours,84.00,120.00"),
        _row("fr-a100", "01", "84.00,Purchase,cd-1,,,,0.00,0.00"),
        _row("de-h100", "04", "25.00,Usage,,,10,Hours,25.00,30.00"),
        _row(None, "01", "34.60,Tax,,,,,34.60,34.60"),
    ]
    path = directory / "january.csv"
    path.write_text("\n".join([COLUMNS, *rows]) + "\n")
    return path


def _this_month(directory: pathlib.Path, now: datetime.datetime) -> pathlib.Path:
    """paris-h100's December rows of the example fleet's export as ovh-gra-h100's, moved to
    the current month."""
    start = datetime.datetime(now.year, now.month, 1, tzinfo=datetime.UTC)
    end = (start + datetime.timedelta(days=32)).replace(day=1)
    month, next_month = start.strftime("%Y-%m-"), end.strftime("%Y-%m-%dT00:00:00Z")
    header, *rows = SOURCE.read_text().splitlines()
    december = [r for r in rows if "paris-h100" in r and ",2027-01-01T00:00:00Z,2026-12-01" in r]
    assert len(december) == 2
    moved = [
        r.replace("paris-h100", POOL)
        .replace("2027-01-01T00:00:00Z", next_month)
        .replace("2026-12-", month)
        for r in december
    ]
    path = directory / "this-month.csv"
    path.write_text("\n".join([header, *moved]) + "\n")
    return path


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


def _budget(kube: Kube, ns: str) -> dict[str, Any]:
    return dict(kube.custom("budget", "monthly", ns).get("status") or {})


def _cents(value: Any) -> Decimal:
    return Decimal(repr(float(value))).quantize(CENT)


def _check_budget_corrected(status: dict[str, Any]) -> dict[str, Any]:
    """The Budget's first placement, charged at the spec price and corrected to the bill."""
    assert status["charges"] == [
        {"pool": POOL, "month": status["charges"][0]["month"], "gpuHours": 6.0,
         "money": pytest.approx(17.94)}
    ]  # fmt: skip
    (row,) = status["billed"]
    assert (row["pool"], row["currency"], row["gpuHours"]) == (POOL, "EUR", 6.0)
    assert row["periodStart"] == status["charges"][0]["month"]
    assert row["charged"] == pytest.approx(17.94)
    assert _cents(row["billed"]) == (6 * PRICE).quantize(CENT) == Decimal("10.85")
    assert _cents(row["correction"]) == (6 * PRICE - Decimal("17.94")).quantize(CENT)
    assert _cents(status["spent"]["money"]) == Decimal("10.85")
    assert _cents(status["correction"]) == Decimal("-7.09")
    reconciled = k8s.condition({"status": status}, "Reconciled")
    assert reconciled is not None and reconciled["status"] == "True"
    assert reconciled["message"].startswith(f"corrected to the bill: {POOL} ")
    return dict(row)


def _check_billed_per_request(status: dict[str, Any]) -> None:
    """team-a's rows: per request on the billed basis, by hand (GPU-hours x effective price
    / requests), the price basis kept beside it, allocated + idle = total to the cent."""
    rows = {(r["model"], r["pool"]): r for r in status["rows"]}
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


def _check_idle_cost(costs: dict[str, dict[str, Any]]) -> None:
    """The Cluster report sees de-h100's free MIG slice: its cost, on both bases."""
    de = costs["de-h100"]
    assert de["idleGpuHours"] == pytest.approx(1 / 7, rel=0.01)
    # Billed: 1 GPU-hour x 2.50; the free 1/7 is 0.3571 -> 0.36; at the spec price 0.43.
    assert _cents(de["billedTotal"]) == Decimal("2.50")
    assert _cents(de["billedIdle"]) == Decimal("0.36")
    assert _cents(de["idle"]) == Decimal("0.43") and _cents(de["total"]) == Decimal("3.00")
    assert _cents(de["billedAllocated"]) + _cents(de["billedIdle"]) == Decimal("2.50")


def _check_the_plugin_shows_it(
    kube: Kube, capsys: pytest.CaptureFixture[str], ns: str, team: str
) -> None:
    """``greenplace pools|budgets|reports`` (``kubectl greenplace``) read those figures back
    from the cluster: the pool's billed price and period, the Budget's correction and state,
    the cost per request on both bases."""

    def run(*argv: str) -> dict[str, list[str]]:
        code = cli.main([*argv, f"--kubeconfig={kube.kubeconfig}"])
        captured = capsys.readouterr()
        assert (code, captured.err) == (0, ""), (argv, captured.err)
        return {line.split()[0]: line.split() for line in captured.out.splitlines()}

    pools = run("pools", "-o", "wide")
    header = pools["POOL"]
    assert header[header.index("PRICE/GPU-h"):header.index("SOURCE")] == [
        "PRICE/GPU-h", "BILLED/GPU-h", "PERIOD(BILLED)", "BILLING"
    ]  # fmt: skip
    month = _budget(kube, ns)["charges"][0]["month"][:10]
    assert f"2.99 EUR 1.81 EUR {month}/" in " ".join(pools[POOL]), pools[POOL]
    assert "1.48 EUR 2026-01-01/2026-02-01 Reconciled" in " ".join(pools["fr-a100"])
    (row,) = [r for key, r in run("budgets", "-n", ns, "-o", "wide").items() if key != "BUDGET"]
    assert " ".join(row).endswith("17.94 EUR -7.09 EUR Reconciled - False"), row
    reports = run("reports", "-n", team)
    assert reports["REPORT"][5:8] == ["COST/req", "BILLED/req", "GRADES(ENERGY/CARBON)"]


def test_exports_correct_a_budget_and_price_requests_and_idle_on_the_billed_basis(
    kube: Kube,
    prometheus: fx.PrometheusServer,
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exports = (_january(tmp_path), _this_month(tmp_path, datetime.datetime.now(datetime.UTC)))
    # Everything the operator is to find is there before it starts: one pass does it all.
    for name, (zone, pue) in fx.POOLS.items():
        billing = {"match": {"tags": {"greenplace.dev/pool": name}}}
        kube.apply_ok(k8s.gpu_pool(name, zone, price=PRICES[name], pue=pue, billing=billing))
    patch = json.dumps({"spec": {"billing": RULE}})
    assert kube.kubectl("patch", "gpupool", POOL, "--type=merge", "-p", patch).returncode == 0
    static = k8s.static_source({"FR": 50, "DE": 500}, name="fixture")
    kube.apply_ok(k8s.signal_source("fixture-grid", [static], ["FR", "DE"]))
    team, own = _namespace(kube, fx.NAMESPACE), _namespace(kube, OPERATOR_NAMESPACE)
    kube.apply_ok(_report(team, prometheus.url, "billed", "Namespace"))
    kube.apply_ok(_report(own, prometheus.url, "billed-all", "Cluster"))
    ns = kube.namespace()
    kube.apply_ok(k8s.budget(ns, "monthly", money=1000.0))
    kube.apply_ok(k8s.policy(ns, "certified", sovereignty=SECNUMCLOUD, budget="monthly"))

    with run_operator(kube, namespace=OPERATOR_NAMESPACE, focus_exports=exports, **LOCAL_FEEDS):
        kube.apply_ok(k8s.gpu_pod(ns, "train", 2, annotations={DURATION: "3"}))
        status = wait_for(
            lambda: (found := _budget(kube, ns)).get("billed") and found,
            60,
            "the Budget's reconciled charges",
        )
        row = _check_budget_corrected(status)
        _check_billed_per_request(_costed(kube, team, "billed"))
        _check_idle_cost({c["pool"]: c for c in _costed(kube, own, "billed-all")["costs"]})
    # Out of the operator's block: its runner (click's) holds sys.stdout while it runs.
    _check_the_plugin_shows_it(kube, capsys, ns, team)
    kube.kubectl("delete", "energyreport", "billed-all", "-n", own)
    kube.kubectl("delete", "energyreport", "billed", "-n", team)

    # Restarted without the exports: the correction is kept, a new placement (1 GPU, 2 h)
    # corrected at the kept price, nothing charged twice.
    with run_operator(kube, namespace=OPERATOR_NAMESPACE) as operator:
        wait_for_cycles(operator.metrics)
        assert _cents(_budget(kube, ns)["spent"]["money"]) == Decimal("10.85")
        kube.apply_ok(k8s.gpu_pod(ns, "more", 1, annotations={DURATION: "2"}))
        after = wait_for(
            lambda: (found := _budget(kube, ns))["charges"][0]["gpuHours"] == 8.0 and found,
            60,
            "the second placement charged",
        )
    assert after["charges"][0]["money"] == pytest.approx(17.94 + 5.98)
    assert _cents(after["spent"]["money"]) == (8 * PRICE).quantize(CENT) == Decimal("14.47")
    assert after["billed"][0]["fingerprint"] == row["fingerprint"]
