"""The real Kueue runs against the local control plane: quota, flavors and Jobs as Kueue does them.

What greenplace's AdmissionCheck and MultiKueue work builds on: Kueue's manager built from its Go
module (``devcluster.build``), run out of cluster with its webhooks on loopback
(``devcluster.kueue``). A Job sent to a LocalQueue is suspended by Kueue's webhook, admitted into
a ResourceFlavor of its ClusterQueue, unsuspended with that flavor's node labels, and bound by
kube-scheduler on a node of that flavor; a Job over the quota waits with Kueue's own reason.
The first tests' namespaces are not governed and no check is on their queues: Kueue alone.

Then greenplace as Kueue's AdmissionCheck controller (``--kueue``, ``controller.kueue``): a
Workload whose queue lists the check is planned over the pools inside the flavor Kueue assigned;
Ready puts the chosen pool's node selector on its pods, Retry frees the quota (a budget period,
a compliant pool only in a flavor Kueue tries later), Rejected carries the pod path's reason.
The two-flavor tests use five pools of their own (``TIERS``), in flavors ``tier-a`` (listed
first) and ``tier-b``. With greenplace stopped, Workloads wait with the check Pending; restarted,
each is answered once and charged once. Bad input (an unreadable annotation, an AdmissionCheck
with parameters, a pool in no flavor or in two) is said on the object, never a crash (the
operator fixtures fail on a traceback). Those namespaces have a PlacementPolicy but are not
labelled governed: pods of Kueue Jobs are not yet exempt from greenplace's pod gate
(docs/kueue.md).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster import cluster, fleet
from devcluster import kueue as kueue_
from tests import kubeobjects
from tests.integration.conftest import (
    Kube,
    OperatorProcess,
    RunningOperator,
    run_operator,
    wait_for,
)

ADMISSION_POLICIES = False  # greenplace's policies are not what these tests look at
POOL = "ovh-gra-h100"  # two nodes of 8 GPUs in examples/fleet.yaml


@pytest.fixture(scope="module")
def kueue(kube: Kube) -> Iterator[kueue_.Kueue | None]:
    """Kueue started in the local control plane; against your cluster, the Kueue you installed."""
    if isinstance(kube.cluster, cluster.LocalCluster):
        yield kueue_.start(kube.cluster)
        return
    assert kube.kubectl("get", "crd", "workloads.kueue.x-k8s.io").returncode == 0, (
        "install Kueue in the cluster GREENPLACE_KUBECONFIG names (docs/kueue.md)"
    )
    yield None


def get(kube: Kube, *args: str) -> Any:
    result = kube.kubectl("get", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def queue(
    kube: Kube, namespace: str, gpus: int, pools: tuple[str, ...] = (POOL,), check: str = ""
) -> str:
    """A flavor on each pool's nodes (named after the queue when there is one pool), a
    ClusterQueue of ``gpus`` GPUs in each, in that order, behind the AdmissionCheck ``check``
    (none when empty), and a LocalQueue of the same name."""
    name = f"q-{uuid.uuid4().hex[:6]}"
    flavors = {(name if len(pools) == 1 else f"{name}-{pool}"): pool for pool in pools}
    documents = [
        f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {{name: {flavor}}}
spec:
  nodeLabels: {{greenplace.dev/pool: {pool}}}
"""
        for flavor, pool in flavors.items()
    ]
    result = kube.apply("---".join(documents))
    assert result.returncode == 0, result.stderr
    return cluster_queue(kube, namespace, dict.fromkeys(flavors, gpus), check, name=name)


def cluster_queue(
    kube: Kube, namespace: str, quotas: dict[str, int], check: str = "", name: str = ""
) -> str:
    """A ClusterQueue with ``quotas`` GPUs in each flavor, in that order (CPU and memory
    plentiful), behind the AdmissionCheck ``check`` (none when empty), and a LocalQueue of the
    same name in ``namespace``."""
    name = name or f"q-{uuid.uuid4().hex[:6]}"
    flavors = "".join(
        f"""
    - name: {flavor}
      resources:
      - {{name: cpu, nominalQuota: 64}}
      - {{name: memory, nominalQuota: 100Ti}}
      - {{name: nvidia.com/gpu, nominalQuota: {gpus}}}"""
        for flavor, gpus in quotas.items()
    )
    checks = (
        f"\n  admissionChecksStrategy: {{admissionChecks: [{{name: {check}}}]}}" if check else ""
    )
    result = kube.apply(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata: {{name: {name}}}
spec:
  namespaceSelector: {{}}{checks}
  resourceGroups:
  - coveredResources: [cpu, memory, nvidia.com/gpu]
    flavors:{flavors}
""")
    assert result.returncode == 0, result.stderr
    add_local_queue(kube, namespace, name)
    return name


def add_local_queue(kube: Kube, namespace: str, name: str) -> None:
    """A LocalQueue ``name`` in ``namespace`` sending to the ClusterQueue ``name``."""
    result = kube.apply(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{clusterQueue: {name}}}
""")
    assert result.returncode == 0, result.stderr


def job(
    kube: Kube,
    namespace: str,
    local_queue: str,
    gpus: int,
    *,
    annotations: dict[str, str] | None = None,
    memory: str = "1Gi",
) -> str:
    """A one-pod Job of ``gpus`` GPUs sent to ``local_queue``; ``annotations`` on its pod
    template, ``memory`` its pod's memory request."""
    name = f"job-{uuid.uuid4().hex[:6]}"
    manifest = f"""
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{kueue.x-k8s.io/queue-name: {local_queue}}}
spec:
  completions: 1
  template:
    metadata:
      annotations: {json.dumps(annotations or {})}
    spec:
      restartPolicy: Never
      containers:
      - name: train
        image: example.invalid/train:1
        resources:
          requests: {{cpu: "1", memory: "{memory}", nvidia.com/gpu: "{gpus}"}}
          limits: {{nvidia.com/gpu: "{gpus}"}}
"""
    result = kube.apply(manifest)
    assert result.returncode == 0, result.stderr
    return name


def delete_job(kube: Kube, namespace: str, name: str) -> None:
    """Delete the Job and wait until its pods are gone: their GPUs are free for the next test."""
    result = kube.kubectl(
        "delete", "job", "-n", namespace, name, "--cascade=foreground", "--timeout=60s"
    )
    assert result.returncode == 0, result.stderr


def workload_of(kube: Kube, namespace: str, job_name: str) -> dict[str, Any] | None:
    for workload in get(kube, "workloads.kueue.x-k8s.io", "-n", namespace)["items"]:
        owners = workload["metadata"].get("ownerReferences", [])
        if any(o["kind"] == "Job" and o["name"] == job_name for o in owners):
            result: dict[str, Any] = workload
            return result
    return None


def condition(workload: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for entry in (workload or {}).get("status", {}).get("conditions", []):
        if entry["type"] == kind:
            result: dict[str, Any] = entry
            return result
    return {}


def test_a_job_is_admitted_into_its_flavor_and_runs_on_its_nodes(
    kube: Kube, kueue: kueue_.Kueue | None
) -> None:
    namespace = kube.namespace(governed=False)
    local_queue = queue(kube, namespace, gpus=8)
    name = job(kube, namespace, local_queue, gpus=2)
    created = get(kube, "job", "-n", namespace, name)
    # Kueue's mutating webhook suspends the Job at creation, or it would run before admission.
    assert created["spec"]["suspend"] is True

    def admitted() -> dict[str, Any] | None:
        workload = workload_of(kube, namespace, name)
        return workload if condition(workload, "Admitted").get("status") == "True" else None

    workload = wait_for(admitted, what="Kueue to admit the Job's Workload")
    (assignment,) = workload["status"]["admission"]["podSetAssignments"]
    assert assignment["flavors"] == dict.fromkeys(["cpu", "memory", "nvidia.com/gpu"], local_queue)

    def running_pod() -> dict[str, Any] | None:
        pods = get(kube, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]
        bound = [p for p in pods if p["spec"].get("nodeName")]
        return bound[0] if bound else None

    pod = wait_for(running_pod, what="the admitted Job's pod to be bound")
    assert pod["spec"]["nodeSelector"] == {"greenplace.dev/pool": POOL}, "the flavor's labels"
    assert pod["spec"]["nodeName"].startswith(f"{POOL}-")


def test_a_job_over_the_quota_waits_with_kueues_reason(
    kube: Kube, kueue: kueue_.Kueue | None
) -> None:
    namespace = kube.namespace(governed=False)
    local_queue = queue(kube, namespace, gpus=4)
    name = job(kube, namespace, local_queue, gpus=6)

    def waiting() -> dict[str, Any] | None:
        reserved = condition(workload_of(kube, namespace, name), "QuotaReserved")
        return reserved if reserved.get("reason") == "Pending" else None

    pending = wait_for(waiting, what="Kueue to say why the Workload waits")
    assert pending["status"] == "False"
    assert "insufficient quota" in pending["message"], pending["message"]
    assert get(kube, "job", "-n", namespace, name)["spec"]["suspend"] is True


CHECK = "greenplace"
TIER_LABEL = "greenplace.test/tier"
# The two-flavor fleet: pool -> (flavor tier, country, fallback gCO2/kWh, GPUs of its one node).
TIERS = {
    "a-fr": ("a", "FR", 40, 4),
    "a-de": ("a", "DE", 300, 8),
    "a-gb": ("a", "GB", 5, 4),
    "b-fr": ("b", "FR", 20, 4),
    "b-ch": ("b", "CH", 10, 4),
}
FLAVOR_A, FLAVOR_B = "tier-a", "tier-b"  # tier-a is listed first in every ClusterQueue


@pytest.fixture(scope="module")
def check(kube: Kube, kueue: kueue_.Kueue | None) -> str:
    """The AdmissionCheck ``CHECK`` of greenplace's controller, and the two-flavor fleet:
    ``TIERS``' pools with their nodes, and a ResourceFlavor per tier."""
    applied = kube.apply(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: AdmissionCheck
metadata: {{name: {CHECK}}}
spec: {{controllerName: greenplace.dev/placement}}
""")
    assert applied.returncode == 0, applied.stderr
    pools = [
        fleet.FleetPool(name, 1, gpus, {
            "nodeSelector": {"greenplace.dev/pool": name, TIER_LABEL: tier},
            "location": {"provider": "test", "region": name, "country": country,
                         "gridZone": country},
            "gpu": {"model": "H100", "tdpWatts": 700},
            "price": {"currency": "EUR", "onDemandPerGpuHour": 2.0},
            "carbonIntensity": {"fallbackGramsPerKwh": grams},
        })
        for name, (tier, country, grams, gpus) in TIERS.items()
    ]  # fmt: skip
    fleet.apply_fleet(kube.api, pools)
    for flavor, tier in ((FLAVOR_A, "a"), (FLAVOR_B, "b")):
        applied = kube.apply(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {{name: {flavor}}}
spec: {{nodeLabels: {{{TIER_LABEL}: {tier}}}}}
""")
        assert applied.returncode == 0, applied.stderr
    return CHECK


@pytest.fixture(scope="module")
def greenplace(kube: Kube, check: str) -> Iterator[RunningOperator]:
    """The operator answering Kueue's AdmissionCheck ``CHECK``."""
    with run_operator(kube, kueue=True) as running:
        yield running


def governed_by_policy(
    kube: Kube,
    countries: list[str],
    budget: float | None = None,
    action: str = "Defer",
    *,
    governed: bool = False,
) -> str:
    """A namespace (labelled governed only with ``governed``) whose PlacementPolicy allows
    ``countries``, charged to a monthly Budget ``team`` of ``budget`` EUR with ``action`` when
    ``budget`` is given."""
    namespace = kube.namespace(governed=governed)
    if budget is not None:
        kube.apply_ok(kubeobjects.budget(namespace, "team", money=budget, action=action))
    policy = kubeobjects.policy(namespace, "p", countries, budget="team" if budget else None)
    applied = kube.apply(kubeobjects.manifest(policy))
    assert applied.returncode == 0, applied.stderr
    return namespace


def bound_pod(kube: Kube, namespace: str, job_name: str) -> dict[str, Any] | None:
    pods = get(kube, "pods", "-n", namespace, "-l", f"job-name={job_name}")["items"]
    return next((p for p in pods if p["spec"].get("nodeName")), None)


def events_on(kube: Kube, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    """greenplace's Events on the ``kind`` object ``name``, oldest first."""
    events = get(kube, "events", "-n", namespace)["items"]
    ours = [
        e for e in events
        if e["involvedObject"].get("kind") == kind and e["involvedObject"].get("name") == name
        and (e.get("source") or {}).get("component", "").startswith("greenplace")
    ]  # fmt: skip
    return sorted(ours, key=lambda e: e.get("firstTimestamp") or "")


def event_with(
    kube: Kube, namespace: str, involved: tuple[str, str], reason: str, text: str = ""
) -> dict[str, Any] | None:
    """greenplace's latest Event on ``involved`` (kind, name) with ``reason`` and ``text``."""
    found = [
        e for e in events_on(kube, namespace, *involved)
        if e["reason"] == reason and text in e["message"]
    ]  # fmt: skip
    return found[-1] if found else None


def deactivated(kube: Kube, namespace: str, job_name: str) -> dict[str, Any]:
    """The Job's Workload once Kueue deactivated it because an admission check rejected it."""

    def inactive() -> dict[str, Any] | None:
        # Kueue sets spec.active first, then the Evicted condition: wait for both.
        workload = workload_of(kube, namespace, job_name)
        evicted = kubeobjects.condition(workload or {}, "Evicted") or {}
        done = workload and workload["spec"].get("active") is False and evicted
        return workload if done else None

    workload: dict[str, Any] = wait_for(inactive, what="Kueue to deactivate the rejected Workload")
    evicted = kubeobjects.condition(workload, "Evicted") or {}
    assert evicted.get("reason") == "DeactivatedDueToAdmissionCheck", evicted
    return workload


def record_of(state: dict[str, Any]) -> dict[str, Any]:
    """The signed placement record a Ready check carries on its (first) pod set."""
    result: dict[str, Any] = json.loads(
        state["podSetUpdates"][0]["annotations"]["greenplace.dev/kueue-placement"]
    )
    return result


def spent_money(kube: Kube, namespace: str) -> float | None:
    status = get(kube, "budgets.greenplace.dev", "-n", namespace, "team").get("status") or {}
    money = (status.get("spent") or {}).get("money")
    return float(money) if money is not None else None


def our_check(kube: Kube, namespace: str, job_name: str) -> dict[str, Any] | None:
    workload = workload_of(kube, namespace, job_name) or {}
    for state in workload.get("status", {}).get("admissionChecks", []):
        if state["name"] == CHECK and state["state"] != "Pending":
            result: dict[str, Any] = state
            return result
    return None


def test_with_greenplace_stopped_nothing_is_admitted_and_restarted_each_is_charged_once(
    kube: Kube, check: str, operator_process: OperatorProcess
) -> None:
    """Runs before the module's operator starts (``greenplace``): greenplace in a process of
    its own, killed (no cleanup) and started again."""
    namespace = governed_by_policy(kube, ["FR", "DE"], budget=10_000)
    local_queue = cluster_queue(kube, namespace, {FLAVOR_A: 16}, check=check)
    operator_process.start("--kueue")
    first = job(kube, namespace, local_queue, gpus=1)
    ready = wait_for(lambda: our_check(kube, namespace, first), 60, "greenplace to answer")
    assert ready["state"] == "Ready", ready
    charge = record_of(ready)["charge"]["money"]
    assert charge > 0
    wait_for(lambda: spent_money(kube, namespace) == pytest.approx(charge), 60,
             "the Budget's status to show the first charge")  # fmt: skip
    operator_process.kill()

    second = job(kube, namespace, local_queue, gpus=1)

    def reserved_and_pending() -> dict[str, Any] | None:
        workload = workload_of(kube, namespace, second) or {}
        states = {
            s["name"]: s["state"] for s in workload.get("status", {}).get("admissionChecks", [])
        }
        reserved = condition(workload, "QuotaReserved").get("status") == "True"
        return workload if reserved and states.get(check) == "Pending" else None

    waiting = wait_for(reserved_and_pending, 60, "Kueue to reserve quota while greenplace is down")
    assert condition(waiting, "Admitted").get("status") != "True", "not admitted without greenplace"
    assert get(kube, "job", "-n", namespace, second)["spec"]["suspend"] is True

    operator_process.start("--kueue")
    answered = wait_for(lambda: our_check(kube, namespace, second), 60, "the restarted answer")
    assert answered["state"] == "Ready", answered
    both = charge + record_of(answered)["charge"]["money"]
    wait_for(lambda: spent_money(kube, namespace) == pytest.approx(both), 60,
             "the Budget to show both charges, the first not twice")  # fmt: skip
    assert our_check(kube, namespace, first) == ready, "the first Workload answered once"
    for name in (first, second):
        workload = workload_of(kube, namespace, name) or {}
        normal = [e for e in events_on(kube, namespace, "Workload", workload["metadata"]["name"])
                  if e["type"] == "Normal"]  # fmt: skip
        assert len(normal) == 1, normal
    assert spent_money(kube, namespace) == pytest.approx(both)
    for name in (first, second):
        delete_job(kube, namespace, name)


def test_the_check_is_active_and_a_ready_job_runs_in_the_chosen_pool(
    kube: Kube, greenplace: RunningOperator
) -> None:
    active = wait_for(
        lambda: kubeobjects.condition(get(kube, "admissioncheck", CHECK), "Active"),
        what="greenplace to mark its AdmissionCheck Active",
    )
    assert active["status"] == "True"
    namespace = governed_by_policy(kube, ["FR", "DE"])
    local_queue = queue(kube, namespace, gpus=8, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=2)
    state = wait_for(lambda: our_check(kube, namespace, name), what="greenplace to answer")
    assert state["state"] == "Ready", state
    assert state["message"].startswith("LowestCarbon"), state["message"]
    (update,) = state["podSetUpdates"]
    assert update["nodeSelector"] == {"greenplace.dev/pool": POOL}
    assert "greenplace.dev/kueue-placement" in update["annotations"]

    def bound() -> dict[str, Any] | None:
        pods = get(kube, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]
        return next((p for p in pods if p["spec"].get("nodeName")), None)

    pod = wait_for(bound, what="the admitted Job's pod to be bound")
    assert pod["spec"]["nodeName"].startswith(f"{POOL}-")
    assert "greenplace.dev/kueue-placement" in pod["metadata"]["annotations"]


def test_a_job_no_flavor_may_hold_is_rejected_with_the_reason(
    kube: Kube, greenplace: RunningOperator
) -> None:
    namespace = governed_by_policy(kube, ["CH"])
    local_queue = queue(kube, namespace, gpus=8, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=1)
    workload = deactivated(kube, namespace, name)
    (state,) = workload["status"]["admissionChecks"]
    assert state["message"].endswith("Previously: Rejected"), "Kueue keeps only the state"

    def our_event() -> dict[str, Any] | None:
        events = get(kube, "events", "-n", namespace)["items"]
        return next(
            (e for e in events if e["involvedObject"].get("kind") == "Workload"
             and e["reason"] == "NoCompliantPool"),
            None,
        )  # fmt: skip

    event = wait_for(our_event, what="greenplace's Event with the reason on the Workload")
    assert "country FR not in allowed CH" in event["message"], event["message"]
    assert not get(kube, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]


def test_two_flavors_the_compliant_lowest_carbon_pool_of_the_admitted_flavor(
    kube: Kube, greenplace: RunningOperator
) -> None:
    """tier-a holds a-gb (5 g, GB not allowed), a-fr (40 g) and a-de (300 g); tier-b holds
    b-fr (20 g) and b-ch (10 g), cleaner but not the flavor Kueue admits into (it tries
    tier-a first, which has quota). The namespace is governed: greenplace's pod gate leaves the
    admitted Job's pod ungated (its record is the Workload's), so it is bound at once."""
    namespace = governed_by_policy(kube, ["FR", "DE"], governed=True)
    local_queue = cluster_queue(kube, namespace, {FLAVOR_A: 8, FLAVOR_B: 8}, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=1)
    state = wait_for(lambda: our_check(kube, namespace, name), what="greenplace to answer")
    assert state["state"] == "Ready", state
    (update,) = state["podSetUpdates"]
    assert update["nodeSelector"] == {"greenplace.dev/pool": "a-fr", TIER_LABEL: "a"}
    workload = workload_of(kube, namespace, name) or {}
    (assignment,) = workload["status"]["admission"]["podSetAssignments"]
    assert assignment["flavors"]["nvidia.com/gpu"] == FLAVOR_A
    pod = wait_for(lambda: bound_pod(kube, namespace, name), what="the Job's pod to be bound")
    assert pod["spec"]["nodeName"] == "a-fr-0", "the compliant lowest-carbon pool of tier-a"
    assert not pod["spec"].get("schedulingGates"), "not held twice by the pod gate"
    # The same words as greenplace why, on the Workload and on the Job.
    for kind, involved in (("Workload", workload["metadata"]["name"]), ("Job", name)):
        event = wait_for(
            lambda k=kind, i=involved: event_with(kube, namespace, (k, i), "LowestCarbon"),
            what=f"greenplace's Event on the {kind}",
        )
        assert state["message"] == f"LowestCarbon: {event['message']}"
    delete_job(kube, namespace, name)


def test_the_only_compliant_pool_in_the_later_flavor_retries_until_kueue_reserves_it(
    kube: Kube, greenplace: RunningOperator
) -> None:
    """Kueue reserves tier-a first while it has quota: greenplace answers Retry naming tier-b,
    nothing runs; once tier-a has no quota left (here: set to 0), Kueue's next try reserves
    tier-b and the Job runs in b-ch, its only compliant pool."""
    namespace = governed_by_policy(kube, ["CH"])
    local_queue = cluster_queue(kube, namespace, {FLAVOR_A: 4, FLAVOR_B: 4}, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=1)
    workload_name = wait_for(lambda: (workload_of(kube, namespace, name) or {}).get("metadata"),
                             what="the Workload")["name"]  # fmt: skip
    retried = wait_for(
        lambda: event_with(kube, namespace, ("Workload", workload_name), "NoCompliantPool",
                           f"pools of flavor {FLAVOR_B} may take it"),
        what="greenplace's Retry naming the later flavor",
    )  # fmt: skip
    assert "country FR not in allowed CH" in retried["message"], retried["message"]
    assert event_with(kube, namespace, ("Job", name), "NoCompliantPool", FLAVOR_B)
    assert (workload_of(kube, namespace, name) or {})["spec"].get("active", True), "not rejected"
    assert get(kube, "job", "-n", namespace, name)["spec"]["suspend"] is True
    assert not get(kube, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]

    cluster_queue(kube, namespace, {FLAVOR_A: 0, FLAVOR_B: 4}, check=CHECK, name=local_queue)

    def admitted() -> dict[str, Any] | None:
        state = our_check(kube, namespace, name)
        return state if state and state["state"] == "Ready" else None

    # Kueue tries again once the Retry's requeueAfterSeconds (60 s) is over.
    state = wait_for(admitted, 150, "Kueue to reserve tier-b and greenplace to admit it")
    assert state["podSetUpdates"][0]["nodeSelector"] == {"greenplace.dev/pool": "b-ch",
                                                         TIER_LABEL: "b"}  # fmt: skip
    pod = wait_for(lambda: bound_pod(kube, namespace, name), what="the Job's pod to be bound")
    assert pod["spec"]["nodeName"] == "b-ch-0"
    delete_job(kube, namespace, name)


def test_an_exhausted_budget_parks_the_workload_until_the_period_end_and_frees_the_quota(
    kube: Kube, greenplace: RunningOperator
) -> None:
    """Deferred to the Budget's period end, the Workload is parked: deactivated with greenplace's
    signed note of when it is activated again, the Budget named on the Workload and the Job.
    Kueue evicts it and frees its quota (a Retry would hold it until then in Kueue v0.17): another
    Job of the same ClusterQueue, whose quota is only enough for one, is admitted meanwhile."""
    namespace = governed_by_policy(kube, ["FR", "DE"], budget=0.01)
    local_queue = cluster_queue(kube, namespace, {FLAVOR_A: 2}, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=2)
    workload_name = wait_for(lambda: (workload_of(kube, namespace, name) or {}).get("metadata"),
                             what="the Workload")["name"]  # fmt: skip
    event = wait_for(
        lambda: event_with(kube, namespace, ("Workload", workload_name), "BudgetExceeded"),
        what="greenplace's Event naming the Budget",
    )
    assert f"Budget {namespace}/team" in event["message"], event["message"]
    assert "Parked until" in event["message"], event["message"]
    assert event_with(kube, namespace, ("Job", name), "BudgetExceeded"), "said on the Job too"

    def parked() -> dict[str, Any] | None:
        workload = workload_of(kube, namespace, name) or {}
        inactive = workload.get("spec", {}).get("active") is False
        released = condition(workload, "QuotaReserved").get("status") != "True"
        return workload if inactive and released else None

    workload = wait_for(parked, what="Kueue to evict the parked Workload and free its quota")
    note = json.loads(workload["metadata"]["annotations"]["greenplace.dev/parked-until"])
    at = datetime.datetime.fromisoformat(note["until"])
    now = datetime.datetime.now(datetime.UTC)
    month_end = (now.replace(day=1) + datetime.timedelta(days=32)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    assert at == month_end, (at, month_end)
    assert get(kube, "job", "-n", namespace, name)["spec"]["suspend"] is True

    other = governed_by_policy(kube, ["FR", "DE"])
    add_local_queue(kube, other, local_queue)
    free = job(kube, other, local_queue, gpus=2)
    answered = wait_for(lambda: our_check(kube, other, free), 60, "the other Job, quota free")
    assert answered["state"] == "Ready", answered
    admitted = wait_for(
        lambda: condition(workload_of(kube, other, free), "Admitted").get("status") == "True",
        60, "Kueue to admit the other Job into the freed quota",
    )  # fmt: skip
    assert admitted
    delete_job(kube, namespace, name)
    delete_job(kube, other, free)


def test_an_exhausted_budget_with_action_reject_is_rejected_naming_it(
    kube: Kube, greenplace: RunningOperator
) -> None:
    namespace = governed_by_policy(kube, ["FR", "DE"], budget=0.01, action="Reject")
    local_queue = cluster_queue(kube, namespace, {FLAVOR_A: 2}, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=2)
    workload = deactivated(kube, namespace, name)
    for involved in (("Job", name), ("Workload", workload["metadata"]["name"])):
        event = wait_for(
            lambda i=involved: event_with(kube, namespace, i, "BudgetExceeded"),
            what=f"greenplace's Event on the {involved[0]}",
        )
        assert f"Budget {namespace}/team" in event["message"], event["message"]
    assert not get(kube, "pods", "-n", namespace, "-l", f"job-name={name}")["items"]


def test_an_unreadable_duration_on_the_jobs_template_is_said_and_the_fallback_used(
    kube: Kube, greenplace: RunningOperator
) -> None:
    namespace = governed_by_policy(kube, ["FR", "DE"])
    local_queue = cluster_queue(kube, namespace, {FLAVOR_A: 8}, check=CHECK)
    name = job(kube, namespace, local_queue, gpus=1,
               annotations={"greenplace.dev/expected-duration-hours": "soon"})  # fmt: skip
    state = wait_for(lambda: our_check(kube, namespace, name), what="greenplace to answer")
    assert state["state"] == "Ready", "planned with the fallback, 1 h"
    workload = workload_of(kube, namespace, name) or {}
    for kind, involved in (("Workload", workload["metadata"]["name"]), ("Job", name)):
        event = wait_for(
            lambda k=kind, i=involved: event_with(kube, namespace, (k, i), "InvalidAnnotation"),
            what=f"the Warning on the {kind}",
        )
        assert "'soon'" in event["message"] and "1 h is assumed" in event["message"]
    delete_job(kube, namespace, name)


def test_an_admission_check_with_parameters_is_inactive_and_admits_nothing(
    kube: Kube, greenplace: RunningOperator
) -> None:
    name = f"gp-{uuid.uuid4().hex[:6]}"
    kube.apply_ok(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: AdmissionCheck
metadata: {{name: {name}}}
spec:
  controllerName: greenplace.dev/placement
  parameters: {{apiGroup: example.com, kind: Tuning, name: fast}}
""")
    active = wait_for(
        lambda: kubeobjects.condition(get(kube, "admissioncheck", name), "Active"),
        what="greenplace to write the check's Active condition",
    )
    assert (active["status"], active["reason"]) == ("False", "UnknownParameters"), active
    assert "spec.parameters (example.com/Tuning/fast)" in active["message"]
    namespace = governed_by_policy(kube, ["FR", "DE"])
    local_queue = cluster_queue(kube, namespace, {FLAVOR_A: 8}, check=name)
    job_name = job(kube, namespace, local_queue, gpus=1)

    def inadmissible() -> dict[str, Any] | None:
        reserved = condition(workload_of(kube, namespace, job_name), "QuotaReserved")
        return reserved if "inactive" in reserved.get("message", "") else None

    reserved = wait_for(inadmissible, what="Kueue to hold the Workload: its queue is inactive")
    assert reserved["status"] == "False", reserved
    assert get(kube, "job", "-n", namespace, job_name)["spec"]["suspend"] is True
    delete_job(kube, namespace, job_name)


def test_a_pool_in_no_flavor_or_in_two_says_so_on_its_status(
    kube: Kube, greenplace: RunningOperator
) -> None:
    def flavor_condition(pool: str, reason: str) -> dict[str, Any] | None:
        found = kubeobjects.condition(get(kube, "gpupool", pool), "KueueFlavor")
        return found if found and found["reason"] == reason else None

    one = wait_for(lambda: flavor_condition("a-fr", "OneFlavor"), what="a-fr's condition")
    assert (one["status"], one["message"]) == ("True", f"lies in Kueue flavor {FLAVOR_A}")
    none = wait_for(lambda: flavor_condition("gcp-us-central1-h100", "NoFlavor"),
                    what="the condition of a pool no flavor holds")  # fmt: skip
    assert none["status"] == "False" and "lies in no Kueue ResourceFlavor" in none["message"]
    copy = f"b-ch-copy-{uuid.uuid4().hex[:4]}"
    kube.apply_ok(f"""
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata: {{name: {copy}}}
spec: {{nodeLabels: {{greenplace.dev/pool: b-ch}}}}
""")
    two = wait_for(lambda: flavor_condition("b-ch", "SeveralFlavors"), what="b-ch in two")
    assert f"({copy}, {FLAVOR_B})" in two["message"], two["message"]
    assert kube.kubectl("delete", "resourceflavor", copy).returncode == 0
    wait_for(lambda: flavor_condition("b-ch", "OneFlavor"), what="b-ch back in one flavor")


def holding_a_fr(kube: Kube) -> list[str]:
    """Pods on a-fr's node and Workloads placed in a-fr, by namespace/name."""
    pods = get(kube, "pods", "-A", "--field-selector", "spec.nodeName=a-fr-0")["items"]
    workloads = [
        w for w in get(kube, "workloads.kueue.x-k8s.io", "-A")["items"]
        if any(u.get("nodeSelector", {}).get("greenplace.dev/pool") == "a-fr"
               for c in w.get("status", {}).get("admissionChecks", [])
               for u in c.get("podSetUpdates") or [])
    ]  # fmt: skip
    return [f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}"
            for o in (*pods, *workloads)]  # fmt: skip


def test_a_ready_workloads_gpus_are_reserved_until_its_pods_are_bound(
    kube: Kube, greenplace: RunningOperator
) -> None:
    """The first Job asks for more memory than any node has: Kueue admits it (memory quota is
    plentiful) and greenplace places it (it weighs accelerators), but kube-scheduler never binds
    its pod. Its 3 GPUs of a-fr stay reserved, so the next Job goes to a-de, not into them."""
    namespace = governed_by_policy(kube, ["FR", "DE"])
    local_queue = cluster_queue(kube, namespace, {FLAVOR_A: 16}, check=CHECK)
    wait_for(lambda: not holding_a_fr(kube), 60, "earlier tests' pods and Workloads to be gone")
    stuck = job(kube, namespace, local_queue, gpus=3, memory="4Ti")
    state = wait_for(lambda: our_check(kube, namespace, stuck), what="the first answer")
    first_pool = state["podSetUpdates"][0]["nodeSelector"]["greenplace.dev/pool"]
    assert first_pool == "a-fr", f"a-fr taken by {holding_a_fr(kube)}"

    def unschedulable() -> dict[str, Any] | None:
        pods = get(kube, "pods", "-n", namespace, "-l", f"job-name={stuck}")["items"]
        scheduled = [kubeobjects.condition(p, "PodScheduled") or {} for p in pods]
        return next((c for c in scheduled if c.get("reason") == "Unschedulable"), None)

    wait_for(unschedulable, 60, "kube-scheduler to find no node for the first Job's pod")
    second = job(kube, namespace, local_queue, gpus=2)
    answer = wait_for(lambda: our_check(kube, namespace, second), what="the second answer")
    assert answer["podSetUpdates"][0]["nodeSelector"]["greenplace.dev/pool"] == "a-de", (
        "a-fr has 1 GPU left that is not reserved"
    )
    delete_job(kube, namespace, stuck)
    delete_job(kube, namespace, second)
