"""A burst of GPU pods through the real API server: governed by greenplace vs kube-scheduler alone.

Why this benchmark exists: the planner alone decides 10,000 workloads in about a second, but a
user waits for the whole path — the gate, the placement cycle, one patch per pod, then
kube-scheduler and kwok. This measures that path end to end on the real local control plane,
against a baseline measured in the same run: the same burst in a namespace greenplace does not
govern (kube-scheduler alone, no gate).

The gate is the MutatingAdmissionPolicy (``greenplace operate --gate=policy``): the API server
adds the scheduling gate itself, so a governed create costs no webhook call (issue 15; the
webhook gate, kept for servers older than 1.36, made a burst 0.55x of kube-scheduler's pace).

Method: a fleet of 10 pools of kwok nodes with 8 GPUs each, sized to BURST plus 4% (France and
Germany). BURST is 2,000 by default; set GREENPLACE_BENCH_BURST for another size (results then
go to ``bench_burst_<BURST>``). Each run creates BURST one-GPU pods and a watch of the namespace
notes when each pod is first seen, released (no scheduling gate left) and bound (a node); the
clock runs from the first create to the last binding. Baseline first (then its namespace is
deleted so its GPUs come back), then the governed run under a France+Germany PlacementPolicy.
The operator is ``greenplace operate`` in its own process, as ``make run`` starts it.

How pods are created (GREENPLACE_BENCH_CREATE, the same in both runs so they compare like with
like): ``concurrent`` (the default) sends 16 creates at a time with the Python client, so the
burst arrives at the API server's pace and the ratio measures greenplace, not the creator;
``kubectl`` sends one ``kubectl apply`` of a List, one request after another (about 90 pods/s
here, which then bounds both runs alike).

A floor run, before the operator starts, measures what any gate costs the API server, so that
what is left of the gap is greenplace's own: the same MutatingAdmissionPolicy (``gatepolicy``,
bound to a namespace of its own and adding a gate of its own) and a trivial placer in the bench
process that sends, per gated pod, the patch greenplace sends (``podspec.placement_patch``:
the pool's affinity, a signed record of the same fields, the gate removed), first-fit, deciding
nothing and watching nothing but that namespace. Its ratio to kube-scheduler alone is the
floor of gating on this API server and machine; the governed run's ratio to it is greenplace's
part.

A third run isolates the operator: BURST pods are created in a governed namespace with no
PlacementPolicy (all gated, and held: greenplace notes why on each), then the policy is applied
and the clock runs until the whole backlog is bound: one plan, BURST patches, kube-scheduler
and kwok.

A fourth run measures latency, not throughput: STEADY pods (1,000) created one by one at
STEADY_RATE (20/s) in the governed namespace. Per pod, from the moment its create was sent (the
bench's monotonic clock; a pod's creationTimestamp has whole-second resolution, too coarse for
sub-second latencies) to the watch showing it released by greenplace's patch (the gate-to-
release latency, greenplace's part) and bound (plus kube-scheduler and kwok): p50 and p99.

The signed placement ledger is on, as by default (issue 17): its cost is the time the governed
run's cycles spent in their ``6-ledger`` phase (the operator's
``greenplace_cycle_phase_seconds`` histogram, read before and after), as a share of the run.

Where the time goes (``costs`` in each run's result): the API server's writes per pod, by
resource and verb (its ``apiserver_request_total``, read before and after), the time its
admission plugins took per pod (``apiserver_admission_controller_admission_duration_seconds``:
greenplace's CEL runs in the MutatingAdmissionPolicy and ValidatingAdmissionPolicy plugins),
and the CPU seconds
per pod of each process of the control plane and of the operator (``/proc/<pid>/stat``, read
before and after). On a machine whose cores the API server saturates, a run's pace follows
the writes each pod costs it.

Where the operator runs (GREENPLACE_BENCH_PIN): unset, every process shares every core, so on
a 2-core machine the operator's own CPU is taken from the API server's. In a cluster it runs
in a pod on a worker node, beside neither the API server nor etcd. With
GREENPLACE_BENCH_PIN=1 the control plane (etcd, API server, scheduler, controller manager,
kwok) is pinned to the first core and the benchmark's creator and the operator to the others,
in both runs alike; the results then go to ``bench_burst_pinned`` (``_<BURST>`` appended for
another size).
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import math
import os
import pathlib
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client import parser

from bench import harness, kube
from greenplace.controller import gatepolicy, podspec, records, resources, webhook

NAME = "bench_burst"
BURST = int(os.environ.get("GREENPLACE_BENCH_BURST", "2000"))
CREATE = os.environ.get("GREENPLACE_BENCH_CREATE", "concurrent")
if CREATE not in ("concurrent", "kubectl"):
    raise SystemExit(
        f"GREENPLACE_BENCH_CREATE={CREATE!r}: use 'concurrent' (16 creates at a time with the "
        "Python client) or 'kubectl' (one kubectl apply of a List)"
    )
CREATE_CONCURRENCY = 16
STEADY = 1000
STEADY_RATE = 20.0  # pods per second
POOLS = 10
NODES_PER_POOL = math.ceil(BURST * 1.04 / (POOLS * kube.GPUS_PER_NODE))
TIMEOUT_S = 1800.0
PIN = os.environ.get("GREENPLACE_BENCH_PIN", "") == "1"
# The floor run's own gate, namespace label and admission policy (not greenplace's).
FLOOR_GATE = "bench.greenplace.dev/floor"
FLOOR_LABEL = "bench.greenplace.dev/floor"
FLOOR_POLICY = "bench-floor-gate"


def phase_seconds(metrics_url: str, phase: str) -> float:
    """Seconds the operator's cycles have spent in ``phase`` so far."""
    with urllib.request.urlopen(metrics_url, timeout=10) as page:
        families = parser.text_string_to_metric_families(page.read().decode())
        return sum(
            sample.value
            for family in families
            if family.name == "greenplace_cycle_phase_seconds"
            for sample in family.samples
            if sample.name.endswith("_sum") and sample.labels.get("phase") == phase
        )


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE"})


def api_writes(metrics: str) -> dict[str, float]:
    """The API server's successful writes so far, by ``resource[/subresource] VERB``."""
    out: dict[str, float] = {}
    for family in parser.text_string_to_metric_families(metrics):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            if not sample.name.endswith("_total") or labels.get("verb") not in _WRITES:
                continue
            if not labels.get("code", "").startswith("2"):
                continue
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += f"/{labels['subresource']}"
            key = f"{resource} {labels['verb']}"
            out[key] = out.get(key, 0.0) + sample.value
    return out


def admission_seconds(metrics: str) -> dict[str, float]:
    """Seconds the API server's admission plugins have taken so far, by ``plugin OPERATION``
    (the MutatingAdmissionPolicy and ValidatingAdmissionPolicy plugins run greenplace's CEL)."""
    out: dict[str, float] = {}
    for family in parser.text_string_to_metric_families(metrics):
        if family.name != "apiserver_admission_controller_admission_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                key = f"{sample.labels.get('name')} {sample.labels.get('operation')}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # not on this machine (an existing cluster) or gone
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def pin(pid: int, cores: set[int]) -> None:
    """Run every thread of process ``pid`` on ``cores`` (threads it starts later inherit it)."""
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), cores)


class Costs:
    """What a run cost per pod: API writes by kind, CPU seconds by process."""

    def __init__(self, bench: Bench, pids: dict[str, int]) -> None:
        self.bench, self.pids = bench, pids
        metrics = bench.kubectl("get", "--raw", "/metrics")
        self.writes, self.admission = api_writes(metrics), admission_seconds(metrics)
        self.cpu = cpu_seconds(pids)

    def per_pod(self, pods: int) -> dict[str, Any]:
        metrics, cpu = self.bench.kubectl("get", "--raw", "/metrics"), cpu_seconds(self.pids)
        added = {k: v - self.writes.get(k, 0.0) for k, v in api_writes(metrics).items()}
        admitted = {
            k: 1000 * (v - self.admission.get(k, 0.0)) / pods
            for k, v in admission_seconds(metrics).items()
        }
        return {
            "api_writes_per_pod": round(sum(added.values()) / pods, 2),
            "api_writes_per_pod_by_kind": {
                k: round(v / pods, 2) for k, v in sorted(added.items()) if v / pods >= 0.01
            },
            "admission_ms_per_pod": {
                k: round(v, 2) for k, v in sorted(admitted.items()) if v >= 0.05
            },
            "cpu_ms_per_pod": {
                k: round(1000 * (v - self.cpu.get(k, 0.0)) / pods, 2) for k, v in cpu.items()
            },
        }


def _pod(namespace: str, name: str) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": "1"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "main", "image": "x",
                                     "resources": {"limits": limits}}]}}  # fmt: skip


class Pods:
    """One namespace's pods as a watch sees them: when each was first seen, released, bound.

    A raw watch (JSON lines, no client models) in a thread, so the bench's own CPU stays small
    beside the control plane's; times are ``time.monotonic()``.
    """

    def __init__(
        self, api: Any, namespace: str, on_added: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        from kubernetes import client  # noqa: PLC0415 - only once the cluster is up

        self._core = client.CoreV1Api(api)
        self.namespace = namespace
        self.seen: dict[str, float] = {}
        self.held: dict[str, float] = {}  # greenplace said why it waits (its hold annotation)
        self.released: dict[str, float] = {}
        self.bound: dict[str, float] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._on_added = on_added  # the floor's placer: each pod as the watch first sees it
        listed = self._core.list_namespaced_pod(namespace, _preload_content=False)
        self._version = json.loads(listed.data)["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            response = self._core.list_namespaced_pod(
                self.namespace, watch=True, resource_version=self._version,
                allow_watch_bookmarks=True, timeout_seconds=300, _preload_content=False,
            )  # fmt: skip
            pending = b""
            for chunk in response.stream(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line:
                        self._event(json.loads(line))
                if self._stop.is_set():
                    break
            response.release_conn()

    def _event(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        pod = event["object"]
        self._version = pod["metadata"]["resourceVersion"]
        if event["type"] not in ("ADDED", "MODIFIED"):
            return
        if event["type"] == "ADDED" and self._on_added is not None:
            self._on_added(pod)
        name = pod["metadata"]["name"]
        with self._changed:
            self.seen.setdefault(name, now)
            if podspec.HOLD_ANNOTATION in (pod["metadata"].get("annotations") or {}):
                self.held.setdefault(name, now)
            if not pod["spec"].get("schedulingGates"):
                self.released.setdefault(name, now)
            if pod["spec"].get("nodeName"):
                self.bound.setdefault(name, now)
            self._changed.notify_all()

    def wait(self, what: Callable[[], bool], started: float, label: str) -> float:
        """Seconds from ``started`` until ``what()`` holds."""
        with self._changed:
            while not what():
                if time.monotonic() - started > TIMEOUT_S:
                    raise SystemExit(f"{self.namespace}: {label} not reached after {TIMEOUT_S} s")
                self._changed.wait(1.0)
        return time.monotonic() - started

    def close(self) -> None:
        self._stop.set()


def floor_gate_policy() -> list[dict[str, Any]]:
    """greenplace's gate MutatingAdmissionPolicy and binding, renamed: the same CEL adding the
    floor's gate, to namespaces labelled ``FLOOR_LABEL`` (greenplace governs none of them)."""
    text = json.dumps([gatepolicy.policy(resources.Accelerators(), name=FLOOR_POLICY),
                       gatepolicy.binding(FLOOR_POLICY, FLOOR_POLICY)])  # fmt: skip
    for ours, floors in ((podspec.GATE, FLOOR_GATE), (webhook.GOVERNED_LABEL, FLOOR_LABEL)):
        if ours not in text:
            raise SystemExit(f"the gate policy no longer names {ours!r}: update the floor run")
        text = text.replace(ours, floors)
    policies: list[dict[str, Any]] = json.loads(text)
    return policies


class FloorPlacer:
    """The cheapest gate-based placer: per gated pod, greenplace's release patch, first-fit.

    It decides nothing (pools filled in order), keeps nothing but a count, and sends the patch
    ``podspec.placement_patch`` builds, with a record of the fields greenplace records, signed
    the same way; so the API server's side of a release is greenplace's, and the rest of the
    governed run's gap is greenplace's process and its cycles.
    """

    def __init__(self, api: Any, pools: list[Any]) -> None:
        from kubernetes import client  # noqa: PLC0415 - only once the cluster is up

        self._core = client.CoreV1Api(api)
        ends = itertools.accumulate(p.nodes * p.gpus_per_node for p in pools)
        # (the index past the pool's last GPU, its name, node labels, country), in order
        self._pools = [(end, p.name, p.spec["nodeSelector"], p.spec["location"]["country"])
                       for end, p in zip(ends, pools, strict=True)]  # fmt: skip
        self._signer = records.Signer(b"bench-floor-record-key")
        self._placed = 0
        self._lock = threading.Lock()
        self._threads = concurrent.futures.ThreadPoolExecutor(CREATE_CONCURRENCY)
        self.errors: list[str] = []

    def __call__(self, pod: dict[str, Any]) -> None:
        gates = [g.get("name") for g in pod["spec"].get("schedulingGates") or []]
        if FLOOR_GATE not in gates:
            return
        with self._lock:
            index, self._placed = self._placed, self._placed + 1
        name, labels, country = next(
            (n, labels, c) for end, n, labels, c in self._pools if index < end
        )
        record = {"pool": name, "country": country, "reason": "LowestCarbon",
                  "policies": [f"{pod['metadata']['namespace']}/eu"], "gco2PerKwh": 50.0,
                  "at": "2026-12-07T00:00:00.000000Z", "budgets": [],
                  "message": f"pool {name}: lowest carbon intensity among 10 allowed pools",
                  "charge": {"money": 0.0, "kgCO2e": 0.0, "kWh": 0.0, "gpuHours": 0.0}}  # fmt: skip
        # greenplace's patch removes greenplace's gate: the pod as if it carried that one
        view = {**pod, "spec": {**pod["spec"], "schedulingGates": [{"name": podspec.GATE}]}}
        ops = podspec.placement_patch(
            view, labels, self._signer.sign(pod["metadata"]["uid"], record)
        )
        self._threads.submit(self._patch, pod["metadata"]["namespace"], pod["metadata"]["name"],
                             ops)  # fmt: skip

    def _patch(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> None:
        try:
            self._core.patch_namespaced_pod(
                name, namespace, ops, _preload_content=False, _request_timeout=(5, 60)
            )
        except Exception as error:  # reported by the run, which fails on any
            self.errors.append(f"{namespace}/{name}: {error}")

    @property
    def placed(self) -> int:
        """Pods seen carrying the floor's gate, and so patched."""
        return self._placed

    def close(self) -> None:
        self._threads.shutdown(wait=True)


class Bench:
    def __init__(self, kubeconfig: str) -> None:
        from kubernetes import client, config  # noqa: PLC0415 - only once the cluster is up

        self.kubectl = kube.Kubectl(kubeconfig)
        configuration = client.Configuration()
        config.load_kube_config(kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = CREATE_CONCURRENCY + 2
        self.api = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self.api)

    def namespace(self, namespace: str, governed: bool, label: str | None = None) -> None:
        labels = {webhook.GOVERNED_LABEL: "true"} if governed else {}
        if label is not None:
            labels[label] = "true"
        self.kubectl("apply", "-f", "-", stdin=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace",
             "metadata": {"name": namespace, "labels": labels}}))  # fmt: skip

    def policy(self, namespace: str) -> None:
        self.kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "greenplace.dev/v1alpha1", "kind": "PlacementPolicy",
            "metadata": {"name": "eu", "namespace": namespace},
            "spec": {"sovereignty": {"allowedCountries": ["FR", "DE"]}}}))  # fmt: skip

    def create_one(self, namespace: str, name: str) -> None:
        self._core.create_namespaced_pod(
            namespace, _pod(namespace, name), _preload_content=False, _request_timeout=(5, 60)
        )

    def create(self, namespace: str, count: int) -> None:
        """``count`` pods b00000.. in ``namespace``, as GREENPLACE_BENCH_CREATE says."""
        names = [f"b{i:05d}" for i in range(count)]
        if CREATE == "kubectl":
            items = [_pod(namespace, n) for n in names]
            pods = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
            self.kubectl("apply", "-f", "-", stdin=pods)
            return
        with concurrent.futures.ThreadPoolExecutor(CREATE_CONCURRENCY) as threads:
            for _ in threads.map(lambda n: self.create_one(namespace, n), names):
                pass

    def burst(
        self, namespace: str, governed: bool, pids: dict[str, int],
        placer: FloorPlacer | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """BURST pods created at once; time to bind them all. With ``placer``: the floor run
        (the namespace labelled for the floor's gate, released by ``placer``)."""
        self.namespace(namespace, governed, FLOOR_LABEL if placer is not None else None)
        if governed:
            self.policy(namespace)
        pods = Pods(self.api, namespace, placer)
        costs = Costs(self, pids)
        started = time.monotonic()
        self.create(namespace, BURST)
        created = time.monotonic() - started
        seconds = pods.wait(lambda: len(pods.bound) >= BURST, started, "every pod bound")
        pods.close()
        if placer is not None and placer.placed < BURST:  # some pods never carried its gate
            raise SystemExit(f"{namespace}: the floor's placer released {placer.placed} pods "
                             f"of {BURST}: the others were bound ungated")  # fmt: skip
        return {
            "pods": BURST,
            "create_seconds": round(created, 2),
            "all_bound_seconds": round(seconds, 2),
            "last_bound_after_last_create_seconds": round(seconds - created, 2),
            "pods_per_second": round(BURST / seconds, 1),
            "costs": costs.per_pod(BURST),
        }

    def floor(self, namespace: str, pools: list[Any], pids: dict[str, int]) -> dict[str, Any]:
        """The burst under the floor's gate and placer (before greenplace runs)."""
        policies = floor_gate_policy()
        self.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                           "items": policies}))  # fmt: skip
        placer = FloorPlacer(self.api, pools)
        try:
            self._await_floor_gate(namespace)
            result = self.burst(namespace, governed=False, pids=pids, placer=placer)
        finally:
            placer.close()
            for body in reversed(policies):
                self.kubectl("delete", body["kind"], body["metadata"]["name"],
                             "--ignore-not-found")  # fmt: skip
        if placer.errors:
            raise SystemExit(f"the floor's patches failed: {placer.errors[:3]}")
        return result

    def _await_floor_gate(self, namespace: str) -> None:
        """Until the API server applies the floor's policy (its informer takes a moment): a
        server-side dry-run create in the floor's namespace comes back gated."""
        self.namespace(namespace, governed=False, label=FLOOR_LABEL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            created = self._core.create_namespaced_pod(
                namespace, _pod(namespace, "dry-run"), dry_run="All", _preload_content=False
            )
            gates = json.loads(created.data)["spec"].get("schedulingGates") or []
            if any(g.get("name") == FLOOR_GATE for g in gates):
                return
            time.sleep(0.5)
        raise SystemExit("the floor's gate policy was not applied within 60 s")

    def backlog(self, namespace: str, pids: dict[str, int]) -> dict[str, Any]:
        """BURST pods gated and held (no policy yet); then the policy: time to bind them all."""
        self.namespace(namespace, governed=True)
        pods = Pods(self.api, namespace)
        self.create(namespace, BURST)
        # Held: gated, and greenplace has said why on each (no policy), so the clock below
        # runs for the release alone.
        pods.wait(lambda: len(pods.held) >= BURST, time.monotonic(), "every pod held")
        if pods.released:
            raise SystemExit(f"{namespace}: {len(pods.released)} pods were never gated")
        costs = Costs(self, pids)
        started = time.monotonic()
        self.policy(namespace)
        first = pods.wait(lambda: bool(pods.released), started, "a first release")
        released = pods.wait(lambda: len(pods.released) >= BURST, started, "every pod released")
        seconds = pods.wait(lambda: len(pods.bound) >= BURST, started, "every pod bound")
        pods.close()
        return {
            "pods": BURST,
            "first_release_seconds": round(first, 2),
            "all_released_seconds": round(released, 2),
            "all_bound_seconds": round(seconds, 2),
            "pods_per_second": round(BURST / seconds, 1),
            "costs": costs.per_pod(BURST),
        }

    def steady(self, namespace: str) -> dict[str, Any]:
        """STEADY pods at STEADY_RATE; per pod, create sent -> released, and -> bound."""
        self.namespace(namespace, governed=True)
        self.policy(namespace)
        pods = Pods(self.api, namespace)
        sent: dict[str, float] = {}
        started = time.monotonic()
        for i in range(STEADY):
            time.sleep(max(0.0, started + i / STEADY_RATE - time.monotonic()))
            name = f"s{i:05d}"
            sent[name] = time.monotonic()
            self.create_one(namespace, name)
        rate = STEADY / (time.monotonic() - started)
        pods.wait(lambda: len(pods.bound) >= STEADY, started, "every pod bound")
        pods.close()
        release = sorted(pods.released[n] - sent[n] for n in sent)
        bound = sorted(pods.bound[n] - sent[n] for n in sent)
        return {
            "pods": STEADY,
            "rate_per_second": round(rate, 1),
            "release_p50_seconds": round(harness.percentile(release, 0.5), 3),
            "release_p99_seconds": round(harness.percentile(release, 0.99), 3),
            "release_max_seconds": round(release[-1], 3),
            "bound_p50_seconds": round(harness.percentile(bound, 0.5), 3),
            "bound_p99_seconds": round(harness.percentile(bound, 0.99), 3),
        }

    def delete(self, namespace: str) -> None:
        """Delete ``namespace``; its pods at once (kwok would end them one by one, slowly)."""
        self.kubectl("delete", "pods", "--all", "-n", namespace, "--grace-period=0", "--force",
                     "--wait=false")  # fmt: skip
        self.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=900s")


def summary(
    baseline: dict[str, Any], floor: dict[str, Any], governed: dict[str, Any],
    backlog: dict[str, Any], steady: dict[str, Any],
) -> tuple[float, float, float, float]:  # fmt: skip
    """Print the runs' ratios; return them (governed, floor, governed to floor, backlog)."""
    ratio = governed["pods_per_second"] / baseline["pods_per_second"]
    floor_ratio = floor["pods_per_second"] / baseline["pods_per_second"]
    to_floor = governed["pods_per_second"] / floor["pods_per_second"]
    print(
        f"floor of gating: {BURST} pods bound in {floor['all_bound_seconds']} s "
        f"({floor['pods_per_second']} pods/s), x{floor_ratio:.2f} of kube-scheduler alone; "
        f"greenplace-governed x{to_floor:.2f} of the floor"
    )
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
    print(
        f"signed ledger: {governed['ledger_seconds']} s of the governed run's "
        f"{governed['all_bound_seconds']} s ({governed['ledger_share']:.1%})"
    )
    print(
        f"steady {STEADY_RATE:.0f}/s: create to release p50 {steady['release_p50_seconds']} s, "
        f"p99 {steady['release_p99_seconds']} s; to binding p99 {steady['bound_p99_seconds']} s"
    )
    return ratio, floor_ratio, to_floor, drain


def main() -> None:
    from devcluster import cluster, fleet  # noqa: PLC0415 - starts nothing on import

    with cluster.cluster_from_env() as running:
        kubeconfig = str(running.kubeconfig)
        bench = Bench(kubeconfig)
        bench.kubectl("apply", "--server-side", "-f", str(harness.BENCH_DIR.parent / "crds"))
        bench.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        pools = kube.gpu_pools("burst", POOLS, NODES_PER_POOL)
        fleet.apply_fleet(bench.api, pools)
        pids = running.processes.pids() if isinstance(running, cluster.LocalCluster) else {}
        others = set(range(1, os.cpu_count() or 1)) or {0}
        if PIN:  # the control plane on core 0; this process (and its threads) on the others
            for pid in pids.values():
                pin(pid, {0})
            pin(os.getpid(), others)
        baseline = bench.burst("burst-plain", governed=False, pids=pids)
        print(f"kube-scheduler alone: {BURST} pods bound in {baseline['all_bound_seconds']} s "
              f"({baseline['pods_per_second']} pods/s; created in {baseline['create_seconds']} s "
              f"by {CREATE})", flush=True)  # fmt: skip
        print(f"kube-scheduler alone costs: {baseline['costs']}", flush=True)
        bench.delete("burst-plain")
        floor = bench.floor("burst-floor", pools, pids)
        print(f"floor (the gate MAP + a first-fit placer sending greenplace's patch): {floor}",
              flush=True)  # fmt: skip
        bench.delete("burst-floor")
        operator = kube.start_operator(kubeconfig, "--gate=policy")
        pids = {**pids, "greenplace": operator.process.pid}
        if PIN:
            pin(operator.process.pid, others)
        try:
            ledger_before = phase_seconds(operator.metrics_url, "6-ledger")
            governed = bench.burst("burst-governed", governed=True, pids=pids)
            ledger_s = phase_seconds(operator.metrics_url, "6-ledger") - ledger_before
            governed["ledger_seconds"] = round(ledger_s, 2)
            governed["ledger_share"] = round(ledger_s / governed["all_bound_seconds"], 3)
            print(f"governed: {governed}", flush=True)
            bench.delete("burst-governed")
            backlog = bench.backlog("burst-backlog", pids)
            print(f"backlog: {backlog}", flush=True)
            bench.delete("burst-backlog")
            steady = bench.steady("burst-steady")
            print(f"steady: {steady}", flush=True)
        finally:
            operator.process.terminate()
            operator.process.wait(timeout=30)
    ratio, floor_ratio, to_floor, drain = summary(baseline, floor, governed, backlog, steady)
    name = f"{NAME}_pinned" if PIN else NAME
    harness.finish(
        name if BURST == 2000 else f"{name}_{BURST}",
        {"burst": BURST, "create": CREATE, "gate": "policy", "pinned": PIN,
         "gpus": POOLS * NODES_PER_POOL * kube.GPUS_PER_NODE, "baseline": baseline,
         "floor": floor, "governed": governed, "backlog": backlog, "steady": steady,
         "operator_log": str(operator.log)},
        {"governed_pods_per_second": governed["pods_per_second"],
         "ratio_to_kube_scheduler_alone": round(ratio, 3),
         "floor_ratio_to_kube_scheduler_alone": round(floor_ratio, 3),
         "ratio_to_floor": round(to_floor, 3),
         "backlog_pods_per_second": backlog["pods_per_second"],
         "backlog_ratio_to_kube_scheduler_alone": round(drain, 3),
         "steady_release_p99_seconds": steady["release_p99_seconds"],
         "ledger_share_of_governed_run": governed["ledger_share"]},
    )  # fmt: skip


if __name__ == "__main__":
    main()
