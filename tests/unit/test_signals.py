"""The fallback chain, static and trace sources, metrics and planner inputs, with fakes."""

from __future__ import annotations

import dataclasses
import datetime

import prometheus_client
import pytest

from greenplace.domain import model, series
from greenplace.engine import planner
from greenplace.signals import chain, contract, fake, planning, static, telemetry, trace, tracefile
from tests import builders as b

R = contract.SignalReason
FR = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "FR")
DE = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "DE")
NOW = b.T0 + datetime.timedelta(hours=12)
MINUTE = datetime.timedelta(minutes=1)
DATA = tracefile.reference_data_dir() / "carbon-intensity"


def fallback() -> static.StaticSource:
    return static.StaticSource("static", {FR: 56.0, DE: 380.0})


@pytest.mark.parametrize(
    ("case", "primary", "want_value", "want_reason", "want_skip"),
    [
        ("fresh primary", fake.FakeSource("live", {FR: 40.0}), 40.0, R.FRESH, None),
        (
            "timeout",
            fake.FakeSource("live", failure=contract.SignalTimeoutError("slow")),
            56.0,
            R.FALLBACK,
            R.TIMEOUT,
        ),
        (
            "http 500",
            fake.FakeSource("live", failure=contract.SignalHttpError("500")),
            56.0,
            R.FALLBACK,
            R.HTTP_ERROR,
        ),
        (
            "garbage",
            fake.FakeSource("live", {FR: 1.0}, garbage=True),
            56.0,
            R.FALLBACK,
            R.MALFORMED,
        ),
        (
            "stale",
            fake.FakeSource("live", {FR: 40.0}, ttl=10 * MINUTE, age=11 * MINUTE),
            56.0,
            R.FALLBACK,
            R.STALE,
        ),
        ("missing key", fake.FakeSource("live", {DE: 1.0}), 56.0, R.FALLBACK, R.MISSING),
        (
            "bug in a source",
            fake.FakeSource("live", failure=ZeroDivisionError("oops")),
            56.0,
            R.FALLBACK,
            R.SOURCE_CRASHED,
        ),
    ],
)
def test_chain_falls_back_with_a_reason(
    case: str,
    primary: fake.FakeSource,
    want_value: float,
    want_reason: contract.SignalReason,
    want_skip: contract.SignalReason | None,
) -> None:
    reading = chain.Chain([primary, fallback()]).read(FR, NOW)
    assert reading.value == want_value, case
    assert reading.status.reason is want_reason, case
    assert [a.reason for a in reading.status.attempts] == ([want_skip] if want_skip else [])
    assert primary.calls == [("latest", FR)]


def test_stale_at_exactly_the_ttl_is_still_used() -> None:
    live = fake.FakeSource("live", {FR: 40.0}, ttl=10 * MINUTE, age=10 * MINUTE)
    reading = chain.Chain([live]).read(FR, NOW)
    assert (reading.value, reading.age_s, reading.observed_at) == (40.0, 600.0, NOW - 10 * MINUTE)


def test_every_source_failing_gives_none_and_says_how_to_fix() -> None:
    live = fake.FakeSource("live", failure=contract.SignalUnreachableError("refused"))
    old = fake.FakeSource("old", {FR: 40.0}, ttl=MINUTE, age=2 * MINUTE)
    reading = chain.Chain([live, old]).read(FR, NOW)
    assert reading.value is None and reading.source is None and reading.age_s is None
    assert reading.status.reason is R.UNAVAILABLE and not reading.status.ok
    assert [a.reason for a in reading.status.attempts] == [R.UNREACHABLE, R.STALE]
    assert "carbon_intensity/FR" in reading.status.message
    assert "add a fallback" in reading.status.message


def test_empty_chain_is_unavailable() -> None:
    assert chain.Chain([]).read(FR, NOW).status.reason is R.UNAVAILABLE


def test_metrics_show_fallback_age_and_reasons() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = telemetry.SignalMetrics(registry)
    live = fake.FakeSource("live", {FR: 40.0}, ttl=MINUTE, age=5 * MINUTE)
    signals = chain.Chain([live, fallback()], metrics)
    signals.read(FR, NOW)
    labels = {"kind": "carbon_intensity", "subject": "FR"}

    def value(name: str, **extra: str) -> float | None:
        return registry.get_sample_value(name, {**labels, **extra})

    assert value("greenplace_signal_attempts_total", source="live", reason="Stale") == 1.0
    assert value("greenplace_signal_attempts_total", source="static", reason="Fresh") == 1.0
    assert value("greenplace_signal_state", reason="Fallback") == 1.0
    assert value("greenplace_signal_state", reason="Fresh") == 0.0
    assert value("greenplace_signal_value") == 56.0
    assert value("greenplace_signal_age_seconds") == 0.0
    assert value("greenplace_signal_source_info", source="static") == 1.0

    live.age = datetime.timedelta(0)  # the feed recovers
    signals.read(FR, NOW)
    assert value("greenplace_signal_state", reason="Fresh") == 1.0
    assert value("greenplace_signal_source_info", source="static") is None
    assert value("greenplace_signal_source_info", source="live") == 1.0

    live.failure = contract.SignalTimeoutError("slow")
    chain.Chain([live], metrics).read(FR, NOW)
    assert value("greenplace_signal_state", reason="Unavailable") == 1.0
    assert value("greenplace_signal_source_info", source="live") is None
    assert value("greenplace_signal_attempts_total", source="live", reason="Timeout") == 1.0


def test_forecast_falls_back_and_reports_reasons() -> None:
    live = fake.FakeSource("live", failure=contract.SignalHttpError("500"))
    end = NOW + datetime.timedelta(hours=4)
    got = chain.Chain([live, fallback()]).read_forecast(DE, NOW, end, NOW)
    assert got.source == "static" and got.series is not None
    assert got.series.mean(NOW, end) == 380.0
    assert got.status.reason is R.FALLBACK
    assert chain.Chain([live]).read_forecast(DE, NOW, end, NOW).series is None


def test_forecast_with_garbage_is_skipped() -> None:
    live = fake.FakeSource("live", {DE: 1.0}, garbage=True)
    end = NOW + datetime.timedelta(hours=1)
    got = chain.Chain([live]).read_forecast(DE, NOW, end, NOW)
    assert got.series is None
    assert [a.reason for a in got.status.attempts] == [R.MALFORMED]


def test_static_source_missing_key_names_the_fix() -> None:
    with pytest.raises(contract.SignalMissingError, match="add it to the source's values"):
        fallback().latest(contract.SignalKey(contract.SignalKind.PRICE, "gra"), NOW)


def trace_source(ttl: datetime.timedelta = datetime.timedelta(hours=1)) -> trace.TraceSource:
    times = tuple(b.T0 + datetime.timedelta(minutes=30 * i) for i in range(4))
    return trace.TraceSource("trace", {FR: series.TimeSeries(times, (10.0, 20.0, 30.0, 40.0))}, ttl)


def test_trace_source_gives_the_row_in_force_and_its_time() -> None:
    source = trace_source()
    got = source.latest(FR, b.T0 + datetime.timedelta(minutes=45))
    assert got == contract.Observation(20.0, b.T0 + datetime.timedelta(minutes=30))


def test_trace_past_its_end_is_stale_not_fresh() -> None:
    reading = chain.Chain([trace_source()]).read(FR, b.T0 + datetime.timedelta(hours=3))
    assert reading.value is None
    assert [a.reason for a in reading.status.attempts] == [R.STALE]


def test_trace_before_its_start_is_missing() -> None:
    with pytest.raises(contract.SignalMissingError, match="set the source's shift"):
        trace_source().latest(FR, b.T0 - MINUTE)


def test_trace_forecast_is_the_recorded_future() -> None:
    start = b.T0 + datetime.timedelta(minutes=40)
    got = trace_source().forecast(FR, start, b.T0 + datetime.timedelta(minutes=90), start)
    assert got.values == (20.0, 30.0, 30.0)
    assert got.mean(start, b.T0 + datetime.timedelta(minutes=90)) == pytest.approx(
        26.0
    )  # 20 for 20 min, 30 for 30 min
    with pytest.raises(contract.SignalMissingError):
        trace_source().forecast(FR, b.T0 - 2 * MINUTE, b.T0 - MINUTE, b.T0)


def test_trace_from_the_shared_csv_replayed_at_now() -> None:
    path = DATA / "fr_ci.csv"
    if not path.exists():
        pytest.fail(f"{path} missing: the shared carbon-intensity data is part of the workspace")
    shift = NOW - datetime.datetime(2020, 6, 1, 12, tzinfo=datetime.UTC)
    source = trace.from_csv_files("fr-2020", {FR: path}, datetime.timedelta(hours=1), shift)
    reading = chain.Chain([source]).read(FR, NOW)
    assert reading.status.reason is R.FRESH
    assert reading.value is not None and 5.0 < reading.value < 200.0
    assert reading.age_s == 0.0


def test_carbon_for_planner_hold_and_cost_only() -> None:
    missing = chain.Chain([]).read(FR, NOW)
    hold = planning.carbon_for_planner(missing, planning.MissingCarbon.HOLD)
    cost_only = planning.carbon_for_planner(missing, planning.MissingCarbon.COST_ONLY)
    assert (hold.gco2_per_kwh, hold.carbon_rules_apply) == (None, True)
    assert (cost_only.gco2_per_kwh, cost_only.carbon_rules_apply) == (None, False)
    assert cost_only.status.reason is R.UNAVAILABLE
    present = planning.carbon_for_planner(
        chain.Chain([fallback()]).read(FR, NOW), planning.MissingCarbon.COST_ONLY
    )
    assert (present.gco2_per_kwh, present.carbon_rules_apply, present.source) == (
        56.0,
        True,
        "static",
    )
    price = contract.SignalKey(contract.SignalKind.PRICE, "p")
    with pytest.raises(ValueError, match="pass a carbon_intensity reading"):
        planning.carbon_for_planner(chain.Chain([]).read(price, NOW), planning.MissingCarbon.HOLD)


def test_missing_carbon_follows_the_policy_end_to_end() -> None:
    """A zone without a signal: a Hold policy's ceiling excludes the pool, a CostOnly one places
    it ranked on cost; the pool's intensity itself stays None either way."""
    missing = chain.Chain([]).read(FR, NOW)
    for choice, reason, pool in (
        ("Hold", model.Reason.NO_COMPLIANT_POOL, None),
        ("CostOnly", model.Reason.LOWEST_CARBON, "fr"),
    ):
        policy = b.policy(ceiling=200, on_missing=choice)  # type: ignore[arg-type]
        carbon = planning.carbon_for_planner(missing, planning.missing_carbon(policy))
        assert carbon.carbon_rules_apply is (choice == "Hold")
        pools = planning.apply_to_pools([b.pool("fr")], {"FR": carbon}, {})
        assert pools[0].gco2_per_kwh is None
        snapshot = b.snapshot(list(pools), [policy], [b.workload("w")])
        (decision,) = planner.plan(snapshot, NOW).decisions
        assert (decision.reason, decision.pool) == (reason, pool), choice


FAILURES = [
    contract.SignalTimeoutError("slow"),
    contract.SignalHttpError("500"),
    contract.SignalMalformedError("garbage"),
    contract.SignalUnreachableError("down"),
    RuntimeError("bug"),
    None,
]


@pytest.mark.parametrize("failure", FAILURES)
def test_signals_never_change_sovereignty(failure: BaseException | None) -> None:
    """Whatever the feeds do, only intensity and price change, and the country rule holds."""
    pools = [
        dataclasses.replace(b.pool("fr", country="FR", gco2=None), location=_loc("FR")),
        dataclasses.replace(b.pool("us", country="US", gco2=None, price=0.5), location=_loc("US")),
    ]
    live = fake.FakeSource("live", {FR: 40.0, _us(): 10.0}, failure=failure)
    prices = fake.FakeSource(
        "prices", {contract.SignalKey(contract.SignalKind.PRICE, "us"): 0.1}, failure=failure
    )
    carbon = {
        zone: planning.carbon_for_planner(
            chain.Chain([live]).read(contract.SignalKey(FR.kind, zone), NOW),
            planning.MissingCarbon.HOLD,
        )
        for zone in ("FR", "US")
    }
    price = {
        p.name: chain.Chain([prices]).read(
            contract.SignalKey(contract.SignalKind.PRICE, p.name), NOW
        )
        for p in pools
    }
    updated = planning.apply_to_pools(pools, carbon, price)
    for before, after in zip(pools, updated, strict=True):
        assert dataclasses.replace(after, gco2_per_kwh=None, price_per_gpu_hour=0.0) == (
            dataclasses.replace(before, gco2_per_kwh=None, price_per_gpu_hour=0.0)
        )
    policy = b.policy(countries={"FR"})
    decision = planner.plan(b.snapshot(list(updated), [policy], [b.workload("w")]), NOW).decisions[
        0
    ]
    rejected = {r.pool: r.reason for r in decision.alternatives}
    assert rejected["us"] is model.Reason.COUNTRY_NOT_ALLOWED
    assert decision.pool in (None, "fr")
    if failure is None:
        assert updated[1].price_per_gpu_hour == 0.1 and updated[0].gco2_per_kwh == 40.0
    else:
        assert updated[1].price_per_gpu_hour == 0.5 and updated[0].gco2_per_kwh is None


def _loc(country: str) -> model.Location:
    return model.Location(provider="p", region="r", country=country, grid_zone=country)


def _us() -> contract.SignalKey:
    return contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "US")


def test_forecasts_for_planner_keeps_known_zones_only() -> None:
    end = NOW + datetime.timedelta(hours=2)
    known = chain.Chain([fallback()]).read_forecast(DE, NOW, end, NOW)
    unknown = chain.Chain([]).read_forecast(FR, NOW, end, NOW)
    got = planning.forecasts_for_planner([known, unknown])
    assert list(got) == ["DE"] and got["DE"].mean(NOW, end) == 380.0
