"""From cached watch events to the planner's snapshot: capacity, garbage, invalid objects."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from greenplace.api import convert
from greenplace.controller import cache as cache_
from greenplace.controller import cycle, podspec, records, snapshot
from greenplace.domain import model
from greenplace.engine import planner
from tests import fakes

SPEC = {
    "nodeSelector": {"greenplace.dev/pool": "fr"},
    "location": {"provider": "p", "region": "r", "country": "FR", "gridZone": "FR"},
    "gpu": {"model": "H100", "tdpWatts": 700},
    "price": {"currency": "EUR", "onDemandPerGpuHour": 2},
    "carbonIntensity": {"fallbackGramsPerKwh": 50},
}


def node(name: str, gpus: int, pool: str = "fr") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"greenplace.dev/pool": pool}},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


def pod(name: str, gpus: int, **extra: Any) -> dict[str, Any]:
    annotations = extra.pop("annotations", {})
    return {
        "metadata": {
            "name": name, "namespace": "ns", "uid": name, "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z", "annotations": annotations,
        },
        "spec": {
            "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": gpus}}}],
            **extra,
        },
    }  # fmt: skip


def filled_cache() -> cache_.Cache:
    cache = cache_.Cache(signer=SIGNER)
    cache.put_pool({"metadata": {"name": "fr", "generation": 1}, "spec": SPEC})
    cache.put_node(node("n1", 8))
    cache.put_node(node("n2", 8))
    cache.put_node(node("other", 8, pool="de"))
    return cache


SIGNER = records.Signer(b"s" * 32)
NOW = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.UTC)


def released_to(pool: str, name: str, at: datetime.datetime = NOW) -> dict[str, str]:
    """The record greenplace writes when it releases pod ``name`` to ``pool`` at ``at``."""
    record = SIGNER.sign(name, {"pool": pool, "at": at.isoformat(), "policies": []})
    return {podspec.PLACEMENT_ANNOTATION: json.dumps(record)}


def test_free_gpus_subtract_bound_and_released_pods() -> None:
    cache = filled_cache()
    cache.put_pod(pod("bound", 3, nodeName="n1"))
    cache.put_pod(pod("released", 2, annotations=released_to("fr", "released")))
    cache.put_pod(pod("done", 8, nodeName="n2") | {"status": {"phase": "Succeeded"}})
    cache.put_pod(pod("elsewhere", 4, nodeName="other"))
    cache.put_pod(pod("waiting", 1, schedulingGates=[{"name": podspec.GATE}]))

    snap = snapshot.build(snapshot.gather(cache), NOW).snapshot
    (fr,) = snap.pools
    assert (fr.gpus_total, fr.gpus_free) == (16, 11)
    assert fr.gco2_per_kwh == 50
    assert [w.name for w in snap.workloads] == ["waiting"]
    assert snap.workloads[0].created == datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_garbage_annotations_and_quantities_never_crash() -> None:
    cache = filled_cache()
    cache.put_pod(pod("a", 1, annotations={podspec.PLACEMENT_ANNOTATION: "{not json"}))
    cache.put_pod(pod("b", 1, annotations={podspec.PLACEMENT_ANNOTATION: '"a string"'}))
    cache.put_node(node("n3", 0) | {"status": {"allocatable": {"nvidia.com/gpu": "lots"}}})
    snap = snapshot.build(snapshot.gather(cache)).snapshot
    assert snap.pools[0].gpus_free == 16


def test_an_invalid_pool_is_kept_out_and_remembered() -> None:
    cache = filled_cache()
    cache.put_pool({"metadata": {"name": "broken"}, "spec": {**SPEC, "pue": "high"}})
    assert "broken" not in cache.pools
    assert "pue" in cache.invalid["GpuPool broken"]
    cache.drop_pool("broken")
    assert "GpuPool broken" not in cache.invalid


def test_only_planning_changes_wake_the_loop() -> None:
    cache = filled_cache()
    cache.put_pod(pod("x", 1, schedulingGates=[{"name": podspec.GATE}]))
    cache.changed.clear()
    body = pod("x", 1, schedulingGates=[{"name": podspec.GATE}])
    body["metadata"]["resourceVersion"] = "2"
    cache.put_pod(body)
    assert not cache.changed.is_set()
    held = pod("x", 1, schedulingGates=[{"name": podspec.GATE}])
    held["metadata"]["annotations"] = {podspec.HOLD_ANNOTATION: "greenplace's own hold reason"}
    cache.put_pod(held)
    assert not cache.changed.is_set(), "greenplace's own writes do not wake it"
    cache.put_pod(pod("x", 1, nodeName="n1"))
    assert cache.changed.is_set()


@pytest.mark.parametrize(
    "edit",
    [
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}},
        {"tolerations": [{"operator": "Exists"}]},
        {"nodeSelector": {"topology.kubernetes.io/region": "us-central1"}},
    ],
)
def test_a_gated_pod_narrowed_by_its_tenant_wakes_the_loop(edit: dict[str, Any]) -> None:
    cache = filled_cache()
    cache.put_pod(pod("x", 1, schedulingGates=[{"name": podspec.GATE}]))
    cache.changed.clear()
    cache.put_pod(pod("x", 1, schedulingGates=[{"name": podspec.GATE}], **edit))
    assert cache.changed.is_set()


def test_a_new_time_declaration_wakes_the_loop() -> None:
    cache = filled_cache()
    cache.put_pod(pod("x", 1, schedulingGates=[{"name": podspec.GATE}]))
    cache.changed.clear()
    later = pod("x", 1, schedulingGates=[{"name": podspec.GATE}])
    later["metadata"]["annotations"] = {"greenplace.dev/max-delay": "2h"}
    cache.put_pod(later)
    assert cache.changed.is_set()


def job_pod(name: str, job: str, gpus: int = 2, size: str | None = None) -> dict[str, Any]:
    body = pod(name, gpus, schedulingGates=[{"name": podspec.GATE}])
    body["metadata"]["ownerReferences"] = [
        {"kind": "Job", "name": job, "controller": True, "uid": job, "apiVersion": "batch/v1"}
    ]
    if size is not None:
        body["metadata"]["annotations"][snapshot.GANG_SIZE_ANNOTATION] = size
    return body


def test_pods_of_one_job_are_one_workload() -> None:
    cache = filled_cache()
    for i in range(3):
        cache.put_pod(job_pod(f"train-{i}", "train"))
    cache.put_pod(pod("solo", 1, schedulingGates=[{"name": podspec.GATE}]))
    built = snapshot.build(snapshot.gather(cache))
    by_name = {w.name: w for w in built.snapshot.workloads}
    assert set(by_name) == {"train", "solo"}
    assert by_name["train"].gpus == 6
    assert by_name["train"].gpus_per_pod == (2, 2, 2)
    assert [p.name for p in built.members["ns/train"]] == ["train-0", "train-1", "train-2"]


def test_a_gang_smaller_than_its_declared_size_waits() -> None:
    cache = filled_cache()
    cache.put_pod(job_pod("w-0", "big", size="3"))
    cache.put_pod(job_pod("w-1", "big", size="3"))
    built = snapshot.build(snapshot.gather(cache))
    assert built.snapshot.workloads == ()
    assert [p.name for p in built.incomplete["ns/big"]] == ["w-0", "w-1"]
    cache.put_pod(job_pod("w-2", "big", size="3"))
    built = snapshot.build(snapshot.gather(cache))
    assert [w.name for w in built.snapshot.workloads] == ["big"]


def test_an_unreadable_gang_size_does_not_block() -> None:
    cache = filled_cache()
    cache.put_pod(job_pod("w-0", "odd", size="three"))
    assert [w.name for w in snapshot.build(snapshot.gather(cache)).snapshot.workloads] == ["odd"]


def test_the_loop_wakes_when_the_earliest_deferral_ends() -> None:
    at = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)

    def decision(minutes: float | None) -> model.Decision:
        return model.Decision(
            workload="ns/w",
            outcome=model.Outcome.DEFERRED if minutes is not None else model.Outcome.HELD,
            reason=model.Reason.DEFERRED_FOR_CLEANER_SLOT,
            message="",
            not_before=None if minutes is None else at + datetime.timedelta(minutes=minutes),
        )

    def report(*minutes: float | None) -> cycle.CycleReport:
        plan = model.Plan(at=at, decisions=tuple(decision(m) for m in minutes))
        return cycle.CycleReport(at=at, plan=plan)

    assert report(None).seconds_until_next_wake(30, at) == 30
    assert report(None, 0.25, 2).seconds_until_next_wake(30, at) == 15
    assert report(10).seconds_until_next_wake(30, at) == 30
    overdue = report(-5).seconds_until_next_wake(30, at)
    assert overdue == cycle.MIN_SLEEP_SECONDS  # overdue: soon, never a busy loop
    # Measured from when the loop goes to sleep, not from when the cycle began.
    later = at + datetime.timedelta(seconds=4)
    assert report(0.25).seconds_until_next_wake(30, later) == 11


def test_a_released_pod_left_unbound_stops_holding_its_gpus() -> None:
    cache = filled_cache()
    long_ago = NOW - snapshot.RELEASE_RESERVATION - datetime.timedelta(seconds=1)
    cache.put_pod(pod("stuck", 6, annotations=released_to("fr", "stuck", long_ago)))
    cache.put_pod(pod("fresh", 2, annotations=released_to("fr", "fresh")))
    built = snapshot.build(snapshot.gather(cache), NOW)
    assert built.snapshot.pools[0].gpus_free == 16 - 2
    (warning,) = [w for w in built.warnings if w.reason == "ReleasedUnbound"]
    assert warning.pod.name == "stuck" and "no longer reserved" in warning.message


def gated(name: str, gpus: int = 1, **extra: Any) -> dict[str, Any]:
    return pod(name, gpus, schedulingGates=[{"name": podspec.GATE}], **extra)


def test_a_gang_keeps_every_members_labels_and_the_strictest_residency() -> None:
    cache = filled_cache()
    secret = job_pod("secret", "mixed")
    secret["metadata"]["labels"] = {"data": "secret", model.DATA_RESIDENCY_LABEL: "FR"}
    plain = job_pod("plain", "mixed")
    plain["metadata"]["labels"] = {model.DATA_RESIDENCY_LABEL: "EU"}
    cache.put_pod(secret)
    cache.put_pod(plain)
    (workload,) = snapshot.build(snapshot.gather(cache), NOW).snapshot.workloads
    france_only = model.Policy("ns", "fr-only", match_labels={"data": "secret"})
    assert france_only.selects(workload)  # one member is enough
    assert workload.data_residency == frozenset({"FR"})  # EU and FR: only FR is in both


@pytest.mark.parametrize(
    ("value", "placed_in"),
    [
        ("fr", None),  # lower case: names no country
        ("France", None),
        ("FR,DE", None),  # label values cannot hold commas: the codes are joined by "_"
        ("", None),
        ("FR_Germany", "fr"),  # only France is named correctly: never the cleaner DE pool
    ],
)
def test_a_bad_residency_label_is_reported_and_only_narrows_where_the_pod_runs(
    value: str, placed_in: str | None
) -> None:
    cache = filled_cache()
    cache.put_pool(fakes.gpu_pool("de", "DE", gco2=10))  # cleaner: the pick without residency
    cache.put_policy(fakes.policy("any-pool", namespace="ns"))
    body = gated("w")
    body["metadata"]["labels"] = {model.DATA_RESIDENCY_LABEL: value}
    cache.put_pod(body)
    built = snapshot.build(snapshot.gather(cache), NOW)
    (warning,) = built.warnings
    assert warning.reason == "InvalidLabel"
    assert f"{model.DATA_RESIDENCY_LABEL}={value!r}" in warning.message
    assert "join codes with '_', such as FR_DE or EU" in warning.message
    (decision,) = planner.plan(built.snapshot, NOW).decisions
    if placed_in is None:
        assert decision.outcome is model.Outcome.HELD, decision
        assert decision.reason is model.Reason.NO_COMPLIANT_POOL, decision
        assert decision.rejected_by_reason == ((model.Reason.RESIDENCY_NOT_MET, 2),)
    else:
        assert (decision.outcome, decision.pool) == (model.Outcome.PLACED, placed_in), decision


@pytest.mark.parametrize("value", ["FR", "EU", "FR_DE", "EEA_CH"])
def test_a_valid_residency_label_is_not_reported(value: str) -> None:
    cache = filled_cache()
    cache.put_policy(fakes.policy("any-pool", namespace="ns"))
    body = gated("w")
    body["metadata"]["labels"] = {model.DATA_RESIDENCY_LABEL: value}
    cache.put_pod(body)
    assert snapshot.build(snapshot.gather(cache), NOW).warnings == ()


def test_a_workload_only_fits_pools_with_a_node_its_pods_admit() -> None:
    cache = filled_cache()
    cache.put_pool({"metadata": {"name": "de", "generation": 1},
                    "spec": {**SPEC, "nodeSelector": {"greenplace.dev/pool": "de"}}})  # fmt: skip
    cache.put_node(node("mig", 0, pool="de") | {
        "status": {"allocatable": {"nvidia.com/mig-1g.10gb": "7"}}})  # fmt: skip
    cache.put_pod(gated("anywhere"))
    cache.put_pod(gated("only-de", nodeSelector={"greenplace.dev/pool": "de"}))
    slice_pod = gated("slice", 0)
    slice_pod["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/mig-1g.10gb": 1}}
    cache.put_pod(slice_pod)
    by_name = {w.name: w for w in snapshot.build(snapshot.gather(cache), NOW).snapshot.workloads}
    assert by_name["anywhere"].fits_pools is None  # every pool: no restriction
    assert by_name["only-de"].fits_pools == frozenset({"de"})
    assert by_name["slice"].fits_pools == frozenset({"de"}), "only the MIG node offers slices"


@pytest.mark.parametrize(
    "value", ["1e308", "nan", "inf", "-3", "0", "8761", "x" * 10_000, "three hours"]
)
def test_a_hostile_duration_falls_back_to_an_hour_and_is_reported(value: str) -> None:
    cache = filled_cache()
    cache.put_policy(fakes.policy("any-pool", namespace="ns"))
    cache.put_pod(gated("w", annotations={convert.DURATION_ANNOTATION: value}))
    built = snapshot.build(snapshot.gather(cache), NOW)
    (workload,) = built.snapshot.workloads
    assert workload.duration_hours == 1.0
    (warning,) = built.warnings
    assert warning.reason == "InvalidAnnotation" and "1 h is assumed" in warning.message
    assert len(warning.message) < 300, "the value is cut, never echoed whole"
    plan = planner.plan(built.snapshot, NOW)  # and the planner never overflows on it
    assert plan.decisions[0].outcome is model.Outcome.PLACED


def test_a_hostile_gang_size_is_reported_and_does_not_block() -> None:
    cache = filled_cache()
    cache.put_pod(job_pod("w-0", "odd", size="1e9"))
    built = snapshot.build(snapshot.gather(cache), NOW)
    assert [w.name for w in built.snapshot.workloads] == ["odd"]
    assert [w.reason for w in built.warnings] == ["InvalidAnnotation"]
