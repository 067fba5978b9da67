"""The placement cycle answers greenplace's Kueue AdmissionCheck once, charging budgets once.

Against ``tests.fakes.RecordingWriter``: a Workload waiting for our check is planned over the
pools of the flavor Kueue assigned; the answer is one status write (Ready with the pool, Retry
naming another flavor that would do, or Rejected with the reason), with Events on the Workload
and its Job and a count by outcome; the next cycle does not answer again, and the check is
Active (Active=False when it names parameters). A Ready Workload's GPUs stay reserved until its
pods are bound; a pod set's unreadable annotations are said on the Workload and Job.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

import prometheus_client

from greenplace.controller import cache as cache_
from greenplace.controller import cycle, kueue, metrics, records, snapshot, status
from tests import fakes, kubeobjects

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
SIGNER = records.Signer(b"k" * 32)


JOB = {"apiVersion": "batch/v1", "kind": "Job", "name": "train", "uid": "j", "controller": True}


def workload(
    check_state: str = "Pending", annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    container = {"name": "c", "resources": {"requests": {"nvidia.com/gpu": "2"}}}
    template = {"metadata": {"annotations": annotations or {}}, "spec": {"containers": [container]}}
    return {
        "metadata": {"namespace": "ml", "name": "w", "uid": "u",
                     "creationTimestamp": "2026-03-10T11:00:00Z", "ownerReferences": [JOB]},
        "spec": {"podSets": [{"name": "main", "count": 2, "template": template}]},
        "status": {
            "admission": {"clusterQueue": "cq", "podSetAssignments": [
                {"name": "main", "flavors": {"nvidia.com/gpu": "de-only"}}]},
            "admissionChecks": [{"name": "gp", "state": check_state}],
        },
    }  # fmt: skip


def cache_for(countries: list[str], check: dict[str, Any] | None = None) -> cache_.Cache:
    """Pools fr and de (8 GPUs each), flavors fr-only and de-only, a ClusterQueue listing
    ``queue_flavors`` in that order, and the Workload ``w`` reserved in de-only."""
    cache = cache_.Cache(signer=SIGNER, kueue=True)
    for name, country in (("fr", "FR"), ("de", "DE")):
        cache.put_pool(fakes.gpu_pool(name, country))
        cache.put_node(fakes.node(f"{name}-0", name, {"nvidia.com/gpu": 8}))
    cache.put_policy(fakes.policy(
        "p", namespace="ml", sovereignty={"allowedCountries": countries},
        budgetRef={"name": "team"},
    ))  # fmt: skip
    cache.put_budget(kubeobjects.budget("ml", "team", money=1000, action="Reject"))
    spec = {"controllerName": kueue.CONTROLLER_NAME, **(check or {})}
    cache.put("AdmissionCheck", {"metadata": {"name": "gp"}, "spec": spec})
    for pool in ("de", "fr"):
        labels = {"nodeLabels": {"greenplace.dev/pool": pool}}
        cache.put("ResourceFlavor", {"metadata": {"name": f"{pool}-only"}, "spec": labels})
    groups = [{"flavors": [{"name": "de-only"}, {"name": "fr-only"}]}]
    cache.put("ClusterQueue", {"metadata": {"name": "cq"}, "spec": {"resourceGroups": groups}})
    cache.put("Workload", workload())
    return cache


def one_flavor(cache: cache_.Cache) -> cache_.Cache:
    """``cache`` with the ClusterQueue holding the de-only flavor alone."""
    groups = [{"flavors": [{"name": "de-only"}]}]
    cache.put("ClusterQueue", {"metadata": {"name": "cq"}, "spec": {"resourceGroups": groups}})
    return cache


def answers(writer: fakes.RecordingWriter) -> list[dict[str, Any]]:
    return [s["admissionChecks"][0] for k, _, _, s in writer.statuses if k == "Workload"]


def test_ready_into_the_assigned_flavors_pool_once_with_a_signed_record() -> None:
    writer = fakes.RecordingWriter()
    writer.kueue_objects["Workload", "ml", "w"] = workload()
    cache = cache_for(["FR", "DE"])
    state = cycle.LoopState()
    first = asyncio.run(cycle.run_cycle(cache, writer, NOW, state=state))
    (answer,) = answers(writer)
    assert answer["state"] == "Ready"
    (update,) = answer["podSetUpdates"]
    assert update["nodeSelector"] == {"greenplace.dev/pool": "de"}, "the flavor's pool, not FR"
    record = json.loads(update["annotations"][kueue.RECORD_ANNOTATION])
    assert SIGNER.verify("u", record) and record["pool"] == "de"
    assert first.placed == 1 and first.placed_by_reason
    active = [s for k, _, _, s in writer.statuses if k == "AdmissionCheck"]
    assert active[0]["conditions"][0]["type"] == "Active"
    asyncio.run(cycle.run_cycle(cache, writer, NOW + datetime.timedelta(minutes=1), state=state))
    assert len(answers(writer)) == 1, "answered once: the stored answer is in the cache"
    account = state.ledger.account(("ml", "team"))
    assert account is not None
    assert account.spent.money == record["charge"]["money"] > 0, "charged once, at Ready"
    assert len([k for k, *_ in writer.statuses if k == "AdmissionCheck"]) == 1


def test_rejected_when_the_only_flavor_holds_no_allowed_pool() -> None:
    writer = fakes.RecordingWriter()
    report = asyncio.run(cycle.run_cycle(one_flavor(cache_for(["FR"])), writer, NOW))
    (answer,) = answers(writer)
    assert answer["state"] == "Rejected"
    assert answer["message"].startswith("NoCompliantPool")
    events = [(e[0], e[2], e[3]) for e in writer.events]
    assert {name for name, reason, _ in events if reason == "NoCompliantPool"} == {"w", "train"}, (
        "the Events keep the words, on the Workload and on its Job"
    )
    assert all(answer["message"] == f"{r}: {m}" for _, r, m in events), "the words of why"
    assert report.kueue_answers == {("Rejected", "NoCompliantPool"): 1}
    registry = prometheus_client.CollectorRegistry()
    metrics.PlacementMetrics(registry).observe(report)
    labels = {"state": "Rejected", "reason": "NoCompliantPool"}
    assert registry.get_sample_value("greenplace_kueue_answers_total", labels) == 1


def test_retry_naming_the_later_flavor_whose_pool_is_compliant() -> None:
    writer = fakes.RecordingWriter()
    asyncio.run(cycle.run_cycle(cache_for(["FR"]), writer, NOW))
    (answer,) = answers(writer)
    assert answer["state"] == "Retry", "fr-only holds FR: Kueue may reserve it later"
    assert answer["requeueAfterSeconds"] == kueue.HELD_RETRY_SECONDS
    assert "pools of flavor fr-only may take it" in answer["message"], answer["message"]
    assert "podSetUpdates" not in answer, "never a pool outside the assigned flavor"


def test_rejected_when_no_flavor_of_the_queue_holds_a_compliant_pool() -> None:
    writer = fakes.RecordingWriter()
    asyncio.run(cycle.run_cycle(cache_for(["CH"]), writer, NOW))
    (answer,) = answers(writer)
    assert answer["state"] == "Rejected", answer["message"]
    assert "may take it" not in answer["message"]


def test_a_check_with_parameters_is_inactive_and_its_workloads_are_not_answered() -> None:
    writer = fakes.RecordingWriter()
    parameters = {"parameters": {"apiGroup": "x.dev", "kind": "Config", "name": "c"}}
    cache = cache_for(["DE"], check=parameters)
    state = cycle.LoopState()
    asyncio.run(cycle.run_cycle(cache, writer, NOW, state=state))
    assert answers(writer) == [], "Kueue admits nothing through an inactive check"
    (written,) = [s for k, _, _, s in writer.statuses if k == "AdmissionCheck"]
    (active,) = written["conditions"]
    assert (active["status"], active["reason"]) == ("False", "UnknownParameters")
    assert "spec.parameters (x.dev/Config/c)" in active["message"]
    plain = {"metadata": {"name": "gp"}, "spec": {"controllerName": kueue.CONTROLLER_NAME}}
    cache.put("AdmissionCheck", plain)
    asyncio.run(cycle.run_cycle(cache, writer, NOW, state=state))
    last = [s for k, _, _, s in writer.statuses if k == "AdmissionCheck"][-1]
    assert last["conditions"][0]["status"] == "True", "parameters removed: Active again"
    assert [a["state"] for a in answers(writer)] == ["Ready"]


def test_an_unreadable_duration_on_the_template_is_said_on_the_workload_and_job() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_for(["DE"])
    cache.put("Workload", workload(annotations={"greenplace.dev/expected-duration-hours": "soon"}))
    state = cycle.LoopState()
    report = asyncio.run(cycle.run_cycle(cache, writer, NOW, state=state))
    warned = [(e[0], e[3]) for e in writer.events if e[2] == "InvalidAnnotation"]
    assert {name for name, _ in warned} == {"w", "train"}, warned
    assert all("'soon'" in message for _, message in warned)
    assert report.warnings["InvalidAnnotation"] == 1, "one pod set, counted once"
    (answer,) = answers(writer)
    assert answer["state"] == "Ready", "the fallback (1 h) is planned"
    record = json.loads(answer["podSetUpdates"][0]["annotations"][kueue.RECORD_ANNOTATION])
    fallback = json.loads(answers_for_hours(1.0)["podSetUpdates"][0]["annotations"][
        kueue.RECORD_ANNOTATION])  # fmt: skip
    assert record["charge"] == fallback["charge"]
    asyncio.run(cycle.run_cycle(cache, writer, NOW, state=state))
    assert len([e for e in writer.events if e[2] == "InvalidAnnotation"]) == 2, "once each"


def test_each_pod_set_with_an_unreadable_annotation_is_said_once() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_for(["DE"])
    body = workload(annotations={"greenplace.dev/expected-duration-hours": "soon"})
    workers = json.loads(json.dumps(body["spec"]["podSets"][0]))
    workers["name"] = "workers"
    workers["template"]["metadata"]["annotations"] = {
        "greenplace.dev/expected-duration-hours": "-1"
    }
    body["spec"]["podSets"].append(workers)
    body["status"]["admission"]["podSetAssignments"].append(
        {"name": "workers", "flavors": {"nvidia.com/gpu": "de-only"}}
    )
    cache.put("Workload", body)
    report = asyncio.run(cycle.run_cycle(cache, writer, NOW))
    assert report.warnings["InvalidAnnotation"] == 2
    workload_events = [e[3] for e in writer.events if e[0] == "w" and e[2] == "InvalidAnnotation"]
    assert len(workload_events) == 2 and any("'-1'" in m for m in workload_events)


def answers_for_hours(hours: float) -> dict[str, Any]:
    writer = fakes.RecordingWriter()
    cache = cache_for(["DE"])
    cache.put(
        "Workload", workload(annotations={"greenplace.dev/expected-duration-hours": str(hours)})
    )
    asyncio.run(cycle.run_cycle(cache, writer, NOW))
    (answer,) = answers(writer)
    return answer


def test_a_ready_workloads_gpus_stay_reserved_until_its_pods_are_bound() -> None:
    writer = fakes.RecordingWriter()
    cache = one_flavor(cache_for(["DE"]))
    asyncio.run(cycle.run_cycle(cache, writer, NOW))
    (answer,) = answers(writer)
    ready = workload("Ready")
    ready["status"]["admissionChecks"] = [answer]
    cache.put("Workload", ready)

    def free_in_de(at: datetime.datetime) -> int:
        built = snapshot.build(snapshot.gather(cache), at)
        return next(p.gpus_free for p in built.snapshot.pools if p.name == "de")

    assert free_in_de(NOW) == 8 - 4, "2 pods of 2 GPUs, admitted but not bound"
    text = answer["podSetUpdates"][0]["annotations"][kueue.RECORD_ANNOTATION]
    for index, node in enumerate(("de-0", None)):
        bound = {"nodeName": node} if node else {}
        pod = kubeobjects.gpu_pod("ml", f"train-{index}", 2,
                                  annotations={kueue.RECORD_ANNOTATION: text}, **bound)  # fmt: skip
        pod["metadata"]["uid"] = f"pod-{index}"
        cache.put_pod(pod)
    assert free_in_de(NOW) == 8 - 2 - 2, "one bound (counted on its node), one still reserved"
    later = NOW + snapshot.RELEASE_RESERVATION
    assert free_in_de(later) == 8 - 2, "a pod never bound stops holding GPUs"

    for ending in (
        {"metadata": {"deletionTimestamp": "2026-03-10T11:59:00Z"}},
        {"status": {"conditions": [{"type": "Finished", "status": "True"}]}},
    ):
        ended = json.loads(json.dumps(ready))
        for part, fields in ending.items():
            ended[part].update(fields)
        cache.put("Workload", ended)
        assert free_in_de(NOW) == 8 - 2, f"{ending}: an ended Workload holds no GPUs"


def test_an_ended_workload_is_not_answered() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_for(["DE"])
    deleting = workload()
    deleting["metadata"]["deletionTimestamp"] = "2026-03-10T11:59:00Z"
    cache.put("Workload", deleting)
    asyncio.run(cycle.run_cycle(cache, writer, NOW))
    assert answers(writer) == []


def test_a_workload_whose_check_is_answered_is_left_alone() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_for(["DE"])
    cache.put("Workload", workload("Ready"))
    asyncio.run(cycle.run_cycle(cache, writer, NOW))
    assert answers(writer) == []


def test_a_pool_in_no_flavor_or_in_two_says_so_on_its_status() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_for(["DE"])
    cache.put_pool(fakes.gpu_pool("ch", "CH"))
    de_too = {"nodeLabels": {"greenplace.dev/pool": "de"}}
    cache.put("ResourceFlavor", {"metadata": {"name": "de-too"}, "spec": de_too})
    asyncio.run(cycle.run_cycle(cache, writer, NOW, status.StatusRecorder(writer)))

    def flavor_condition(pool: str) -> tuple[str, str, str]:
        conditions = writer.last_status("gpupools", pool)["conditions"]
        (found,) = [c for c in conditions if c["type"] == "KueueFlavor"]
        return found["status"], found["reason"], found["message"]

    assert flavor_condition("fr") == ("True", "OneFlavor", "lies in Kueue flavor fr-only")
    assert flavor_condition("ch")[:2] == ("False", "NoFlavor")
    state, reason, message = flavor_condition("de")
    assert (state, reason) == ("False", "SeveralFlavors")
    assert "2 Kueue ResourceFlavors (de-only, de-too)" in message


def test_deferred_by_a_budget_it_is_parked_until_the_period_ends_then_activated() -> None:
    """A Retry would hold the ClusterQueue's quota until the period ends (Kueue v0.17): the
    Workload is deactivated instead, with a note signed for its UID, and activated at that time."""
    writer = fakes.RecordingWriter()
    cache = one_flavor(cache_for(["DE"]))
    cache.put_budget(kubeobjects.budget("ml", "team", money=0.000001, action="Defer"))
    report = asyncio.run(cycle.run_cycle(cache, writer, NOW))
    assert answers(writer) == [], "no Retry: it would keep the quota"
    ((kind, namespace, name, patch),) = writer.patches
    assert (kind, namespace, name, patch["spec"]) == ("Workload", "ml", "w", {"active": False})
    note = json.loads(patch["metadata"]["annotations"][kueue.PARK_ANNOTATION])
    period_end = datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)
    assert SIGNER.verify("u", note) and note["until"] == "2026-04-01T00:00:00Z"
    assert report.unpark_at == [period_end]
    assert report.seconds_until_next_wake(10**9, NOW) == (period_end - NOW).total_seconds()
    assert report.kueue_answers == {("Parked", "BudgetExceeded"): 1}
    parked = [m for _, kind, reason, m in writer.events if reason == "BudgetExceeded"]
    assert len(parked) == 2 and "Parked until 2026-04-01T00:00:00Z" in parked[0], "Workload, Job"

    inactive = workload()
    inactive["spec"]["active"] = False
    inactive["metadata"]["annotations"] = patch["metadata"]["annotations"]
    cache.put("Workload", inactive)
    before = asyncio.run(cycle.run_cycle(cache, writer, period_end - datetime.timedelta(hours=1)))
    assert len(writer.patches) == 1 and before.unpark_at == [period_end], "not yet"
    asyncio.run(cycle.run_cycle(cache, writer, period_end))
    assert writer.patches[-1][3] == kueue.unpark_patch(), "activated, the note removed"
    assert writer.patches[-1][3]["metadata"]["annotations"] == {kueue.PARK_ANNOTATION: None}


def test_a_park_note_greenplace_did_not_sign_for_this_workload_is_ignored() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_for(["DE"])
    forged = workload()
    forged["spec"]["active"] = False
    until = {"until": "2026-03-10T11:00:00Z", "reason": "BudgetExceeded"}
    for note in ({**until, "signature": "0" * 64}, SIGNER.sign("another-uid", until), until):
        forged["metadata"]["annotations"] = {kueue.PARK_ANNOTATION: json.dumps(note)}
        cache.put("Workload", forged)
        asyncio.run(cycle.run_cycle(cache, writer, NOW))
        assert writer.patches == [], f"{note}: left as its owner left it"


def test_a_short_deferral_stays_a_retry() -> None:
    writer = fakes.RecordingWriter()
    cache = one_flavor(cache_for(["DE"]))
    cache.put_budget(kubeobjects.budget("ml", "team", money=0.000001, period="Day"))
    late = datetime.datetime(2026, 3, 10, 23, 58, tzinfo=datetime.UTC)
    asyncio.run(cycle.run_cycle(cache, writer, late))
    (answer,) = answers(writer)
    assert (answer["state"], answer["requeueAfterSeconds"]) == ("Retry", 120), answer
    assert writer.patches == [], "two minutes of held quota: not parked"
