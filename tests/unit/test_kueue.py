"""Kueue's flavors as sets of pools and greenplace's verdict as an AdmissionCheck state."""

from __future__ import annotations

import datetime

import pytest

from greenplace.controller import kueue
from greenplace.domain import model

POOLS = {
    "fr-h100": {"greenplace.dev/pool": "fr-h100", "gpu": "h100"},
    "de-h100": {"greenplace.dev/pool": "de-h100", "gpu": "h100"},
    "us-l4": {"greenplace.dev/pool": "us-l4", "gpu": "l4"},
}


def test_a_pool_lies_in_a_flavor_when_its_selector_sets_every_flavor_label() -> None:
    flavors = kueue.Flavors.of(
        {"h100": {"gpu": "h100"}, "fr": {"gpu": "h100", "greenplace.dev/pool": "fr-h100"}},
        POOLS,
    )
    assert flavors.pools_of == {"h100": {"fr-h100", "de-h100"}, "fr": {"fr-h100"}}
    assert flavors.pools_in(["fr", "unknown"]) == {"fr-h100"}


def test_a_flavor_without_labels_holds_every_pool() -> None:
    assert kueue.Flavors.of({"any": {}}, POOLS).pools_of == {"any": set(POOLS)}


def test_pools_in_no_flavor_or_in_two_are_reported() -> None:
    flavors = kueue.Flavors.of({"h100": {"gpu": "h100"}, "all": {}}, POOLS)
    problems = kueue.flavor_problems(flavors, ["fr-h100", "us-l4"])
    assert set(problems) == {"fr-h100"}
    reason, message = problems["fr-h100"]
    assert reason == "SeveralFlavors" and "2 Kueue ResourceFlavors (all, h100)" in message
    alone = kueue.flavor_problems(kueue.Flavors.of({"h100": {"gpu": "h100"}}, POOLS), POOLS)
    assert set(alone) == {"us-l4"}
    assert alone["us-l4"][0] == "NoFlavor"
    assert "lies in no Kueue ResourceFlavor" in alone["us-l4"][1]


def test_without_flavors_nothing_is_reported() -> None:
    assert kueue.flavor_problems(kueue.Flavors.of({}, POOLS), POOLS) == {}


def test_ready_updates_every_pod_set_with_the_pool_selector() -> None:
    verdict = kueue.CheckVerdict(
        "Ready", "LowestCarbon", "lowest carbon", {"greenplace.dev/pool": "fr-h100"},
        {"greenplace.dev/decision": "Placed"},
    )  # fmt: skip
    state = kueue.check_state("gp", verdict, ["leader", "workers"], "2026-12-02T10:00:00Z")
    assert state["state"] == "Ready"
    assert state["message"] == "LowestCarbon: lowest carbon"
    assert [u["name"] for u in state["podSetUpdates"]] == ["leader", "workers"]
    assert all(
        u["nodeSelector"] == {"greenplace.dev/pool": "fr-h100"} for u in state["podSetUpdates"]
    )
    assert "requeueAfterSeconds" not in state


def test_retry_says_when_and_rejected_carries_no_update() -> None:
    retry = kueue.check_state(
        "gp", kueue.CheckVerdict("Retry", "Deferred", "later", requeue_after_seconds=0), ["main"],
        "2026-12-02T10:00:00Z",
    )  # fmt: skip
    assert retry["requeueAfterSeconds"] == 1, "Kueue needs a positive delay"
    far = kueue.CheckVerdict("Retry", "Deferred", "later", requeue_after_seconds=10**12)
    assert kueue.check_state("gp", far, ["main"], "t")["requeueAfterSeconds"] == 2**31 - 1
    assert "podSetUpdates" not in retry
    rejected = kueue.check_state(
        "gp", kueue.CheckVerdict("Rejected", "NoCompliantPool", "x" * 10_000), ["main"], "t"
    )
    assert "podSetUpdates" not in rejected
    assert len(rejected["message"]) == kueue.MAX_MESSAGE


def test_a_verdict_cannot_be_ready_without_a_pool_or_wait_unless_retried() -> None:
    with pytest.raises(ValueError, match="node selector"):
        kueue.CheckVerdict("Ready", "LowestCarbon", "m")
    with pytest.raises(ValueError, match="only a Retry"):
        kueue.CheckVerdict("Rejected", "NoCompliantPool", "m", requeue_after_seconds=5)


def workload_body(**status: object) -> dict[str, object]:
    return {
        "metadata": {"namespace": "ml", "name": "job-a", "uid": "u1",
                     "creationTimestamp": "2026-12-02T10:00:00Z"},
        "spec": {"podSets": [{"name": "main", "count": 2, "template": {"spec": {}}}]},
        "status": status,
    }  # fmt: skip


def test_a_workload_waits_for_our_check_only_once_quota_is_reserved() -> None:
    checks = [{"name": "gp", "state": "Pending"}, {"name": "other", "state": "Pending"}]
    waiting = kueue.parse_workload(workload_body(admissionChecks=checks))
    assert isinstance(waiting, kueue.KueueWorkload)
    assert waiting.key == "ml/kueue:job-a"
    assert waiting.pending(["gp"]) == (), "no quota reserved: nothing to decide"
    reserved = kueue.parse_workload(workload_body(
        admissionChecks=checks,
        admission={"clusterQueue": "cq", "podSetAssignments": [
            {"name": "main", "flavors": {"nvidia.com/gpu": "h100", "cpu": "default"}}]},
    ))  # fmt: skip
    assert isinstance(reserved, kueue.KueueWorkload)
    assert reserved.pending(["gp"]) == ("gp",)
    assert reserved.flavors == {"h100", "default"}
    assert reserved.pod_sets[0].count == 2


def test_an_unreadable_workload_says_which_field() -> None:
    body = workload_body()
    body["spec"] = {"podSets": [{"name": "main", "count": 0}]}
    assert "spec.podSets[main].count 0" in str(kueue.parse_workload(body))
    body["spec"] = {}
    assert kueue.parse_workload(body) == "spec.podSets is empty"


def decision(outcome: model.Outcome, reason: model.Reason, **options: object) -> model.Decision:
    return model.Decision("ml/kueue:job-a", outcome, reason, "why", **options)  # type: ignore[arg-type]


def test_each_outcome_becomes_the_check_state_kueue_acts_on() -> None:
    now = datetime.datetime(2026, 12, 2, 10, tzinfo=datetime.UTC)

    def answer(d: model.Decision, other_flavors: tuple[str, ...] = ()) -> kueue.CheckVerdict:
        return kueue.verdict(
            d, node_selector={"p": "fr"}, annotations={}, now=now, other_flavors=other_flavors
        )

    assert (
        answer(decision(model.Outcome.PLACED, model.Reason.LOWEST_CARBON, pool="fr")).state
        == "Ready"
    )
    later = now + datetime.timedelta(minutes=90, seconds=0.5)
    cleaner = model.Reason.DEFERRED_FOR_CLEANER_SLOT
    deferred = answer(decision(model.Outcome.DEFERRED, cleaner, not_before=later))
    assert (deferred.state, deferred.requeue_after_seconds) == ("Retry", 5401)
    assert answer(decision(model.Outcome.REFUSED, model.Reason.BUDGET_EXCEEDED)).state == "Rejected"
    sovereignty = decision(
        model.Outcome.HELD, model.Reason.NO_COMPLIANT_POOL,
        rejected_by_reason=((model.Reason.COUNTRY_NOT_ALLOWED, 3),),
    )  # fmt: skip
    assert answer(sovereignty).state == "Rejected"
    # A credential may be renewed, or read again after a failed read: never rejected for good.
    unverified = decision(
        model.Outcome.HELD, model.Reason.NO_COMPLIANT_POOL,
        rejected_by_reason=((model.Reason.CERTIFICATION_UNVERIFIED, 3),),
    )  # fmt: skip
    assert answer(unverified).state == "Retry"
    elsewhere = answer(sovereignty, other_flavors=("de", "ch"))
    assert elsewhere.state == "Retry", "another flavor may do"
    assert elsewhere.requeue_after_seconds == kueue.HELD_RETRY_SECONDS
    assert elsewhere.message.startswith("why. Not in this flavor, but pools of flavor ch, de")
    no_room = decision(
        model.Outcome.HELD, model.Reason.NO_POOL_WITH_ROOM,
        rejected_by_reason=((model.Reason.COUNTRY_NOT_ALLOWED, 1),
                            (model.Reason.INSUFFICIENT_CAPACITY, 1)),
    )  # fmt: skip
    assert (answer(no_room).state, answer(no_room).requeue_after_seconds) == (
        "Retry", kueue.HELD_RETRY_SECONDS)  # fmt: skip
    assert answer(no_room, other_flavors=("de",)).message == "why", "the flavor is not why"
    # Held by a ceiling that yields at its latest start, 20 s away: tried again then.
    yields = decision(
        model.Outcome.HELD, model.Reason.NO_COMPLIANT_POOL,
        not_before=now + datetime.timedelta(seconds=19.2),
        rejected_by_reason=((model.Reason.CARBON_ABOVE_CEILING, 2),),
    )  # fmt: skip
    assert answer(yields).requeue_after_seconds == 20
    too_large = decision(model.Outcome.REFUSED, model.Reason.GANG_TOO_LARGE)
    assert answer(too_large).state == "Rejected"
    assert answer(too_large, other_flavors=("big",)).state == "Retry", "larger pools elsewhere"
    over_budget = decision(model.Outcome.REFUSED, model.Reason.BUDGET_EXCEEDED)
    assert answer(over_budget, other_flavors=("big",)).state == "Rejected", "no flavor helps"


def test_the_workloads_job_is_its_controlling_owner() -> None:
    body = workload_body()
    body["metadata"]["ownerReferences"] = [  # type: ignore[index]
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "c"},
        {"apiVersion": "batch/v1", "kind": "Job", "name": "job-a", "uid": "j", "controller": True},
    ]
    parsed = kueue.parse_workload(body)
    assert isinstance(parsed, kueue.KueueWorkload)
    workload_ref, job_ref = kueue.involved(parsed)
    assert workload_ref["kind"] == "Workload" and workload_ref["metadata"]["uid"] == "u1"
    assert job_ref == {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"namespace": "ml", "name": "job-a", "uid": "j"},
    }  # fmt: skip
    alone = kueue.parse_workload(workload_body())
    assert isinstance(alone, kueue.KueueWorkload)
    assert [i["kind"] for i in kueue.involved(alone)] == ["Workload"]


def test_an_admission_check_with_parameters_is_refused_with_the_fix() -> None:
    plain = {"spec": {"controllerName": kueue.CONTROLLER_NAME}}
    assert kueue.AdmissionCheck.of(plain) == kueue.AdmissionCheck(kueue.CONTROLLER_NAME, None)
    parameters = {"apiGroup": "example.com", "kind": "Config", "name": "fast"}
    with_parameters = kueue.AdmissionCheck.of({"spec": {**plain["spec"], "parameters": parameters}})
    assert with_parameters.problem is not None
    assert "spec.parameters (example.com/Config/fast)" in with_parameters.problem
    assert "remove spec.parameters" in with_parameters.problem
