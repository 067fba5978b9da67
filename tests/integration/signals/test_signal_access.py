"""A hostile SignalSource on the real API server and operator: refused, never read, never echoed.

The operator runs with one trace directory and no ``allow_signal_hosts`` (the defaults of
``--allow-signal-hosts`` and ``--allow-insecure-signal-http``). A SignalSource names a secret
file outside the directory, a symlink inside it that points at that file, ``/etc/shadow``, a
Prometheus on 127.0.0.1 over http and an Electricity Maps override on 127.0.0.1 over https, and
falls back on a static value. Its status says each source was refused (``SourceNotAllowed``),
the fallback is used and planned with, nothing of the files appears anywhere in the status and
the local server never saw a request. Another SignalSource reading a trace inside the directory
is Fresh meanwhile, and a SignalSource with only a refused source is Unavailable, not a crash.
"""

from __future__ import annotations

import datetime
import json
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, RunningOperator, run_operator, wait_for
from tests.providers import FakeProvider, serve

pytestmark = pytest.mark.cluster

SECRET = "root:$6$Zm9vYmFy$hunter2hunter2:19000:0:99999:7:::"
FR_POOL = "gcp-europe-west9-a100"  # the example fleet's pool in grid zone FR


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """``traces/`` (the allowed directory) and ``etc/`` beside it, with a secret file."""
    root = tmp_path_factory.mktemp("signal-files")
    (root / "etc").mkdir()
    (root / "etc" / "shadow").write_text(f"{SECRET}\n{SECRET},1\n")
    traces = root / "traces"
    traces.mkdir()
    (traces / "escape.csv").symlink_to(root / "etc" / "shadow")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    rows = [(now - datetime.timedelta(minutes=10), 77.0), (now + datetime.timedelta(hours=2), 78.0)]
    (traces / "fr.csv").write_text(
        "Time,gCO2e/kWh\n" + "".join(f"{t:%Y-%m-%d %H:%M:%S},{v}\n" for t, v in rows)
    )
    return root


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with serve() as server:
        server.live = True
        yield server


@pytest.fixture(scope="module")
def operator(kube: Kube, files: pathlib.Path) -> Iterator[RunningOperator]:
    """The real operator with a trace directory and nothing else allowed."""
    with run_operator(
        kube, trace_directories=(files / "traces",), resync_seconds=1, signal_memory_seconds=1
    ) as running:
        yield running


def hostile_sources(files: pathlib.Path, provider: FakeProvider) -> list[dict[str, Any]]:
    port = provider.server_address[1]
    return [
        {"name": "outside", "kind": "Trace", "trace": {"files": {"FR": f"{files}/etc/shadow"}}},
        {"name": "escape", "kind": "Trace", "trace": {"files": {"FR": "escape.csv"}}},
        {"name": "dotdot", "kind": "Trace", "trace": {"files": {"FR": "../etc/shadow"}}},
        {"name": "shadow", "kind": "Trace", "trace": {"files": {"FR": "/etc/shadow"}}},
        {"name": "prom", "kind": "Prometheus", "timeout": "1s",
         "prometheus": {"url": f"http://127.0.0.1:{port}", "query": "up"}},
        {"name": "emaps", "kind": "ElectricityMaps", "timeout": "1s",
         "electricityMaps": {"url": f"https://127.0.0.1:{port}"}},
        {"name": "static", "kind": "Static", "static": {"values": {"FR": 300}}},
    ]  # fmt: skip


REFUSED = ("outside", "escape", "dotdot", "shadow", "prom", "emaps")


def reading(kube: Kube, name: str) -> dict[str, Any]:
    readings = (kube.custom("signalsource", name).get("status") or {}).get("readings", [])
    return readings[0] if readings else {}


def test_a_hostile_signal_source_is_refused_and_reads_nothing(
    kube: Kube,
    operator: RunningOperator,
    files: pathlib.Path,
    provider: FakeProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="greenplace")  # the operator runs in this process
    honest = {"name": "fr", "kind": "Trace", "trace": {"files": {"FR": "fr.csv"}}}
    assert kube.apply(k8s.signal_source("honest", [honest], ["FR"])).returncode == 0
    assert (
        kube.apply(
            k8s.signal_source("hostile", hostile_sources(files, provider), ["FR"])
        ).returncode
        == 0
    )
    only = [hostile_sources(files, provider)[0]]
    assert kube.apply(k8s.signal_source("refused-only", only, ["DE"])).returncode == 0

    got = wait_for(lambda: reading(kube, "hostile") or None, 30, "the hostile source's reading")
    assert (got["value"], got["source"], got["reason"]) == (300, "static", "Fallback")
    for name in REFUSED:
        assert f"{name}: SourceNotAllowed" in got["message"], got["message"]
    assert "outside the trace directories" in got["message"]
    assert "plain http is not allowed" in got["message"]
    assert "127.0.0.1 is a loopback address" in got["message"]
    degraded = k8s.condition(kube.custom("signalsource", "hostile"), "Degraded")
    assert degraded is not None and degraded["status"] == "True"
    assert degraded["reason"] == "Fallback" and "outside: SourceNotAllowed" in degraded["message"]

    # Nothing of any file, anywhere in the statuses; no request reached the local server.
    everything = kube.kubectl("get", "signalsources", "-o", "json").stdout
    assert "hunter2" not in everything and "$6$" not in everything
    try:  # the operator may run as root here, and still must not have read /etc/shadow
        lines = pathlib.Path("/etc/shadow").read_text().splitlines()[:4]
    except OSError:
        lines = []
    assert not [line for line in lines if len(line) > 8 and line in everything]
    assert provider.requests == []

    # The other SignalSources: one inside the directory is Fresh, one refused alone is
    # Unavailable, and the pool is planned with the hostile source's fallback.
    fresh = wait_for(lambda: reading(kube, "honest").get("reason") == "Fresh", 30, "honest")
    assert fresh and reading(kube, "honest")["value"] == 77
    alone = wait_for(lambda: reading(kube, "refused-only") or None, 30, "refused-only reading")
    assert alone.get("value") is None and alone["reason"] == "Unavailable"
    assert "outside: SourceNotAllowed" in alone["message"]
    ready = k8s.condition(kube.custom("signalsource", "refused-only"), "Ready")
    assert ready is not None and ready["status"] == "False"
    wait_for(
        lambda: (
            k8s.pool_carbon(kube.custom("gpupool", FR_POOL)) in {(77, "SignalSource honest/fr")}
        ),
        30,
        "the FR pool planned with the first SignalSource by name (honest)",
    )
    metrics = operator.metrics()
    assert (
        'greenplace_signal_attempts_total{kind="carbon_intensity",reason="SourceNotAllowed",'
        'source="shadow",subject="FR"}' in metrics
    )
    logged = [r.getMessage() for r in caplog.records]
    for name in REFUSED:
        assert any(f"SignalSource hostile: source {name} refused" in m for m in logged), logged
    assert not [m for m in logged if "hunter2" in m]
    for name in ("honest", "hostile", "refused-only"):
        assert kube.kubectl("delete", "signalsource", name).returncode == 0


def test_status_of_a_refused_source_is_json_without_the_url_credentials(
    kube: Kube, operator: RunningOperator
) -> None:
    prom = {
        "name": "prom", "kind": "Prometheus", "timeout": "1s",
        "prometheus": {"url": "https://admin:hunter2@prometheus.example.org", "query": "up"},
    }  # fmt: skip
    assert kube.apply(k8s.signal_source("with-password", [prom], ["GB"])).returncode == 0
    got = wait_for(lambda: reading(kube, "with-password") or None, 30, "the reading")
    assert got["reason"] == "Unavailable" and "credentials in the URL" in got["message"]
    body = kube.custom("signalsource", "with-password")
    assert "hunter2" not in json.dumps(body["status"])
    assert kube.kubectl("delete", "signalsource", "with-password").returncode == 0
