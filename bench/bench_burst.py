"""A burst of GPU pods through the real API server: governed by greenplace vs kube-scheduler alone.

Why this benchmark exists: the planner alone decides 10,000 workloads in about a second, but a
user waits for the whole path — admission webhook, the gate, the placement cycle, one patch per
pod, then kube-scheduler and kwok. This measures that path end to end on the real local control
plane, against a baseline measured in the same run: the same burst in a namespace greenplace does
not govern (kube-scheduler alone, no webhook, no gate).

Method: a fleet of 10 pools of kwok nodes with 8 GPUs each, sized to BURST plus 4% (France and
Germany). BURST is 2,000 by default; set GREENPLACE_BENCH_BURST for another size. Each run
creates BURST one-GPU pods with one `kubectl apply` of a List, then polls until every pod is
bound to a node; the clock runs from the first create to the last binding. Baseline first (then
its namespace is deleted so its GPUs come back), then the governed run under a France+Germany
PlacementPolicy. The operator is `greenplace operate` in its own process, as `make run` starts it.

Creation is sequential (kubectl sends one request per pod), so the governed run mostly measures
admission: the webhook call each create makes. A third run isolates the operator: BURST pods
are created in a governed namespace with no PlacementPolicy (all gated and held), then the
policy is applied and the clock runs until the whole backlog is bound: one plan, BURST patches,
kube-scheduler and kwok.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench import harness, kube
from devcluster import cluster, fleet

NAME = "bench_burst"
BURST = int(os.environ.get("GREENPLACE_BENCH_BURST", "2000"))
POOLS = 10
NODES_PER_POOL = math.ceil(BURST * 1.04 / (POOLS * kube.GPUS_PER_NODE))


def _pods(namespace: str) -> str:
    items = [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"b{i:04d}", "namespace": namespace},
         "spec": {"containers": [{"name": "main", "image": "x",
                                  "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
        for i in range(BURST)
    ]  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _policy(kubectl: kube.Kubectl, namespace: str) -> None:
    kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "PlacementPolicy",
        "metadata": {"name": "eu", "namespace": namespace},
        "spec": {"sovereignty": {"allowedCountries": ["FR", "DE"]}}}))  # fmt: skip


def _namespace(kubectl: kube.Kubectl, namespace: str, governed: bool) -> None:
    labels = {"greenplace.dev/governed": "true"} if governed else {}
    kubectl("apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": namespace, "labels": labels}}))  # fmt: skip


def _burst(kubectl: kube.Kubectl, namespace: str, governed: bool) -> dict[str, Any]:
    _namespace(kubectl, namespace, governed)
    if governed:
        _policy(kubectl, namespace)
    started = time.perf_counter()
    kubectl("apply", "-f", "-", stdin=_pods(namespace))
    created = time.perf_counter() - started
    seconds = _until_bound(kubectl, namespace, started)
    return {
        "pods": BURST,
        "create_seconds": round(created, 2),
        "all_bound_seconds": round(seconds, 2),
        "pods_per_second": round(BURST / seconds, 1),
    }


def _backlog(kubectl: kube.Kubectl, namespace: str) -> dict[str, Any]:
    """BURST pods gated and held (no policy yet); then the policy: time to bind them all."""
    _namespace(kubectl, namespace, governed=True)
    kubectl("apply", "-f", "-", stdin=_pods(namespace))
    started = time.perf_counter()
    _policy(kubectl, namespace)
    seconds = _until_bound(kubectl, namespace, started)
    return {
        "pods": BURST,
        "all_bound_seconds": round(seconds, 2),
        "pods_per_second": round(BURST / seconds, 1),
    }


def _until_bound(kubectl: kube.Kubectl, namespace: str, started: float) -> float:
    """Seconds from ``started`` until no pod of ``namespace`` is without a node."""
    unbound = BURST
    while unbound:
        if time.perf_counter() - started > 1800:
            raise SystemExit(f"{namespace}: {unbound}/{BURST} pods still unbound after 1800 s")
        time.sleep(0.5)
        # Only the pods still without a node: the poll shrinks as the burst lands.
        names = kubectl("get", "pods", "-n", namespace, "--field-selector=spec.nodeName=",
                        "-o", "name")  # fmt: skip
        unbound = len(names.split())
    return time.perf_counter() - started


def main() -> None:
    with cluster.cluster_from_env() as running:
        kubeconfig = str(running.kubeconfig)
        kubectl = kube.Kubectl(kubeconfig)
        kubectl("apply", "--server-side", "-f", str(harness.BENCH_DIR.parent / "crds"))
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        from kubernetes import config  # noqa: PLC0415 - only once the cluster is up

        pools = kube.gpu_pools("burst", POOLS, NODES_PER_POOL)
        fleet.apply_fleet(config.new_client_from_config(kubeconfig), pools)
        baseline = _burst(kubectl, "burst-plain", governed=False)
        print(f"kube-scheduler alone: {BURST} pods bound in {baseline['all_bound_seconds']} s "
              f"({baseline['pods_per_second']} pods/s)")  # fmt: skip
        kubectl("delete", "namespace", "burst-plain", "--wait=true", "--timeout=300s")

        (port,) = cluster.free_ports(1)
        log = pathlib.Path(tempfile.mkdtemp(prefix="greenplace-burst-")) / "operator.log"
        with log.open("wb") as out:
            operator = subprocess.Popen(
                [sys.executable, "-m", "greenplace.cli.main", "operate",
                 f"--kubeconfig={kubeconfig}", "--out-of-cluster", f"--webhook-port={port}"],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ),
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not cluster.port_open(port):
                if operator.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"operator did not start; log {log}")
                time.sleep(0.2)
            governed = _burst(kubectl, "burst-governed", governed=True)
            kubectl("delete", "namespace", "burst-governed", "--wait=true", "--timeout=600s")
            backlog = _backlog(kubectl, "burst-backlog")
        finally:
            operator.terminate()
            operator.wait(timeout=30)
    ratio = governed["pods_per_second"] / baseline["pods_per_second"]
    print(
        f"greenplace-governed: {BURST} pods bound in {governed['all_bound_seconds']} s "
        f"({governed['pods_per_second']} pods/s), x{ratio:.2f} of kube-scheduler alone"
    )
    drain = backlog["pods_per_second"] / baseline["pods_per_second"]
    print(
        f"held backlog: {BURST} gated pods bound {backlog['all_bound_seconds']} s after their "
        f"policy arrived ({backlog['pods_per_second']} pods/s), "
        f"x{drain:.2f} of kube-scheduler alone"
    )
    harness.finish(
        NAME,
        {"burst": BURST, "gpus": POOLS * NODES_PER_POOL * kube.GPUS_PER_NODE, "baseline": baseline,
         "governed": governed, "backlog": backlog, "operator_log": str(log)},
        {"governed_pods_per_second": governed["pods_per_second"],
         "ratio_to_kube_scheduler_alone": round(ratio, 3),
         "backlog_pods_per_second": backlog["pods_per_second"],
         "backlog_ratio_to_kube_scheduler_alone": round(drain, 3)},
    )  # fmt: skip


if __name__ == "__main__":
    main()
