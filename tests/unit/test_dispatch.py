"""greenplace as MultiKueue's dispatcher: one compliant cluster nominated, charged once.

Against fakes (``FakeDispatch`` stores the manager's Workloads and applies what the dispatcher
writes; the worker views are built from node bodies as ``workers.read_worker`` parses them):
the lowest-carbon worker whose every pool complies is nominated alone, the next when it is full
or stale, never a non-compliant one; a late nomination is replaced (not added to) without a
second charge; a restarted dispatcher reads its nomination back; a forged record is ignored.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Mapping
from typing import Any

import prometheus_client

from greenplace.cli import views
from greenplace.controller import (
    budgets,
    cycle,
    dispatch,
    kube,
    kueue,
    metrics,
    records,
    snapshot,
    status,
    workers,
)
from greenplace.controller import cache as cache_
from tests import fakes, kubeobjects

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
SIGNER = records.Signer(b"k" * 32)
JOB = {"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "j", "controller": True}
# cluster -> (pool, country, gCO2/kWh, legal home)
FLEET = {
    "fr": [("fr-a", "FR", 60.0, "FR")],
    "de": [("de-a", "DE", 300.0, "DE")],
    "us": [("us-a", "IE", 20.0, "US")],  # cleanest, but a US provider in Ireland
}


def workload(**status: Any) -> dict[str, Any]:
    container = {"name": "c", "resources": {"requests": {"nvidia.com/gpu": "2"}}}
    return {
        "apiVersion": kueue.API_VERSION, "kind": "Workload",
        "metadata": {"namespace": "ml", "name": "w", "uid": "u", "resourceVersion": "7",
                     "creationTimestamp": "2026-03-10T11:00:00Z", "ownerReferences": [JOB],
                     "annotations": status.pop("annotations", {})},
        "spec": {"podSets": [{"name": "main", "count": 2,
                              "template": {"spec": {"containers": [container]}}}]},
        "status": {
            "admission": {"clusterQueue": "cq", "podSetAssignments": [
                {"name": "main", "flavors": {"nvidia.com/gpu": "default"}}]},
            "conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved",
                            "message": "", "lastTransitionTime": "2026-03-10T11:00:01Z"},
                           {"type": "Other", "status": "True", "reason": "X", "message": "",
                            "lastTransitionTime": "2026-03-10T11:00:01Z"}],
            "admissionChecks": [{"name": "mk", "state": "Pending",
                                 "lastTransitionTime": "2026-03-10T11:00:01Z"}],
            **status,
        },
    }  # fmt: skip


def manager(fleet: Mapping[str, list[tuple[str, str, float, str]]] = FLEET) -> cache_.Cache:
    """The manager's cache: remote pools of ``fleet``, its MultiKueueClusters Active, the
    MultiKueue check, a France-or-Germany policy with a Budget, and the Workload ``w``."""
    cache = cache_.Cache(signer=SIGNER, kueue=True, multikueue=True)
    for cluster, pools in fleet.items():
        for name, country, gco2, home in pools:
            body = fakes.gpu_pool(name, country, gco2=gco2, legal_home=home)
            body["spec"]["cluster"] = cluster
            body["metadata"]["uid"] = f"uid-{name}"
            cache.put_pool(body)
        cache.put("MultiKueueCluster", multikueue_cluster(cluster))
    cache.put_policy(fakes.policy(
        "p", namespace="ml", sovereignty={"allowedCountries": ["FR", "DE"]},
        budgetRef={"name": "team"},
    ))  # fmt: skip
    cache.put_budget(kubeobjects.budget("ml", "team", money=1000, action="Reject"))
    check = {"controllerName": dispatch.MULTIKUEUE_CONTROLLER,
             "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "MultiKueueConfig",
                            "name": "all"}}  # fmt: skip
    cache.put("AdmissionCheck", {"metadata": {"name": "mk"}, "spec": check})
    cache.put("Workload", workload())
    return cache


def multikueue_cluster(name: str, active: bool = True, secret: str = "") -> dict[str, Any]:
    source = {"kubeConfig": {"locationType": "Secret", "location": secret or f"{name}-kc"}}
    condition = {"type": "Active", "status": "True" if active else "False",
                 "message": "Connected" if active else "kubeconfig unusable"}  # fmt: skip
    return {
        "metadata": {"name": name},
        "spec": {"clusterSource": source},
        "status": {"conditions": [condition]},
    }


def view(
    cluster: str,
    gpus: int = 8,
    used: int = 0,
    age: float = 1.0,
    problem: tuple[str, str] | None = None,
) -> workers.WorkerView:
    """A worker read ``age`` seconds ago: one node per pool of ``FLEET`` with ``gpus`` GPUs,
    ``used`` of them taken by a bound pod."""
    parsed = cache_.Cache()
    for name, *_ in FLEET.get(cluster, []):
        parsed.put_node(fakes.node(f"{name}-0", name, {"nvidia.com/gpu": gpus}))
        if used:
            pod = fakes.pod(f"run-{name}", fakes.gpus(used), gated=False)
            pod["spec"]["nodeName"] = f"{name}-0"
            parsed.put_pod(pod)
    return workers.WorkerView(
        cluster,
        NOW - datetime.timedelta(seconds=age),
        tuple(parsed.nodes.values()),
        tuple(parsed.pods.values()),
        problem,
    )


def copied(body: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(json.dumps(body))
    return found


class FakeDispatch:
    """The manager's Workloads as the dispatcher reads and writes them."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.workloads = {b["metadata"]["name"]: json.loads(json.dumps(b)) for b in bodies}
        self.applied: list[dict[str, Any]] = []

    async def get_workload(self, namespace: str, name: str) -> Mapping[str, Any]:
        return copied(self.workloads[name])

    async def apply_status(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        stored = self.workloads[name]
        if body["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]:
            raise kube.WriteConflictError("changed")
        self.applied.append(dict(body))
        stored["status"]["nominatedClusterNames"] = body["status"]["nominatedClusterNames"]
        stored["metadata"]["resourceVersion"] += "1"
        return copied(stored)

    async def annotate(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> Mapping[str, Any]:
        self.workloads[name]["metadata"]["annotations"].update(annotations)
        self.workloads[name]["metadata"]["resourceVersion"] += "1"
        return copied(self.workloads[name])


def dispatcher(
    views: list[workers.WorkerView], writer: FakeDispatch, **settings: Any
) -> dispatch.Dispatcher:
    watching = workers.Workers("kueue-system")
    watching.views = {v.cluster: v for v in views}
    watching.polled = True
    registry = prometheus_client.CollectorRegistry()
    return dispatch.Dispatcher(
        watching, writer, dispatch.Settings(**settings), metrics.PlacementMetrics(registry)
    )


def run(
    chosen: dispatch.Dispatcher,
    cache: cache_.Cache,
    events: fakes.RecordingWriter | None = None,
    ledger: budgets.Ledger | None = None,
    at: datetime.datetime = NOW,
) -> list[dispatch.Action]:
    return asyncio.run(
        chosen.run(
            snapshot.gather(cache),
            cache,
            events=events or fakes.RecordingWriter(),
            ledger=ledger or budgets.Ledger(),
            now=at,
        )
    )


def nominated(writer: FakeDispatch) -> list[list[str]]:
    return [a["status"]["nominatedClusterNames"] for a in writer.applied]


def record(writer: FakeDispatch) -> dict[str, Any]:
    text = writer.workloads["w"]["metadata"]["annotations"][cache_.DISPATCH_ANNOTATION]
    found: dict[str, Any] = json.loads(text)
    return found


def test_the_cleanest_compliant_cluster_alone_with_a_signed_record_charged_once() -> None:
    cache, writer, ledger = manager(), FakeDispatch(workload()), budgets.Ledger()
    chosen = dispatcher([view("fr"), view("de"), view("us")], writer)
    run(chosen, cache, ledger=ledger)
    assert nominated(writer) == [["fr"]], "FR (60 g) over DE (300 g); never the US provider"
    signed = record(writer)
    assert SIGNER.verify("u", signed) and signed["nominated"] == "fr"
    account = ledger.account(("ml", "team"))
    assert account is not None and account.spent.money == signed["charge"]["money"] > 0
    cache.put("Workload", writer.workloads["w"])
    run(chosen, cache, ledger=ledger, at=NOW + datetime.timedelta(minutes=1))
    assert nominated(writer) == [["fr"]], "a valid nomination is left alone"
    assert account.spent.money == signed["charge"]["money"], "charged once"


def test_kueues_own_fields_are_applied_back_with_the_resource_version() -> None:
    body = workload()
    applied = dispatch.nomination_apply(body, ["fr"])
    assert applied["metadata"]["resourceVersion"] == "7"
    status = applied["status"]
    assert status["nominatedClusterNames"] == ["fr"]
    assert status["admission"] == body["status"]["admission"] and status["resourceRequests"] == []
    assert [c["type"] for c in status["conditions"]] == ["QuotaReserved"], "Kueue's own only"
    assert status["admissionChecks"] == body["status"]["admissionChecks"]


def test_the_next_cluster_when_the_cleanest_is_full() -> None:
    cache, writer = manager(), FakeDispatch(workload())
    run(dispatcher([view("fr", used=8), view("de"), view("us")], writer), cache)
    assert nominated(writer) == [["de"]]


def test_a_stale_worker_has_no_room_and_staleness_never_opens_a_non_compliant_one() -> None:
    cache, writer = manager(), FakeDispatch(workload())
    events = fakes.RecordingWriter()
    stale = [view("fr", age=120), view("de", age=120), view("us")]
    (action,) = run(dispatcher(stale, writer, worker_ttl_seconds=60), cache, events)
    assert nominated(writer) == [], "held: the compliant workers are stale, us never"
    assert action.decision.outcome.value == "Held"
    reasons = {(e[0], e[2]) for e in events.events}
    assert {name for name, _ in reasons} == {"w", "train"}, "said on the Workload and its Job"


def test_a_cluster_with_one_non_compliant_pool_is_never_nominated() -> None:
    fleet = {
        "mixed": [("mixed-fr", "FR", 10.0, "FR"), ("mixed-us", "US", 10.0, "US")],
        "de": FLEET["de"],
    }
    cache, writer = manager(fleet), FakeDispatch(workload())
    parsed = cache_.Cache()
    for name in ("mixed-fr", "mixed-us"):
        parsed.put_node(fakes.node(f"{name}-0", name, {"nvidia.com/gpu": 8}))
    mixed = workers.WorkerView("mixed", NOW, tuple(parsed.nodes.values()))
    run(dispatcher([mixed, view("de")], writer), cache)
    assert nominated(writer) == [["de"]], "pods could land in mixed-us: the cluster is out"


def test_no_compliant_cluster_holds_with_the_reason() -> None:
    cache = manager({"us": FLEET["us"]})
    writer, events = FakeDispatch(workload()), fakes.RecordingWriter()
    (action,) = run(dispatcher([view("us")], writer), cache, events)
    assert nominated(writer) == []
    assert action.decision.reason.value == "NoCompliantPool"
    message = action.decision.message
    assert "cluster us" in message and "IE not in allowed" in message
    assert {e[2] for e in events.events} == {"NoCompliantPool"}


def late_nomination(cluster: str, minutes: float) -> dict[str, Any]:
    at = NOW - datetime.timedelta(minutes=minutes)
    signed = SIGNER.sign("u", {
        "pool": f"{cluster}-a", "budgets": ["ml/team"], "charge": {"money": 5.0},
        "at": at.isoformat(), "nominated": cluster, "nominatedPool": f"{cluster}-a",
        "nominatedAt": at.isoformat(),
    })  # fmt: skip
    return workload(
        annotations={cache_.DISPATCH_ANNOTATION: json.dumps(signed)},
        nominatedClusterNames=[cluster],
    )


def test_a_late_nomination_is_replaced_by_the_next_and_not_charged_again() -> None:
    body = late_nomination("fr", minutes=6)
    cache, writer, ledger = manager(), FakeDispatch(body), budgets.Ledger()
    cache.put("Workload", body)
    chosen = dispatcher([view("fr"), view("de"), view("us")], writer)
    run(chosen, cache, ledger=ledger)
    assert nominated(writer) == [["de"]], "replaced, not added to"
    assert record(writer)["charge"] == {"money": 5.0}, "the first charge is kept"
    account = ledger.account(("ml", "team"))
    assert account is not None and account.spent.money == 5.0, "the first charge, once"


def test_a_nomination_to_a_lost_worker_moves_to_a_compliant_one() -> None:
    body = late_nomination("fr", minutes=1)
    cache, writer = manager(), FakeDispatch(body)
    cache.put("Workload", body)
    run(dispatcher([view("fr", age=300), view("de"), view("us")], writer), cache)
    assert nominated(writer) == [["de"]]


def test_a_restarted_dispatcher_keeps_the_nomination_and_recovers_its_charge() -> None:
    body = late_nomination("fr", minutes=1)
    cache, writer, ledger = manager(), FakeDispatch(body), budgets.Ledger()
    cache.put("Workload", body)
    run(dispatcher([view("fr"), view("de"), view("us")], writer), cache, ledger=ledger)
    assert nominated(writer) == [], "its own nomination, still valid: nothing written"
    spent = ledger.spent(
        tuple(cache.budgets.values()),
        {},
        tuple(snapshot.gather(cache).pods)
        + tuple(e.carrier for e in cache.kueue_workloads.values() if e.carrier),
        NOW,
    )
    assert spent[("ml", "team")].money == 5.0, "the record's charge, read back once"


def test_a_forged_record_is_ignored_and_said() -> None:
    forged = json.loads(late_nomination("us", minutes=1)["metadata"]["annotations"][
        cache_.DISPATCH_ANNOTATION])  # fmt: skip
    forged["charge"] = {"money": 0.0}
    body = workload(
        annotations={cache_.DISPATCH_ANNOTATION: json.dumps(forged)},
        nominatedClusterNames=["us"],
    )
    cache, writer, events = manager(), FakeDispatch(body), fakes.RecordingWriter()
    cache.put("Workload", body)
    run(dispatcher([view("fr"), view("de"), view("us")], writer), cache, events)
    assert nominated(writer) == [["fr"]], "the forged nomination is not greenplace's: replaced"
    assert "UntrustedRecord" in {e[2] for e in events.events}


def test_nothing_is_done_before_the_workers_were_read() -> None:
    cache, writer = manager(), FakeDispatch(workload())
    chosen = dispatcher([], writer)
    chosen.workers.polled = False
    assert run(chosen, cache) == [] and nominated(writer) == []


def test_local_pods_never_plan_onto_remote_pools() -> None:
    cache = manager()
    cache.put_pool(fakes.gpu_pool("local", "FR"))
    assert [p.name for p in snapshot.gather(cache).pools] == ["local"]


def test_why_and_pools_say_what_the_dispatcher_did() -> None:
    cache, writer = manager(), FakeDispatch(workload())
    run(dispatcher([view("fr"), view("de"), view("us")], writer), cache)
    text = views.why_dispatch(writer.workloads["w"])
    assert text.startswith("ml/w (Kueue Workload, MultiKueue): nominated to worker cluster fr")
    assert "pool fr-a" in text and "to ml/team" in text
    held = views.why_dispatch(workload(), [{"type": "Warning", "reason": "NoPoolWithRoom",
                                            "message": "m", "lastTimestamp": "t"}])  # fmt: skip
    assert "no worker cluster nominated" in held and "Warning NoPoolWithRoom: m" in held
    stale = {"type": "Worker", "reason": "Stale", "message": "last read 90s ago"}
    pool = {
        "metadata": {"name": "fr-a"},
        "spec": {"cluster": "fr", "location": {"country": "FR"}},
        "status": {"gpusFree": 6, "gpusTotal": 8, "conditions": [stale]},
    }
    assert views.worker_pool_rows([pool]) == [
        ("fr-a", "fr", "FR", "6/8", "Stale", "last read 90s ago")
    ]


def test_the_placement_cycle_dispatches_records_the_charge_and_the_pools_worker() -> None:
    cache, writer, events = manager(), FakeDispatch(workload()), fakes.RecordingWriter()
    orphan = fakes.gpu_pool("orphan", "FR")
    orphan["spec"]["cluster"], orphan["metadata"]["uid"] = "gone", "uid-orphan"
    cache.put_pool(orphan)
    state = cycle.LoopState()
    recorder = status.StatusRecorder(events, clock=lambda: NOW)
    chosen = dispatcher([view("fr"), view("de"), view("us")], writer)
    asyncio.run(cycle.run_cycle(cache, events, NOW, recorder, state=state, dispatcher=chosen))
    assert nominated(writer) == [["fr"]]
    spent = events.last_status("budgets", "team")["spent"]
    assert spent["money"] == record(writer)["charge"]["money"] > 0, "in the Budget's status"
    fresh = events.last_status("gpupools", "fr-a")
    assert (fresh["gpusFree"], fresh["conditions"][1]["reason"]) == (8, "Fresh")
    missing = events.last_status("gpupools", "orphan")
    assert missing["conditions"][1]["reason"] == "ClusterNotFound"
    assert ("orphan", "Warning", "ClusterNotFound") in {e[:3] for e in events.events}


def test_a_carbon_ceiling_applies_across_clusters_as_in_one() -> None:
    """A ceiling of 100 g under the policy: France (60 g) is nominated; with only Germany
    (300 g) left the Workload is held naming the ceiling, nothing nominated."""
    ceiling = {"allowedCountries": ["FR", "DE"]}
    for fleet, expected in (
        ({"fr": FLEET["fr"], "de": FLEET["de"]}, [["fr"]]),
        ({"de": FLEET["de"]}, []),
    ):
        cache = manager(fleet)
        cache.put_policy(fakes.policy("p", namespace="ml", sovereignty=ceiling,
                                      carbon={"maxGramsPerKwh": 100}))  # fmt: skip
        writer, events = FakeDispatch(workload()), fakes.RecordingWriter()
        actions = run(dispatcher([view(c) for c in fleet], writer), cache, events)
        assert nominated(writer) == expected
        if not expected:
            (action,) = actions
            assert "maxGramsPerKwh" in action.decision.message, action.decision.message


def test_an_exhausted_budget_holds_across_clusters_as_in_one() -> None:
    """A Budget of 1 EUR cannot pay for the Workload anywhere: nothing nominated, the hold
    names the Budget (under the fixture's 1,000 EUR it is nominated: the first test)."""
    cache = manager()
    cache.put_budget(kubeobjects.budget("ml", "team", money=1, action="Reject"))
    writer, events = FakeDispatch(workload()), fakes.RecordingWriter()
    (action,) = run(dispatcher([view(c) for c in FLEET], writer), cache, events)
    assert nominated(writer) == []
    assert action.decision.reason.value == "BudgetExceeded", action.decision
    assert "ml/team" in action.decision.message
