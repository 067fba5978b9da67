"""``python -m devcluster``: build, start, stop the local control plane, and run the demo.

Why this module exists: ``make run`` and ``make stop`` need one entry point that a newcomer can
also call by hand. ``demo`` is the main job: a local control plane with a real Kueue (unless
``GREENPLACE_KUEUE=0``; or your cluster, with ``GREENPLACE_KUBECONFIG``), the example fleet, the
CRDs, the operator, the example policies and workloads, and the table of placements with the
reason for each. It leaves everything running and prints how to reach it; ``down`` stops it.
``multi`` is the multi-cluster demo (``make run-multi``, ``devcluster.multi``): three workers,
greenplace dispatching for one manager and Kueue's AllAtOnce for another, the same sovereign
Job on both, and which workers each one reached.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence

from devcluster import admission, build, cluster, fleet, kueue, multi, operator

__all__ = ["main"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run" / "cluster"
MULTI_DIR = ROOT / ".run" / "multi"
EXAMPLES = ROOT / "examples"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or find cached) control-plane binaries, Kueue, MinIO")
    sub.add_parser("up", help="start a local control plane with the example fleet and CRDs")
    sub.add_parser("down", help="stop what `up` or `demo` started")
    sub.add_parser("demo", help="up + operator + examples, then print the placements")
    sub.add_parser("multi", help="a MultiKueue fleet: greenplace vs AllAtOnce on one Job")
    args = parser.parse_args(argv)
    if args.command == "build":
        extra = ("all",) if kueue_wanted() else ("minio",)  # MinIO: the billing export tests
        for name, path in sorted(build.ensure_built(extra=extra).paths.items()):
            print(f"{name:26} {path}")
        return 0
    if args.command == "down":
        return down()
    if args.command == "multi":
        return multi_demo()
    kubeconfig = up()
    if args.command == "demo":
        return demo(kubeconfig)
    return 0


def kubectl(kubeconfig: pathlib.Path, *args: str, check: bool = True) -> str:
    command = [str(build.ensure_built(log=False)["kubectl"]), f"--kubeconfig={kubeconfig}", *args]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def up() -> pathlib.Path:
    """Start (after stopping any previous run) and prepare the cluster; return its kubeconfig."""
    existing = cluster.existing_kubeconfig()  # a missing file stops here, before `down`
    down(quiet=True)
    shutil.rmtree(RUN_DIR, ignore_errors=True)  # a fresh etcd each time: no state from before
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    c: cluster.LocalCluster | cluster.ExistingCluster
    if existing:
        c = cluster.ExistingCluster(existing, workdir=RUN_DIR, keep=True)
    else:
        c = cluster.LocalCluster(workdir=RUN_DIR, keep=True)
    c.start()
    print(f"control plane ready in {time.monotonic() - started:.1f}s")
    kubectl(c.kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds"))
    kubectl(c.kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
            "crd/gpupools.greenplace.dev", "crd/placementpolicies.greenplace.dev")  # fmt: skip
    from kubernetes import config  # noqa: PLC0415 - only needed once the cluster is up

    api = config.new_client_from_config(str(c.kubeconfig))
    pools = fleet.load_fleet(EXAMPLES / "fleet.yaml")
    fleet.apply_fleet(api, pools)
    print(f"fleet: {len(pools)} GpuPools, {sum(p.nodes for p in pools)} kwok GPU nodes")
    if isinstance(c, cluster.LocalCluster) and kueue_wanted():
        started = time.monotonic()
        kueue.start(c)
        print(f"kueue {build.KUEUE_VERSION}: ready in {time.monotonic() - started:.1f}s "
              f"(GREENPLACE_KUEUE=0 starts none)")  # fmt: skip
    return c.kubeconfig


def kueue_wanted() -> bool:
    """Kueue is built and started unless ``GREENPLACE_KUEUE=0`` (your own cluster: never)."""
    return os.environ.get("GREENPLACE_KUEUE", "1") != "0"


def down(quiet: bool = False) -> int:
    stopped = cluster.stop_recorded(RUN_DIR)
    for workdir in (MULTI_DIR, *sorted(MULTI_DIR.glob("*"))):
        stopped += cluster.stop_recorded(workdir)
    if not quiet:
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def demo(kubeconfig: pathlib.Path) -> int:
    log = RUN_DIR / "logs" / "operator.log"
    # The address the API server uses to call the webhook: loopback for the local control plane;
    # for kind, an address of this machine that its containers reach (e.g. the bridge gateway).
    webhook_host = os.environ.get("GREENPLACE_WEBHOOK_HOST", "127.0.0.1")
    listen = "127.0.0.1" if webhook_host == "127.0.0.1" else "0.0.0.0"
    running = operator.start(
        kubeconfig, log, f"--webhook-host={webhook_host}", f"--webhook-listen={listen}"
    )
    cluster.record_pid(RUN_DIR, "greenplace-operator", running.process.pid)
    # The chart's admission policies, as in a cluster: the safety is on in the demo too.
    installed = admission.install(kubeconfig, admission.username(kubeconfig))
    print(f"admission policies: {', '.join(installed)}")
    for name in ("namespaces.yaml", "policies.yaml"):
        kubectl(kubeconfig, "apply", "-f", str(EXAMPLES / name))
    _apply_once_admitted(kubeconfig, EXAMPLES / "workloads.yaml")
    _wait_for_decisions(kubeconfig)
    placements = subprocess.run(
        [sys.executable, "-m", "greenplace.cli.main", "placements", f"--kubeconfig={kubeconfig}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    print("\nPlacements (greenplace placements):\n")
    print(placements)
    print(kubectl(kubeconfig, "get", "gpupools"))
    print(f"The cluster is still running. Try:\n  export KUBECONFIG={kubeconfig}\n"
          "  kubectl get gpupools,placementpolicies -A\n"
          "  kubectl describe pod -n ml-ch train-patient-model\n"
          f"Operator log: {log}\nOperator metrics: {running.metrics_url}\n"
          f"Operator liveness: {running.liveness_url}\n"
          "Stop everything with: make stop")  # fmt: skip
    return 0


def _apply_once_admitted(kubeconfig: pathlib.Path, manifest: pathlib.Path) -> None:
    """Apply ``manifest``, retrying while admission does not yet see the new PlacementPolicies
    (the API server reads the policies' parameters from its own informer, a moment later)."""
    command = [str(build.ensure_built(log=False)["kubectl"]), f"--kubeconfig={kubeconfig}",
               "apply", "-f", str(manifest)]  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if result.returncode == 0:
            return
        if "no params found" not in result.stderr or time.monotonic() > deadline:
            raise SystemExit(f"kubectl apply -f {manifest} failed:\n{result.stderr}")
        time.sleep(0.5)


def _wait_for_decisions(kubeconfig: pathlib.Path, timeout_s: float = 60) -> None:
    """Wait until every gated pod has a recorded reason and every placed pod is bound."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pods = json.loads(kubectl(kubeconfig, "get", "pods", "-A", "-o", "json"))["items"]
        pending = [
            p for p in pods
            if p["metadata"].get("labels", {}).get("app.kubernetes.io/name")
            and not p["spec"].get("nodeName")
            and "greenplace.dev/held" not in (p["metadata"].get("annotations") or {})
        ]  # fmt: skip
        if not pending:
            return
        time.sleep(0.5)
    print("warning: some pods are still undecided after 60s", file=sys.stderr)


SOVEREIGN = {"allowedCountries": ["FR"], "requiredCertifications": [{"name": "SecNumCloud"}]}


def multi_demo() -> int:
    """Three workers, two managers (greenplace's dispatcher, Kueue's AllAtOnce), one Job each
    under a France-only + SecNumCloud policy; print where each reached and was admitted."""
    down(quiet=True)
    shutil.rmtree(MULTI_DIR, ignore_errors=True)
    managers = {"greenplace": multi.GREENPLACE, "all-at-once": multi.ALL_AT_ONCE}
    labels = {"greenplace": "greenplace", "all-at-once": "Kueue AllAtOnce"}
    print(f"starting {len(multi.WORKERS)} workers and {len(managers)} managers, "
          "each a control plane with its own Kueue ...", flush=True)  # fmt: skip
    fleet_ = multi.MultiFleet(managers, workdir=MULTI_DIR, keep=True, log=print)
    fleet_.start()
    print(f"fleet ready in {fleet_.start_seconds:.0f}s, {fleet_.memory_mib():.0f} MiB resident "
          f"({len(fleet_.pids())} processes)")  # fmt: skip
    manager = fleet_.kubeconfig("greenplace")
    log = MULTI_DIR / "operator.log"
    running = operator.start(manager, log, "--multikueue")
    cluster.record_pid(MULTI_DIR, "greenplace-operator", running.process.pid)
    namespace = "sovereign"
    fleet_.namespace(namespace)
    fleet_.apply("greenplace", {
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "PlacementPolicy",
        "metadata": {"name": "france-secnumcloud", "namespace": namespace},
        "spec": {"sovereignty": SOVEREIGN},
    })  # fmt: skip
    with multi.watching(fleet_, namespace) as copies:
        for name in managers:
            fleet_.apply(name, multi.job(namespace, "train"))
        admitted = {name: _admitted(fleet_, name, namespace) for name in managers}
    print(f"\nThe same Job on each manager, its namespace's policy France only + SecNumCloud "
          f"(greenplace's; Kueue's dispatchers do not read it):\n\n"
          f"{'DISPATCHER':<18}{'ADMITTED IN':<18}WORKERS THAT RECEIVED ITS WORKLOAD")  # fmt: skip
    for name, (workload, where) in admitted.items():
        reached = sorted(w for w, seen in copies.seen.items() if f"Workload/{workload}" in seen)
        print(f"{labels[name]:<18}{where:<18}{', '.join(reached)}")
    print(f"\nWhy (greenplace why job/{namespace}/train):")
    why = subprocess.run(
        [sys.executable, "-m", "greenplace.cli.main", "why", f"--kubeconfig={manager}",
         f"job/{namespace}/train"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    print(why.stdout or why.stderr)
    print(f"Still running. Try:\n  export KUBECONFIG={manager}\n"
          "  kubectl get multikueueclusters,gpupools\n"
          f"  .venv/bin/greenplace pools --kubeconfig={manager}\n"
          f"Operator log: {log}\nOperator metrics: {running.metrics_url}\n"
          "Stop everything with: make stop")  # fmt: skip
    return 0


def _admitted(fleet_: multi.MultiFleet, manager: str, namespace: str) -> tuple[str, str]:
    """The Job's Workload on ``manager`` and the worker it was admitted in, once it is."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for workload in fleet_.workloads(manager, namespace):
            where = (workload.get("status") or {}).get("clusterName")
            if where:
                return str(workload["metadata"]["name"]), str(where)
        time.sleep(0.5)
    raise SystemExit(f"{manager}: the Job was not admitted in a worker within 120s")
