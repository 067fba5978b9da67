"""Kueue and the pod gate in one governed namespace: no double holding, no escape.

On the real control plane with the chart's admission policies and the real Kueue: in a
namespace labelled ``greenplace.dev/governed=true`` whose PlacementPolicy allows France only, a
Job sent to a ClusterQueue that lists greenplace's AdmissionCheck is admitted Ready into a pool
greenplace chose; its pod is created without greenplace's gate (the webhook recognises the
signed record the check put on it: ``webhook.kueue_placement``), so the pod path never
re-plans it, and kube-scheduler binds it in that pool. A tenant with ``edit`` who forges,
alters or copies that record elsewhere gets a gated pod (and a warning) that the pod path places
like any other. Last, with the operator stopped and its webhook gone, the sovereignty
admission policy alone admits an ungated GPU pod whose ``spec.nodeSelector`` pins an allowed
pool and refuses one that pins a forbidden pool or one outside its data residency.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from devcluster import cluster
from devcluster import kueue as kueue_
from greenplace.controller import kueue, podspec
from tests import kubeobjects as k8s
from tests.integration import conftest as integration
from tests.integration.conftest import Kube, wait_for

pytestmark = pytest.mark.cluster

TENANT = "mallory"
AS_TENANT = f"--as={TENANT}"
CHECK = "greenplace"
FR_POOLS = {"gcp-europe-west9-a100", "ovh-gra-h100"}
US_POOL = "gcp-us-central1-h100"
OPERATOR_DOWN = "the webhook configuration deleted to take effect"


@pytest.fixture(scope="module")
def kueue_running(kube: Kube) -> kueue_.Kueue | None:
    """Kueue started in the local control plane; against your cluster, the Kueue you installed."""
    if isinstance(kube.cluster, cluster.LocalCluster):
        return kueue_.start(kube.cluster)
    assert kube.kubectl("get", "crd", "workloads.kueue.x-k8s.io").returncode == 0, (
        "install Kueue in the cluster GREENPLACE_KUBECONFIG names (docs/kueue.md)"
    )
    return None


@pytest.fixture(scope="module")
def running(
    kube: Kube, kueue_running: kueue_.Kueue | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[integration.OperatorProcess]:
    """``greenplace operate --kueue`` in its own process (the last test stops it), answering
    the AdmissionCheck ``CHECK``."""
    with checking_operator(kube, tmp_path_factory) as process:
        yield process


@contextlib.contextmanager
def checking_operator(
    kube: Kube, tmp_path_factory: pytest.TempPathFactory, *flags: str
) -> Iterator[integration.OperatorProcess]:
    """The AdmissionCheck ``CHECK`` and ``greenplace operate --kueue *flags`` answering it."""
    kube.apply_ok(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: AdmissionCheck
metadata: {{name: {CHECK}}}
spec: {{controllerName: {kueue.CONTROLLER_NAME}}}
""")
    port, metrics_port = cluster.free_ports(2)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = integration.OperatorProcess(kube, log, port, metrics_port)
    process.start("--kueue", *flags)
    yield process
    process.stop()
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-4000:]


def tenant_namespace(kube: Kube) -> str:
    """A governed namespace where the tenant has ``edit``, France only."""
    ns = kube.namespace()
    kube.apply_ok(k8s.policy(ns, "fr-only", ["FR"]))
    kube.grant_edit(ns, TENANT)
    wait_for(lambda: allowed(kube, ns) == sorted(FR_POOLS), 30, "allowed pools")
    probe = k8s.gpu_pod(ns, "probe", gated=True)
    wait_for(lambda: create(kube, probe, "--dry-run=server").returncode == 0, 30,
             "admission to see the namespace's policy")  # fmt: skip
    return ns


@pytest.fixture(scope="module")
def tenant_ns(kube: Kube, running: integration.OperatorProcess) -> str:
    return tenant_namespace(kube)


@pytest.fixture(scope="module")
def admitted(kube: Kube, tenant_ns: str) -> dict[str, Any]:
    """A Job admitted through greenplace's check, and its pod once bound."""
    local_queue = queue(kube, tenant_ns)
    name = job(kube, tenant_ns, local_queue)
    state = wait_for(lambda: our_check(kube, tenant_ns, name), 60, "greenplace to answer")
    assert state["state"] == "Ready", state

    def bound() -> dict[str, Any] | None:
        pods = get(kube, "pods", "-n", tenant_ns, "-l", f"job-name={name}")["items"]
        return next((p for p in pods if p["spec"].get("nodeName")), None)

    pod = wait_for(bound, 60, "the admitted Job's pod to be bound")
    return {"job": name, "state": state, "pod": pod}


def allowed(kube: Kube, ns: str) -> list[str]:
    got = kube.kubectl("get", "placementpolicy", "fr-only", "-n", ns, "-o",
                       "jsonpath={.status.allowedPools}").stdout  # fmt: skip
    return sorted(json.loads(got)) if got else []


def create(kube: Kube, body: Mapping[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("create", "-f", "-", *flags, stdin=k8s.manifest(body))


def get(kube: Kube, *args: str) -> Any:
    result = kube.kubectl("get", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def queue(kube: Kube, namespace: str) -> str:
    """A flavor holding every pool (no node labels), a ClusterQueue of 8 GPUs in it behind
    greenplace's check, and a LocalQueue of the same name: greenplace picks the pool."""
    name = f"q-{uuid.uuid4().hex[:6]}"
    kube.apply_ok(k8s.manifest(*k8s.kueue_queue(name, namespace, {name: {}}, gpus=8, check=CHECK)))
    return name


def job(kube: Kube, namespace: str, local_queue: str) -> str:
    name = f"job-{uuid.uuid4().hex[:6]}"
    kube.apply_ok(k8s.kueue_job(namespace, name, local_queue))
    return name


def our_check(kube: Kube, namespace: str, job_name: str) -> dict[str, Any] | None:
    for workload in get(kube, "workloads.kueue.x-k8s.io", "-n", namespace)["items"]:
        owners = workload["metadata"].get("ownerReferences", [])
        if not any(o["kind"] == "Job" and o["name"] == job_name for o in owners):
            continue
        for state in workload.get("status", {}).get("admissionChecks", []):
            if state["name"] == CHECK and state["state"] != "Pending":
                result: dict[str, Any] = state
                return result
    return None


def hostile(ns: str, name: str, record: str, pool: str, **options: Any) -> dict[str, Any]:
    """A bare GPU pod carrying ``record`` and a nodeSelector pinning ``pool``."""
    return k8s.gpu_pod(ns, name, annotations={kueue.RECORD_ANNOTATION: record},
                       nodeSelector={podspec.POOL_LABEL: pool}, **options)  # fmt: skip


def gated_by_greenplace(kube: Kube, ns: str, name: str) -> bool:
    """Whether the pod went through greenplace's gate: still gated, or released by the pod
    path (which writes its own record, greenplace.dev/placement)."""
    pod = kube.pod(ns, name)
    annotations = pod["metadata"].get("annotations") or {}
    return podspec.is_gated(pod) or podspec.PLACEMENT_ANNOTATION in annotations


def ready_record(admitted: dict[str, Any]) -> tuple[str, str]:
    """The admitted Job's record as Kueue put it on its pods, and its pool."""
    (update,) = admitted["state"]["podSetUpdates"]
    record: str = update["annotations"][kueue.RECORD_ANNOTATION]
    return record, update["nodeSelector"][podspec.POOL_LABEL]


# -- 1. a Job admitted through the check is not held twice ----------------------------------------


def test_the_pods_of_an_admitted_job_are_not_gated_and_bound_in_the_chosen_pool(
    kube: Kube, admitted: dict[str, Any]
) -> None:
    text, chosen = ready_record(admitted)
    assert chosen in FR_POOLS, admitted["state"]
    assert json.loads(text)["pool"] == chosen
    pod = admitted["pod"]
    annotations = pod["metadata"]["annotations"]
    assert annotations[kueue.RECORD_ANNOTATION] == text
    # Created without the gate: the pod path never placed it (it would have narrowed the
    # affinity and written its own record, greenplace.dev/placement).
    assert not pod["spec"].get("schedulingGates"), pod["spec"]
    assert podspec.PLACEMENT_ANNOTATION not in annotations, annotations
    assert not pod["spec"].get("affinity"), pod["spec"]["affinity"]
    assert pod["spec"]["nodeSelector"][podspec.POOL_LABEL] == chosen
    assert kube.node_pool(pod["spec"]["nodeName"]) == chosen


# -- 2. a tenant's forged, altered or copied record is gated ---------------------------------------


def gated_with_warning(
    kube: Kube, ns: str, name: str, record: str, pool: str, *, says: str
) -> None:
    """The tenant's pod carrying ``record`` and pinning ``pool`` is created, with a warning
    that says ``says``, and goes through greenplace's gate."""
    result = create(kube, hostile(ns, name, record, pool), AS_TENANT)
    assert result.returncode == 0, result.stderr
    warning = " ".join(result.stderr.split())
    assert f"Warning: greenplace: annotation {kueue.RECORD_ANNOTATION} {says}" in warning, warning
    assert "gated and placed like any GPU pod" in warning, warning
    assert gated_by_greenplace(kube, ns, name)


def test_a_forged_record_is_gated_with_a_warning(
    kube: Kube, tenant_ns: str, admitted: dict[str, Any]
) -> None:
    forged = json.dumps({"pool": "ovh-gra-h100", "sig": "0" * 64})
    gated_with_warning(kube, tenant_ns, "forged", forged, "ovh-gra-h100", says="is not the signed")


def test_an_altered_record_is_gated(kube: Kube, tenant_ns: str, admitted: dict[str, Any]) -> None:
    text, pool = ready_record(admitted)
    other = next(iter(FR_POOLS - {pool}))
    altered = json.dumps({**json.loads(text), "pool": other}, separators=(",", ":"))
    gated_with_warning(kube, tenant_ns, "altered", altered, other, says="is not the signed")


def test_a_valid_record_copied_to_another_namespace_is_gated(
    kube: Kube, tenant_ns: str, admitted: dict[str, Any]
) -> None:
    text, pool = ready_record(admitted)
    elsewhere = tenant_namespace(kube)
    says = f"is not the signed record of a Workload of namespace {elsewhere} whose"
    gated_with_warning(kube, elsewhere, "copied", text, pool, says=says)


def test_a_valid_record_with_a_forbidden_pool_stays_gated_and_held(
    kube: Kube, tenant_ns: str, admitted: dict[str, Any]
) -> None:
    text, pool = ready_record(admitted)
    gated_with_warning(kube, tenant_ns, "to-us", text, US_POOL, says=f"names pool {pool}, but")
    # The pod path plans it with its own nodeSelector: no allowed pool matches, so it waits.
    held = wait_for(lambda: kube.held_reason(tenant_ns, "to-us"), 30, "a hold reason")
    assert "no node of the pool matches the pod's own" in held, held
    assert podspec.is_gated(kube.pod(tenant_ns, "to-us"))


# -- 3. with the operator down, the policy alone reads the nodeSelector ---------------------------


def test_with_the_operator_down_the_policy_judges_the_pool_node_selector(
    kube: Kube, tenant_ns: str, running: integration.OperatorProcess
) -> None:
    running.stop()
    result = kube.kubectl("delete", "mutatingwebhookconfiguration", "greenplace.dev")
    assert result.returncode == 0, result.stderr
    gated = k8s.gpu_pod(tenant_ns, "probe-down", gated=True)
    wait_for(lambda: create(kube, gated, "--dry-run=server", AS_TENANT).returncode == 0,
             30, OPERATOR_DOWN)  # fmt: skip
    # Ungated, pinned to an allowed pool by the nodeSelector alone (Kueue's form): admitted.
    pinned_fr = k8s.gpu_pod(tenant_ns, "down-fr", nodeSelector={podspec.POOL_LABEL: "ovh-gra-h100"})
    result = create(kube, pinned_fr, "--dry-run=server", AS_TENANT)
    assert result.returncode == 0, result.stderr
    refusals = {
        "down-us": k8s.gpu_pod(tenant_ns, "down-us", nodeSelector={podspec.POOL_LABEL: US_POOL}),
        # Allowed pool, but not in the pod's data residency (DE).
        "down-residency": k8s.gpu_pod(
            tenant_ns, "down-residency", labels={"greenplace.dev/data-residency": "DE"},
            nodeSelector={podspec.POOL_LABEL: "ovh-gra-h100"},
        ),
        "down-other-label": k8s.gpu_pod(tenant_ns, "down-other-label",
                                        nodeSelector={"topology.kubernetes.io/zone": "gra-11"}),
    }  # fmt: skip
    for name, manifest in refusals.items():
        result = create(kube, manifest, AS_TENANT)
        assert result.returncode != 0, f"{name} admitted with the operator down"
        text = " ".join(result.stderr.split())
        assert "ValidatingAdmissionPolicy" in text, text
        assert "or a spec.nodeSelector setting greenplace.dev/pool to one of them" in text, text
