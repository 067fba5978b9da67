"""SignalSource credentials read from a mounted Secret at every fetch (``controller.feeds``).

The Secret is laid out as the kubelet mounts it (``tests.providers.mount_secret``) and the
provider is the local fake of Electricity Maps and WattTime: a rotated Secret is used at the next
fetch, and a Secret that is not there (no --credentials-dir, not mounted, no such key, empty, in
another namespace) gives the reason ``Credentials`` with what to fix, and the chain falls back.
"""

from __future__ import annotations

import datetime
import pathlib
from collections.abc import Iterator

import pytest

from greenplace.api import models
from greenplace.cli import main as cli
from greenplace.cli import operate
from greenplace.controller import cache, feeds
from greenplace.signals import contract, electricitymaps, watttime
from tests.providers import NOW, TIMEOUT_S, FakeProvider, mount_secret, serve

R = contract.SignalReason
FR = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "FR")
CA = contract.SignalKey(contract.SignalKind.CARBON_INTENSITY, "US-CAL-CISO")
OWN = "greenplace-system"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with serve() as server:
        yield server


def ref(name: str = "emaps", namespace: str = OWN, key: str | None = None) -> models.SecretKeyRef:
    return models.SecretKeyRef(name=name, namespace=namespace, key=key)


def emaps(provider: FakeProvider, token: feeds.SecretFile) -> electricitymaps.ElectricityMapsSource:
    return electricitymaps.ElectricityMapsSource(
        "emaps", token, ttl=datetime.timedelta(hours=1), base_url=provider.url, timeout_s=TIMEOUT_S
    )


def test_a_rotated_token_is_used_at_the_next_fetch(
    provider: FakeProvider, tmp_path: pathlib.Path
) -> None:
    mount_secret(tmp_path, "emaps", {"token": "first\n"})
    provider.em_tokens = {"first": 42.0}
    source = emaps(provider, feeds.SecretFile(ref(), "token", tmp_path, OWN))
    assert source.latest(FR, NOW).value == 42.0

    mount_secret(tmp_path, "emaps", {"token": "second"})  # the kubelet updates the volume
    provider.em_tokens = {"second": 43.0}  # and the first token is revoked
    assert source.latest(FR, NOW).value == 43.0
    assert [h["auth-token"] for _, h in provider.requests] == ["first", "second"]


def test_watttime_logs_in_again_when_its_password_rotates(
    provider: FakeProvider, tmp_path: pathlib.Path
) -> None:
    mount_secret(tmp_path, "wt", {"username": "user", "password": "secret"})
    source = watttime.WattTimeSource(
        "watttime",
        feeds.SecretFile(ref("wt"), "username", tmp_path),
        feeds.SecretFile(ref("wt"), "password", tmp_path),
        ttl=datetime.timedelta(hours=1),
        base_url=provider.url,
        region_map={"US-CAL-CISO": "CAISO_NORTH"},
        timeout_s=TIMEOUT_S,
    )
    source.latest(CA, NOW)
    source.latest(CA, NOW)
    assert [p for p, _ in provider.requests].count("/login") == 1  # the token is reused
    mount_secret(tmp_path, "wt", {"username": "user", "password": "rotated"})
    provider.wt_password = "rotated"
    source.latest(CA, NOW + datetime.timedelta(minutes=1))  # well within the token's lifetime
    assert [p for p, _ in provider.requests].count("/login") == 2


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("no --credentials-dir", ["Secret greenplace-system/emaps (key token)",
                                  "without --credentials-dir", feeds.CHART_VALUE]),
        ("Secret not mounted", ["expected at {dir}/emaps/token", "{dir}/emaps is not mounted",
                                feeds.CHART_VALUE]),
        ("no such key", ["no file {dir}/emaps/token", "has no key token",
                         "kubectl create secret generic emaps --from-literal=token="]),
        ("empty", ["{dir}/emaps/token is empty"]),
        ("unreadable", ["cannot read {dir}/emaps/token", "IsADirectoryError"]),
        ("another namespace", ["Secret team-a/emaps (key token)",
                               "must be in the operator's own namespace greenplace-system",
                               "set credentialsSecretRef.namespace to greenplace-system",
                               feeds.CHART_VALUE]),
    ],
)  # fmt: skip
def test_a_missing_credential_says_what_to_fix(
    tmp_path: pathlib.Path, case: str, says: list[str]
) -> None:
    directory: pathlib.Path | None = tmp_path
    secret = ref()
    if case == "no --credentials-dir":
        directory = None
    elif case == "no such key":
        mount_secret(tmp_path, "emaps", {"other": "x"})
    elif case == "empty":
        mount_secret(tmp_path, "emaps", {"token": " \n"})
    elif case == "unreadable":
        (tmp_path / "emaps" / "token").mkdir(parents=True)
    elif case == "another namespace":
        mount_secret(tmp_path, "emaps", {"token": "t"})  # a same-named Secret of our namespace
        secret = ref(namespace="team-a")
    with pytest.raises(contract.SignalCredentialsError) as raised:
        feeds.SecretFile(secret, "token", directory, OWN)()
    assert raised.value.reason is R.CREDENTIALS
    for text in says:
        assert text.format(dir=tmp_path) in str(raised.value)


def test_another_namespace_is_not_checked_when_the_operators_is_unknown(
    tmp_path: pathlib.Path,
) -> None:
    mount_secret(tmp_path, "emaps", {"token": "t"})
    assert feeds.SecretFile(ref(namespace="team-a"), "token", tmp_path, None)() == "t"


def signal_source(provider: FakeProvider, key: str | None = None) -> cache.CachedSignalSource:
    spec = models.SignalSourceSpec.model_validate({
        "signal": "CarbonIntensity", "zones": ["FR"],
        "sources": [
            {"name": "emaps", "kind": "ElectricityMaps", "electricityMaps": {"url": provider.url},
             "timeout": "1s", "credentialsSecretRef": {"name": "emaps", "namespace": OWN,
                                                       **({"key": key} if key else {})}},
            {"name": "static", "kind": "Static", "static": {"values": {"FR": 300}}},
        ],
    })  # fmt: skip
    return cache.CachedSignalSource("grid", 1, spec)


def test_feeds_fall_back_on_a_missing_secret_and_recover_without_a_new_generation(
    provider: FakeProvider, tmp_path: pathlib.Path
) -> None:
    provider.live = True
    signals = feeds.Feeds(
        memory=datetime.timedelta(0),
        credentials_dir=tmp_path,
        own_namespace=OWN,
        allow_hosts=["127.0.0.1"],  # the local fake provider, over http
        allow_insecure_http=True,
    )
    grid = signal_source(provider, key="api-key")
    now = datetime.datetime.now(datetime.UTC)
    (reading,) = signals.read([grid], now).by_source["grid"]
    assert (reading.value, reading.source, reading.status.reason) == (300.0, "static", R.FALLBACK)
    (attempt,) = reading.status.attempts
    assert attempt.reason is R.CREDENTIALS
    assert f"Secret {OWN}/emaps (key api-key)" in attempt.message
    assert str(tmp_path / "emaps" / "api-key") in attempt.message
    assert provider.requests == []  # no call without a token

    mount_secret(tmp_path, "emaps", {"api-key": "em-token"})
    (reading,) = signals.read([grid], now + datetime.timedelta(seconds=1)).by_source["grid"]
    assert (reading.value, reading.source, reading.status.reason) == (42.0, "emaps", R.FRESH)

    mount_secret(tmp_path, "emaps", {"api-key": "revoked"})
    (reading,) = signals.read([grid], now + datetime.timedelta(seconds=2)).by_source["grid"]
    assert (reading.value, reading.status.reason) == (300.0, R.FALLBACK)
    (attempt,) = reading.status.attempts
    assert attempt.reason is R.CREDENTIALS and "answered 401" in attempt.message


def test_the_operators_namespace_comes_from_pod_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    unknown = operate.config_from(cli.build_parser().parse_args(["operate"]))
    assert (unknown.namespace, unknown.credentials_dir) == (None, None)
    assert unknown.lease_namespace_in_use == "default"
    monkeypatch.setenv("POD_NAMESPACE", "gp")
    known = operate.config_from(cli.build_parser().parse_args(["operate", "--credentials-dir=/c"]))
    assert (known.namespace, known.credentials_dir) == ("gp", pathlib.Path("/c"))
    assert known.lease_namespace_in_use == "gp"  # the Lease lives with the operator
    given = operate.config_from(cli.build_parser().parse_args(["operate", "--namespace=ops"]))
    assert (given.namespace, given.lease_namespace_in_use) == ("ops", "ops")
    apart = ["operate", "--namespace=ops", "--lease-namespace=locks"]
    assert (
        operate.config_from(cli.build_parser().parse_args(apart)).lease_namespace_in_use == "locks"
    )
