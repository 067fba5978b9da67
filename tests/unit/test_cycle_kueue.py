"""The placement cycle answers greenplace's Kueue AdmissionCheck once, charging budgets once.

Against ``tests.fakes.RecordingWriter``: a Workload waiting for our check is planned over the
pools of the flavor Kueue assigned; the answer is one status write (Ready with the pool, or
Rejected with the reason), the next cycle does not answer again, and the check is Active.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any

from greenplace.controller import cache as cache_
from greenplace.controller import cycle, kueue, records
from tests import fakes, kubeobjects

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
SIGNER = records.Signer(b"k" * 32)


def workload(check_state: str = "Pending") -> dict[str, Any]:
    container = {"name": "c", "resources": {"requests": {"nvidia.com/gpu": "2"}}}
    return {
        "metadata": {"namespace": "ml", "name": "w", "uid": "u",
                     "creationTimestamp": "2026-03-10T11:00:00Z"},
        "spec": {"podSets": [{"name": "main", "count": 2,
                              "template": {"spec": {"containers": [container]}}}]},
        "status": {
            "admission": {"clusterQueue": "cq", "podSetAssignments": [
                {"name": "main", "flavors": {"nvidia.com/gpu": "de-only"}}]},
            "admissionChecks": [{"name": "gp", "state": check_state}],
        },
    }  # fmt: skip


def cache_for(countries: list[str]) -> cache_.Cache:
    cache = cache_.Cache(signer=SIGNER, kueue=True)
    for name, country in (("fr", "FR"), ("de", "DE")):
        cache.put_pool(fakes.gpu_pool(name, country))
        cache.put_node(fakes.node(f"{name}-0", name, {"nvidia.com/gpu": 8}))
    cache.put_policy(fakes.policy(
        "p", namespace="ml", sovereignty={"allowedCountries": countries},
        budgetRef={"name": "team"},
    ))  # fmt: skip
    cache.put_budget(kubeobjects.budget("ml", "team", money=1000, action="Reject"))
    cache.put("AdmissionCheck", {"metadata": {"name": "gp"},
                                 "spec": {"controllerName": kueue.CONTROLLER_NAME}})  # fmt: skip
    in_de = {"nodeLabels": {"greenplace.dev/pool": "de"}}
    cache.put("ResourceFlavor", {"metadata": {"name": "de-only"}, "spec": in_de})
    groups = [{"flavors": [{"name": "de-only"}]}]
    cache.put("ClusterQueue", {"metadata": {"name": "cq"}, "spec": {"resourceGroups": groups}})
    cache.put("Workload", workload())
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
    asyncio.run(cycle.run_cycle(cache_for(["FR"]), writer, NOW))
    (answer,) = answers(writer)
    assert answer["state"] == "Rejected"
    assert answer["message"].startswith("NoCompliantPool")
    assert any(e[2] == "NoCompliantPool" for e in writer.events), "the Event keeps the words"


def test_a_workload_whose_check_is_answered_is_left_alone() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_for(["DE"])
    cache.put("Workload", workload("Ready"))
    asyncio.run(cycle.run_cycle(cache, writer, NOW))
    assert answers(writer) == []
