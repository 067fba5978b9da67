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
    assert "2 Kueue ResourceFlavors (all, h100)" in problems["fr-h100"]
    alone = kueue.flavor_problems(kueue.Flavors.of({"h100": {"gpu": "h100"}}, POOLS), POOLS)
    assert set(alone) == {"us-l4"}
    assert "lies in no Kueue ResourceFlavor" in alone["us-l4"]


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

    def answer(d: model.Decision, other_flavors: bool = False) -> kueue.CheckVerdict:
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
    assert answer(sovereignty, other_flavors=True).state == "Retry", "another flavor may do"
    no_room = decision(
        model.Outcome.HELD, model.Reason.NO_POOL_WITH_ROOM,
        rejected_by_reason=((model.Reason.COUNTRY_NOT_ALLOWED, 1),
                            (model.Reason.INSUFFICIENT_CAPACITY, 1)),
    )  # fmt: skip
    assert (answer(no_room).state, answer(no_room).requeue_after_seconds) == (
        "Retry", kueue.HELD_RETRY_SECONDS)  # fmt: skip
