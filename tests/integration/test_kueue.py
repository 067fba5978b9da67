"""The real Kueue runs against the local control plane: quota, flavors and Jobs as Kueue does them.

What greenplace's AdmissionCheck and MultiKueue work builds on: Kueue's manager built from its Go
module (``devcluster.build``), run out of cluster with its webhooks on loopback
(``devcluster.kueue``). A Job sent to a LocalQueue is suspended by Kueue's webhook, admitted into
a ResourceFlavor of its ClusterQueue, unsuspended with that flavor's node labels, and bound by
kube-scheduler on a node of that flavor; a Job over the quota waits with Kueue's own reason.
The first tests' namespaces are not governed and no check is on their queues: Kueue alone.

Then greenplace as Kueue's AdmissionCheck controller (``--kueue``, ``controller.kueue``): a
Workload whose queue lists the check is planned over the pools inside the flavor Kueue assigned;
Ready puts the chosen pool's node selector on its pods, Rejected carries the pod path's reason.
Those namespaces have a PlacementPolicy but are not labelled governed: pods of Kueue Jobs are
not yet exempt from greenplace's pod gate (docs/kueue.md).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster import cluster
from devcluster import kueue as kueue_
from tests import kubeobjects
from tests.integration.conftest import Kube, RunningOperator, run_operator, wait_for

ADMISSION_POLICIES = False  # greenplace's policies are not what these tests look at
POOL = "ovh-gra-h100"  # two nodes of 8 GPUs in examples/fleet.yaml


@pytest.fixture(scope="module")
def kueue(kube: Kube) -> Iterator[kueue_.Kueue | None]:
    """Kueue started in the local control plane; against your cluster, the Kueue you installed."""
    if isinstance(kube.cluster, cluster.LocalCluster):
        yield kueue_.start(kube.cluster)
        return
    assert kube.kubectl("get", "crd", "workloads.kueue.x-k8s.io").returncode == 0, (
        "install Kueue in the cluster GREENPLACE_KUBECONFIG names (docs/kueue.md)"
    )
    yield None


def get(kube: Kube, *args: str) -> Any:
    result = kube.kubectl("get", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def queue(
    kube: Kube, namespace: str, gpus: int, pools: tuple[str, ...] = (POOL,), check: str = ""
) -> str:
    """A flavor on each pool's nodes (named after the queue when there is one pool), a
    ClusterQueue of ``gpus`` GPUs in each, in that order, behind the AdmissionCheck ``check``
    (none when empty), and a LocalQueue of the same name."""
    name = f"q-{uuid.uuid4().hex[:6]}"
    flavors = {(name if len(pools) == 1 else f"{name}-{pool}"): pool for pool in pools}
    documents = [
        f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {{name: {flavor}}}
spec:
  nodeLabels: {{greenplace.dev/pool: {pool}}}
"""
        for flavor, pool in flavors.items()
    ]
    quotas = "".join(
        f"""
    - name: {flavor}
      resources:
      - {{name: cpu, nominalQuota: 64}}
      - {{name: nvidia.com/gpu, nominalQuota: {gpus}}}"""
        for flavor in flavors
    )
    checks = (
        f"\n  admissionChecksStrategy: {{admissionChecks: [{{name: {check}}}]}}" if check else ""
    )
    documents.append(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {{name: {name}}}
spec:
  namespaceSelector: {{}}{checks}
  resourceGroups:
  - coveredResources: [cpu, nvidia.com/gpu]
    flavors:{quotas}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{clusterQueue: {name}}}
""")
    result = kube.apply("---".join(documents))
    assert result.returncode == 0, result.stderr
    return name


def job(kube: Kube, namespace: str, local_queue: str, gpus: int) -> str:
    name = f"job-{uuid.uuid4().hex[:6]}"
    manifest = f"""
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{kueue.x-k8s.io/queue-name: {local_queue}}}
spec:
  completions: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: train
        image: example.invalid/train:1
        resources:
          requests: {{cpu: "1", nvidia.com/gpu: "{gpus}"}}
          limits: {{nvidia.com/gpu: "{gpus}"}}
"""
    result = kube.apply(manifest)
    assert result.returncode == 0, result.stderr
    return name


def workload_of(kube: Kube, namespace: str, job_name: str) -> dict[str, Any] | None:
    for workload in get(kube, "workloads.kueue.x-k8s.io", "-n", namespace)["items"]:
        owners = workload["metadata"].get("ownerReferences", [])
        if any(o["kind"] == "Job" and o["name"] == job_name for o in owners):
            result: dict[str, Any] = workload
            return result
    return None


def condition(workload: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for entry in (workload or {}).get("status", {}).get("conditions", []):
        if entry["type"] == kind:
            result: dict[str, Any] = entry
            return result
    return {}


def test_a_job_is_admitted_into_its_flavor_and_runs_on_its_nodes(
    kube: Kube, kueue: kueue_.Kueue | None
) -> None:
    namespace = kube.namespace(governed=False)
    local_queue = queue(kube, namespace, gpus=8)
    name = job(kube, namespace, local_queue, gpus=2)
    created = get(kube, "job", "-n", namespace, name)
    # Kueue's mutating webhook suspends the Job at creation, or it would run before admission.
    assert created["spec"]["suspend"] is True

    def admitted() -> dict[str, Any] | None:
        workload = workload_of(kube, namespace, name)
        return workload if condition(workload, "Admitted").get("status") == "True" else None

    workload = wait_for(admitted, what="Kueue to admit the Job's Workload")
    (assignment,) = workload["status"]["admission"]["podSetAssignments"]
    assert assignment["flavors"] == {"cpu": local_queue, "nvidia.com/gpu": local_queue}

    def running_pod() -> dict[str, Any] | None:
        pods = get(kube, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]
        bound = [p for p in pods if p["spec"].get("nodeName")]
        return bound[0] if bound else None

    pod = wait_for(running_pod, what="the admitted Job's pod to be bound")
    assert pod["spec"]["nodeSelector"] == {"greenplace.dev/pool": POOL}, "the flavor's labels"
    assert pod["spec"]["nodeName"].startswith(f"{POOL}-")


def test_a_job_over_the_quota_waits_with_kueues_reason(
    kube: Kube, kueue: kueue_.Kueue | None
) -> None:
    namespace = kube.namespace(governed=False)
    local_queue = queue(kube, namespace, gpus=4)
    name = job(kube, namespace, local_queue, gpus=6)

    def waiting() -> dict[str, Any] | None:
        reserved = condition(workload_of(kube, namespace, name), "QuotaReserved")
        return reserved if reserved.get("reason") == "Pending" else None

    pending = wait_for(waiting, what="Kueue to say why the Workload waits")
    assert pending["status"] == "False"
    assert "insufficient quota" in pending["message"], pending["message"]
    assert get(kube, "job", "-n", namespace, name)["spec"]["suspend"] is True


CHECK = "greenplace"


@pytest.fixture(scope="module")
def greenplace(kube: Kube, kueue: kueue_.Kueue | None) -> Iterator[RunningOperator]:
    """The operator answering Kueue's AdmissionCheck ``CHECK``."""
    check = f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: AdmissionCheck
metadata: {{name: {CHECK}}}
spec: {{controllerName: greenplace.dev/placement}}
"""
    assert kube.apply(check).returncode == 0
    with run_operator(kube, kueue=True) as running:
        yield running


def governed_by_policy(kube: Kube, countries: list[str]) -> str:
    namespace = kube.namespace(governed=False)
    applied = kube.apply(kubeobjects.manifest(kubeobjects.policy(namespace, "p", countries)))
    assert applied.returncode == 0, applied.stderr
    return namespace


def our_check(kube: Kube, namespace: str, job_name: str) -> dict[str, Any] | None:
    workload = workload_of(kube, namespace, job_name) or {}
    for state in workload.get("status", {}).get("admissionChecks", []):
        if state["name"] == CHECK and state["state"] != "Pending":
            result: dict[str, Any] = state
            return result
    return None


def test_the_check_is_active_and_a_ready_job_runs_in_the_chosen_pool(
    kube: Kube, greenplace: RunningOperator
) -> None:
    active = wait_for(
        lambda: kubeobjects.condition(get(kube, "admissioncheck", CHECK), "Active"),
        what="greenplace to mark its AdmissionCheck Active",
    )
    assert active["status"] == "True"
    namespace = governed_by_policy(kube, ["FR", "DE"])
    local_queue = queue(kube, namespace, gpus=8, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=2)
    state = wait_for(lambda: our_check(kube, namespace, name), what="greenplace to answer")
    assert state["state"] == "Ready", state
    assert state["message"].startswith("LowestCarbon"), state["message"]
    (update,) = state["podSetUpdates"]
    assert update["nodeSelector"] == {"greenplace.dev/pool": POOL}
    assert "greenplace.dev/kueue-placement" in update["annotations"]

    def bound() -> dict[str, Any] | None:
        pods = get(kube, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]
        return next((p for p in pods if p["spec"].get("nodeName")), None)

    pod = wait_for(bound, what="the admitted Job's pod to be bound")
    assert pod["spec"]["nodeName"].startswith(f"{POOL}-")
    assert "greenplace.dev/kueue-placement" in pod["metadata"]["annotations"]


def test_a_job_no_flavor_may_hold_is_rejected_with_the_reason(
    kube: Kube, greenplace: RunningOperator
) -> None:
    namespace = governed_by_policy(kube, ["CH"])
    local_queue = queue(kube, namespace, gpus=8, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=1)

    def deactivated() -> dict[str, Any] | None:
        workload = workload_of(kube, namespace, name)
        return workload if workload and workload["spec"].get("active") is False else None

    workload = wait_for(deactivated, what="Kueue to deactivate the rejected Workload")
    evicted = kubeobjects.condition(workload, "Evicted") or {}
    assert evicted.get("reason") == "DeactivatedDueToAdmissionCheck", evicted
    (state,) = workload["status"]["admissionChecks"]
    assert state["message"].endswith("Previously: Rejected"), "Kueue keeps only the state"

    def our_event() -> dict[str, Any] | None:
        events = get(kube, "events", "-n", namespace)["items"]
        return next(
            (e for e in events if e["involvedObject"].get("kind") == "Workload"
             and e["reason"] == "NoCompliantPool"),
            None,
        )  # fmt: skip

    event = wait_for(our_event, what="greenplace's Event with the reason on the Workload")
    assert "country FR not in allowed CH" in event["message"], event["message"]
    assert not get(kube, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]
