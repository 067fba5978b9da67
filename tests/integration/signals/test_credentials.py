"""SignalSource credentials from a mounted Secret, on the real API server and operator.

The operator runs with ``credentials_dir`` (``--credentials-dir``) pointing at a directory laid
out as the kubelet mounts Secrets (``tests.providers.mount_secret``: timestamped directory,
``..data`` link swapped atomically on update) and believes it runs in ``greenplace-system``
(``$POD_NAMESPACE``). Electricity Maps is the local fake provider, which answers only the tokens
it is told to accept, each with its own intensity, so the value in status says which token was
used. Over one operator run, without a restart and without touching the SignalSource:

- the right token gives a Fresh reading, the GpuPool of that zone takes the value;
- the Secret rotated (new token, the old one revoked by the provider) is used at the next fetch;
- a wrong token: Degraded, reason ``Credentials`` (401 refused), the static fallback is used;
- the key gone from the Secret: the message names the Secret, the key and the expected path;
- the right token again: Fresh again.

A ref to a Secret of another namespace is reported as such, even when a same-named Secret of the
operator's namespace is mounted. The module's operator fixture fails on any exception or
traceback in the operator's output.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests import kubeobjects as k8s
from tests.integration.conftest import LOCAL_FEEDS, Kube, RunningOperator, run_operator, wait_for
from tests.providers import FakeProvider, mount_secret, serve

pytestmark = pytest.mark.cluster

OWN = "greenplace-system"
FR_POOL = "gcp-europe-west9-a100"  # the example fleet's pool in grid zone FR


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("credentials")


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with serve() as server:
        server.live = True
        server.em_tokens = {}
        yield server


@pytest.fixture(scope="module")
def operator(kube: Kube, credentials: pathlib.Path) -> Iterator[RunningOperator]:
    """The real operator; a cycle and a fetch every second so each step is seen quickly."""
    with run_operator(
        kube,
        credentials_dir=credentials,
        namespace=OWN,
        resync_seconds=1,
        signal_memory_seconds=1,
        **LOCAL_FEEDS,  # the fake provider is on 127.0.0.1, over http
    ) as running:
        yield running


def emaps(provider: FakeProvider, namespace: str = OWN) -> dict[str, Any]:
    return {
        "name": "emaps", "kind": "ElectricityMaps", "timeout": "2s",
        "electricityMaps": {"url": provider.url},
        "credentialsSecretRef": {"name": "emaps", "namespace": namespace},
    }  # fmt: skip


STATIC = k8s.static_source({"FR": 300, "DE": 300})


def fr_carbon(kube: Kube) -> tuple[Any, Any]:
    """The FR pool's carbon intensity in use and its source."""
    return k8s.pool_carbon(kube.custom("gpupool", FR_POOL))


def reading(kube: Kube, name: str, subject: str) -> dict[str, Any]:
    return k8s.reading(kube.custom("signalsource", name), subject)


def test_a_rotated_secret_is_used_without_a_restart_and_faults_only_degrade(
    kube: Kube, operator: RunningOperator, provider: FakeProvider, credentials: pathlib.Path
) -> None:
    mount_secret(credentials, "emaps", {"token": "first"})
    provider.em_tokens = {"first": 42.0}
    result = kube.apply(k8s.signal_source("creds", [emaps(provider), STATIC], ["FR"]))
    assert result.returncode == 0, result.stderr

    def fresh(value: float) -> dict[str, Any] | None:
        got = reading(kube, "creds", "FR")
        ok = (got.get("value"), got.get("source"), got.get("reason")) == (value, "emaps", "Fresh")
        return got if ok else None

    wait_for(lambda: fresh(42.0), 30, "a Fresh reading with the first token")
    body = kube.custom("signalsource", "creds")
    generation = body["metadata"]["generation"]
    assert k8s.condition(body, "Degraded")["status"] == "False"  # type: ignore[index]
    wait_for(lambda: fr_carbon(kube) == (42, "SignalSource creds/emaps"), 30,
             "the FR pool planned with the Electricity Maps value")  # fmt: skip

    # The kubelet updates the mounted Secret; the provider revokes the first token.
    mount_secret(credentials, "emaps", {"token": "second"})
    provider.em_tokens = {"second": 43.0}
    wait_for(lambda: fresh(43.0), 30, "a Fresh reading with the rotated token")
    wait_for(lambda: fr_carbon(kube) == (43, "SignalSource creds/emaps"), 30,
             "the FR pool planned with the rotated token's value")  # fmt: skip
    assert any(h.get("auth-token") == "second" for _, h in provider.requests)

    # A wrong token: refused, Degraded with the reason, the static fallback in use.
    mount_secret(credentials, "emaps", {"token": "wrong"})

    def degraded(why: str) -> dict[str, Any] | None:
        found = k8s.condition(kube.custom("signalsource", "creds"), "Degraded")
        return found if found and found["status"] == "True" and why in found["message"] else None

    found = wait_for(lambda: degraded("emaps: Credentials"), 30, "Degraded: credentials refused")
    assert found["reason"] == "Fallback"
    got = reading(kube, "creds", "FR")
    assert (got["value"], got["source"], got["reason"]) == (300, "static", "Fallback")
    assert "answered 401 (credentials refused)" in got["message"]
    wait_for(lambda: fr_carbon(kube) == (300, "SignalSource creds/static"), 30,
             "the FR pool planned with the fallback")  # fmt: skip
    attempts = (
        'greenplace_signal_attempts_total{kind="carbon_intensity",reason="Credentials",'
        'source="emaps",subject="FR"}'
    )
    assert attempts in operator.metrics()

    # The key gone from the Secret: the status says which Secret, which key, which path.
    mount_secret(credentials, "emaps", {"other": "x"})
    path = credentials / "emaps" / "token"
    wait_for(lambda: f"no file {path}" in reading(kube, "creds", "FR").get("message", ""), 30,
             "the missing file in the reading")  # fmt: skip
    got = reading(kube, "creds", "FR")
    assert f"Secret {OWN}/emaps (key token)" in got["message"]
    assert (got["value"], got["reason"]) == (300, "Fallback")
    assert degraded("emaps: Credentials") is not None

    # Back to a good token: Fresh again, still the same SignalSource generation.
    mount_secret(credentials, "emaps", {"token": "second"})
    wait_for(lambda: fresh(43.0), 30, "Fresh again")
    assert kube.custom("signalsource", "creds")["metadata"]["generation"] == generation
    assert kube.kubectl("delete", "signalsource", "creds").returncode == 0


def test_a_secret_of_another_namespace_is_refused_with_the_reason(
    kube: Kube, operator: RunningOperator, provider: FakeProvider, credentials: pathlib.Path
) -> None:
    # A same-named Secret of the operator's namespace is mounted and valid: it must not be used
    # for a ref to team-a/emaps.
    mount_secret(credentials, "emaps", {"token": "second"})
    provider.em_tokens = {"second": 43.0}
    result = kube.apply(k8s.signal_source("elsewhere", [emaps(provider, "team-a")], ["DE"]))
    assert result.returncode == 0, result.stderr

    def refused() -> dict[str, Any] | None:
        got = reading(kube, "elsewhere", "DE")
        return got if "must be in the operator's own namespace" in got.get("message", "") else None

    got = wait_for(refused, 30, "the namespace refusal in the reading")
    assert got.get("value") is None and got["reason"] == "Unavailable"
    assert "Secret team-a/emaps (key token)" in got["message"]
    assert f"set credentialsSecretRef.namespace to {OWN}" in got["message"]
    found = k8s.condition(kube.custom("signalsource", "elsewhere"), "Degraded")
    assert found is not None and found["status"] == "True" and found["reason"] == "Unavailable"
    assert "emaps: Credentials" in found["message"]
    assert kube.kubectl("delete", "signalsource", "elsewhere").returncode == 0
