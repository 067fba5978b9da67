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
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import kopf
import pytest
from kopf.testing import KopfRunner
from kubernetes import client, config

from devcluster import admission, build, cluster, fleet
from greenplace.controller import handlers
from tests import kubeobjects

ROOT = pathlib.Path(__file__).resolve().parents[2]
# What admission says while it cannot see a governed namespace's PlacementPolicy yet: just
# created (its informer lags), or the API server just restarted (CRDs not discovered yet).
NO_POLICY_YET = (
    "no params found for policy binding",
    "failed to find resource referenced by paramKind",
)
# Operator settings for feeds on 127.0.0.1 over plain http (the tests' fake providers and
# Prometheus), allowed explicitly as an operator would; by default a SignalSource may not.
LOCAL_FEEDS: dict[str, Any] = {
    "allow_signal_hosts": ("127.0.0.1",),
    "allow_insecure_signal_http": True,
}


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

    def apply(self, manifest: str | Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
        """``kubectl apply`` of a manifest's text or of one object (``tests.kubeobjects``)."""
        text = manifest if isinstance(manifest, str) else kubeobjects.manifest(manifest)
        return self.kubectl("apply", "-f", "-", stdin=text)

    def apply_ok(self, manifest: str | Mapping[str, Any]) -> None:
        result = self.apply(manifest)
        assert result.returncode == 0, result.stderr

    def grant_edit(self, namespace: str, user: str) -> None:
        """Give ``user`` Kubernetes' ``edit`` role in ``namespace``: a tenant, as tests play one."""
        result = self.kubectl("create", "rolebinding", "tenant-edit", "--clusterrole=edit",
                              f"--user={user}", "-n", namespace)  # fmt: skip
        assert result.returncode == 0, result.stderr

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod = self.core.read_namespaced_pod(name, namespace)
        result: dict[str, Any] = self.api.sanitize_for_serialization(pod)
        return result

    def custom(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """A greenplace object (or any kind kubectl knows) as it is now."""
        where = ["-n", namespace] if namespace else []
        result = self.kubectl("get", kind, name, *where, "-o", "json")
        assert result.returncode == 0, result.stderr
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def bound(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The pod once kube-scheduler bound it to a node, else None."""
        pod = self.pod(namespace, name)
        return pod if pod["spec"].get("nodeName") else None

    def held_reason(self, namespace: str, name: str) -> str | None:
        """Why greenplace holds the pod (its ``greenplace.dev/held`` annotation), if it does."""
        pod = self.pod(namespace, name)
        return (pod["metadata"].get("annotations") or {}).get("greenplace.dev/held")

    def node_pool(self, node: str) -> str:
        """The GpuPool a node belongs to (its ``greenplace.dev/pool`` label)."""
        return str(self.core.read_node(node).metadata.labels["greenplace.dev/pool"])

    def placed_pool(self, namespace: str, name: str) -> str | None:
        """The pool of the node the pod is bound to, once bound."""
        found = self.bound(namespace, name)
        return None if found is None else self.node_pool(found["spec"]["nodeName"])

    def events(self, namespace: str, name: str, reason: str) -> list[Any]:
        """Wait for Events of ``reason`` about a pod: the operator posts them after its patch."""

        def matching() -> list[Any]:
            events = self.core.list_namespaced_event(
                namespace, field_selector=f"involvedObject.name={name}"
            ).items
            return [e for e in events if e.reason == reason]

        found: list[Any] = wait_for(matching, 30, f"a {reason} Event for {namespace}/{name}")
        return found

    def namespace(self, governed: bool = True) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        labels = {"greenplace.dev/governed": "true"} if governed else {}
        self.core.create_namespace({"metadata": {"name": name, "labels": labels}})
        return name


def wait_for_cycles(
    metrics: Callable[[], str], more: int = 2, since: int | None = None, timeout_s: float = 60
) -> None:
    """Wait until ``more`` placement cycles completed after this call, or after the count
    ``since`` (``kubeobjects.cycles``; ``metrics`` reads the operator's /metrics page): what
    has not happened by then did not happen in those cycles. Two by default, because the cycle
    running at the start may have begun before it."""
    start = kubeobjects.cycles(metrics()) if since is None else since
    wait_for(lambda: kubeobjects.cycles(metrics()) >= start + more, timeout_s,
             f"{more} more placement cycles after the first {start}")  # fmt: skip


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
            "manage_webhook_configuration": True,  # out of cluster: the webhook is this process
            # These modules prove the webhook path; test_gate_policy*.py the policy path.
            "gate": "webhook",
            # Every module's operator is the same operator restarted: one Lease, one record key
            # (even when a module gives it an own namespace that does not exist yet).
            "lease_namespace": "default",
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
    """``greenplace operate`` in its own process, so a test can crash it and start it again.
    It serves /metrics on ``metrics_port`` (``metrics``)."""

    def __init__(self, kube: Kube, log: pathlib.Path, port: int, metrics_port: int) -> None:
        self.kube, self.log, self.port, self.metrics_port = kube, log, port, metrics_port
        self.process: subprocess.Popen[bytes] | None = None

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    def start(self, *args: str, kubeconfig: pathlib.Path | None = None, **env: str) -> None:
        """Start it (``args`` are extra ``greenplace operate`` flags); return once it serves."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "greenplace.cli.main", "operate",
                 f"--kubeconfig={kubeconfig or self.kube.kubeconfig}", "--out-of-cluster",
                 f"--webhook-port={self.port}", f"--metrics-port={self.metrics_port}",
                 "--gate=webhook",  # the modules' subject; a later --gate in args wins
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
    port, metrics_port = cluster.free_ports(2)
    process = OperatorProcess(kube, tmp_path / "operator.log", port, metrics_port)
    yield process
    process.stop()


@pytest.fixture
def replicas(kube: Kube, tmp_path: pathlib.Path) -> Iterator[tuple[OperatorProcess, ...]]:
    """Two operator processes on one control plane, not started: the tests start them."""
    ports = cluster.free_ports(4)
    pair = tuple(
        OperatorProcess(kube, tmp_path / f"r{i}.log", ports[2 * i], ports[2 * i + 1])
        for i in range(2)
    )
    yield pair
    for replica in pair:
        replica.stop()
