"""The real Kueue runs against the local control plane: quota, flavors and Jobs as Kueue does them.

What greenplace's AdmissionCheck and MultiKueue work builds on: Kueue's manager built from its Go
module (``devcluster.build``), run out of cluster with its webhooks on loopback
(``devcluster.kueue``). A Job sent to a LocalQueue is suspended by Kueue's webhook, admitted into
a ResourceFlavor of its ClusterQueue, unsuspended with that flavor's node labels, and bound by
kube-scheduler on a node of that flavor; a Job over the quota waits with Kueue's own reason.
These namespaces are not governed: greenplace is not running here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster import cluster
from devcluster import kueue as kueue_
from tests.integration.conftest import Kube, wait_for

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


def queue(kube: Kube, namespace: str, gpus: int) -> str:
    """A flavor on ``POOL``'s nodes, a ClusterQueue of ``gpus`` GPUs in it, a LocalQueue."""
    name = f"q-{uuid.uuid4().hex[:6]}"
    manifest = f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {{name: {name}}}
spec:
  nodeLabels: {{greenplace.dev/pool: {POOL}}}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {{name: {name}}}
spec:
  namespaceSelector: {{}}
  resourceGroups:
  - coveredResources: [cpu, nvidia.com/gpu]
    flavors:
    - name: {name}
      resources:
      - {{name: cpu, nominalQuota: 64}}
      - {{name: nvidia.com/gpu, nominalQuota: {gpus}}}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{clusterQueue: {name}}}
"""
    result = kube.apply(manifest)
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
