"""MultiKueue dispatch across three real worker clusters: greenplace vs Kueue's own dispatchers.

Why this benchmark exists: greenplace is MultiKueue's dispatcher (docs/multicluster.md). It
must not slow dispatch down to keep Jobs out of clusters they may not enter: issue 14 asks for
greenplace's throughput at least 0.9x AllAtOnce's (Kueue's default), with one remote copy per
Job where AllAtOnce creates one per worker.

Method: ``devcluster.multi`` starts three workers (FR SecNumCloud, DE C5, a US provider's IE
region; ``--nodes`` kwok nodes of 8 GPUs each, every one able to hold a whole arm) and three
managers over them, each a real control plane with its own Kueue: one dispatched by greenplace
(``greenplace operate --multikueue``, its own process), one by AllAtOnce, one by Incremental.
Every arm sends JOBS one-GPU MultiKueue batch/Jobs (500 by default, ``--jobs``) to its manager,
in two blocks of JOBS/2, in the order greenplace, all-at-once, incremental, incremental,
all-at-once, greenplace (drift hits every arm alike). A block creates its Jobs from 8 client
threads in a fresh namespace with an EU PlacementPolicy (FR, DE, IE: every worker allowed, so
each arm can use all three); a watch on the manager notes when each Workload is first seen
with ``status.clusterName`` (admitted in a worker), and a watch on every worker counts the
Workloads created there (``multi.Copies``). Throughput: a block's Jobs over first create to
last admitted; latency: a Job's create to its Workload's clusterName. Then the namespace is
deleted on the manager (MultiKueue removes the remote copies) and on every worker.

Printed: per arm throughput, p50/p99 dispatch latency and remote Workloads created per Job;
the ratios greenplace / AllAtOnce and greenplace / Incremental. Runs with another ``--jobs``
write ``bench_multikueue_<jobs>.json``, unthresholded.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import threading
import time
from typing import Any

from bench import harness, kube
from devcluster import multi

NAME = "bench_multikueue"
CREATE_THREADS = 8
ARMS = {"greenplace": multi.GREENPLACE, "all-at-once": multi.ALL_AT_ONCE,
        "incremental": multi.INCREMENTAL}  # fmt: skip
ORDER = ("greenplace", "all-at-once", "incremental", "incremental", "all-at-once", "greenplace")
EU = {"allowedCountries": ["FR", "DE", "IE"]}
BLOCK_TIMEOUT_S = 900


class _Dispatched:
    """When each Workload of ``namespace`` on a manager is first seen with a clusterName
    (its owning Job's name -> ``time.perf_counter()``): a list, then a watch from it."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client  # noqa: PLC0415 - once the clusters are up

        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.admitted: dict[str, float] = {}
        self.stopped = threading.Event()
        first = self._list()
        self.thread = threading.Thread(target=self._run, args=(first,), daemon=True)
        self.thread.start()

    def _list(self, **options: Any) -> Any:
        return self.custom.list_namespaced_custom_object(
            "kueue.x-k8s.io", "v1beta2", self.namespace, "workloads", **options
        )

    def _run(self, first: dict[str, Any]) -> None:
        from kubernetes import watch  # noqa: PLC0415

        version = first["metadata"]["resourceVersion"]
        while not self.stopped.is_set():
            for event in watch.Watch().stream(
                self._list, resource_version=version, timeout_seconds=5
            ):
                body = event["object"]
                version = body["metadata"].get("resourceVersion", version)
                self._note(body)
                if self.stopped.is_set():
                    return

    def _note(self, body: dict[str, Any]) -> None:
        if not (body.get("status") or {}).get("clusterName"):
            return
        owners = body["metadata"].get("ownerReferences") or []
        for owner in owners:
            if owner.get("kind") == "Job":
                self.admitted.setdefault(owner["name"], time.perf_counter())


def _block(fleet: multi.MultiFleet, arm: str, index: int, jobs: int) -> dict[str, Any]:
    from kubernetes import client  # noqa: PLC0415

    namespace = f"mk-{arm}-{index}"
    fleet.namespace(namespace)
    if arm == "greenplace":
        fleet.apply(arm, {
            "apiVersion": "greenplace.dev/v1alpha1", "kind": "PlacementPolicy",
            "metadata": {"name": "eu", "namespace": namespace}, "spec": {"sovereignty": EU},
        })  # fmt: skip
    api = fleet.api(arm)
    batch = client.BatchV1Api(api)
    dispatched = _Dispatched(api, namespace)
    created: dict[str, float] = {}
    with multi.watching(fleet, namespace) as copies:

        def create(i: int) -> None:
            body = multi.job(namespace, f"j{i:04d}")
            batch.create_namespaced_job(namespace, body)
            created[body["metadata"]["name"]] = time.perf_counter()

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CREATE_THREADS) as pool:
            list(pool.map(create, range(jobs)))
        while len(dispatched.admitted) < jobs:
            if time.perf_counter() - started > BLOCK_TIMEOUT_S:
                raise SystemExit(f"{arm}: {len(dispatched.admitted)}/{jobs} Jobs admitted in a "
                                 f"worker after {BLOCK_TIMEOUT_S} s")  # fmt: skip
            time.sleep(0.2)
        dispatched.stopped.set()
        seconds = max(dispatched.admitted.values()) - started
        remote = copies.count("Workload")
        where = {w: sum(1 for e in seen if e.startswith("Job/")) for w, seen in copies.seen.items()}
    latencies = sorted(dispatched.admitted[n] - created[n] for n in created)
    for name in (arm, *fleet.workers):
        fleet.kubectl(name, "delete", "namespace", namespace, "--wait=true", "--timeout=600s")
    return {
        "arm": arm, "jobs": jobs, "seconds": round(seconds, 2),
        "admitted_per_second": round(jobs / seconds, 2),
        "remote_workloads": remote, "jobs_per_worker": where, "latencies": latencies,
    }  # fmt: skip


def _arm(blocks: list[dict[str, Any]], arm: str) -> dict[str, Any]:
    mine = [b for b in blocks if b["arm"] == arm]
    latencies = sorted(x for b in mine for x in b["latencies"])
    jobs = sum(b["jobs"] for b in mine)
    return {
        "jobs": jobs,
        "admitted_per_second": round(jobs / sum(b["seconds"] for b in mine), 2),
        "latency_p50_s": round(harness.percentile(latencies, 0.5), 3),
        "latency_p99_s": round(harness.percentile(latencies, 0.99), 3),
        "remote_workloads_per_job": round(sum(b["remote_workloads"] for b in mine) / jobs, 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=NAME, description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="Jobs per arm (default 500)")
    args = parser.parse_args(argv)
    block = max(1, args.jobs // 2)
    nodes = math.ceil(block * 1.1 / 8)
    with multi.MultiFleet(ARMS, nodes=nodes, log=print) as fleet:
        print(
            f"{len(fleet.workers)} workers, {len(fleet.managers)} managers ready in "
            f"{fleet.start_seconds:.0f} s, {fleet.memory_mib():.0f} MiB resident",
            flush=True,
        )
        running = kube.start_operator(str(fleet.kubeconfig("greenplace")), "--multikueue")
        try:
            blocks = []
            for index, arm in enumerate(ORDER):
                result = _block(fleet, arm, index, block)
                print(f"block {index} {arm}: {block} Jobs admitted in workers in "
                      f"{result['seconds']} s ({result['admitted_per_second']}/s), "
                      f"{result['remote_workloads']} remote Workloads, Jobs per worker "
                      f"{result['jobs_per_worker']}", flush=True)  # fmt: skip
                blocks.append(result)
        finally:
            running.process.terminate()
            running.process.wait(timeout=30)
    arms = {arm: _arm(blocks, arm) for arm in ARMS}
    for arm, figures in arms.items():
        print(f"{arm}: {figures['admitted_per_second']} Jobs/s, dispatch p50 "
              f"{figures['latency_p50_s']} s, p99 {figures['latency_p99_s']} s, "
              f"{figures['remote_workloads_per_job']} remote Workloads per Job")  # fmt: skip
    greenplace = arms["greenplace"]["admitted_per_second"]
    to_all = greenplace / arms["all-at-once"]["admitted_per_second"]
    to_incremental = greenplace / arms["incremental"]["admitted_per_second"]
    print(f"greenplace throughput x{to_all:.2f} of AllAtOnce, x{to_incremental:.2f} of Incremental")
    for entry in blocks:
        del entry["latencies"]
    harness.finish(
        NAME if args.jobs == 500 else f"{NAME}_{args.jobs}",
        {"jobs_per_arm": 2 * block, "blocks": blocks, "arms": arms,
         "operator_log": str(running.log)},
        {"throughput_ratio_to_all_at_once": round(to_all, 3),
         "throughput_ratio_to_incremental": round(to_incremental, 3),
         "greenplace_remote_workloads_per_job": arms["greenplace"]["remote_workloads_per_job"],
         "dispatch_p99_ratio_to_all_at_once": round(
             arms["greenplace"]["latency_p99_s"] / arms["all-at-once"]["latency_p99_s"], 3)},
    )  # fmt: skip


if __name__ == "__main__":
    main()
