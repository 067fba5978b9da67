"""Electricity Maps and WattTime clients against a local HTTP peer that speaks their API.

The peer (``FakeProvider``) runs on 127.0.0.1 on a free port and is told per test to answer
well, with HTTP 500, with garbage, too slowly, with stale data, or to refuse a token once.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, ClassVar

import prometheus_client
import pytest

from greenplace.signals import chain, contract, electricitymaps, static, telemetry, watttime

R = contract.SignalReason
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
FR = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "FR")
CA = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "US-CAL-CISO")
TIMEOUT_S = 0.3


def iso(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeProvider(http.server.ThreadingHTTPServer):
    """The remote peer: Electricity Maps v3 and WattTime v3 endpoints, faults on demand."""

    daemon_threads = True
    mode = "ok"  # ok | 500 | garbage | slow | stale | expire-token-once
    requests: ClassVar[list[tuple[str, dict[str, str]]]] = []


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeProvider

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        self.server.requests.append((url.path, {k.lower(): v for k, v in self.headers.items()}))
        mode = self.server.mode
        if mode == "slow":
            time.sleep(TIMEOUT_S * 4)
        if mode == "500":
            return self._send(500, b"internal error")
        if mode == "garbage":
            return self._send(200, b"<html>not json</html>")
        body = self._answer(url.path, query, mode)
        if body is None:
            return self._send(401, b"{}")
        return self._send(200, json.dumps(body).encode())

    def _answer(self, path: str, query: dict[str, str], mode: str) -> Any:
        observed = NOW - datetime.timedelta(hours=3 if mode == "stale" else 0, minutes=5)
        if path == "/v3/carbon-intensity/latest":
            if self.headers.get("auth-token") != "em-token":
                return None
            return {"zone": query["zone"], "carbonIntensity": 42, "datetime": iso(observed)}
        if path == "/v3/carbon-intensity/forecast":
            hours = [NOW + datetime.timedelta(hours=h) for h in range(4)]
            return {
                "zone": query["zone"],
                "forecast": [
                    {"carbonIntensity": 40 + 10 * i, "datetime": iso(t)}
                    for i, t in enumerate(hours)
                ],
                "updatedAt": iso(NOW),
            }
        if path == "/login":
            expected = "Basic " + base64.b64encode(b"user:secret").decode()
            return (
                {"token": f"tok-{len(self.server.requests)}"}
                if self.headers.get("authorization") == expected
                else None
            )
        if not (self.headers.get("authorization") or "").startswith("Bearer tok-"):
            return None
        if mode == "expire-token-once":
            self.server.mode = "ok"
            return None
        if path == "/v3/forecast":
            n = int(query["horizon_hours"]) * 12 or 1
            points = [
                {
                    "point_time": iso(observed + datetime.timedelta(minutes=5 * i)),
                    "value": 1000.0 - i,
                }
                for i in range(n)
            ]
            return {"data": points, "meta": {"units": "lbs_co2_per_mwh", "region": query["region"]}}
        if path == "/v3/signal-index":
            return {
                "data": [{"point_time": iso(observed), "value": 37.0}],
                "meta": {"units": "percentile"},
            }
        return {}

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    server = FakeProvider(("127.0.0.1", 0), Handler)
    server.mode = "ok"
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url(server: FakeProvider) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


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
    with pytest.raises(contract.SignalCredentialsError, match="credentials secret"):
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
