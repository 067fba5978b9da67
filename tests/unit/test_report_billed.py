"""An EnergyReport's cost on both bases, with the idle cost shown: allocated + idle = total, to
the cent, per pool, at the pool's price and at the bill's effective price.

One pool (2.50 EUR per GPU-hour in its spec; December's bill of paris-h100 in the example
fleet's export: (180.00 + 312.00) / ((10 + 24) x 8) EUR per GPU-hour effective) with four GPUs
over one hour: one serving llama alone, one time-sliced by mistral (300 tokens) and llama (100
tokens), one with no pod and one whose pod served nothing. Every figure below is by hand.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

import prometheus_client
import pytest

from greenplace.accounting import attribution, billed, report, serving, telemetry
from greenplace.controller import cache as cache_
from greenplace.controller import reports, status
from tests import promfake
from tests.unit import test_accounting_tenancy as tenancy

END = datetime.datetime(2026, 12, 7, 13, tzinfo=datetime.UTC)
DECEMBER = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
JANUARY = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
EFFECTIVE = Decimal("492.00") / 272
PRICE = billed.Price("p", DECEMBER, JANUARY, "EUR", EFFECTIVE, "f" * 64)
FACTS = [report.PoolFacts("p", "FR", 1.2, 2.5, "EUR")]


def _device(gpu: str, pod: str, namespace: str = "ml") -> attribution.DeviceRow:
    return attribution.DeviceRow("p", "n1", gpu, pod, "", 500.0, 1.0, namespace)


def _measured(end: datetime.datetime = END, namespace: str | None = None) -> serving.Measurement:
    rows = (_device("0", "a"), _device("1", "b"), _device("1", "c"), _device("2", ""),
            _device("3", "d"))  # fmt: skip
    usages = (
        attribution.Usage("p", "a", "llama", 100, 600, 400, "ml"),
        attribution.Usage("p", "b", "mistral", 30, 200, 100, "ml"),
        attribution.Usage("p", "c", "llama", 10, 60, 40, "ml"),
    )
    return serving.Measurement(
        end, datetime.timedelta(hours=1), rows, usages, serving.EnergySource.DCGM_ENERGY, namespace
    )


def test_the_rows_and_the_idle_cost_add_up_on_both_bases() -> None:
    built = report.build(_measured(), FACTS, {"FR": 50.0}, prices=[PRICE])
    llama, mistral = built.rows
    # GPU-hours: llama 1 + 100/400 of GPU 1, mistral 300/400 of it; GPUs 2 and 3 idle.
    assert (llama.model, llama.gpu_hours, mistral.gpu_hours) == ("llama", 1.25, 0.75)
    # Billed basis: 1.25 x 492 / 272 = 2.2610 -> 2.26; 0.75 x 492 / 272 = 1.3566 -> 1.36.
    assert (llama.billed_cost, mistral.billed_cost) == (Decimal("2.26"), Decimal("1.36"))
    assert llama.billed_cost_per_request == pytest.approx(float(Decimal("1.25") * EFFECTIVE / 110))
    assert mistral.billed_cost_per_1k_tokens == pytest.approx(
        float(Decimal("0.75") * EFFECTIVE / Decimal("0.3"))
    )
    # The price basis, as before: 1.25 x 2.50 and 0.75 x 2.50.
    assert (llama.cost, llama.cost_per_request) == (3.125, pytest.approx(3.125 / 110))
    (cost,) = built.costs
    assert (cost.pool, cost.gpu_hours, cost.idle_gpu_hours) == ("p", 4.0, 2.0)
    # At the pool's price: 4 x 2.50 = 10.00; rows 3.12 (half to even) + 1.88; idle 5.00.
    assert (cost.total, cost.allocated, cost.idle) == (
        Decimal("10.00"),
        Decimal("5.00"),
        Decimal("5.00"),
    )
    # Billed: 4 x 492 / 272 = 7.2353 -> 7.24; rows 2.26 + 1.36 = 3.62; idle 2 x 1.8088 = 3.62.
    assert cost.billed == PRICE
    assert (cost.billed_total, cost.billed_allocated, cost.billed_idle) == (
        Decimal("7.24"), Decimal("3.62"), Decimal("3.62"))  # fmt: skip
    assert cost.billed_allocated + cost.billed_idle == cost.billed_total
    assert cost.allocated + cost.idle == cost.total
    assert built.notes == ()

    # What the operator writes on the EnergyReport's status.
    written = reports._status(built, ()).model_dump(by_alias=True, mode="json")
    assert [r["billedCost"] for r in written["rows"]] == [2.26, 1.36]
    assert written["rows"][0]["billedCostPerRequest"] == pytest.approx(0.020554813, abs=1e-9)
    assert written["rows"][1]["billedCostPer1kTokens"] == pytest.approx(
        float(Decimal("0.75") * EFFECTIVE / Decimal("0.3"))
    )
    (pool,) = written["costs"]
    assert pool == {
        "pool": "p", "currency": "EUR", "gpuHours": 4.0, "idleGpuHours": 2.0, "perGpuHour": 2.5,
        "total": 10.0, "allocated": 5.0, "idle": 5.0,
        "billedPeriodStart": "2026-12-01T00:00:00Z", "billedPeriodEnd": "2027-01-01T00:00:00Z",
        "effectivePerGpuHour": round(float(EFFECTIVE), 9),
        "billedTotal": 7.24, "billedAllocated": 3.62, "billedIdle": 3.62,
    }  # fmt: skip


def test_the_cents_left_by_rounding_go_to_the_largest_remainders() -> None:
    # 3/7 and 2/7 of a GPU-hour at 2.50: 1.0714 and 0.7143 (total 1.7857 -> 1.79): rounded
    # each, 1.07 + 0.71 = 1.78 would lose a cent; the cent goes to 0.7143 (remainder 0.43).
    parts = [Decimal(3) / 7 * Decimal("2.5"), Decimal(2) / 7 * Decimal("2.5"), Decimal(0)]
    assert report.split(parts) == (Decimal("1.79"), [Decimal("1.07"), Decimal("0.72"), 0])
    # Ties: the first. 3.125 + 1.875 = 5.00.
    tie = [Decimal("3.125"), Decimal("1.875")]
    assert report.split(tie) == (Decimal("5.00"), [Decimal("3.13"), Decimal("1.87")])
    assert report.split([]) == (Decimal("0.00"), [])


def test_a_window_no_reconciled_period_covers_has_no_billed_basis() -> None:
    # The hour from 23:30 on 31 December straddles two billing months.
    end = datetime.datetime(2027, 1, 1, 0, 30, tzinfo=datetime.UTC)
    built = report.build(_measured(end), FACTS, {"FR": 50.0}, prices=[PRICE])
    assert [r.billed_cost for r in built.rows] == [None, None]
    (cost,) = built.costs
    assert (cost.billed, cost.billed_total, cost.billed_idle) == (None, None, None)
    assert cost.total == Decimal("10.00")  # the price basis stays
    assert built.notes == (
        "pool p: no reconciled billing period covers the window 2026-12-31T23:30Z/"
        "2027-01-01T00:30Z: billed basis left empty",
    )
    # Without any bill, nothing is noted: there was nothing to reconcile.
    assert report.build(_measured(end), FACTS, {"FR": 50.0}).notes == ()


def test_another_currency_is_not_a_billed_basis() -> None:
    usd = billed.Price("p", DECEMBER, JANUARY, "USD", EFFECTIVE, "f" * 64)
    built = report.build(_measured(), FACTS, {"FR": 50.0}, prices=[usd])
    assert built.costs[0].billed is None


def test_a_namespaced_report_counts_only_its_own_idle_pods() -> None:
    # Namespace "ml": its pod d served nothing (1 GPU-hour idle); GPU 2 (no pod) is not its.
    built = report.build(_measured(namespace="ml"), FACTS, {"FR": 50.0}, prices=[PRICE])
    (cost,) = built.costs
    assert (cost.gpu_hours, cost.idle_gpu_hours) == (3.0, 1.0)
    # 3 x 492 / 272 = 5.4265 -> 5.43; rows 3.62; idle 1.81 (1 x 1.8088).
    assert (cost.billed_total, cost.billed_allocated, cost.billed_idle) == (
        Decimal("5.43"), Decimal("3.62"), Decimal("1.81"))  # fmt: skip


def test_the_reporter_prices_on_the_billed_basis_the_recorder_last_read() -> None:
    # The placement loop's recorder read the exports (``StatusRecorder.billed_prices``); the
    # report loop shares it. The fake Prometheus of the tenancy tests: pool p, 100 Wh idle.
    writer = promfake.StatusWriter()
    recorder = status.StatusRecorder(writer)  # type: ignore[arg-type]
    january = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    recorder.billed_prices = (
        billed.Price("p", january, january.replace(month=2), "EUR", Decimal("1.5"), "f" * 64),
    )
    reporter = reports.Reporter(
        recorder, telemetry.AccountingMetrics(prometheus_client.CollectorRegistry()), None,
        querier=tenancy.FakeQuerier, own_namespace="greenplace-system",  # type: ignore[arg-type]
        allow_hosts=["prom"], allow_insecure_http=True,
    )  # fmt: skip
    cache = cache_.Cache()
    cache.put_report(tenancy.energy_report("greenplace-system", "all", "Cluster"))
    tenancy.run(reporter, cache)
    written = writer.status[("greenplace-system", "all")]
    (cost,) = written["costs"]
    assert cost["effectivePerGpuHour"] == 1.5 and cost["billedPeriodStart"].startswith("2026-01")
    assert cost["idleGpuHours"] > 0 and cost["billedIdle"] > 0
    assert cost["billedIdle"] == pytest.approx(cost["idleGpuHours"] * 1.5, abs=0.01)
    assert Decimal(repr(cost["billedAllocated"])) + Decimal(repr(cost["billedIdle"])) == Decimal(
        repr(cost["billedTotal"])
    )
    for row in written["rows"]:
        assert row["billedCost"] == pytest.approx(row["gpuHours"] * 1.5, abs=0.01)

    # The report then refused (a Prometheus the operator does not allow): no rows, no costs.
    refused = tenancy.energy_report("greenplace-system", "all", "Cluster")
    refused["metadata"]["generation"] = 2
    refused["spec"]["prometheus"]["url"] = "http://elsewhere:9090"
    cache.put_report(refused)
    tenancy.run(reporter, cache)
    after = writer.status[("greenplace-system", "all")]
    assert after["rows"] == [] and after["costs"] == []
