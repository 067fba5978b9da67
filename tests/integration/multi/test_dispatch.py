"""greenplace as MultiKueue's dispatcher, on real clusters with real Kueue (issue 14's proofs).

A manager and three workers, each a real control plane with its own Kueue (``fr-secnumcloud``:
France, SecNumCloud; ``de-c5``: Germany, C5; ``us-eu-west``: Ireland, a US provider, the
cleanest grid). The manager's Kueue runs with ``multiKueue.dispatcherName:
greenplace.dev/dispatcher`` and greenplace (``greenplace operate --multikueue``, a real process)
is that dispatcher. A watch on every worker's API server records each Workload and Job created
there during a test, so "no copy anywhere else" is what the workers saw, not a poll afterwards.

- A France-only + SecNumCloud Job runs in fr-secnumcloud, and no other worker ever gets a copy.
- Among compliant workers (EU, no extraterritorial exposure: the US provider is out although
  its grid is cleanest) the lowest-carbon one with room gets the Job; when it is full, the next.
- Kueue's contract: the nomination is written as Kueue's own field manager; written as
  greenplace's own, Kueue's admission would be refused by the Workload CRD (shown on the
  manager's API server).
- Bad input (a GpuPool naming no MultiKueueCluster, a worker whose kubeconfig Secret is
  garbage, a pool matching no worker node): a clear GpuPool condition, not used, the operator
  keeps dispatching.
- greenplace stopped: nothing is nominated; started: nominated once; restarted: no second
  nomination, the Budget charged once.
- A worker lost while a Workload nominated to it waits there: it goes to the other compliant
  worker, never to the non-compliant one (last: it stops a worker).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import pathlib
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from devcluster import cluster
from devcluster import kueue as kueue_
from greenplace.controller import cache as cache_
from greenplace.controller import dispatch
from tests import kubeobjects
from tests.integration.conftest import Kube, OperatorProcess, wait_for

GPU = "nvidia.com/gpu"
KUEUE = "kueue.x-k8s.io/v1beta2"
ALL_AT_ONCE = "kueue.x-k8s.io/multikueue-dispatcher-all-at-once"
# worker -> (pool, country, legal home, exposures, certifications, gCO2/kWh of its grid)
WORKERS: dict[str, tuple[str, str, str, list[str], list[str], float]] = {
    "fr-secnumcloud": ("fr-h100", "FR", "FR", [], ["SecNumCloud"], 56.0),
    "de-c5": ("de-h100", "DE", "DE", [], ["C5"], 380.0),
    "us-eu-west": ("ie-h100", "IE", "US", ["US-CLOUD-Act"], [], 20.0),
}
GPUS_PER_WORKER = 8
POLL, TTL, TIMEOUT = 1, 6, 20  # the operator's --worker-poll, --worker-ttl, --nomination-timeout


# ---------------------------------------------------------------- the clusters


@dataclasses.dataclass
class Fleet:
    manager: Kube
    workers: dict[str, Kube]
    locals: dict[str, cluster.LocalCluster]
    operator: OperatorProcess
    args: tuple[str, ...]


def _inline(path: pathlib.Path, server: str | None = None) -> str:
    """A kubeconfig with its certificates inline, as Kueue accepts it (no file paths)."""
    doc = yaml.safe_load(path.read_text())
    for entry in doc["clusters"]:
        ca = pathlib.Path(entry["cluster"].pop("certificate-authority"))
        entry["cluster"]["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
        if server:
            entry["cluster"]["server"] = server
    for entry in doc["users"]:
        for key in ("client-certificate", "client-key"):
            data = pathlib.Path(entry["user"].pop(key)).read_bytes()
            entry["user"][f"{key}-data"] = base64.b64encode(data).decode()
    return str(yaml.safe_dump(doc))


def _queues(gpus: int, checks: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    resources = [
        {"name": "cpu", "nominalQuota": 1000},
        {"name": "memory", "nominalQuota": "10Ti"},
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


def _node(pool: str) -> dict[str, Any]:
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", GPU: str(GPUS_PER_WORKER)}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": f"{pool}-0", "labels": {"greenplace.dev/pool": pool, "type": "kwok"},
                     "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "status": {"capacity": capacity, "allocatable": capacity},
    }  # fmt: skip


def _pool(worker: str) -> dict[str, Any]:
    name, country, home, exposures, certs, grams = WORKERS[worker]
    return kubeobjects.resource("GpuPool", name, {
        "cluster": worker,
        "nodeSelector": {"greenplace.dev/pool": name},
        "location": {"provider": "p", "region": "r", "country": country, "gridZone": country},
        "jurisdiction": {"legalHome": home, "exposures": exposures},
        "certifications": [{"name": c, "expires": "2030-12-31"} for c in certs],
        "gpu": {"model": "H100", "tdpWatts": 700},
        "price": {"currency": "EUR", "onDemandPerGpuHour": 2.0},
        "carbonIntensity": {"fallbackGramsPerKwh": grams},
    })  # fmt: skip


def _apply(kube: Kube, *documents: dict[str, Any]) -> None:
    result = kube.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert result.returncode == 0, result.stderr


def _multikueue(name: str, secret: str) -> dict[str, Any]:
    source = {"kubeConfig": {"locationType": "Secret", "location": secret}}
    return {"apiVersion": KUEUE, "kind": "MultiKueueCluster", "metadata": {"name": name},
            "spec": {"clusterSource": source}}  # fmt: skip


def _secret(name: str, kubeconfig: str) -> dict[str, Any]:
    data = {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()}
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": kueue_.NAMESPACE}, "data": data}  # fmt: skip


def _active(manager: Kube, name: str) -> bool:
    path = "jsonpath={.status.conditions[?(@.type=='Active')].status}"
    return manager.kubectl("get", "multikueuecluster", name, "-o", path).stdout == "True"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """The manager and its three workers, wired for MultiKueue, greenplace dispatching."""
    template = pathlib.Path(tempfile.mkdtemp()) / "kueue.yaml"
    template.write_text(
        kueue_.CONFIG_TEMPLATE.read_text()
        + f"multiKueue:\n  dispatcherName: {dispatch.DISPATCHER_NAME}\n"
    )
    with contextlib.ExitStack() as stack:
        locals_ = {n: stack.enter_context(cluster.LocalCluster()) for n in ("manager", *WORKERS)}
        for name in WORKERS:
            kueue_.start(locals_[name])
        default, kueue_.CONFIG_TEMPLATE = kueue_.CONFIG_TEMPLATE, template
        try:
            kueue_.start(locals_["manager"])
        finally:
            kueue_.CONFIG_TEMPLATE = default
        kubes = {n: Kube(c.kubeconfig, c) for n, c in locals_.items()}
        manager = kubes.pop("manager")
        for name, kube in kubes.items():
            _apply(kube, _node(WORKERS[name][0]), *_queues(GPUS_PER_WORKER))
        crds = manager.kubectl(
            "apply",
            "--server-side",
            "-f",
            str(pathlib.Path(__file__).resolve().parents[3] / "crds"),
        )
        assert crds.returncode == 0, crds.stderr
        wiring: list[dict[str, Any]] = []
        for name in WORKERS:
            wiring += [_secret(f"{name}-kc", _inline(locals_[name].kubeconfig)),
                       _multikueue(name, f"{name}-kc"), _pool(name)]  # fmt: skip
        wiring += [
            {"apiVersion": KUEUE, "kind": "MultiKueueConfig", "metadata": {"name": "all"},
             "spec": {"clusters": list(WORKERS)}},
            {"apiVersion": KUEUE, "kind": "AdmissionCheck", "metadata": {"name": "mk"},
             "spec": {"controllerName": dispatch.MULTIKUEUE_CONTROLLER, "parameters": {
                 "apiGroup": "kueue.x-k8s.io", "kind": "MultiKueueConfig", "name": "all"}}},
            *_queues(GPUS_PER_WORKER * len(WORKERS), ("mk",)),
        ]  # fmt: skip
        _apply(manager, *wiring)
        wait_for(lambda: all(_active(manager, n) for n in WORKERS), 60, "MultiKueueClusters Active")
        port, metrics_port = cluster.free_ports(2)
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        operator = OperatorProcess(manager, log, port, metrics_port)
        args = ("--multikueue", f"--worker-poll={POLL}", f"--worker-ttl={TTL}",
                f"--nomination-timeout={TIMEOUT}")  # fmt: skip
        operator.start(*args)
        stack.callback(operator.stop)
        yield Fleet(manager, kubes, locals_, operator, args)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


# ---------------------------------------------------------------- helpers


class Copies:
    """Every Workload and Job created in ``namespace`` in each worker while it runs: a real
    watch on each worker's API server, each in its own thread."""

    def __init__(self, workers: dict[str, Kube], namespace: str) -> None:
        self.seen: dict[str, set[str]] = {name: set() for name in workers}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(name, kube, namespace), daemon=True)
            for name, kube in workers.items()
        ]
        self._ready = threading.Barrier(len(workers) * 2 + 1)

    def _watch(self, name: str, kube: Kube, namespace: str) -> None:
        custom, batch = client.CustomObjectsApi(kube.api), client.BatchV1Api(kube.api)

        def workloads(**options: Any) -> Any:
            return custom.list_namespaced_custom_object(
                "kueue.x-k8s.io", "v1beta2", namespace, "workloads", **options
            )

        def jobs(**options: Any) -> Any:
            return batch.list_namespaced_job(namespace, **options)

        inner = [
            threading.Thread(target=self._one, args=(name, listing, kind), daemon=True)
            for listing, kind in ((workloads, "Workload"), (jobs, "Job"))
        ]
        for thread in inner:
            thread.start()
        for thread in inner:
            thread.join()

    def _one(self, name: str, listing: Any, kind: str) -> None:
        """List, then watch from that list's resourceVersion: nothing created is missed."""
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
            except Exception:  # a worker the test stopped: its watch ends there
                if self._stop.wait(0.5):
                    return

    def _saw(self, name: str, kind: str, item: dict[str, Any]) -> None:
        self.seen[name].add(f"{kind}/{item['metadata']['name']}")

    def __enter__(self) -> Copies:
        for thread in self._threads:
            thread.start()
        self._ready.wait()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def where(self) -> set[str]:
        """The workers that received anything."""
        return {name for name, seen in self.seen.items() if seen}


def namespace(fleet: Fleet, policy: dict[str, Any], budget: float | None = None) -> str:
    """A namespace with a LocalQueue on the manager and on every worker, and ``policy`` (the
    PlacementPolicy's ``sovereignty``) on the manager, charged to a Budget of ``budget``."""
    name = f"t-{uuid.uuid4().hex[:6]}"
    for kube in (fleet.manager, *fleet.workers.values()):
        _apply(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
               {"apiVersion": KUEUE, "kind": "LocalQueue", "metadata": {"name": "lq",
                "namespace": name}, "spec": {"clusterQueue": "cq"}})  # fmt: skip
    spec: dict[str, Any] = {"sovereignty": policy}
    if budget is not None:
        fleet.manager.apply_ok(kubeobjects.budget(name, "team", money=budget, action="Reject"))
        spec["budgetRef"] = {"name": "team"}
    fleet.manager.apply_ok(kubeobjects.resource("PlacementPolicy", "rules", spec, name))
    return name


def submit(fleet: Fleet, namespace: str, name: str, gpus: int = 1) -> None:
    """A batch/Job on the manager, managed by MultiKueue, in the namespace's LocalQueue."""
    container = {"name": "c", "image": "x", "resources": {
        "limits": {GPU: str(gpus)}, "requests": {"cpu": "1", "memory": "1Gi"}}}  # fmt: skip
    _apply(fleet.manager, {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kueue.x-k8s.io/queue-name": "lq"},
                     "annotations": {"greenplace.dev/expected-duration-hours": "2"}},
        "spec": {"managedBy": "kueue.x-k8s.io/multikueue", "suspend": True,
                 "template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    })  # fmt: skip


def workload_of(fleet: Fleet, namespace: str, job: str) -> dict[str, Any] | None:
    found = json.loads(
        fleet.manager.kubectl("get", "workloads", "-n", namespace, "-o", "json").stdout
    )
    for item in found["items"]:
        if any(o.get("name") == job for o in item["metadata"].get("ownerReferences") or []):
            return dict(item)
    return None


def admitted_in(fleet: Fleet, namespace: str, job: str, timeout_s: float = 90) -> str:
    def cluster_name() -> str | None:
        found = workload_of(fleet, namespace, job) or {}
        name = (found.get("status") or {}).get("clusterName")
        return str(name) if name else None

    return str(wait_for(cluster_name, timeout_s, f"Job {namespace}/{job} admitted in a worker"))


def occupy(fleet: Fleet, worker: str, gpus: int) -> str:
    """Another tenant's pod in ``worker`` holding ``gpus`` GPUs of its node; its namespace."""
    kube, pool = fleet.workers[worker], WORKERS[worker][0]
    name = f"busy-{uuid.uuid4().hex[:6]}"
    kube.core.create_namespace({"metadata": {"name": name}})
    kube.core.create_namespaced_pod(name, {
        "metadata": {"name": "busy"},
        "spec": {"nodeName": f"{pool}-0", "containers": [{"name": "c", "image": "x",
                 "resources": {"limits": {GPU: str(gpus)}}}]},
    })  # fmt: skip
    return name


def pool_condition(fleet: Fleet, pool: str) -> dict[str, Any]:
    status = fleet.manager.custom("gpupool", pool).get("status") or {}
    worker = [c for c in status.get("conditions") or [] if c["type"] == "Worker"]
    return worker[0] if worker else {}


# ---------------------------------------------------------------- the proofs


def test_a_france_secnumcloud_job_runs_only_in_the_french_worker(fleet: Fleet) -> None:
    ns = namespace(fleet, {"allowedCountries": ["FR"],
                           "requiredCertifications": [{"name": "SecNumCloud"}]})  # fmt: skip
    with Copies(fleet.workers, ns) as copies:
        submit(fleet, ns, "sovereign")
        assert admitted_in(fleet, ns, "sovereign") == "fr-secnumcloud"
        wait_for(lambda: "Job/sovereign" in copies.seen["fr-secnumcloud"], 30, "the Job in FR")
    assert copies.where() == {"fr-secnumcloud"}, f"copies seen: {copies.seen}"
    found = workload_of(fleet, ns, "sovereign")
    assert found is not None
    record = json.loads(found["metadata"]["annotations"][cache_.DISPATCH_ANNOTATION])
    assert (record["nominated"], record["nominatedPool"]) == ("fr-secnumcloud", "fr-h100")
    series = 'greenplace_dispatch_admissions_total{cluster="fr-secnumcloud"}'
    wait_for(lambda: kubeobjects.metric(fleet.operator.metrics(), series), 30, series)


EU_NO_EXPOSURE = {"allowedCountries": ["FR", "DE", "IE"], "forbidExtraterritorialExposure": True}


def test_the_cleanest_compliant_worker_with_room_then_the_next(fleet: Fleet) -> None:
    ns = namespace(fleet, EU_NO_EXPOSURE)
    with Copies(fleet.workers, ns) as copies:
        submit(fleet, ns, "first")
        assert admitted_in(fleet, ns, "first") == "fr-secnumcloud", "56 g, not the US provider"
        busy = occupy(fleet, "fr-secnumcloud", GPUS_PER_WORKER)
        try:
            wait_for(lambda: pool_condition(fleet, "fr-h100").get("message", "").count(
                f" 0/{GPUS_PER_WORKER} GPUs free"), 30, "FR read as full")  # fmt: skip
            submit(fleet, ns, "second")
            assert admitted_in(fleet, ns, "second") == "de-c5", "FR full: the next, DE"
        finally:
            fleet.workers["fr-secnumcloud"].core.delete_namespace(busy)
    assert "us-eu-west" not in copies.where(), copies.seen
    assert copies.seen["de-c5"] == {
        "Workload/" + str((workload_of(fleet, ns, "second") or {})["metadata"]["name"]),
        "Job/second",
    }


def _applied(custom: client.CustomObjectsApi, name: str, body_of: Any, manager: str) -> None:
    """Apply ``body_of(the Workload as read)`` to its status as ``manager``; read and apply
    again when Kueue changed it meanwhile (409), as the dispatcher does next cycle."""
    for _ in range(20):
        current = custom.get_namespaced_custom_object(
            "kueue.x-k8s.io", "v1beta2", "default", "workloads", name
        )
        try:
            custom.patch_namespaced_custom_object_status(
                "kueue.x-k8s.io", "v1beta2", "default", "workloads", name, body_of(current),
                field_manager=manager, force=True, _content_type="application/apply-patch+yaml",
            )  # fmt: skip
            return
        except client.ApiException as error:
            if error.status != 409:
                raise
    pytest.fail(f"Workload {name} kept changing")


def _nominate(workload: dict[str, Any]) -> dict[str, Any]:
    """greenplace's nomination: Kueue's fields applied back, with the nomination."""
    return dispatch.nomination_apply(workload, ["de-c5"])


def _alone(workload: dict[str, Any]) -> dict[str, Any]:
    """The same nomination applied alone (as a dispatcher with its own field manager)."""
    meta = {k: workload["metadata"][k] for k in ("name", "namespace")}
    return {"apiVersion": KUEUE, "kind": "Workload", "metadata": meta,
            "status": {"nominatedClusterNames": ["de-c5"]}}  # fmt: skip


def _admission(workload: dict[str, Any]) -> dict[str, Any]:
    """What Kueue applies when a worker admits it: clusterName, the nominations left out."""
    admit = dispatch.nomination_apply(workload, [])
    del admit["status"]["nominatedClusterNames"]
    admit["status"]["clusterName"] = "de-c5"
    return admit


def test_kueue_admits_only_a_nomination_written_as_its_own_field_manager(fleet: Fleet) -> None:
    """Why ``dispatch.FIELD_MANAGER`` is Kueue's: the same nomination written as greenplace's
    own manager survives Kueue's admission apply, which the Workload CRD then refuses."""
    custom = client.CustomObjectsApi(fleet.manager.api)
    group, version = "kueue.x-k8s.io", "v1beta2"
    results = {}
    for manager in ("greenplace-dispatcher", dispatch.FIELD_MANAGER):
        name = f"contract-{uuid.uuid4().hex[:6]}"
        custom.create_namespaced_custom_object(group, version, "default", "workloads", {
            "apiVersion": KUEUE, "kind": "Workload", "metadata": {"name": name},
            "spec": {"podSets": [{"name": "main", "count": 1, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}}]},
        })  # fmt: skip
        _applied(custom, name, _nominate if manager == dispatch.FIELD_MANAGER else _alone, manager)
        try:
            _applied(custom, name, _admission, dispatch.FIELD_MANAGER)
            results[manager] = "admitted"
        except client.ApiException as error:
            results[manager] = json.loads(error.body)["message"]
    assert results[dispatch.FIELD_MANAGER] == "admitted"
    assert "mutually exclusive" in results["greenplace-dispatcher"]


def test_bad_worker_facts_are_said_on_the_pool_and_never_used(fleet: Fleet) -> None:
    manager = fleet.manager
    ghost = {**_pool("fr-secnumcloud")["spec"], "cluster": "nowhere",
             "nodeSelector": {"greenplace.dev/pool": "ghost"}}  # fmt: skip
    empty = {**_pool("fr-secnumcloud")["spec"], "nodeSelector": {"greenplace.dev/pool": "empty"}}
    broken = {**_pool("fr-secnumcloud")["spec"], "cluster": "broken",
              "nodeSelector": {"greenplace.dev/pool": "broken"}}  # fmt: skip
    _apply(
        manager,
        _secret("broken-kc", "this: is not [a kubeconfig"),
        _multikueue("broken", "broken-kc"),
        kubeobjects.resource("GpuPool", "ghost", ghost),
        kubeobjects.resource("GpuPool", "empty", empty),
        kubeobjects.resource("GpuPool", "broken", broken),
    )
    try:
        expected = (("ghost", "ClusterNotFound"), ("empty", "NoMatchingNodes"),
                    ("broken", "ClusterNotActive"))  # fmt: skip
        for pool, reason in expected:

            def said(pool: str = pool, reason: str = reason) -> bool:
                return bool(pool_condition(fleet, pool).get("reason") == reason)

            wait_for(said, 30, f"GpuPool {pool} condition Worker {reason}")
            condition = pool_condition(fleet, pool)
            assert condition["status"] == "False" and "not used" in condition["message"], condition
        ns = namespace(fleet, {"allowedCountries": ["FR"]})
        submit(fleet, ns, "still")
        assert admitted_in(fleet, ns, "still") == "fr-secnumcloud", "the operator keeps going"
        record = json.loads((workload_of(fleet, ns, "still") or {})["metadata"]["annotations"][
            cache_.DISPATCH_ANNOTATION])  # fmt: skip
        assert record["nominatedPool"] == "fr-h100", "never a pool that is not used"
        assert fleet.operator.process is not None and fleet.operator.process.poll() is None
    finally:
        for pool in ("ghost", "empty", "broken"):
            manager.kubectl("delete", "gpupool", pool)
        manager.kubectl("delete", "multikueuecluster", "broken")


def test_stopped_nothing_nominated_started_once_restarted_no_second_charge(
    fleet: Fleet,
) -> None:
    ns = namespace(fleet, EU_NO_EXPOSURE, budget=1000)
    fleet.operator.stop()
    submit(fleet, ns, "patient")
    wait_for(lambda: ((workload_of(fleet, ns, "patient") or {}).get("status") or {}).get(
        "admission"), 30, "quota reserved on the manager")  # fmt: skip
    found = workload_of(fleet, ns, "patient") or {}
    assert not found["status"].get("nominatedClusterNames"), "nobody nominates without greenplace"
    fleet.operator.start(*fleet.args)
    assert admitted_in(fleet, ns, "patient") == "fr-secnumcloud"
    first = json.loads((workload_of(fleet, ns, "patient") or {})["metadata"]["annotations"][
        cache_.DISPATCH_ANNOTATION])  # fmt: skip

    def spent() -> float | None:
        status = fleet.manager.custom("budget", "team", ns).get("status") or {}
        money = (status.get("spent") or {}).get("money")
        return float(money) if money else None

    charged = wait_for(spent, 30, "the Budget charged")
    assert charged == pytest.approx(first["charge"]["money"])
    fleet.operator.stop()
    fleet.operator.start(*fleet.args)
    cycles = kubeobjects.cycles(fleet.operator.metrics())
    wait_for(lambda: kubeobjects.cycles(fleet.operator.metrics()) >= cycles + 3, 60, "3 cycles")
    again = json.loads((workload_of(fleet, ns, "patient") or {})["metadata"]["annotations"][
        cache_.DISPATCH_ANNOTATION])  # fmt: skip
    assert again == first, "no second nomination: the record is as written the first time"
    assert spent() == pytest.approx(charged), "charged once"
    nominations = [line for line in fleet.operator.metrics().splitlines()
                   if line.startswith("greenplace_dispatch_nominations_total")]  # fmt: skip
    assert nominations == [], "the restarted operator nominated nothing"


def test_a_lost_worker_s_waiting_workload_goes_to_the_other_compliant_one(fleet: Fleet) -> None:
    """Last: it stops the French worker for good."""
    fr = fleet.workers["fr-secnumcloud"]
    hold = {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": "cq"},
            "spec": {"stopPolicy": "Hold"}}  # fmt: skip
    result = fr.kubectl("patch", "clusterqueue", "cq", "--type=merge", "-p", json.dumps(hold))
    assert result.returncode == 0, result.stderr
    ns = namespace(fleet, EU_NO_EXPOSURE)
    with Copies(fleet.workers, ns) as copies:
        submit(fleet, ns, "moved")

        def nominated() -> list[str]:
            found = workload_of(fleet, ns, "moved") or {}
            return list((found.get("status") or {}).get("nominatedClusterNames") or [])

        assert wait_for(nominated, 60, "a nomination") == ["fr-secnumcloud"]
        wait_for(lambda: copies.seen["fr-secnumcloud"], 30, "its copy in FR, held there")
        fleet.locals["fr-secnumcloud"].processes.stop_all()
        assert admitted_in(fleet, ns, "moved", timeout_s=120) == "de-c5"
    assert "us-eu-west" not in copies.where(), "never to the non-compliant worker"
    condition = pool_condition(fleet, "fr-h100")
    assert condition["reason"] in ("Unreachable", "Stale", "ClusterNotActive"), condition
