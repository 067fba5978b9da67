"""Several real clusters on one machine, wired for Kueue's MultiKueue.

Why this module exists: greenplace's dispatcher decides which cluster a Job may reach, so it
is proven (tests, demo, benchmark) on separate control planes, never on namespaces of one.
``MultiFleet`` starts workers and one or more managers, each a ``cluster.LocalCluster`` (its own
etcd, API server, scheduler, controller-manager, kwok) with its own real Kueue:

* every worker gets kwok GPU nodes and a ClusterQueue with their GPUs as quota;
* every manager gets a Secret (an inline kubeconfig), a MultiKueueCluster per worker, a
  MultiKueueConfig, the MultiKueue AdmissionCheck and a ClusterQueue over all workers' GPUs,
  and its Kueue runs with its own ``multiKueue.dispatcherName`` and ``origin`` (so managers
  sharing workers never garbage-collect each other's copies: AllAtOnce next to greenplace
  in the same run);
* a manager dispatched by greenplace also gets greenplace's CRDs and one GpuPool per worker
  (``spec.cluster``): the facts of ``WORKERS``, in one place.

``Copies`` watches every worker's API server and records every Workload and Job created in a
namespace: what reached which cluster, as the workers saw it.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Self

import yaml
from kubernetes import client, config, watch

from devcluster import build, cluster, kueue

__all__ = [
    "ALL_AT_ONCE",
    "GREENPLACE",
    "INCREMENTAL",
    "KUEUE",
    "WORKERS",
    "Copies",
    "MultiFleet",
    "Worker",
    "inline_kubeconfig",
    "job",
    "kubeconfig_secret",
    "multikueue_cluster",
    "pool",
    "queues",
    "watching",
]

KUEUE = "kueue.x-k8s.io/v1beta2"
GPU = "nvidia.com/gpu"
GREENPLACE = "greenplace.dev/dispatcher"  # greenplace.controller.dispatch.DISPATCHER_NAME
ALL_AT_ONCE = "kueue.x-k8s.io/multikueue-dispatcher-all-at-once"
INCREMENTAL = "kueue.x-k8s.io/multikueue-dispatcher-incremental"
MULTIKUEUE_CONTROLLER = "kueue.x-k8s.io/multikueue"
ROOT = pathlib.Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Worker:
    """What is true of one worker cluster, as its GpuPool on a manager says it."""

    name: str
    pool: str
    country: str
    legal_home: str
    exposures: tuple[str, ...]
    certifications: tuple[str, ...]
    grams_per_kwh: float
    price_per_gpu_hour: float
    pue: float


WORKERS = (
    Worker("fr-secnumcloud", "fr-h100", "FR", "FR", (), ("SecNumCloud",), 56.0, 3.1, 1.3),
    Worker("de-c5", "de-h100", "DE", "DE", (), ("C5",), 380.0, 2.6, 1.25),
    Worker("us-eu-west", "ie-h100", "IE", "US", ("US-CLOUD-Act",), (), 20.0, 2.2, 1.15),
)


def pool(worker: Worker) -> dict[str, Any]:
    """The GpuPool that describes ``worker`` on a manager greenplace dispatches for."""
    return {
        "apiVersion": "greenplace.dev/v1alpha1",
        "kind": "GpuPool",
        "metadata": {"name": worker.pool},
        "spec": {
            "cluster": worker.name,
            "nodeSelector": {"greenplace.dev/pool": worker.pool},
            "location": {"provider": worker.name.split("-")[0], "region": worker.name,
                         "country": worker.country, "gridZone": worker.country},
            "jurisdiction": {"legalHome": worker.legal_home, "exposures": list(worker.exposures)},
            "certifications": [{"name": c, "expires": "2030-12-31"}
                               for c in worker.certifications],
            "gpu": {"model": "H100", "tdpWatts": 700},
            "price": {"currency": "EUR", "onDemandPerGpuHour": worker.price_per_gpu_hour},
            "carbonIntensity": {"fallbackGramsPerKwh": worker.grams_per_kwh},
            "pue": worker.pue,
        },
    }  # fmt: skip


def job(namespace: str, name: str, gpus: int = 1, hours: float = 2) -> dict[str, Any]:
    """A batch/Job on a manager, managed by MultiKueue, in the namespace's LocalQueue ``lq``."""
    container = {"name": "c", "image": "x", "resources": {
        "limits": {GPU: str(gpus)}, "requests": {"cpu": "1", "memory": "1Gi"}}}  # fmt: skip
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kueue.x-k8s.io/queue-name": "lq"},
                     "annotations": {"greenplace.dev/expected-duration-hours": str(hours)}},
        "spec": {"managedBy": "kueue.x-k8s.io/multikueue", "suspend": True,
                 "template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }  # fmt: skip


class MultiFleet:
    """Workers and managers (name -> dispatcher name); a context manager, or start()/stop().

    ``nodes`` kwok nodes of ``gpus_per_node`` GPUs per worker. ``workdir``/``keep``: where the
    clusters live and whether they outlive ``stop()`` (the demo keeps them for ``make stop``).
    """

    def __init__(
        self,
        managers: Mapping[str, str],
        *,
        workers: Sequence[Worker] = WORKERS,
        nodes: int = 1,
        gpus_per_node: int = 8,
        workdir: pathlib.Path | None = None,
        keep: bool = False,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.dispatchers = dict(managers)
        self.facts = {w.name: w for w in workers}
        self.nodes, self.gpus_per_node = nodes, gpus_per_node
        self.workdir = workdir or pathlib.Path(tempfile.mkdtemp(prefix="greenplace-multi-"))
        self.keep = keep
        self._log = log
        self.workers: dict[str, cluster.LocalCluster] = {}
        self.managers: dict[str, cluster.LocalCluster] = {}
        self.start_seconds = 0.0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def gpus_per_worker(self) -> int:
        return self.nodes * self.gpus_per_node

    def start(self) -> None:
        started = time.monotonic()
        try:
            for name in self.facts:
                self.workers[name] = self._cluster(name)
                kueue.start(self.workers[name])
                self.apply(name, *self._nodes(self.facts[name]), *queues(self.gpus_per_worker))
                self._log(f"worker {name}: ready")
            for name, dispatcher in self.dispatchers.items():
                self.managers[name] = self._cluster(name)
                settings = {"dispatcherName": dispatcher, "origin": name}
                kueue.start(self.managers[name], multikueue=settings)
                self._wire(name, dispatcher)
                self._log(f"manager {name} ({dispatcher}): ready")
            for name in self.managers:
                self._wait(functools.partial(self._all_active, name),
                           f"{name}: every MultiKueueCluster Active")  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def stop(self) -> None:
        for local in (*self.managers.values(), *self.workers.values()):
            local.stop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kubeconfig(self, name: str) -> pathlib.Path:
        return self._all()[name].kubeconfig

    def api(self, name: str) -> client.ApiClient:
        return config.new_client_from_config(str(self.kubeconfig(name)))

    def kubectl(self, name: str, *args: str, stdin: str | None = None) -> str:
        command = [str(build.ensure_built(log=False)["kubectl"]),
                   f"--kubeconfig={self.kubeconfig(name)}", *args]  # fmt: skip
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise cluster.ClusterError(f"{name}: kubectl {' '.join(args)}: {result.stderr}")
        return result.stdout

    def apply(self, name: str, *documents: Mapping[str, Any]) -> None:
        """Server-side apply of ``documents`` in cluster ``name``."""
        text = yaml.safe_dump_all([dict(d) for d in documents])
        self.kubectl(name, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=text)

    def namespace(self, name: str) -> None:
        """Namespace ``name`` with a LocalQueue ``lq`` on every manager and every worker."""
        for where in self._all():
            self.apply(where, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                       {"apiVersion": KUEUE, "kind": "LocalQueue",
                        "metadata": {"name": "lq", "namespace": name},
                        "spec": {"clusterQueue": "cq"}})  # fmt: skip

    def workloads(self, manager: str, namespace: str) -> list[dict[str, Any]]:
        found = json.loads(self.kubectl(manager, "get", "workloads", "-n", namespace, "-o", "json"))
        return list(found["items"])

    def pids(self) -> dict[str, int]:
        """Every process of the fleet, ``cluster/component`` -> pid."""
        return {
            f"{name}/{component}": pid
            for name, local in self._all().items()
            for component, pid in local.processes.pids().items()
        }

    def memory_mib(self) -> float:
        """Resident memory of every process of the fleet, summed (from /proc)."""
        total_kib = 0
        for pid in self.pids().values():
            with contextlib.suppress(OSError):
                for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
        return total_kib / 1024

    # ------------------------------------------------------------------ wiring

    def _all(self) -> dict[str, cluster.LocalCluster]:
        return {**self.workers, **self.managers}

    def _cluster(self, name: str) -> cluster.LocalCluster:
        local = cluster.LocalCluster(self.workdir / name, keep=self.keep)
        local.start()
        return local

    def _nodes(self, worker: Worker) -> list[dict[str, Any]]:
        capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", GPU: str(self.gpus_per_node)}
        return [{
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"{worker.pool}-{i}",
                         "labels": {"greenplace.dev/pool": worker.pool, "type": "kwok"},
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "status": {"capacity": capacity, "allocatable": capacity},
        } for i in range(self.nodes)]  # fmt: skip

    def _wire(self, manager: str, dispatcher: str) -> None:
        wiring: list[dict[str, Any]] = []
        for name, worker in self.workers.items():
            text = inline_kubeconfig(worker.kubeconfig)
            wiring += [kubeconfig_secret(f"{name}-kubeconfig", text),
                       multikueue_cluster(name, f"{name}-kubeconfig")]  # fmt: skip
        wiring += [
            {"apiVersion": KUEUE, "kind": "MultiKueueConfig", "metadata": {"name": "workers"},
             "spec": {"clusters": list(self.workers)}},
            {"apiVersion": KUEUE, "kind": "AdmissionCheck", "metadata": {"name": "multikueue"},
             "spec": {"controllerName": MULTIKUEUE_CONTROLLER, "parameters": {
                 "apiGroup": "kueue.x-k8s.io", "kind": "MultiKueueConfig", "name": "workers"}}},
            *queues(self.gpus_per_worker * len(self.workers), ("multikueue",)),
        ]  # fmt: skip
        if dispatcher == GREENPLACE:
            self.kubectl(manager, "apply", "--server-side", "-f", str(ROOT / "crds"))
            self.kubectl(manager, "wait", "--for=condition=Established", "--timeout=60s",
                         "crd/gpupools.greenplace.dev")  # fmt: skip
            wiring += [pool(self.facts[name]) for name in self.workers]
        self.apply(manager, *wiring)

    def _all_active(self, manager: str) -> bool:
        return all(self._active(manager, worker) for worker in self.facts)

    def _active(self, manager: str, worker: str) -> bool:
        path = "jsonpath={.status.conditions[?(@.type=='Active')].status}"
        try:
            return self.kubectl(manager, "get", "multikueuecluster", worker, "-o", path) == "True"
        except cluster.ClusterError:
            return False

    @staticmethod
    def _wait(probe: Callable[[], bool], what: str, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while not probe():
            if time.monotonic() > deadline:
                raise cluster.ClusterError(f"{what}: not within {timeout_s:.0f}s")
            time.sleep(0.5)


def queues(gpus: int, checks: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One ResourceFlavor and a ClusterQueue ``cq`` with ``gpus`` GPUs (and ``checks``)."""
    resources = [
        {"name": "cpu", "nominalQuota": 10000},
        {"name": "memory", "nominalQuota": "100Ti"},
        {"name": GPU, "nominalQuota": gpus},
    ]
    queue: dict[str, Any] = {
        "apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": "cq"},
        "spec": {"namespaceSelector": {}, "resourceGroups": [{
            "coveredResources": ["cpu", "memory", GPU],
            "flavors": [{"name": "default", "resources": resources}]}]},
    }  # fmt: skip
    if checks:
        queue["spec"]["admissionChecksStrategy"] = {
            "admissionChecks": [{"name": c} for c in checks]
        }
    return [{"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "default"}}, queue]


def kubeconfig_secret(name: str, kubeconfig: str) -> dict[str, Any]:
    """The Secret a MultiKueueCluster reads a worker's kubeconfig from."""
    data = {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()}
    return {"apiVersion": "v1", "kind": "Secret", "data": data,
            "metadata": {"name": name, "namespace": kueue.NAMESPACE}}  # fmt: skip


def multikueue_cluster(name: str, secret: str) -> dict[str, Any]:
    source = {"kubeConfig": {"locationType": "Secret", "location": secret}}
    return {"apiVersion": KUEUE, "kind": "MultiKueueCluster", "metadata": {"name": name},
            "spec": {"clusterSource": source}}  # fmt: skip


def inline_kubeconfig(path: pathlib.Path) -> str:
    """``path``'s kubeconfig with its certificates inline, as MultiKueue reads it from a Secret."""
    doc = yaml.safe_load(path.read_text())
    for entry in doc["clusters"]:
        ca = pathlib.Path(entry["cluster"].pop("certificate-authority"))
        entry["cluster"]["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    for entry in doc["users"]:
        for key in ("client-certificate", "client-key"):
            data = pathlib.Path(entry["user"].pop(key)).read_bytes()
            entry["user"][f"{key}-data"] = base64.b64encode(data).decode()
    return str(yaml.safe_dump(doc))


class Copies:
    """Every Workload and Job created in ``namespace`` in each worker while it is entered:
    a list then a watch from that list's resourceVersion on each worker's API server (two
    threads per worker), so nothing created in between is missed. ``seen`` maps a worker to
    ``Kind/name`` entries."""

    def __init__(self, workers: Mapping[str, client.ApiClient], namespace: str) -> None:
        self.seen: dict[str, set[str]] = {name: set() for name in workers}
        self._namespace = namespace
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Barrier(len(workers) * 2 + 1)
        self._threads = [
            threading.Thread(target=self._one, args=(name, listing, kind), daemon=True)
            for name, api in workers.items()
            for listing, kind in self._listings(api)
        ]

    def _listings(self, api: client.ApiClient) -> list[tuple[Callable[..., Any], str]]:
        custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)

        def workloads(**options: Any) -> Any:
            return custom.list_namespaced_custom_object(
                "kueue.x-k8s.io", "v1beta2", self._namespace, "workloads", **options
            )

        def jobs(**options: Any) -> Any:
            return batch.list_namespaced_job(self._namespace, **options)

        return [(workloads, "Workload"), (jobs, "Job")]

    def _one(self, name: str, listing: Callable[..., Any], kind: str) -> None:
        first = json.loads(listing(_preload_content=False).data)
        for item in first["items"]:
            self._saw(name, kind, item)
        version = first["metadata"]["resourceVersion"]
        self._ready.wait()
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    listing, resource_version=version, timeout_seconds=1
                ):
                    body = event["object"]
                    if event["type"] == "ADDED":
                        self._saw(name, kind, body)
                    version = body["metadata"].get("resourceVersion", version)
            except Exception:  # a worker that was stopped: its watch ends there
                if self._stop.wait(0.5):
                    return

    def _saw(self, name: str, kind: str, item: Mapping[str, Any]) -> None:
        entry = f"{kind}/{item['metadata']['name']}"
        with self._lock:
            self.seen[name].add(entry)

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def where(self) -> set[str]:
        """The workers that received anything."""
        with self._lock:
            return {name for name, seen in self.seen.items() if seen}

    def count(self, kind: str) -> int:
        """Objects of ``kind`` created across all workers."""
        with self._lock:
            return sum(1 for seen in self.seen.values() for e in seen if e.startswith(kind + "/"))


@contextlib.contextmanager
def watching(fleet: MultiFleet, namespace: str) -> Iterator[Copies]:
    """``Copies`` over every worker of ``fleet``."""
    with Copies({name: fleet.api(name) for name in fleet.workers}, namespace) as copies:
        yield copies
