"""greenplace as MultiKueue's dispatcher, on real clusters with real Kueue (issue 14's proofs).

Three workers and two managers over them (``devcluster.multi``), each a real control plane
with its own Kueue (``fr-secnumcloud``: France, SecNumCloud; ``de-c5``: Germany, C5;
``us-eu-west``: Ireland, a US provider, the cleanest grid). One manager's Kueue runs with
``multiKueue.dispatcherName: greenplace.dev/dispatcher`` and greenplace (``greenplace operate
--multikueue``, a real process) is that dispatcher; the other runs Kueue's default, AllAtOnce.
A watch on every worker's API server records each Workload and Job created there during a
test, so "no copy anywhere else" is what the workers saw, not a poll afterwards.

- A France-only + SecNumCloud Job runs in fr-secnumcloud, and no other worker ever gets a copy;
  the same Job under AllAtOnce, in the same run, is copied into every worker.
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

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from devcluster import cluster, multi
from greenplace.controller import cache as cache_
from greenplace.controller import dispatch
from tests import kubeobjects
from tests.integration.conftest import Kube, OperatorProcess, wait_for

KUEUE = multi.KUEUE
FACTS = {w.name: w for w in multi.WORKERS}
GPU = multi.GPU
FR_SPEC = multi.pool(FACTS["fr-secnumcloud"])["spec"]
POLL, TTL, TIMEOUT = 1, 6, 20  # the operator's --worker-poll, --worker-ttl, --nomination-timeout


# ---------------------------------------------------------------- the clusters


@dataclasses.dataclass
class Fleet:
    multi: multi.MultiFleet
    manager: Kube  # dispatched by greenplace
    all_at_once: Kube  # the same workers, Kueue's default dispatcher
    workers: dict[str, Kube]
    operator: OperatorProcess
    args: tuple[str, ...]

    @property
    def gpus_per_worker(self) -> int:
        return self.multi.gpus_per_worker


def _apply(kube: Kube, *documents: dict[str, Any]) -> None:
    import yaml  # noqa: PLC0415

    result = kube.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """Three workers and two managers over them: one dispatched by greenplace, one by
    Kueue's AllAtOnce (the contrast, in the same run)."""
    assert multi.GREENPLACE == dispatch.DISPATCHER_NAME
    managers = {"greenplace": multi.GREENPLACE, "all-at-once": multi.ALL_AT_ONCE}
    with contextlib.ExitStack() as stack:
        fleet_ = stack.enter_context(multi.MultiFleet(managers))
        kube = {n: Kube(c.kubeconfig, c) for n, c in {**fleet_.workers, **fleet_.managers}.items()}
        port, metrics_port = cluster.free_ports(2)
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        operator = OperatorProcess(kube["greenplace"], log, port, metrics_port)
        args = ("--multikueue", f"--worker-poll={POLL}", f"--worker-ttl={TTL}",
                f"--nomination-timeout={TIMEOUT}")  # fmt: skip
        operator.start(*args)
        stack.callback(operator.stop)
        workers = {n: kube[n] for n in fleet_.workers}
        yield Fleet(fleet_, kube["greenplace"], kube["all-at-once"], workers, operator, args)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


# ---------------------------------------------------------------- helpers


def copies(fleet: Fleet, namespace: str) -> multi.Copies:
    """What each worker's API server sees created in ``namespace`` (``multi.Copies``)."""
    return multi.Copies({n: k.api for n, k in fleet.workers.items()}, namespace)


def namespace(fleet: Fleet, policy: dict[str, Any], budget: float | None = None) -> str:
    """A namespace with a LocalQueue on the manager and on every worker, and ``policy`` (the
    PlacementPolicy's ``sovereignty``) on the manager, charged to a Budget of ``budget``."""
    name = f"t-{uuid.uuid4().hex[:6]}"
    fleet.multi.namespace(name)
    spec: dict[str, Any] = {"sovereignty": policy}
    if budget is not None:
        fleet.manager.apply_ok(kubeobjects.budget(name, "team", money=budget, action="Reject"))
        spec["budgetRef"] = {"name": "team"}
    fleet.manager.apply_ok(kubeobjects.resource("PlacementPolicy", "rules", spec, name))
    return name


def submit(
    fleet: Fleet, namespace: str, name: str, gpus: int = 1, kube: Kube | None = None
) -> None:
    """A batch/Job managed by MultiKueue on greenplace's manager (or ``kube``)."""
    _apply(kube or fleet.manager, multi.job(namespace, name, gpus))


def workload_of(
    fleet: Fleet, namespace: str, job: str, kube: Kube | None = None
) -> dict[str, Any] | None:
    found = json.loads(
        (kube or fleet.manager).kubectl("get", "workloads", "-n", namespace, "-o", "json").stdout
    )
    for item in found["items"]:
        if any(o.get("name") == job for o in item["metadata"].get("ownerReferences") or []):
            return dict(item)
    return None


def admitted_in(
    fleet: Fleet, namespace: str, job: str, timeout_s: float = 90, kube: Kube | None = None
) -> str:
    def cluster_name() -> str | None:
        found = workload_of(fleet, namespace, job, kube) or {}
        name = (found.get("status") or {}).get("clusterName")
        return str(name) if name else None

    return str(wait_for(cluster_name, timeout_s, f"Job {namespace}/{job} admitted in a worker"))


def occupy(fleet: Fleet, worker: str, gpus: int) -> str:
    """Another tenant's pod in ``worker`` holding ``gpus`` GPUs of its node; its namespace."""
    kube, pool = fleet.workers[worker], FACTS[worker].pool
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
    with copies(fleet, ns) as seen:
        submit(fleet, ns, "sovereign")
        assert admitted_in(fleet, ns, "sovereign") == "fr-secnumcloud"
        wait_for(lambda: "Job/sovereign" in seen.seen["fr-secnumcloud"], 30, "the Job in FR")
    assert seen.where() == {"fr-secnumcloud"}, f"copies seen: {seen.seen}"
    found = workload_of(fleet, ns, "sovereign")
    assert found is not None
    record = json.loads(found["metadata"]["annotations"][cache_.DISPATCH_ANNOTATION])
    assert (record["nominated"], record["nominatedPool"]) == ("fr-secnumcloud", "fr-h100")
    series = 'greenplace_dispatch_admissions_total{cluster="fr-secnumcloud"}'
    wait_for(lambda: kubeobjects.metric(fleet.operator.metrics(), series), 30, series)


def test_the_same_job_under_kueue_s_all_at_once_reaches_every_worker(fleet: Fleet) -> None:
    """The contrast (README): Kueue's default dispatcher copies the Workload into every worker,
    the US-owned one included, before any of them admits it."""
    ns = namespace(fleet, {"allowedCountries": ["FR"]})
    with copies(fleet, ns) as seen:
        submit(fleet, ns, "sovereign", kube=fleet.all_at_once)
        admitted_in(fleet, ns, "sovereign", kube=fleet.all_at_once)
        wait_for(lambda: seen.count("Workload") == len(FACTS), 30, "a copy in every worker")
    assert seen.where() == set(FACTS), seen.seen


EU_NO_EXPOSURE = {"allowedCountries": ["FR", "DE", "IE"], "forbidExtraterritorialExposure": True}


def test_the_cleanest_compliant_worker_with_room_then_the_next(fleet: Fleet) -> None:
    ns = namespace(fleet, EU_NO_EXPOSURE)
    with copies(fleet, ns) as seen:
        submit(fleet, ns, "first")
        assert admitted_in(fleet, ns, "first") == "fr-secnumcloud", "56 g, not the US provider"
        busy = occupy(fleet, "fr-secnumcloud", fleet.gpus_per_worker)
        try:
            wait_for(lambda: pool_condition(fleet, "fr-h100").get("message", "").count(
                f" 0/{fleet.gpus_per_worker} GPUs free"), 30, "FR read as full")  # fmt: skip
            submit(fleet, ns, "second")
            assert admitted_in(fleet, ns, "second") == "de-c5", "FR full: the next, DE"
        finally:
            fleet.workers["fr-secnumcloud"].core.delete_namespace(busy)
    assert "us-eu-west" not in seen.where(), seen.seen
    assert seen.seen["de-c5"] == {
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
    ghost = {**FR_SPEC, "cluster": "nowhere",
             "nodeSelector": {"greenplace.dev/pool": "ghost"}}  # fmt: skip
    empty = {**FR_SPEC, "nodeSelector": {"greenplace.dev/pool": "empty"}}
    broken = {**FR_SPEC, "cluster": "broken",
              "nodeSelector": {"greenplace.dev/pool": "broken"}}  # fmt: skip
    # A pool that would be the cleanest in France, but the worker's node says it is in the US.
    liar = {**FR_SPEC, "nodeSelector": {"greenplace.dev/pool": "liar"},
            "carbonIntensity": {"fallbackGramsPerKwh": 1.0}}  # fmt: skip
    capacity = {"cpu": "64", "memory": "512Gi", "pods": "110", GPU: "8"}
    _apply(fleet.workers["fr-secnumcloud"], {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "liar-0", "annotations": {"kwok.x-k8s.io/node": "fake"},
                     "labels": {"greenplace.dev/pool": "liar", "type": "kwok",
                                "topology.kubernetes.io/region": "us-east-1"}},
        "status": {"capacity": capacity, "allocatable": capacity},
    })  # fmt: skip
    _apply(
        manager,
        multi.kubeconfig_secret("broken-kc", "this: is not [a kubeconfig"),
        multi.multikueue_cluster("broken", "broken-kc"),
        # A real, reachable worker (de-c5's kubeconfig) that no GpuPool describes.
        multi.multikueue_cluster("nofacts", "de-c5-kubeconfig"),
        kubeobjects.resource("GpuPool", "ghost", ghost),
        kubeobjects.resource("GpuPool", "empty", empty),
        kubeobjects.resource("GpuPool", "broken", broken),
        kubeobjects.resource("GpuPool", "liar", liar),
    )
    try:
        expected = (("ghost", "ClusterNotFound"), ("empty", "NoMatchingNodes"),
                    ("broken", "ClusterNotActive"), ("liar", "FactsContradictNodes"))  # fmt: skip
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

        def no_facts() -> list[Any]:
            events = manager.core.list_namespaced_event(
                "default", field_selector="involvedObject.name=nofacts,reason=NoFacts"
            ).items
            return [e for e in events if e.involved_object.kind == "MultiKueueCluster"]

        (event,) = wait_for(no_facts, 30, "a NoFacts Warning on MultiKueueCluster nofacts")
        assert event.type == "Warning" and "never nominates it" in event.message
        assert fleet.operator.process is not None and fleet.operator.process.poll() is None
    finally:
        for pool in ("ghost", "empty", "broken", "liar"):
            manager.kubectl("delete", "gpupool", pool)
        manager.kubectl("delete", "multikueuecluster", "broken", "nofacts")
        fleet.workers["fr-secnumcloud"].kubectl("delete", "node", "liar-0")


def test_stopped_nothing_nominated_started_once_restarted_no_second_charge_or_copy(
    fleet: Fleet,
) -> None:
    ns = namespace(fleet, EU_NO_EXPOSURE, budget=1000)
    with copies(fleet, ns) as seen:
        fleet.operator.stop()
        submit(fleet, ns, "patient")
        wait_for(lambda: ((workload_of(fleet, ns, "patient") or {}).get("status") or {}).get(
            "admission"), 30, "quota reserved on the manager")  # fmt: skip
        found = workload_of(fleet, ns, "patient") or {}
        assert not found["status"].get("nominatedClusterNames"), (
            "nobody nominates without greenplace"
        )
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
    assert sorted(e for w in seen.seen.values() for e in w if e.startswith("Job/")) == [
        "Job/patient"
    ], f"one copy of the Job in all the workers: {seen.seen}"
    assert seen.count("Workload") == 1, f"one copy of its Workload: {seen.seen}"


def test_a_lost_worker_s_waiting_workload_goes_to_the_other_compliant_one(fleet: Fleet) -> None:
    """Last: it stops the French worker for good."""
    fr = fleet.workers["fr-secnumcloud"]
    hold = {"apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": {"name": "cq"},
            "spec": {"stopPolicy": "Hold"}}  # fmt: skip
    result = fr.kubectl("patch", "clusterqueue", "cq", "--type=merge", "-p", json.dumps(hold))
    assert result.returncode == 0, result.stderr
    ns = namespace(fleet, EU_NO_EXPOSURE)
    with copies(fleet, ns) as seen:
        submit(fleet, ns, "moved")

        def nominated() -> list[str]:
            found = workload_of(fleet, ns, "moved") or {}
            return list((found.get("status") or {}).get("nominatedClusterNames") or [])

        assert wait_for(nominated, 60, "a nomination") == ["fr-secnumcloud"]
        wait_for(lambda: seen.seen["fr-secnumcloud"], 30, "its copy in FR, held there")
        fleet.multi.workers["fr-secnumcloud"].processes.stop_all()
        assert admitted_in(fleet, ns, "moved", timeout_s=120) == "de-c5"
    assert "us-eu-west" not in seen.where(), "never to the non-compliant worker"
    condition = pool_condition(fleet, "fr-h100")
    assert condition["reason"] in ("Unreachable", "Stale", "ClusterNotActive"), condition
