"""Faults against a real Prometheus: server stopped, data older than the TTL, bad queries.

Each gives the documented fallback, a reason code and a metric, never a crash, and never a
change to what sovereignty allows.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import shutil

import prometheus_client
import pytest

from greenplace.accounting import serving
from greenplace.domain import model
from greenplace.engine import planner
from greenplace.signals import chain, contract, planning, promql, static, telemetry
from tests import builders as b

from . import prometheus_fixture as fx

R = contract.SignalReason
CARBON = contract.SignalKind.CARBON_INTENSITY
QUERY = {CARBON: 'greenplace_grid_carbon_intensity{zone="$subject"}'}
FALLBACK = static.StaticSource(
    "static", {contract.SignalKey(CARBON, z): v for z, v in {"FR": 56.0, "GB": 250.0}.items()}
)


def source(url: str, ttl: datetime.timedelta) -> promql.PrometheusSource:
    return promql.PrometheusSource("prom", promql.Querier(url, timeout_s=2), QUERY, ttl)


def test_data_older_than_ttl_is_stale_and_falls_back(prometheus: fx.PrometheusServer) -> None:
    gb = contract.SignalKey(CARBON, "GB")
    fresh_enough = chain.Chain([source(prometheus.url, datetime.timedelta(minutes=10))])
    reading = fresh_enough.read(gb, fx.END)
    assert reading.value == 200.0 and reading.status.reason is R.FRESH
    assert reading.age_s == pytest.approx(fx.STALE_BY.total_seconds(), abs=fx.STEP_S)

    registry = prometheus_client.CollectorRegistry()
    strict = chain.Chain(
        [source(prometheus.url, datetime.timedelta(minutes=1)), FALLBACK],
        telemetry.SignalMetrics(registry),
    )
    reading = strict.read(gb, fx.END)
    assert (reading.value, reading.source, reading.status.reason) == (250.0, "static", R.FALLBACK)
    assert [a.reason for a in reading.status.attempts] == [R.STALE]
    labels = {"kind": "carbon_intensity", "subject": "GB"}
    assert (
        registry.get_sample_value(
            "greenplace_signal_attempts_total", {**labels, "source": "prom", "reason": "Stale"}
        )
        == 1.0
    )


def test_a_zone_with_no_series_is_missing(prometheus: fx.PrometheusServer) -> None:
    reading = chain.Chain([source(prometheus.url, datetime.timedelta(minutes=10))]).read(
        contract.SignalKey(CARBON, "PL"), fx.END
    )
    assert reading.value is None
    assert [a.reason for a in reading.status.attempts] == [R.MISSING]


def test_a_bad_query_is_an_http_error_with_the_query(prometheus: fx.PrometheusServer) -> None:
    broken = promql.PrometheusSource(
        "prom", promql.Querier(prometheus.url), {CARBON: "sum by (("}, datetime.timedelta(hours=1)
    )
    reading = chain.Chain([broken, FALLBACK]).read(contract.SignalKey(CARBON, "FR"), fx.END)
    assert reading.value == 56.0
    (attempt,) = reading.status.attempts
    assert attempt.reason is R.HTTP_ERROR and "sum by ((" in attempt.message


def test_prometheus_stopped(prometheus_tsdb: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """A server of our own, so stopping it does not disturb the other tests."""
    shutil.copytree(prometheus_tsdb, tmp_path / "tsdb", ignore=shutil.ignore_patterns("lock"))
    server = fx.PrometheusServer(tmp_path / "tsdb", tmp_path)
    server.start()
    registry = prometheus_client.CollectorRegistry()
    signals = chain.Chain(
        [source(server.url, datetime.timedelta(minutes=10)), FALLBACK],
        telemetry.SignalMetrics(registry),
    )
    fr = contract.SignalKey(CARBON, "FR")
    pools = [b.pool("fr", country="FR", gco2=None), b.pool("us", country="US", gco2=1.0)]
    policy = b.policy(countries={"FR"}, ceiling=100.0)
    try:
        before = signals.read(fr, fx.END)
        assert (before.value, before.status.reason) == (50.0, R.FRESH)
        placed_before = place(pools, before, policy)
    finally:
        server.stop()
    after = signals.read(fr, fx.END)
    assert (after.value, after.source, after.status.reason) == (56.0, "static", R.FALLBACK)
    assert [a.reason for a in after.status.attempts] == [R.UNREACHABLE]
    assert "check the URL and that Prometheus is running" in after.status.attempts[0].message
    labels = {"kind": "carbon_intensity", "subject": "FR"}
    assert (
        registry.get_sample_value(
            "greenplace_signal_attempts_total",
            {**labels, "source": "prom", "reason": "Unreachable"},
        )
        == 1.0
    )
    assert (
        registry.get_sample_value("greenplace_signal_state", {**labels, "reason": "Fallback"})
        == 1.0
    )

    alone = chain.Chain([source(server.url, datetime.timedelta(minutes=10))]).read(fr, fx.END)
    assert alone.value is None and alone.status.reason is R.UNAVAILABLE
    for decision in (placed_before, place(pools, after, policy), place(pools, alone, policy)):
        rejected = {r.pool: r.reason for r in decision.alternatives}
        assert rejected["us"] is model.Reason.COUNTRY_NOT_ALLOWED
    assert place(pools, alone, policy).reason is model.Reason.NO_COMPLIANT_POOL  # HOLD: waits


def place(
    pools: list[model.Pool], reading: contract.Reading, policy: model.Policy
) -> model.Decision:
    carbon = planning.carbon_for_planner(reading, planning.MissingCarbon.HOLD)
    updated = planning.apply_to_pools(
        pools, {"FR": carbon, "US": dataclasses.replace(carbon, gco2_per_kwh=1.0)}, {}
    )
    snapshot = b.snapshot(list(updated), [policy], [b.workload("w")])
    return planner.plan(snapshot, fx.END).decisions[0]


def test_accounting_with_prometheus_stopped_raises_a_signal_error() -> None:
    """The controller keeps the last report and marks it Degraded; here: a clear, typed error."""
    querier = promql.Querier(f"http://127.0.0.1:{fx.free_port()}", timeout_s=1)
    with pytest.raises(contract.SignalUnreachableError, match="Prometheus is running"):
        serving.measure(querier.vector, fx.END, fx.WINDOW)
