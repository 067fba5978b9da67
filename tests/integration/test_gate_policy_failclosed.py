"""The gate policy on the real API server: the switch from the webhook, and fail-closed with no
webhook at all.

Why this module exists: on Kubernetes 1.36+ the API server gates governed GPU pods itself
(``gatepolicy``), so the webhook, its certificate and its outage go away. This proves, with the
chart's ValidatingAdmissionPolicies installed (as ``make run`` and the chart do) and a tenant
with ``edit`` in a France-only namespace:

1. the upgrade: ``greenplace operate --out-of-cluster --gate=webhook`` gates with the webhook;
   restarted with the default ``--gate=auto`` it installs the policy and deletes the webhook
   configuration, new pods are gated at creation and still placed in France;
2. fail-closed: with the operator stopped and no MutatingWebhookConfiguration in the cluster,
   every governed GPU pod (NVIDIA, MIG, AMD, Intel, DRA, in an init container) is still gated by
   the API server, kube-scheduler reports it SchedulingGated, and the tenant can neither remove
   the gate nor bind a pod with nodeName; no governed pod is bound outside France;
3. the chart's policy with Kueue (pods carrying a Kueue record are left to the webhook): with
   that webhook absent, a record-carrying pod is admitted ungated only towards an allowed pool.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client

from devcluster import admission, cluster
from greenplace.controller import gatepolicy, kueue, podspec, webhook
from tests import kubeobjects as k8s
from tests.integration import conftest as integration
from tests.integration.conftest import Kube, wait_for

pytestmark = pytest.mark.cluster

TENANT = "gate-tenant"
AS_TENANT = f"--as={TENANT}"
FR_POOLS = {"gcp-europe-west9-a100", "ovh-gra-h100"}
OUTSIDE_FR = "stackit-eu01-h100"


@pytest.fixture(scope="module")
def running(
    kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[integration.OperatorProcess]:
    port, metrics_port = cluster.free_ports(2)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = integration.OperatorProcess(kube, log, port, metrics_port)
    yield process
    process.stop()
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-4000:]


@pytest.fixture(scope="module")
def tenant_ns(kube: Kube) -> str:
    ns = kube.namespace()
    kube.apply_ok(k8s.policy(ns, "fr-only", ["FR"]))
    kube.grant_edit(ns, TENANT)
    return ns


def registration(kube: Kube) -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api(kube.api)


def webhook_names(kube: Kube) -> list[str]:
    return [w.metadata.name for w in registration(kube).list_mutating_webhook_configuration().items]


def gate_policies(kube: Kube) -> list[str]:
    return [p.metadata.name for p in registration(kube).list_mutating_admission_policy().items]


def create(
    kube: Kube, body: Mapping[str, Any], *flags: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """Create as the tenant; the pod as admission left it (the response), or None if refused."""
    result = kube.kubectl("create", "-f", "-", "-o", "json", AS_TENANT, *flags,
                          stdin=k8s.manifest(body))  # fmt: skip
    return result, (json.loads(result.stdout) if result.returncode == 0 else None)


def allowed(kube: Kube, ns: str) -> list[str]:
    got = kube.kubectl("get", "placementpolicy", "fr-only", "-n", ns, "-o",
                       "jsonpath={.status.allowedPools}").stdout  # fmt: skip
    return sorted(json.loads(got)) if got else []


def test_switching_from_the_webhook_to_the_policy_keeps_pods_gated(
    kube: Kube, tenant_ns: str, running: integration.OperatorProcess
) -> None:
    running.start()  # --gate=webhook (the fixtures' default)
    wait_for(lambda: webhook_names(kube) == [webhook.CONFIGURATION_NAME], 30, "the webhook")
    assert gatepolicy.NAME not in gate_policies(kube)
    wait_for(lambda: allowed(kube, tenant_ns) == sorted(FR_POOLS), 30, "allowed pools")
    first = k8s.pod(tenant_ns, "by-webhook", {"nvidia.com/gpu": 1})
    _, before = wait_for(lambda: _created(kube, first), 30, "admission")
    assert podspec.is_gated(before), "the webhook gated it"
    running.stop()

    running.start("--gate=auto")  # the API server is 1.37: the policy
    wait_for(lambda: webhook_names(kube) == [], 30, "the webhook configuration to be deleted")
    assert gatepolicy.NAME in gate_policies(kube)
    # The API server sees the new policy through its informer a moment after it is created.
    probe = k8s.pod(tenant_ns, "probe", {"nvidia.com/gpu": 1})
    wait_for(lambda: podspec.is_gated(create(kube, probe, "--dry-run=server")[1] or {}), 30,
             "the API server to gate with the policy")  # fmt: skip
    result, after = create(kube, k8s.pod(tenant_ns, "by-policy", {"nvidia.com/gpu": 1}))
    assert after is not None, result.stderr
    assert podspec.is_gated(after), "gated at creation by the API server, no webhook called"
    for name in ("by-webhook", "by-policy"):  # both placed by the operator, in France
        pool = wait_for(lambda n=name: kube.placed_pool(tenant_ns, n), 60, f"{name} bound")
        assert pool in FR_POOLS


def _created(kube: Kube, body: Mapping[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    result, pod = create(kube, body)
    return None if pod is None else (result, pod)


GPU_PODS = {
    "down-gpu": {"limits": {"nvidia.com/gpu": 1}},
    "down-mig": {"limits": {"nvidia.com/mig-1g.10gb": 1}},
    "down-amd": {"limits": {"amd.com/gpu": 1}},
    "down-intel": {"limits": {"gpu.intel.com/xe": 1}},
    "down-dra": {"resourceClaims": [{"name": "g", "resourceClaimTemplateName": "one-gpu"}]},
    "down-init": {"initContainers": [{"name": "init", "image": "registry.k8s.io/pause:3.10",
                                      "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
}  # fmt: skip


def test_with_the_operator_down_and_no_webhook_the_api_server_gates(
    kube: Kube, tenant_ns: str, running: integration.OperatorProcess
) -> None:
    running.stop()
    assert webhook_names(kube) == [], "no MutatingWebhookConfiguration at all"
    for name, fields in GPU_PODS.items():
        limits = fields.get("limits")
        spec = {k: v for k, v in fields.items() if k != "limits"}
        result, pod = create(kube, k8s.pod(tenant_ns, name, limits, **spec))
        assert pod is not None, f"{name}: {result.stderr}"
        assert podspec.is_gated(pod), f"{name} created ungated with the operator down"
    for name in GPU_PODS:  # kube-scheduler sees the gate: it says so, it binds nothing
        wait_for(lambda n=name: _scheduling_gated(kube, tenant_ns, n), 30, f"{name} held")
    # The tenant cannot take the gate off, nor skip the scheduler.
    removed = kube.kubectl("patch", "pod", "down-gpu", "-n", tenant_ns, AS_TENANT, "--type=json",
                           "-p", '[{"op": "remove", "path": "/spec/schedulingGates"}]')  # fmt: skip
    # Refused by pod-guards (only the operator) or sovereignty (released unrestricted), whichever
    # the API server evaluates first.
    assert removed.returncode != 0 and "ValidatingAdmissionPolicy" in removed.stderr
    assert podspec.is_gated(kube.pod(tenant_ns, "down-gpu"))
    bound = k8s.pod(tenant_ns, "down-bound", {"nvidia.com/gpu": 1}, nodeName="anywhere")
    result, pod = create(kube, bound)
    refusal = " ".join(result.stderr.split())
    # A bound pod cannot carry the gate: refused by pod-guards (no spec.nodeName) or sovereignty
    # (released unrestricted), whichever the API server evaluates first.
    assert pod is None, "a tenant bound a GPU pod to a node of its choosing"
    assert "spec.nodeName is refused" in refusal or "must have a required node affinity" in refusal
    _no_pod_outside_france(kube, tenant_ns)


def _scheduling_gated(kube: Kube, ns: str, name: str) -> bool:
    pod = kube.pod(ns, name)
    scheduled = k8s.condition(pod, "PodScheduled")
    return (
        not pod["spec"].get("nodeName")
        and scheduled is not None
        and scheduled.get("reason") == "SchedulingGated"
    )


def _no_pod_outside_france(kube: Kube, ns: str) -> None:
    for pod in kube.core.list_namespaced_pod(ns).items:
        body = kube.api.sanitize_for_serialization(pod)
        if body["spec"].get("nodeName"):
            assert kube.node_pool(body["spec"]["nodeName"]) in FR_POOLS, body["metadata"]["name"]
        else:
            assert podspec.is_gated(body), body["metadata"]["name"]


def record_pod(ns: str, name: str, pool: str) -> dict[str, Any]:
    record = json.dumps({"pool": pool})
    return k8s.pod(ns, name, {"nvidia.com/gpu": 1}, annotations={kueue.RECORD_ANNOTATION: record},
                   nodeSelector={podspec.POOL_LABEL: pool})  # fmt: skip


def test_the_charts_kueue_policy_without_its_webhook_keeps_record_pods_in_allowed_pools(
    kube: Kube, tenant_ns: str, running: integration.OperatorProcess
) -> None:
    """The chart's policy with kueue.enabled leaves record-carrying pods to the webhook; with the
    webhook absent (deleted, or never installed), the sovereignty policy alone decides."""
    assert running.process is None or running.process.poll() is not None, "operator stopped"
    admission.install(kube.kubeconfig, admission.username(kube.kubeconfig), gate=True, kueue=True)
    registration(kube).delete_mutating_admission_policy_binding(gatepolicy.NAME)
    registration(kube).delete_mutating_admission_policy(gatepolicy.NAME)
    assert gate_policies(kube) == ["greenplace-gate"] and webhook_names(kube) == []
    probe = record_pod(tenant_ns, "probe-record", "ovh-gra-h100")
    wait_for(lambda: not podspec.is_gated(create(kube, probe, "--dry-run=server")[1] or
                                          {"spec": {"schedulingGates": [{"name": podspec.GATE}]}}),
             30, "the API server to use the chart's policy only")  # fmt: skip
    # A pod without a record is still gated by the chart's policy.
    result, plain = create(kube, k8s.pod(tenant_ns, "chart-plain", {"nvidia.com/gpu": 1}))
    assert plain is not None and podspec.is_gated(plain), result.stderr
    # A record towards a pool outside the namespace's policy is refused ...
    result, outside = create(kube, record_pod(tenant_ns, "record-outside", OUTSIDE_FR))
    assert outside is None and "must have a required node affinity" in " ".join(
        result.stderr.split()
    )
    # ... towards an allowed pool it is admitted ungated, and kube-scheduler binds it there.
    result, inside = create(kube, record_pod(tenant_ns, "record-inside", "ovh-gra-h100"))
    assert inside is not None and not podspec.is_gated(inside), result.stderr
    assert wait_for(lambda: kube.placed_pool(tenant_ns, "record-inside"), 60, "bound") == (
        "ovh-gra-h100"
    )
    _no_pod_outside_france(kube, tenant_ns)
