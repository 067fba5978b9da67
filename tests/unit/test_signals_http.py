"""Electricity Maps and WattTime clients against a local HTTP peer that speaks their API.

The peer (``tests.providers.FakeProvider``) runs on 127.0.0.1 on a free port and is told per
test to answer well, with HTTP 500, with garbage, too slowly, with stale data, or to refuse a
token once.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest

from greenplace.signals import chain, contract, electricitymaps, static, telemetry, watttime
from tests.providers import NOW, TIMEOUT_S, FakeProvider, serve

R = contract.SignalReason
FR = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "FR")
CA = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "US-CAL-CISO")


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with serve() as server:
        yield server


def url(server: FakeProvider) -> str:
    return server.url


def emaps(server: FakeProvider, token: str = "em-token") -> electricitymaps.ElectricityMapsSource:
    return electricitymaps.ElectricityMapsSource(
        "emaps", token, ttl=datetime.timedelta(hours=1), base_url=url(server), timeout_s=TIMEOUT_S
    )


def wt(server: FakeProvider, password: str = "secret") -> watttime.WattTimeSource:
    return watttime.WattTimeSource(
        "watttime",
        "user",
        password,
        ttl=datetime.timedelta(hours=1),
        base_url=url(server),
        region_map={"US-CAL-CISO": "CAISO_NORTH"},
        timeout_s=TIMEOUT_S,
    )


def test_electricity_maps_latest_and_forecast(provider: FakeProvider) -> None:
    source = emaps(provider)
    got = source.latest(FR, NOW)
    assert got == contract.Observation(42.0, NOW - datetime.timedelta(minutes=5))
    assert provider.requests[-1] == ("/v3/carbon-intensity/latest", provider.requests[-1][1])
    assert provider.requests[-1][1]["auth-token"] == "em-token"
    forecast = source.forecast(FR, NOW, NOW + datetime.timedelta(hours=2), NOW)
    assert forecast.values == (40.0, 50.0)
    assert forecast.mean(NOW, NOW + datetime.timedelta(hours=1)) == 40.0


def test_watttime_login_then_moer_in_grams(provider: FakeProvider) -> None:
    source = wt(provider)
    got = source.latest(CA, NOW)
    assert got.value == pytest.approx(1000.0 * 0.45359237)
    assert [p for p, _ in provider.requests] == ["/login", "/v3/forecast"]
    source.latest(CA, NOW + datetime.timedelta(minutes=1))
    assert [p for p, _ in provider.requests].count("/login") == 1  # token reused
    forecast = source.forecast(CA, NOW, NOW + datetime.timedelta(hours=2), NOW)
    assert len(forecast.times) == 24
    assert source.relative_index(CA, NOW).value == 37.0


def test_watttime_logs_in_again_when_the_token_is_refused(provider: FakeProvider) -> None:
    source = wt(provider)
    source.latest(CA, NOW)
    provider.mode = "expire-token-once"
    assert source.latest(CA, NOW).value == pytest.approx(453.59237)
    assert [p for p, _ in provider.requests].count("/login") == 2


def test_watttime_unmapped_zone_is_missing(provider: FakeProvider) -> None:
    with pytest.raises(contract.SignalMissingError, match="zoneMapping"):
        wt(provider).latest(FR, NOW)


@pytest.mark.parametrize(
    ("mode", "want"),
    [("500", R.HTTP_ERROR), ("garbage", R.MALFORMED), ("slow", R.TIMEOUT), ("stale", R.STALE)],
)
@pytest.mark.parametrize("make", [emaps, wt], ids=["electricitymaps", "watttime"])
def test_faults_fall_back_with_reason_and_metric(
    provider: FakeProvider, mode: str, want: contract.SignalReason, make: Any
) -> None:
    provider.mode = mode
    key = FR if make is emaps else CA
    registry = prometheus_client.CollectorRegistry()
    signals = chain.Chain(
        [make(provider), static.StaticSource("static", {key: 300.0})],
        telemetry.SignalMetrics(registry),
    )
    started = time.monotonic()
    reading = signals.read(key, NOW)
    assert time.monotonic() - started < 10 * TIMEOUT_S + 2
    assert (reading.value, reading.source, reading.status.reason) == (300.0, "static", R.FALLBACK)
    assert [a.reason for a in reading.status.attempts] == [want]
    labels = {"kind": "carbon_intensity", "subject": key.subject}
    assert (
        registry.get_sample_value(
            "greenplace_signal_attempts_total",
            {**labels, "source": reading.status.attempts[0].source, "reason": str(want)},
        )
        == 1.0
    )
    assert (
        registry.get_sample_value("greenplace_signal_state", {**labels, "reason": "Fallback"})
        == 1.0
    )


def test_refused_credentials_say_where_to_fix(provider: FakeProvider) -> None:
    with pytest.raises(contract.SignalCredentialsError, match="credentialsSecretRef"):
        emaps(provider, token="wrong").latest(FR, NOW)
    with pytest.raises(contract.SignalCredentialsError):
        wt(provider, password="wrong").latest(CA, NOW)


def test_nobody_listening_is_unreachable(provider: FakeProvider) -> None:
    source = emaps(provider)
    provider.shutdown()
    provider.server_close()
    reading = chain.Chain([source]).read(FR, NOW)
    assert reading.value is None
    assert [a.reason for a in reading.status.attempts] == [R.UNREACHABLE]


def test_price_is_not_asked_of_carbon_providers(provider: FakeProvider) -> None:
    price = contract.SignalKey(contract.SignalKind.PRICE, "fr-a100")
    for source in (emaps(provider), wt(provider)):
        with pytest.raises(contract.SignalUnsupportedError):
            source.latest(price, NOW)
    assert provider.requests == []
