"""A Budget charged at the pool's price is corrected to the effective price once the bill of
that pool and period is reconciled, once, and the same after a restart.

The arithmetic by hand (``accounting.billed``), then the placement loop with a FOCUS export
(tests/data/focus/example-fleet.csv, its paris-h100 rows given to the pool ``fr``): the
Budget's status shows the charge at the pool's price, the reconciled period with its effective
price and the correction, spent.money corrected (and the planner sees it); a second cycle
changes nothing, a re-issued export replaces the correction, a restart without the export
corrects the same way, a month the bill does not cover waits at the pool's price.
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib
from decimal import Decimal
from typing import Any

import pytest

from greenplace.accounting import billed
from greenplace.controller import budgets, cycle, snapshot, status
from tests import fakes
from tests.unit import test_budget_spend as spend

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "focus"
NOW = datetime.datetime(2026, 12, 7, 12, tzinfo=datetime.UTC)
DECEMBER = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
NOVEMBER = datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC)
JANUARY = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)
CENT = Decimal("0.01")


def _cents(value: Decimal | float) -> Decimal:
    return Decimal(repr(value) if isinstance(value, float) else value).quantize(CENT)


# ---------------------------------------------------------------- the arithmetic


def test_each_usage_is_repriced_at_its_period_by_hand() -> None:
    december = billed.Price("p", DECEMBER, JANUARY, "EUR", Decimal("492.00") / 272, "f12")
    november = billed.Price("p", NOVEMBER, DECEMBER, "EUR", Decimal("1312.35") / 672, "f11")
    usage = {
        ("p", DECEMBER): billed.Usage(16.0, 40.0),  # 16 GPU-hours at 2.50
        ("p", NOVEMBER): billed.Usage(10.0, 25.6),  # 10 GPU-hours at 2.56
        ("q", DECEMBER): billed.Usage(4.0, 7.6),  # no price for q
    }
    done, waiting = billed.corrections(usage, [december, november], "EUR")
    assert [(c.price.fingerprint, _cents(c.billed), _cents(c.amount)) for c in done] == [
        ("f11", Decimal("19.53"), Decimal("-6.07")),  # 10 x 1,312.35 / 672 = 19.5290
        ("f12", Decimal("28.94"), Decimal("-11.06")),  # 16 x 492 / 272 = 28.9412
    ]
    assert waiting == [("q", DECEMBER)]
    # The price of another currency corrects nothing: the usage waits.
    assert billed.corrections(usage, [december], "USD") == ([], sorted(usage))
    # A usage without GPU-hours (an old record) waits for nothing.
    assert billed.corrections({("q", DECEMBER): billed.Usage(0.0, 3.0)}, [], "EUR") == ([], [])


def test_a_placement_is_charged_to_the_utc_month_it_was_placed_in() -> None:
    paris_midnight = datetime.datetime(2026, 12, 1, 0, 30, tzinfo=datetime.timezone(
        datetime.timedelta(hours=1)))  # fmt: skip
    assert billed.month_of(paris_midnight) == NOVEMBER  # 23:30 UTC on 30 November
    assert billed.month_of(NOW) == DECEMBER


# ---------------------------------------------------------------- the placement loop


def _export(path: pathlib.Path, commitment_cost: str = "312.00") -> pathlib.Path:
    text = (DATA / "example-fleet.csv").read_text().replace("paris-h100", "fr")
    december_commitment = "24,Hours,312.00,INV-2026-12"
    assert text.count(december_commitment) == 1
    path.write_text(text.replace(december_commitment, f"24,Hours,{commitment_cost},INV-2026-12"))
    return path


def _cache(status_body: dict[str, Any] | None = None) -> Any:
    cache = spend.cache_with(56.0, {"money": 1000})
    pool_spec = spend.pool_spec(56.0)
    pool_spec["billing"] = {"match": {"tags": {"greenplace.dev/pool": "fr"}},
                            "gpusPerConsumedHour": 8}  # fmt: skip
    cache.put_pool({"metadata": {"name": "fr", "generation": 1}, "spec": pool_spec})
    if status_body is not None:
        cache.put_budget({
            "metadata": {"namespace": "ml", "name": "monthly", "generation": 1},
            "spec": {"period": "Month", "currency": "EUR", "limits": {"money": 1000},
                     "action": "Defer"},
            "status": status_body,
        })  # fmt: skip
    return cache


def _cycle(
    cache: Any,
    writer: fakes.RecordingWriter,
    at: datetime.datetime,
    state: cycle.LoopState,
    exports: list[pathlib.Path] | None,
) -> dict[str, Any]:
    prices = fakes.billing_from_files(exports) if exports is not None else None
    recorder = status.StatusRecorder(writer, clock=lambda: at, billing=prices)
    asyncio.run(cycle.run_cycle(cache, writer, at, recorder, state=state))
    return writer.last_status("budgets", "monthly")


def _reconciled(body: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in body["conditions"] if c["type"] == "Reconciled"]
    return dict(found)


def _place(cache: Any, writer: fakes.RecordingWriter, name: str, gpus: int, hours: str) -> None:
    annotations = {"greenplace.dev/expected-duration-hours": hours}
    cache.put_pod(writer.add(spend.pod(name, gpus, annotations=annotations, gated=True)))


def test_a_budget_is_corrected_once_its_period_is_reconciled(tmp_path: pathlib.Path) -> None:
    export = _export(tmp_path / "export.csv")
    cache, writer, state = _cache(), fakes.RecordingWriter(), cycle.LoopState()
    _place(cache, writer, "train", 2, "3")  # 6 GPU-hours at 2.50: 15.00
    first = _cycle(cache, writer, NOW, state, [export])
    # By hand: December's paris-h100 rows, (180.00 + 312.00) / ((10 + 24) x 8) per GPU-hour.
    price = Decimal("492.00") / 272
    billed_by_hand = 6 * price
    assert first["charges"] == [
        {"pool": "fr", "month": "2026-12-01T00:00:00Z", "gpuHours": 6.0, "money": 15.0}
    ]
    (row,) = first["billed"]
    assert row["pool"] == "fr" and row["currency"] == "EUR"
    assert (row["periodStart"], row["periodEnd"]) == ("2026-12-01T00:00:00Z",
                                                      "2027-01-01T00:00:00Z")  # fmt: skip
    assert (row["gpuHours"], row["charged"]) == (6.0, 15.0)
    assert row["effectivePerGpuHour"] == round(float(price), 9)
    assert _cents(row["billed"]) == _cents(billed_by_hand) == Decimal("10.85")
    assert _cents(row["correction"]) == _cents(billed_by_hand - 15) == Decimal("-4.15")
    assert len(row["fingerprint"]) == 64
    assert _cents(first["correction"]) == Decimal("-4.15")
    assert _cents(first["spent"]["money"]) == Decimal("10.85")
    reconciled = _reconciled(first)
    assert (reconciled["status"], reconciled["reason"]) == ("True", "Reconciled")
    assert reconciled["message"] == "corrected to the bill: fr 2026-12-01/2027-01-01 (-4.15 EUR)"
    # The planner sees the corrected spend.
    built = snapshot.build(snapshot.gather(cache), NOW, ledger=state.ledger)
    (budget,) = built.snapshot.budgets
    assert _cents(budget.money_spent) == Decimal("10.85")

    # The same period reconciled again (the next cycles): replaced, not added.
    again = _cycle(cache, writer, NOW + datetime.timedelta(minutes=1), state, [export])
    assert (again["spent"], again["billed"]) == (first["spent"], first["billed"])

    # A second placement in December: its charge is corrected at the same price.
    _place(cache, writer, "more", 1, "4")  # 4 GPU-hours at 2.50: 10.00
    more = _cycle(cache, writer, NOW + datetime.timedelta(minutes=2), state, [export])
    assert more["charges"][0]["gpuHours"] == 10.0 and more["charges"][0]["money"] == 25.0
    assert _cents(more["spent"]["money"]) == _cents(10 * price) == Decimal("18.09")

    # A re-issued export (December's commitment amortised at 336.00): the correction is
    # replaced by the new price's, with the new fingerprint.
    _export(export, commitment_cost="336.00")
    reissued = _cycle(cache, writer, NOW + datetime.timedelta(minutes=3), state, [export])
    new_price = Decimal("516.00") / 272
    (new_row,) = reissued["billed"]
    assert new_row["fingerprint"] != more["billed"][0]["fingerprint"]
    assert _cents(new_row["billed"]) == _cents(10 * new_price) == Decimal("18.97")
    assert _cents(reissued["spent"]["money"]) == Decimal("18.97")
    assert _cents(reissued["correction"]) == _cents(10 * new_price - 25)


def test_a_restarted_operator_corrects_the_same_way_without_the_export(
    tmp_path: pathlib.Path,
) -> None:
    export = _export(tmp_path / "export.csv")
    cache, writer, state = _cache(), fakes.RecordingWriter(), cycle.LoopState()
    _place(cache, writer, "train", 2, "3")
    written = _cycle(cache, writer, NOW, state, [export])
    assert _cents(written["spent"]["money"]) == Decimal("10.85")

    # A new operator: the Budget's status as written, the placed pod, no export any more.
    restarted = _cache(status_body=written)
    restarted.put_pod(writer.pods["ml/train"])
    later = NOW + datetime.timedelta(minutes=5)
    fresh, new_writer = cycle.LoopState(), fakes.RecordingWriter()
    new_writer.pods.update(writer.pods)
    after = _cycle(restarted, new_writer, later, fresh, None)
    assert after["charges"] == written["charges"]  # the pod's record is not charged again
    assert after["billed"] == written["billed"]
    assert _cents(after["spent"]["money"]) == Decimal("10.85")
    assert _reconciled(after)["reason"] == "Reconciled"  # said while a kept price corrects

    # A placement the status does not hold yet (a crash before its status write) is
    # recovered from its signed record, GPU-hours included, and corrected at the kept price.
    third = _cache(status_body=written)
    for pod in writer.pods.values():
        third.put_pod(pod)
    _place(third, new_writer, "late", 1, "2")
    placed = _cycle(third, new_writer, later, cycle.LoopState(), None)
    recovered = _cache(status_body=written)
    for pod in new_writer.pods.values():
        recovered.put_pod(pod)
    built = snapshot.build(snapshot.gather(recovered), later + datetime.timedelta(minutes=1))
    price = Decimal("492.00") / 272
    assert _cents(placed["spent"]["money"]) == _cents(8 * price) == Decimal("14.47")
    assert _cents(built.spent[("ml", "monthly")].money) == Decimal("14.47")


def test_a_month_the_bill_does_not_cover_waits_at_the_pools_price(tmp_path: pathlib.Path) -> None:
    export = _export(tmp_path / "export.csv")
    cache, writer, state = _cache(), fakes.RecordingWriter(), cycle.LoopState()
    _place(cache, writer, "train", 2, "3")
    january = datetime.datetime(2027, 1, 5, 12, tzinfo=datetime.UTC)
    body = _cycle(cache, writer, january, state, [export])
    assert body["spent"]["money"] == 15.0 and body["billed"] == [] and body["correction"] == 0
    reconciled = _reconciled(body)
    assert (reconciled["status"], reconciled["reason"]) == ("False", "AwaitingBill")
    assert reconciled["message"] == (
        "charged at the pools' prices, no reconciled bill in EUR yet for fr 2027-01"
    )


def test_without_exports_there_is_no_reconciled_condition() -> None:
    cache, writer, state = _cache(), fakes.RecordingWriter(), cycle.LoopState()
    _place(cache, writer, "train", 2, "3")
    body = _cycle(cache, writer, NOW, state, None)
    assert body["spent"]["money"] == 15.0 and body["billed"] == []
    assert not [c for c in body["conditions"] if c["type"] == "Reconciled"]


@pytest.mark.parametrize("correction", ["12", None, True, float("nan")])
def test_a_status_correction_that_is_not_a_number_is_read_as_none(correction: Any) -> None:
    # spent.money 15 with a bogus correction: the account keeps 15 at the pools' prices.
    start = DECEMBER
    body = {"periodStart": "2026-12-01T00:00:00Z", "spent": {"money": 15.0},
            "correction": correction}  # fmt: skip
    account = budgets._opened(("ml", "b"), start, JANUARY, body, (), currency="EUR")
    assert account.spent.money == 15.0


# ---------------------------------------------------------------- a bill after the period ended


def test_a_bill_that_arrives_after_the_period_ended_corrects_it_in_previous_period(
    tmp_path: pathlib.Path,
) -> None:
    export = _export(tmp_path / "export.csv")
    cache, writer, state = _cache(), fakes.RecordingWriter(), cycle.LoopState()
    _place(cache, writer, "train", 2, "3")  # 6 GPU-hours at 2.50 in December: 15.00
    december = _cycle(cache, writer, NOW, state, None)  # no bill yet
    assert december["spent"]["money"] == 15.0 and december["previousPeriod"] is None
    # January: December's invoice arrives. This period has spent nothing; December's charges
    # are corrected where they are kept, by hand 6 x 492 / 272 = 10.85 (-4.15).
    january = datetime.datetime(2027, 1, 5, 12, tzinfo=datetime.UTC)
    body = _cycle(cache, writer, january, state, [export])
    assert body["periodStart"] == "2027-01-01T00:00:00Z" and body["spent"]["money"] == 0
    previous = body["previousPeriod"]
    assert (previous["periodStart"], previous["periodEnd"]) == (
        "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z"
    )  # fmt: skip
    assert previous["charges"] == december["charges"]
    (row,) = previous["billed"]
    assert (row["pool"], row["gpuHours"], row["charged"]) == ("fr", 6.0, 15.0)
    assert _cents(previous["money"]) == _cents(6 * Decimal("492.00") / 272) == Decimal("10.85")
    assert _cents(previous["correction"]) == Decimal("-4.15")
    # The planner sees January's spend only.
    built = snapshot.build(snapshot.gather(cache), january, ledger=state.ledger)
    (budget,) = built.snapshot.budgets
    assert budget.money_spent == 0

    # Restarted in January without the export: December's correction is kept as written.
    restarted = _cache(status_body=body)
    restarted.put_pod(writer.pods["ml/train"])
    later = january + datetime.timedelta(minutes=5)
    kept = _cycle(restarted, fakes.RecordingWriter(), later, cycle.LoopState(), None)
    assert kept["previousPeriod"] == previous
    # Restarted across the rollover (the status still December's, the pod's record signed):
    # December becomes previousPeriod and the late bill corrects it, the record not counted
    # twice.
    across = _cache(status_body=december)
    across.put_pod(writer.pods["ml/train"])
    rolled = _cycle(across, fakes.RecordingWriter(), later, cycle.LoopState(), [export])
    assert rolled["previousPeriod"] == previous
    assert rolled["spent"]["money"] == 0
    # Two periods on, December is no longer kept.
    march = datetime.datetime(2027, 3, 2, tzinfo=datetime.UTC)
    gone = _cycle(_cache(status_body=body), fakes.RecordingWriter(), march, cycle.LoopState(),
                  [export])  # fmt: skip
    assert "previousPeriod" in gone and gone["previousPeriod"] is None  # null: removed
