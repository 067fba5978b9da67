"""The chart's default gate, the MutatingAdmissionPolicy, installed by the real helm, and the
upgrade from the webhook to it.

Why this module exists: ``gate.mode=policy`` is the chart's default on Kubernetes 1.36+, and
docs/install.md tells users with the webhook to ``helm upgrade --set gate.mode=policy``. This
installs the chart with ``helm install`` (webhook mode, the webhook served out of cluster by the
operator with the chart's own certificate), gates a pod through it, then upgrades to the
policy (``helm upgrade``): the release then holds no MutatingWebhookConfiguration and no
certificate Secret, the pod gated before keeps its gate, and with the operator stopped the API
server alone gates new GPU pods with the chart's policy.
"""

from __future__ import annotations

import base64
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from devcluster import cluster
from greenplace.controller import podspec
from tests import kubeobjects as k8s
from tests.e2e import test_chart as chart
from tests.integration import conftest as integration

pytestmark = pytest.mark.cluster
ADMISSION_POLICIES = False  # the chart installs its own
kube = integration.kube

NAMESPACE, FULLNAME = chart.NAMESPACE, chart.FULLNAME


def helm(kube: integration.Kube, *args: str) -> None:
    result = chart.helm(*args, f"--namespace={NAMESPACE}", f"--kubeconfig={kube.kubeconfig}")
    assert result.returncode == 0, result.stdout + result.stderr


def values(port: int, mode: str) -> list[str]:
    return [f"--set=gate.mode={mode}", f"--set=webhook.url=https://127.0.0.1:{port}",
            f"--set=webhook.port={port}", "--set=crds.install=false",  # the fixture applied them
            "--set=replicaCount=1"]  # fmt: skip


@pytest.fixture(scope="module")
def port() -> int:
    (free,) = cluster.free_ports(1)
    return free


@pytest.fixture(scope="module")
def webhook_served(
    kube: integration.Kube, port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[integration.OperatorProcess]:
    """``helm install`` with gate.mode=webhook, and the operator serving that webhook with the
    chart's certificate (its configuration is the chart's: no --out-of-cluster)."""
    helm(kube, "install", chart.RELEASE, str(chart.CHART), "--create-namespace",
         *values(port, "webhook"))  # fmt: skip
    tmp = tmp_path_factory.mktemp("chart-gate")
    certs = tmp / "webhook"
    certs.mkdir()
    secret = kube.core.read_namespaced_secret(f"{FULLNAME}-webhook-tls", NAMESPACE)
    for key in ("ca.crt", "tls.crt", "tls.key"):
        (certs / key).write_bytes(base64.b64decode(secret.data[key]))
    (metrics_port,) = cluster.free_ports(1)
    running = integration.OperatorProcess(kube, tmp / "operator.log", port, metrics_port)
    with running.log.open("wb") as out:
        running.process = subprocess.Popen(
            [sys.executable, "-m", "greenplace.cli.main", "operate",
             f"--kubeconfig={kube.kubeconfig}", "--webhook-listen=127.0.0.1",
             f"--webhook-port={port}", f"--webhook-cert-dir={certs}",
             f"--metrics-port={metrics_port}", f"--lease-namespace={NAMESPACE}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=pathlib.Path(chart.ROOT),
        )  # fmt: skip
    process = running.process
    integration.wait_for(lambda: cluster.port_open(port) or process.poll() is not None, 60,
                         "the operator's webhook")  # fmt: skip
    assert process.poll() is None, running.log.read_text()[-3000:]
    yield running
    running.stop()
    assert "Traceback" not in running.log.read_text(errors="replace")


def registration(kube: integration.Kube) -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api(kube.api)


def mutating(kube: integration.Kube) -> dict[str, list[str]]:
    api = registration(kube)
    return {
        "webhooks": [w.metadata.name for w in api.list_mutating_webhook_configuration().items],
        "policies": [p.metadata.name for p in api.list_mutating_admission_policy().items],
        "bindings": [b.metadata.name for b in api.list_mutating_admission_policy_binding().items],
    }


def created(kube: integration.Kube, body: dict[str, Any], *flags: str) -> dict[str, Any] | None:
    result = kube.kubectl("create", "-f", "-", "-o", "json", *flags, stdin=k8s.manifest(body))
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_upgrading_from_the_webhook_to_the_policy_keeps_pods_gated(
    kube: integration.Kube, port: int, webhook_served: integration.OperatorProcess
) -> None:
    assert mutating(kube) == {"webhooks": [FULLNAME], "policies": [], "bindings": []}
    ns = chart.governed_with_policy(kube)
    before = integration.wait_for(
        lambda: created(kube, k8s.gpu_pod(ns, "before")), 30, "admission to see the policy"
    )
    assert podspec.is_gated(before), "gated by the chart's webhook"

    helm(kube, "upgrade", chart.RELEASE, str(chart.CHART), *values(port, "policy"))
    gate = f"{FULLNAME}-gate"
    assert mutating(kube) == {"webhooks": [], "policies": [gate], "bindings": [gate]}
    secrets = [s.metadata.name for s in kube.core.list_namespaced_secret(NAMESPACE).items]
    assert f"{FULLNAME}-webhook-tls" not in secrets, "no certificate is left"
    assert podspec.is_gated(kube.pod(ns, "before")), "a pod gated before keeps its gate"

    webhook_served.stop()  # nothing of greenplace runs now
    probe = k8s.gpu_pod(ns, "probe")
    integration.wait_for(lambda: podspec.is_gated(created(kube, probe, "--dry-run=server") or {}),
                         30, "the API server to gate with the chart's policy")  # fmt: skip
    for name, limits in {"after-gpu": {"nvidia.com/gpu": 2}, "after-amd": {"amd.com/gpu": 1},
                         "after-mig": {"nvidia.com/mig-1g.10gb": 1}}.items():  # fmt: skip
        after = created(kube, k8s.pod(ns, name, limits))
        assert after is not None and podspec.is_gated(after), name
    cpu = created(kube, k8s.pod(ns, "after-cpu", {"cpu": "10m"}))
    assert cpu is not None and not podspec.is_gated(cpu), "a pod without GPU is not gated"
