"""From cached watch events to the planner's snapshot: capacity, garbage, invalid objects."""

from __future__ import annotations

import datetime
import json
from typing import Any

from greenplace.controller import cache as cache_
from greenplace.controller import cycle, podspec, snapshot
from greenplace.domain import model

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
    cache = cache_.Cache()
    cache.put_pool({"metadata": {"name": "fr", "generation": 1}, "spec": SPEC})
    cache.put_node(node("n1", 8))
    cache.put_node(node("n2", 8))
    cache.put_node(node("other", 8, pool="de"))
    return cache


def test_free_gpus_subtract_bound_and_released_pods() -> None:
    cache = filled_cache()
    cache.put_pod(pod("bound", 3, nodeName="n1"))
    released = {podspec.PLACEMENT_ANNOTATION: json.dumps({"pool": "fr"})}
    cache.put_pod(pod("released", 2, annotations=released))
    cache.put_pod(pod("done", 8, nodeName="n2") | {"status": {"phase": "Succeeded"}})
    cache.put_pod(pod("elsewhere", 4, nodeName="other"))
    cache.put_pod(pod("waiting", 1, schedulingGates=[{"name": podspec.GATE}]))

    snap = snapshot.build(snapshot.gather(cache)).snapshot
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
    cache.put_pod(pod("x", 1, nodeName="n1"))
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

    assert report(None).seconds_until_next_wake(30) == 30
    assert report(None, 0.25, 2).seconds_until_next_wake(30) == 15
    assert report(10).seconds_until_next_wake(30) == 30
    assert report(-5).seconds_until_next_wake(30) == 0.5  # overdue: soon, never a busy loop
