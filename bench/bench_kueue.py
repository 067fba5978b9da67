"""Kueue admission with and without greenplace's AdmissionCheck, on the real Kueue.

Why this benchmark exists: a platform that runs Kueue adds greenplace as one more AdmissionCheck
(docs/kueue.md). Every Workload then waits, after Kueue reserves its quota, for greenplace's
answer: one placement cycle, one server-side apply of the check state, an Event. Issue 13 asks
that this costs little: admission throughput with the check at least 0.9x Kueue alone.

Method: the local control plane, kwok GPU nodes (4 pools of 8-GPU nodes in France and Germany,
sized to a block plus 4%), the real Kueue manager (``devcluster.kueue``) and the operator as
``make run`` starts it (``greenplace operate --kueue`` in its own process, running during every
arm, so all share its background load). One ResourceFlavor without node labels (it holds every
pool) and three ClusterQueues with the same quota: ``alone`` lists no check, ``checked`` lists
the greenplace AdmissionCheck, ``instant`` lists a check a trivial controller in this process
answers Ready at once (``_InstantCheck``): what any AdmissionCheck costs in Kueue, so greenplace's
own part can be told from Kueue's. Each arm runs JOBS one-GPU batch/Jobs (1,000 by default,
``--jobs``) in two blocks of JOBS/2, in the order alone, instant, checked, checked, instant,
alone (drift over the run hits every arm alike). A block creates its Jobs from 8 client threads
in a fresh namespace (one PlacementPolicy FR+DE, not labelled governed), and a watch on its
Workloads notes when each is first seen with quota reserved and Admitted. The block's
throughput is its Jobs over the time from the first create to the last Admitted; a Workload's
latency is from its Job's create (returned) to its Admitted being seen. Then the namespace is
deleted (its pods too), so each block starts on the same free cluster.

Printed: each arm's throughput (Workloads admitted per second), the ratios checked / alone and
checked / instant, the p50 and p99 latency of each arm and their differences, and per block the
quota reserved -> Admitted p50/p99 (the second step of admission, which only arms with a check
have). Results of a run with another ``--jobs`` go to ``bench_kueue_<jobs>.json``, unthresholded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from bench import harness, kube
from devcluster import cluster, fleet
from devcluster import kueue as kueue_

NAME = "bench_kueue"
POOLS = 4
CREATE_THREADS = 8
CHECK, FLAVOR = "greenplace", "bench-gpu"
# The third arm's check, answered Ready at once by ``_InstantCheck``: Kueue's own cost of an
# AdmissionCheck (reserve, wait, then admit in a second step) without greenplace's.
INSTANT_CHECK, INSTANT_CONTROLLER = "instant", "bench.greenplace.dev/instant"
ARMS = ("alone", "instant", "checked")
ORDER = ("alone", "instant", "checked", "checked", "instant", "alone")
GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
BLOCK_TIMEOUT_S = 900


def _queues(block: int) -> str:
    """The flavor, the check, and one ClusterQueue per arm with quota for a whole block."""
    documents = [
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ResourceFlavor",
         "metadata": {"name": FLAVOR}, "spec": {}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AdmissionCheck",
         "metadata": {"name": CHECK}, "spec": {"controllerName": "greenplace.dev/placement"}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AdmissionCheck",
         "metadata": {"name": INSTANT_CHECK}, "spec": {"controllerName": INSTANT_CONTROLLER}},
    ]  # fmt: skip
    for arm in ARMS:
        spec: dict[str, Any] = {
            "namespaceSelector": {},
            "resourceGroups": [{
                "coveredResources": ["cpu", "nvidia.com/gpu"],
                "flavors": [{"name": FLAVOR, "resources": [
                    {"name": "cpu", "nominalQuota": block},
                    {"name": "nvidia.com/gpu", "nominalQuota": block}]}],
            }],
        }  # fmt: skip
        check = {"checked": CHECK, "instant": INSTANT_CHECK}.get(arm)
        if check:
            spec["admissionChecksStrategy"] = {"admissionChecks": [{"name": check}]}
        documents.append({"apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterQueue",
                          "metadata": {"name": arm}, "spec": spec})  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})


def _namespace_objects(namespace: str, arm: str) -> str:
    items = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "greenplace.dev/v1alpha1", "kind": "PlacementPolicy",
         "metadata": {"name": "eu", "namespace": namespace},
         "spec": {"sovereignty": {"allowedCountries": ["FR", "DE"]}}},
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LocalQueue",
         "metadata": {"name": arm, "namespace": namespace}, "spec": {"clusterQueue": arm}},
    ]  # fmt: skip
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def _job(namespace: str, arm: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"j{index:04d}", "namespace": namespace,
                     "labels": {"kueue.x-k8s.io/queue-name": arm}},
        "spec": {"completions": 1, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "train", "image": "example.invalid/train:1",
                            "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1"},
                                          "limits": {"nvidia.com/gpu": "1"}}}]}}},
    }  # fmt: skip


def _watch(
    custom: Any, namespace: str, stopped: threading.Event, on_body: Callable[[dict[str, Any]], None]
) -> None:
    """Call ``on_body`` with each Workload of ``namespace`` the watch brings, until ``stopped``."""
    from kubernetes import watch  # noqa: PLC0415 - once the cluster is up

    version = ""
    while not stopped.is_set():
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "workloads",
            resource_version=version, timeout_seconds=30,
        )  # fmt: skip
        for event in stream:
            body = event["object"]
            version = body.get("metadata", {}).get("resourceVersion", version)
            on_body(body)
            if stopped.is_set():
                break


class _AdmittedWatch:
    """Notes, per Job name, when its Workload in ``namespace`` is first seen with quota
    reserved and first seen Admitted."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client  # noqa: PLC0415 - once the cluster is up

        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.reserved: dict[str, float] = {}
        self.admitted: dict[str, float] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        _watch(self.custom, self.namespace, self.stopped, self._note)

    def _note(self, body: dict[str, Any]) -> None:
        seen = time.perf_counter()
        conditions = (body.get("status") or {}).get("conditions") or []
        true = {c.get("type") for c in conditions if c.get("status") == "True"}
        job = next(
            (o["name"] for o in body["metadata"].get("ownerReferences") or []
             if o.get("kind") == "Job"),
            None,
        )  # fmt: skip
        if job is None:
            return
        if "QuotaReserved" in true or "Admitted" in true:
            self.reserved.setdefault(job, seen)
        if "Admitted" in true:
            self.admitted.setdefault(job, seen)

    def stop(self) -> None:
        self.stopped.set()


class _InstantCheck:
    """A minimal AdmissionCheck controller: marks ``INSTANT_CHECK`` Active and answers Ready,
    with no pod set update, for each Workload of ``namespace`` that waits for it (server-side
    apply of the check's state, as greenplace writes it, ``CREATE_THREADS`` at a time)."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client  # noqa: PLC0415 - once the cluster is up

        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.answered: set[str] = set()
        self.pool = concurrent.futures.ThreadPoolExecutor(CREATE_THREADS)
        self.stopped = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def activate(api: Any) -> None:
        from kubernetes import client  # noqa: PLC0415

        client.CustomObjectsApi(api).patch_cluster_custom_object_status(
            GROUP, VERSION, "admissionchecks", INSTANT_CHECK,
            _apply("AdmissionCheck", None, INSTANT_CHECK, {"conditions": [{
                "type": "Active", "status": "True", "reason": "Active", "message": "bench",
                "lastTransitionTime": _now()}]}),
            field_manager="bench-instant", force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip

    def _run(self) -> None:
        _watch(self.custom, self.namespace, self.stopped, self._see)

    def _see(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        states = (body.get("status") or {}).get("admissionChecks") or []
        waiting = any(
            c.get("name") == INSTANT_CHECK and c.get("state") == "Pending" for c in states
        )
        if waiting and name not in self.answered:
            self.answered.add(name)
            self.pool.submit(self._answer, name)

    def _answer(self, name: str) -> None:
        state = {"name": INSTANT_CHECK, "state": "Ready", "message": "bench: ready at once",
                 "lastTransitionTime": _now()}  # fmt: skip
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, "workloads", name,
            _apply("Workload", self.namespace, name, {"admissionChecks": [state]}),
            field_manager="bench-instant", force=True,
            _content_type="application/apply-patch+yaml",
        )  # fmt: skip

    def stop(self) -> None:
        self.stopped.set()
        self.pool.shutdown(wait=False)


def _apply(kind: str, namespace: str | None, name: str, status: dict[str, Any]) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": meta, "status": status}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _block(api: Any, kubectl: kube.Kubectl, arm: str, index: int, jobs: int) -> dict[str, Any]:
    """``jobs`` Jobs to the ``arm`` queue in a fresh namespace; deleted afterwards."""
    from kubernetes import client  # noqa: PLC0415

    namespace = f"kueue-{arm}-{index}"
    kubectl("apply", "-f", "-", stdin=_namespace_objects(namespace, arm))
    batch = client.BatchV1Api(api)
    watcher = _AdmittedWatch(api, namespace)
    instant = _InstantCheck(api, namespace) if arm == "instant" else None
    time.sleep(1)  # the watch is established before the first create (not a proof of anything)
    created: dict[str, float] = {}

    def create(i: int) -> None:
        body = _job(namespace, arm, i)
        batch.create_namespaced_job(namespace, body)
        created[body["metadata"]["name"]] = time.perf_counter()

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
        list(pool.map(create, range(jobs)))
    create_seconds = time.perf_counter() - started
    while len(watcher.admitted) < jobs:
        if time.perf_counter() - started > BLOCK_TIMEOUT_S:
            watcher.stop()
            raise SystemExit(
                f"{namespace}: {len(watcher.admitted)}/{jobs} Workloads admitted after "
                f"{BLOCK_TIMEOUT_S} s"
            )
        time.sleep(0.2)
    watcher.stop()
    if instant is not None:
        instant.stop()
    seconds = max(watcher.admitted.values()) - started
    latencies = sorted(watcher.admitted[name] - created[name] for name in created)
    # Kueue's part (create -> quota reserved) and the rest (the check's answer, then Admitted).
    to_reserved = sorted(watcher.reserved[name] - created[name] for name in created)
    reserved_to_admitted = sorted(watcher.admitted[n] - watcher.reserved[n] for n in created)
    last_reserved = max(watcher.reserved.values()) - started
    kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=600s")
    return {
        "arm": arm,
        "jobs": jobs,
        "create_seconds": round(create_seconds, 2),
        "all_admitted_seconds": round(seconds, 2),
        "admitted_per_second": round(jobs / seconds, 1),
        "all_reserved_seconds": round(last_reserved, 2),
        "reserved_p50_s": round(harness.percentile(to_reserved, 0.5), 3),
        "reserved_to_admitted_p50_s": round(harness.percentile(reserved_to_admitted, 0.5), 3),
        "reserved_to_admitted_p99_s": round(harness.percentile(reserved_to_admitted, 0.99), 3),
        "latencies": latencies,
    }


def _arm(blocks: list[dict[str, Any]], arm: str) -> dict[str, Any]:
    mine = [b for b in blocks if b["arm"] == arm]
    latencies = sorted(x for b in mine for x in b["latencies"])
    jobs = sum(b["jobs"] for b in mine)
    seconds = sum(b["all_admitted_seconds"] for b in mine)
    return {
        "jobs": jobs,
        "admitted_per_second": round(jobs / seconds, 1),
        "blocks_per_second": [b["admitted_per_second"] for b in mine],
        "latency_p50_s": round(harness.percentile(latencies, 0.5), 3),
        "latency_p99_s": round(harness.percentile(latencies, 0.99), 3),
        "latency_mean_s": round(statistics.fmean(latencies), 3),
    }


def _check_active(kubectl: kube.Kubectl) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        check = json.loads(kubectl("get", "admissioncheck", CHECK, "-o", "json"))
        conditions = (check.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Active" and c["status"] == "True" for c in conditions):
            return
        time.sleep(0.5)
    raise SystemExit("greenplace did not mark its AdmissionCheck Active within 60 s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_kueue", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="Jobs per arm (default 1000)")
    args = parser.parse_args(argv)
    block = max(1, args.jobs // 2)
    with cluster.cluster_from_env() as running:
        if not isinstance(running, cluster.LocalCluster):
            raise SystemExit(
                "bench_kueue starts its own Kueue: run it without GREENPLACE_KUBECONFIG"
            )
        kubeconfig = str(running.kubeconfig)
        kubectl = kube.Kubectl(kubeconfig)
        kubectl("apply", "--server-side", "-f", str(harness.BENCH_DIR.parent / "crds"))
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        from kubernetes import config  # noqa: PLC0415 - only once the cluster is up

        api = config.new_client_from_config(kubeconfig)
        nodes = math.ceil(block * 1.04 / (POOLS * kube.GPUS_PER_NODE))
        fleet.apply_fleet(api, kube.gpu_pools("kueue", POOLS, nodes))
        kueue_.start(running)
        kubectl("apply", "--server-side", "-f", "-", stdin=_queues(block))
        operator = kube.start_operator(kubeconfig, "--kueue")
        try:
            _InstantCheck.activate(api)
            _check_active(kubectl)
            blocks = []
            for index, arm in enumerate(ORDER):
                result = _block(api, kubectl, arm, index, block)
                print(f"block {index} {arm}: {block} Workloads admitted in "
                      f"{result['all_admitted_seconds']} s ({result['admitted_per_second']}/s; "
                      f"creates took {result['create_seconds']} s, quota reserved for all by "
                      f"{result['all_reserved_seconds']} s; reserved->Admitted p50 "
                      f"{result['reserved_to_admitted_p50_s']} s, p99 "
                      f"{result['reserved_to_admitted_p99_s']} s)", flush=True)  # fmt: skip
                blocks.append(result)
        finally:
            operator.process.terminate()
            operator.process.wait(timeout=30)
    alone, instant, checked = (_arm(blocks, arm) for arm in ARMS)
    ratio = checked["admitted_per_second"] / alone["admitted_per_second"]
    ratio_instant = checked["admitted_per_second"] / instant["admitted_per_second"]
    added_p50 = checked["latency_p50_s"] - alone["latency_p50_s"]
    added_p99 = checked["latency_p99_s"] - alone["latency_p99_s"]
    names = ("Kueue alone", "Kueue + an instant check", "Kueue + greenplace check")
    for arm, figures in zip(names, (alone, instant, checked), strict=True):
        print(f"{arm}: {figures['jobs']} Workloads, {figures['admitted_per_second']} admitted/s, "
              f"create->Admitted p50 {figures['latency_p50_s']} s, "
              f"p99 {figures['latency_p99_s']} s")  # fmt: skip
    print(f"throughput with the check x{ratio:.2f} of Kueue alone, x{ratio_instant:.2f} of "
          f"Kueue with an instant check; latency added to Kueue alone p50 {added_p50:+.3f} s, "
          f"p99 {added_p99:+.3f} s; to the instant check p50 "
          f"{checked['latency_p50_s'] - instant['latency_p50_s']:+.3f} s")  # fmt: skip
    for entry in blocks:
        del entry["latencies"]
    harness.finish(
        NAME if args.jobs == 1000 else f"{NAME}_{args.jobs}",
        {"jobs_per_arm": 2 * block, "blocks": blocks, "alone": alone, "instant": instant,
         "checked": checked, "operator_log": str(operator.log)},
        {"throughput_ratio": round(ratio, 3),
         "throughput_ratio_to_instant_check": round(ratio_instant, 3),
         "checked_admitted_per_second": checked["admitted_per_second"],
         "added_latency_p50_s": round(added_p50, 3),
         "added_latency_p99_s": round(added_p99, 3)},
    )  # fmt: skip


if __name__ == "__main__":
    main()
