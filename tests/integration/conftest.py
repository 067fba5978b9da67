"""Fixtures for tests against a real control plane and the real operator.

The control plane is started per test module (about 3 s with cached binaries), so each module
has a fleet and webhook configuration of its own. Set GREENPLACE_KUBECONFIG to run the same tests
against an existing cluster instead (kwok is then started against it for the fake GPU nodes).

Every module runs with the chart's admission policies installed, as ``make run`` and a real
cluster do (``devcluster.admission``, naming the identity the test operator runs as), unless
it sets ``ADMISSION_POLICIES = False`` (the chart's own tests install the chart's). The API
server sees a new PlacementPolicy through its own informer a moment after it is created, so
``Kube.kubectl`` retries a create or apply that admission refused for want of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes import client, config

from devcluster import admission, build, cluster, fleet
from greenplace.controller import handlers

ROOT = pathlib.Path(__file__).resolve().parents[2]
# What admission says while it cannot see a governed namespace's PlacementPolicy yet: just
# created (its informer lags), or the API server just restarted (CRDs not discovered yet).
NO_POLICY_YET = (
    "no params found for policy binding",
    "failed to find resource referenced by paramKind",
)


class Kube:
    """kubectl and the Python client bound to one cluster."""

    def __init__(
        self, kubeconfig: pathlib.Path, running: cluster.LocalCluster | cluster.ExistingCluster
    ) -> None:
        self.kubeconfig = kubeconfig
        self.cluster = running  # fault tests restart a LocalCluster's API server
        self.api = config.new_client_from_config(str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self._kubectl = str(build.ensure_built(log=False)["kubectl"])

    def kubectl(
        self, *args: str, stdin: str | None = None, wait_for_policy: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl; a create or apply refused because admission does not see the namespace's
        PlacementPolicy yet (``NO_POLICY_YET``) is retried for up to 30 s (``wait_for_policy``)."""
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(
                [self._kubectl, f"--kubeconfig={self.kubeconfig}", *args],
                input=stdin, capture_output=True, text=True, check=False,
            )  # fmt: skip
            unseen = any(m in result.stderr for m in NO_POLICY_YET) and args[:1] in (
                ("create",),
                ("apply",),
            )
            if not (wait_for_policy and unseen and time.monotonic() < deadline):
                return result
            time.sleep(0.3)

    def apply(self, manifest: str) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", stdin=manifest)

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self.core.read_namespaced_pod(name, namespace)
        result: dict[str, Any] = self.api.sanitize_for_serialization(pod)
        return result

    def namespace(self, governed: bool = True) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        labels = {"greenplace.dev/governed": "true"} if governed else {}
        self.core.create_namespace({"metadata": {"name": name, "labels": labels}})
        return name


def wait_for(predicate: Callable[[], Any], timeout_s: float = 30, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def kube(request: pytest.FixtureRequest) -> Iterator[Kube]:
    """A control plane with greenplace's CRDs, the example fleet (nodes + GpuPools) and the
    chart's admission policies (unless the module sets ``ADMISSION_POLICIES = False``)."""
    with cluster.cluster_from_env() as running:
        k = Kube(running.kubeconfig, running)
        result = k.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        assert result.returncode == 0, result.stderr
        result = k.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        assert result.returncode == 0, result.stderr
        fleet.apply_fleet(k.api, fleet.load_fleet(ROOT / "examples" / "fleet.yaml"))
        if getattr(request.module, "ADMISSION_POLICIES", True):
            admission.install(k.kubeconfig, admission.username(k.kubeconfig))
        yield k


@dataclasses.dataclass(frozen=True)
class RunningOperator:
    runner: KopfRunner
    metrics_url: str

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())


@pytest.fixture(scope="module")
def operator(kube: Kube) -> Iterator[RunningOperator]:
    """The real operator (kopf, webhook server and placement loop) in a thread."""
    with run_operator(kube) as running:
        yield running


@contextlib.contextmanager
def run_operator(kube: Kube, **config: Any) -> Iterator[RunningOperator]:
    """The real operator in a thread; ``config`` overrides fields of its ``OperatorConfig``."""
    port, metrics_port = cluster.free_ports(2)
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(kube.kubeconfig)
    settings_config = handlers.OperatorConfig(
        **{
            "kubeconfig": str(kube.kubeconfig),
            "webhook_port": port,
            "metrics_port": metrics_port,
            "resync_seconds": 5,
            "report_seconds": 2,
            **config,
        }
    )
    registry = kopf.OperatorRegistry()
    handlers.register(registry, settings_config)
    runner = KopfRunner(
        ["run", "-A", "--standalone"],
        registry=registry,
        settings=handlers.settings_for(settings_config),
    )
    with runner:
        wait_for(lambda: cluster.port_open(port) and _webhook_registered(kube), 60, "webhook")
        yield RunningOperator(runner, f"http://127.0.0.1:{metrics_port}/metrics")
    if previous is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = previous
    assert runner.exception is None, runner.exception
    assert "Traceback" not in runner.output, runner.output[-3000:]


def _webhook_registered(kube: Kube) -> bool:
    result = kube.kubectl("get", "mutatingwebhookconfiguration", "greenplace.dev", "-o", "json")
    return result.returncode == 0 and bool(json.loads(result.stdout).get("webhooks"))


class OperatorProcess:
    """``greenplace operate`` in its own process, so a test can crash it and start it again."""

    def __init__(self, kube: Kube, log: pathlib.Path, port: int) -> None:
        self.kube, self.log, self.port = kube, log, port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *args: str, kubeconfig: pathlib.Path | None = None, **env: str) -> None:
        """Start it (``args`` are extra ``greenplace operate`` flags); return once it serves."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "greenplace.cli.main", "operate",
                 f"--kubeconfig={kubeconfig or self.kube.kubeconfig}", "--out-of-cluster",
                 f"--webhook-port={self.port}",
                 # Like a pod restarted under the same name: it takes its own Lease back at once.
                 "--identity=operator-process", *args],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env},
            )  # fmt: skip
        wait_for(lambda: cluster.port_open(self.port) or self.process.poll() is not None, 60,
                 "operator webhook")  # fmt: skip
        assert self.process.poll() is None, self.log.read_text()[-3000:]

    def kill(self) -> None:
        """SIGKILL: no cleanup, the Lease is not released."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def wait_exit(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def operator_process(kube: Kube, tmp_path: pathlib.Path) -> Iterator[OperatorProcess]:
    (port,) = cluster.free_ports(1)
    process = OperatorProcess(kube, tmp_path / "operator.log", port)
    yield process
    process.stop()
