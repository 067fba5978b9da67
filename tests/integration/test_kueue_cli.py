"""``greenplace placements`` and ``greenplace why`` read Kueue Workloads the real Kueue admitted.

Why this module exists: the CLI's Kueue rows are unit-tested on recorded Workload bodies
(``tests/unit/test_cli_views.py``); this proves the recording is still what Kueue v0.17 and the
operator write: a Job whose policy allows FR and DE, on a queue behind greenplace's check, is
listed Ready in the pool the check chose, and ``why job/...`` prints the check's message and the
signed record's pool; a Job only CH may take is listed deactivated, and ``why`` gives
greenplace's reason from its Event (Kueue overwrote the check's message).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster import cluster
from devcluster import kueue as kueue_
from greenplace.cli import main as cli
from tests import kubeobjects
from tests.integration.conftest import Kube, run_operator, wait_for

ADMISSION_POLICIES = False  # greenplace's policies are not what these tests look at
POOL = "ovh-gra-h100"  # examples/fleet.yaml: the FR pool the one flavor below holds
CHECK = "greenplace-cli"


@pytest.fixture(scope="module")
def queue(kube: Kube) -> Iterator[str]:
    """Kueue, the operator answering ``CHECK``, and a ClusterQueue behind it on ``POOL``."""
    if isinstance(kube.cluster, cluster.LocalCluster):
        kueue_.start(kube.cluster)
    name = f"q-{uuid.uuid4().hex[:6]}"
    kube.apply_ok(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: AdmissionCheck
metadata: {{name: {CHECK}}}
spec: {{controllerName: greenplace.dev/placement}}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {{name: {name}}}
spec: {{nodeLabels: {{greenplace.dev/pool: {POOL}}}}}
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {{name: {name}}}
spec:
  namespaceSelector: {{}}
  admissionChecksStrategy: {{admissionChecks: [{{name: {CHECK}}}]}}
  resourceGroups:
  - coveredResources: [cpu, nvidia.com/gpu]
    flavors:
    - name: {name}
      resources: [{{name: cpu, nominalQuota: 64}}, {{name: nvidia.com/gpu, nominalQuota: 8}}]
""")
    with run_operator(kube, kueue=True):
        yield name


def submit(kube: Kube, queue: str, countries: list[str]) -> tuple[str, str]:
    """A namespace whose policy allows ``countries``, a LocalQueue to ``queue`` and a one-GPU
    Job in it: (namespace, job name)."""
    namespace = kube.namespace(governed=False)
    kube.apply_ok(kubeobjects.manifest(kubeobjects.policy(namespace, "p", countries)))
    name = f"job-{uuid.uuid4().hex[:6]}"
    kube.apply_ok(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata: {{name: {queue}, namespace: {namespace}}}
spec: {{clusterQueue: {queue}}}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{kueue.x-k8s.io/queue-name: {queue}}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: train
        image: example.invalid/train:1
        resources: {{limits: {{nvidia.com/gpu: "1"}}, requests: {{cpu: "1", nvidia.com/gpu: "1"}}}}
""")
    return namespace, name


def workload(kube: Kube, namespace: str, job: str) -> dict[str, Any] | None:
    found = kube.kubectl("get", "workloads.kueue.x-k8s.io", "-n", namespace, "-o", "json")
    assert found.returncode == 0, found.stderr
    for item in json.loads(found.stdout)["items"]:
        if any(o["name"] == job for o in item["metadata"].get("ownerReferences", [])):
            result: dict[str, Any] = item
            return result
    return None


def printed(capsys: pytest.CaptureFixture[str], *argv: str, kube: Kube) -> list[str]:
    assert cli.main([*argv, f"--kubeconfig={kube.kubeconfig}"]) == 0
    return capsys.readouterr().out.splitlines()


def test_placements_lists_a_ready_workload_in_its_pool(
    kube: Kube, queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, job = submit(kube, queue, ["FR", "DE"])

    def admitted() -> dict[str, Any] | None:
        found = workload(kube, namespace, job)
        admitted = kubeobjects.condition(found or {}, "Admitted") or {}
        return found if admitted.get("status") == "True" else None

    body = wait_for(admitted, what="Kueue to admit the Workload through greenplace's check")
    name = f"{namespace}/{body['metadata']['name']}"
    rows = [line.split() for line in printed(capsys, "placements", "-n", namespace, kube=kube)]
    (row,) = [r for r in rows if r and r[0] == name]
    assert row[1:5] == ["1", "Ready", "(LowestCarbon)", POOL], row
    text = printed(capsys, "why", f"job/{namespace}/{job}", kube=kube)
    assert text[0].startswith(f"{name} (Kueue Workload): check {CHECK} is Ready: LowestCarbon: ")
    assert text[1].startswith(f"  record (unverified here): pool {POOL}, country FR"), text


def test_a_rejected_workload_is_listed_deactivated_and_why_gives_greenplaces_reason(
    kube: Kube, queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace, job = submit(kube, queue, ["CH"])

    def deactivated() -> dict[str, Any] | None:
        found = workload(kube, namespace, job)
        return found if found and found["spec"].get("active") is False else None

    body = wait_for(deactivated, what="Kueue to deactivate the Workload greenplace rejected")
    name = f"{namespace}/{body['metadata']['name']}"

    def listed() -> list[str]:
        lines = printed(capsys, "placements", "-n", namespace, kube=kube)
        return [line for line in lines if line.startswith(name)]

    (row,) = wait_for(listed, what="the Workload's row")
    assert row.split()[2:5] == ["Deactivated", "-", "-"], row

    def why() -> str:
        text = "\n".join(printed(capsys, "why", f"workload/{name}", kube=kube))
        return text if "last greenplace Event" in text else ""

    text = wait_for(why, what="greenplace's Event on the Workload")
    assert "deactivated by Kueue" in text
    assert "NoCompliantPool: " in text and "country FR not in allowed CH" in text, text
