"""Credentials go only to the provider's own host, or to a host the operator lists exactly.

Whoever may create a SignalSource names a credentials Secret the operator has mounted
(``credentialsSecretRef``) and may override the provider's ``url``: without a rule, the operator
would send the platform team's Electricity Maps token or WattTime password to the author's host.
``EgressPolicy.check_credentials`` is that rule (``controller.feeds`` applies it when a source
names credentials): the provider's https origin, or a host ``--allow-signal-hosts`` names
exactly (a hostname, a single address); never a ``*.domain`` or CIDR range, under which a tenant
may own a name or a pod. Here each refused and allowed path is checked as a rule, through the
operator's feeds on the wire (the fake provider on 127.0.0.1 records every header it gets) and
with a MockTransport standing in for the real providers' hosts.
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from greenplace.api import models
from greenplace.controller import cache, feeds
from greenplace.signals import contract, egress, electricitymaps, watttime
from tests.providers import NOW, FakeProvider, mount_secret, serve

R = contract.SignalReason
OWN = "greenplace-system"
EMAPS = electricitymaps.DEFAULT_URL  # https://api.electricitymap.org
WATTTIME = watttime.DEFAULT_URL  # https://api.watttime.org


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("url", "default"),
    [
        (EMAPS, EMAPS),
        (f"{EMAPS}/", EMAPS),
        (f"{EMAPS}/v3", EMAPS),  # another path on the provider's own host
        ("https://API.ElectricityMap.org./", EMAPS),  # case and the root dot do not matter
        ("https://api.electricitymap.org:443", EMAPS),
        (WATTTIME, WATTTIME),
    ],
)
def test_the_providers_own_https_origin_gets_credentials(url: str, default: str) -> None:
    policy = egress.EgressPolicy()
    policy.check_url(url)
    policy.check_credentials(url, default)


@pytest.mark.parametrize(
    ("url", "default", "host"),
    [
        (f"{EMAPS}.evil.example", EMAPS, "api.electricitymap.org.evil.example"),
        ("https://evil.example/api.electricitymap.org", EMAPS, "evil.example"),
        ("https://electricitymap.org", EMAPS, "electricitymap.org"),
        ("http://api.electricitymap.org", EMAPS, "api.electricitymap.org"),  # in clear text
        ("https://api.electricitymap.org:8443", EMAPS, "api.electricitymap.org"),
        (EMAPS, WATTTIME, "api.electricitymap.org"),  # WattTime's password to Electricity Maps
        (WATTTIME, EMAPS, "api.watttime.org"),
    ],
)  # fmt: skip
def test_any_other_host_is_refused_naming_the_fix(url: str, default: str, host: str) -> None:
    policy = egress.EgressPolicy(allow_http=True)
    policy.check_url(url)  # reachable: only the credentials are refused
    with pytest.raises(contract.SignalNotAllowedError) as refused:
        policy.check_credentials(url, default)
    message = str(refused.value)
    assert refused.value.reason is R.NOT_ALLOWED
    assert f"{host} is not listed" in message
    assert f"--allow-signal-hosts={host}" in message and "signals.allowHosts" in message
    assert f"https://{urlhost(default)}" in message and "remove credentialsSecretRef" in message


def urlhost(url: str) -> str:
    return httpx.URL(url).host


LISTED = egress.EgressPolicy.parse(
    ["127.0.0.1", "::1", "10.0.0.0/8", "emaps-proxy.example.org", "*.mirror.example"],
    allow_http=True,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",  # a single address, any port
        "http://[::1]:9/",
        "http://[::ffff:127.0.0.1]/",  # the listed IPv4 address, written as IPv6
        "https://emaps-proxy.example.org/v3",  # an exact name
        "https://EMAPS-PROXY.example.org./",
    ],
)
def test_a_host_listed_exactly_gets_credentials(url: str) -> None:
    LISTED.check_url(url)
    LISTED.check_credentials(url, EMAPS)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3:8080",  # reachable (in 10.0.0.0/8), but a tenant's pod may be there
        "https://a.mirror.example",  # reachable (*.mirror.example), but a tenant may own a name
        "https://mirror.example",
        "http://127.0.0.2",  # not listed at all: only its credentials are judged here
        "https://sub.emaps-proxy.example.org",
    ],
)
def test_a_range_or_wildcard_entry_gets_no_credentials(url: str) -> None:
    with pytest.raises(contract.SignalNotAllowedError, match="is not listed"):
        LISTED.check_credentials(url, EMAPS)


# ---------------------------------------------------------------- on the wire, through the feeds


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with serve() as server:
        yield server


def signal_source(entry: dict[str, Any]) -> cache.CachedSignalSource:
    static = {"name": "static", "kind": "Static", "static": {"values": {"US-CAL-CISO": 300}}}
    spec = models.SignalSourceSpec.model_validate({
        "signal": "CarbonIntensity", "zones": ["US-CAL-CISO"], "sources": [entry, static],
    })  # fmt: skip
    return cache.CachedSignalSource("grid", 1, spec)


def emaps(url: str | None, credentials: bool = True) -> dict[str, Any]:
    return {
        "name": "emaps", "kind": "ElectricityMaps", "timeout": "1s",
        **({"electricityMaps": {"url": url}} if url else {}),
        **({"credentialsSecretRef": {"name": "emaps", "namespace": OWN}} if credentials else {}),
    }  # fmt: skip


def watt(url: str | None) -> dict[str, Any]:
    return {
        "name": "emaps", "kind": "WattTime", "timeout": "1s",  # the same name: one assertion
        **({"wattTime": {"url": url}} if url else {}),
        "zoneMapping": {"US-CAL-CISO": "CAISO_NORTH"},
        "credentialsSecretRef": {"name": "wt", "namespace": OWN},
    }  # fmt: skip


def read(signals: feeds.Feeds, entry: dict[str, Any]) -> contract.Reading:
    observed = signals.read([signal_source(entry)], datetime.datetime.now(datetime.UTC))
    (reading,) = observed.by_source["grid"]
    return reading


def local_feeds(tmp_path: pathlib.Path, *allow: str) -> feeds.Feeds:
    mount_secret(tmp_path, "emaps", {"token": "em-token"})
    mount_secret(tmp_path, "wt", {"username": "user", "password": "secret"})
    return feeds.Feeds(
        memory=datetime.timedelta(0),
        credentials_dir=tmp_path,
        own_namespace=OWN,
        allow_hosts=allow,
        allow_insecure_http=True,
    )


@pytest.mark.parametrize("source", [emaps, watt], ids=["electricitymaps", "watttime"])
def test_a_url_override_reached_through_a_range_gets_no_credentials(
    provider: FakeProvider, tmp_path: pathlib.Path, source: Any
) -> None:
    provider.live = True
    # 127.0.0.0/8 lets sources reach the fake provider, not receive credentials there.
    reading = read(local_feeds(tmp_path, "127.0.0.0/8"), source(provider.url))
    assert (reading.value, reading.source, reading.status.reason) == (300.0, "static", R.FALLBACK)
    (attempt,) = reading.status.attempts
    assert attempt.reason is R.NOT_ALLOWED, attempt
    assert "127.0.0.1 is not listed" in attempt.message
    assert "--allow-signal-hosts=127.0.0.1" in attempt.message
    assert provider.requests == []  # no token, no password, no request at all
    # Listed exactly: the platform team sent its credentials there on purpose.
    reading = read(local_feeds(tmp_path, "127.0.0.1"), source(provider.url))
    assert reading.source == "emaps" and reading.status.reason is R.FRESH, reading.status
    headers = provider.requests[0][1]
    assert headers.get("auth-token") == "em-token" or headers["authorization"].startswith("Basic")


def test_without_a_credentials_ref_a_url_override_is_called_without_a_token(
    provider: FakeProvider, tmp_path: pathlib.Path
) -> None:
    reading = read(local_feeds(tmp_path, "127.0.0.0/8"), emaps(provider.url, credentials=False))
    (attempt,) = reading.status.attempts
    assert attempt.reason is R.CREDENTIALS  # the provider refused the empty token: 401
    assert provider.requests  # latest and forecast, both without the mounted token
    assert all(headers["auth-token"] == "" for _, headers in provider.requests)


class Recorder:
    """The real providers' hosts, in a MockTransport that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/login":
            return httpx.Response(200, json={"token": "bearer-token"})
        at = datetime.datetime.now(datetime.UTC).isoformat()  # the feeds read at the clock
        if request.url.path.startswith("/v3/carbon-intensity/"):
            return httpx.Response(200, json={"carbonIntensity": 42.0, "datetime": at})
        points = [{"point_time": at, "value": 100.0}]
        return httpx.Response(200, json={"data": points, "meta": {"units": "g_co2_per_kwh"}})


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Every source's client on the Recorder, its URLs still checked by the policy."""
    recorder = Recorder()
    guard = egress.EgressPolicy.guard_httpx

    def guarded(self: egress.EgressPolicy, inner: httpx.BaseTransport | None = None) -> Any:
        return guard(self, httpx.MockTransport(recorder))

    monkeypatch.setattr(egress.EgressPolicy, "guard_httpx", guarded)
    return recorder


SECRET_HEADERS = ("auth-token", "authorization")


@pytest.mark.parametrize(
    ("source", "host"),
    [(emaps, "api.electricitymap.org"), (watt, "api.watttime.org")],
    ids=["electricitymaps", "watttime"],
)
def test_the_default_host_gets_the_credentials_and_an_override_none(
    mocked: Recorder, tmp_path: pathlib.Path, source: Any, host: str
) -> None:
    signals = local_feeds(tmp_path)
    reading = read(signals, source(None))
    assert reading.source == "emaps" and reading.status.reason is R.FRESH, reading.status
    assert {r.url.host for r in mocked.requests} == {host}
    assert any(h in r.headers for r in mocked.requests for h in SECRET_HEADERS)

    mocked.requests.clear()
    for url in (f"https://{host}.evil.example", "https://evil.example", "https://8.8.8.8"):
        reading = read(local_feeds(tmp_path), source(url))
        (attempt,) = reading.status.attempts
        assert attempt.reason is R.NOT_ALLOWED and "credentials" in attempt.message, url
    assert mocked.requests == []  # not one request, so no token nor password header left


def test_a_redirect_from_the_provider_is_not_followed_with_the_token() -> None:
    asked: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        return httpx.Response(302, headers={"location": "https://evil.example/steal"})

    source = electricitymaps.ElectricityMapsSource(
        "emaps",
        "em-token",
        ttl=datetime.timedelta(hours=1),
        transport=httpx.MockTransport(answer),
        policy=egress.EgressPolicy(),
    )
    key = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "FR")
    with pytest.raises(contract.SignalHttpError, match="HTTP 302"):
        source.latest(key, NOW)
    assert [r.url.host for r in asked] == ["api.electricitymap.org"]
