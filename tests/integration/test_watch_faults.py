"""Silent network faults between the operator and the real API server, and an API-server restart.

The operator reaches the API server through ``netfault.StallingProxy``; the API server still
calls the operator's webhook directly, so pods keep being created and gated during the faults.

- A silent stall of every open connection (a forgotten NAT entry) is recovered by the watch
  inactivity timeout: a pod created during the stall is placed.
- A partition: the leader stops acting (fenced at its renew deadline) and the liveness probe
  fails once no watch event arrives. Meanwhile a placed pod is deleted and the API server is
  restarted, so a resumed watch gets ``410 Gone`` and never sees that deletion. When the network
  heals, the operator leads again, lists everything, and the pod's GPU is free for a new pod.
"""

from __future__ import annotations

import json
import pathlib
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from devcluster import cluster, fleet
from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, OperatorProcess, wait_for
from tests.integration.netfault import StallingProxy

pytestmark = pytest.mark.cluster

TINY = fleet.FleetPool(
    name="tiny-lu",
    nodes=1,
    gpus_per_node=1,
    spec={
        "nodeSelector": {"greenplace.dev/pool": "tiny-lu"},
        "location": {"provider": "test", "region": "lu", "country": "LU", "gridZone": "LU"},
        "gpu": {"model": "L4", "tdpWatts": 72},
        "price": {"currency": "EUR", "onDemandPerGpuHour": 0.1},
        "carbonIntensity": {"fallbackGramsPerKwh": 1},
    },
)


@pytest.fixture
def proxy(kube: Kube) -> Iterator[StallingProxy]:
    if not isinstance(kube.cluster, cluster.LocalCluster):
        pytest.skip("needs the local control plane (the test restarts its API server)")
    port = int(kube.cluster.server.rsplit(":", 1)[1])
    stalling = StallingProxy(port)
    yield stalling
    stalling.close()


def one_gpu_pod(kube: Kube, namespace: str, name: str) -> None:
    """Through kubectl: after an API server restart, admission refuses governed pods until the
    CRD of its parameters is discovered again (fail-closed), and ``Kube.kubectl`` waits."""
    body = k8s.manifest(k8s.gpu_pod(namespace, name))
    result = kube.kubectl("create", "-f", "-", stdin=body)
    assert result.returncode == 0, result.stderr


def policy(kube: Kube, namespace: str, country: str) -> None:
    kube.apply_ok(k8s.policy(namespace, "p", [country]))


def pool_of(kube: Kube, namespace: str, name: str) -> str | None:
    pod = kube.pod(namespace, name)
    if pod["spec"].get("schedulingGates"):
        return None
    return str(k8s.placement_record(pod)["pool"])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return False


def metric(operator: OperatorProcess, name: str) -> float:
    value = k8s.metric(operator.metrics(), name)
    assert value is not None, f"{name} not exported"
    return value


def test_a_silent_stall_of_every_connection_is_recovered(
    kube: Kube, proxy: StallingProxy, operator_process: OperatorProcess, tmp_path: pathlib.Path
) -> None:
    config = proxy.kubeconfig(kube.kubeconfig, tmp_path / "via-proxy")
    operator_process.start("--watch-inactivity-seconds=4", kubeconfig=config)
    ns = kube.namespace()
    policy(kube, ns, "FR")
    one_gpu_pod(kube, ns, "before")
    wait_for(lambda: pool_of(kube, ns, "before"), 30, "a first pod placed")

    assert proxy.freeze() > 0  # every watch and pooled connection now hangs, silently
    one_gpu_pod(kube, ns, "during")
    # kopf's own client timeout is 150 s; only the inactivity timeout brings this in time.
    wait_for(lambda: pool_of(kube, ns, "during"), 45, "the pod created during the stall placed")
    assert pool_of(kube, ns, "during") in {"gcp-europe-west9-a100", "ovh-gra-h100"}


def test_partition_and_api_server_restart_losing_a_deletion_is_healed_by_a_listing(
    kube: Kube, proxy: StallingProxy, operator_process: OperatorProcess, tmp_path: pathlib.Path
) -> None:
    local = kube.cluster
    assert isinstance(local, cluster.LocalCluster)
    fleet.apply_fleet(kube.api, [TINY])
    (health_port,) = cluster.free_ports(1)
    config = proxy.kubeconfig(kube.kubeconfig, tmp_path / "via-proxy")
    operator_process.start(
        "--watch-inactivity-seconds=4", "--lease-seconds=3",
        f"--liveness=http://127.0.0.1:{health_port}/healthz", kubeconfig=config,
    )  # fmt: skip
    ns = kube.namespace()
    policy(kube, ns, "LU")  # one pool, one GPU
    one_gpu_pod(kube, ns, "first")
    wait_for(lambda: pool_of(kube, ns, "first") == "tiny-lu", 30, "first pod placed")
    wait_for(lambda: kube.pod(ns, "first")["spec"].get("nodeName"), 30, "first pod bound")
    assert healthy(health_port)
    assert metric(operator_process, "greenplace_leader") == 1
    relists = metric(operator_process, "greenplace_relists_total")

    proxy.blackhole()
    wait_for(lambda: metric(operator_process, "greenplace_leader") == 0, 30, "the leader fenced")
    wait_for(lambda: not healthy(health_port), 60, "liveness failing: no watch events")

    # What the operator cannot see: the GPU is freed, and the API server forgets old events.
    seen = kube.core.read_namespaced_pod("first", ns).metadata.resource_version
    kube.core.delete_namespaced_pod("first", ns, grace_period_seconds=0)
    wait_for(lambda: not kube.core.list_namespaced_pod(ns).items, 30, "first pod gone")
    local.restart_apiserver()
    assert resume_watch_status(kube, ns, seen) == 410  # a resumed watch cannot replay it
    one_gpu_pod(kube, ns, "second")  # gated by the webhook, which is not behind the proxy

    proxy.heal()
    wait_for(lambda: pool_of(kube, ns, "second") == "tiny-lu", 60, "second pod placed")
    assert metric(operator_process, "greenplace_relists_total") > relists
    wait_for(lambda: healthy(health_port), 30, "liveness healthy again")
    assert operator_process.process is not None and operator_process.process.poll() is None


def resume_watch_status(kube: Kube, namespace: str, resource_version: str) -> int:
    """The status a watch on ``namespace``'s pods resumed from ``resource_version`` ends with.

    The API server answers 200 and then sends one ERROR event carrying the real code.
    """
    response = kube.core.list_namespaced_pod(
        namespace, watch=True, resource_version=resource_version, timeout_seconds=1,
        _preload_content=False,
    )  # fmt: skip
    for line in response.read().decode().splitlines():
        event = json.loads(line)
        if event["type"] == "ERROR":
            return int(event["object"]["code"])
    return int(response.status)
