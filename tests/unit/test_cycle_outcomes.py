"""Metrics and PlacementPolicy status count what happened: each pod or workload once, by outcome.

The cycle runs against ``tests.fakes.RecordingWriter`` with one pod of each outcome: placed,
held (no node matches its own selector), deferred and refused (a Budget under Defer and under
Reject, too small for one GPU-hour) and one whose placement patch meets a conflict (its
resourceVersion moved in the API server after the cache saw it). Three cycles run, the watch
feeding the cache what the writer stored in between, as it does in a cluster.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
from typing import Any

import prometheus_client

from greenplace.controller import cache as cache_
from greenplace.controller import cycle, metrics, podspec, records, status
from greenplace.domain import model
from tests import fakes

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
TOO_SMALL = {"money": 0.01}  # one GPU-hour costs 2.0 in the pool below
COUNTS = ("placed", "held", "deferred", "refused")


def budget(namespace: str, action: str) -> dict[str, object]:
    spec = {"period": "Month", "currency": "EUR", "limits": TOO_SMALL, "action": action}
    return {"metadata": {"namespace": namespace, "name": "b", "generation": 1}, "spec": spec}


def one_of_each(writer: fakes.RecordingWriter) -> cache_.Cache:
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR"))
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 8}))
    cache.put_policy(fakes.policy("any", namespace="ml"))
    for namespace, action in (("wait", "Defer"), ("stop", "Reject")):
        cache.put_policy(fakes.policy("p", namespace=namespace, budgetRef={"name": "b"}))
        cache.put_budget(budget(namespace, action))
    cache.put_pod(writer.add(fakes.pod("placed", fakes.gpus(1))))
    cache.put_pod(writer.add(fakes.pod("held", fakes.gpus(1), nodeSelector={"no": "node"})))
    cache.put_pod(writer.add(fakes.pod("deferred", fakes.gpus(1), namespace="wait")))
    cache.put_pod(writer.add(fakes.pod("refused", fakes.gpus(1), namespace="stop")))
    cache.put_pod(writer.add(fakes.pod("conflict", fakes.gpus(1))))
    moved = copy.deepcopy(writer.pods["ml/conflict"])
    moved["metadata"]["resourceVersion"] = "2"  # changed in the API server since cached
    writer.pods["ml/conflict"] = moved
    return cache


def policy_status(writer: fakes.RecordingWriter, namespace: str, name: str) -> dict[str, Any]:
    """The last complete status written for PlacementPolicy ``namespace/name``."""
    found = [
        body
        for plural, ns, n, body in writer.statuses
        if (plural, ns, n) == ("placementpolicies", namespace, name) and "conditions" in body
    ]
    assert found, f"no status written for PlacementPolicy {namespace}/{name}"
    return found[-1]


def watch(cache: cache_.Cache, writer: fakes.RecordingWriter) -> None:
    """What the watch does between cycles: the cache gets what the API server stores."""
    for body in writer.pods.values():
        cache.put_pod(body)


def test_each_outcome_is_counted_once_in_metrics_and_status() -> None:
    writer = fakes.RecordingWriter()
    cache = one_of_each(writer)
    registry = prometheus_client.CollectorRegistry()
    observed = metrics.PlacementMetrics(registry)
    recorder = status.StatusRecorder(writer)
    state = cycle.LoopState()

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    def placements() -> float:
        return sum(value("greenplace_placements_total", reason=r.value) for r in model.Reason)

    def waiting() -> dict[str, float]:
        outcomes = ("Held", "Deferred", "Refused")
        return {o: value("greenplace_waiting_workloads", outcome=o) for o in outcomes}

    def pods(namespace: str, name: str) -> dict[str, int]:
        return {k: policy_status(writer, namespace, name)[k] for k in COUNTS}

    first = asyncio.run(cycle.run_cycle(cache, writer, NOW, recorder, state=state))
    observed.observe(first)
    assert (first.placed, first.held, first.conflicts, first.refused) == (1, 3, 1, 0)
    decided = {d.workload: d.outcome for d in first.plan.decisions} if first.plan else {}
    assert decided == {
        "ml/placed": model.Outcome.PLACED,
        "ml/conflict": model.Outcome.PLACED,
        "ml/held": model.Outcome.HELD,
        "wait/deferred": model.Outcome.DEFERRED,
        "stop/refused": model.Outcome.REFUSED,
    }
    assert placements() == 1, "the conflicting patch was not applied: not a placement"
    assert value("greenplace_placements_total", reason="LowestCarbon") == 1
    assert value("greenplace_write_conflicts_total") == 1
    assert waiting() == {"Held": 1, "Deferred": 1, "Refused": 1}
    assert value("greenplace_held_workloads", reason="NoCompliantPool") == 1
    assert value("greenplace_held_workloads", reason="BudgetExceeded") == 2
    series = {"NoPolicy", *model.PLACEMENT_REASONS}
    found = {
        r
        for r in series
        if registry.get_sample_value("greenplace_held_workloads", {"reason": r}) is not None
    }
    assert found == {"NoPolicy"}, "a series per waiting reason (0 here), none for placing ones"
    # Gathered before this cycle's patches: nothing is placed yet, each waiting pod once.
    assert pods("ml", "any") == {"placed": 0, "held": 1, "deferred": 0, "refused": 0}
    assert pods("wait", "p") == {"placed": 0, "held": 0, "deferred": 1, "refused": 0}
    assert pods("stop", "p") == {"placed": 0, "held": 0, "deferred": 0, "refused": 1}

    for minute in (1, 2):
        watch(cache, writer)  # the conflicting pod is now seen at its new resourceVersion
        later = NOW + datetime.timedelta(minutes=minute)
        observed.observe(asyncio.run(cycle.run_cycle(cache, writer, later, recorder, state=state)))

    assert placements() == 2, "the conflicting pod placed once on retry, the other not again"
    assert value("greenplace_write_conflicts_total") == 1
    assert waiting() == {"Held": 1, "Deferred": 1, "Refused": 1}, "a gauge, not a running sum"
    assert not podspec.is_gated(writer.pods["ml/conflict"])
    assert pods("ml", "any") == {"placed": 2, "held": 1, "deferred": 0, "refused": 0}
    assert pods("wait", "p") == {"placed": 0, "held": 0, "deferred": 1, "refused": 0}
    assert pods("stop", "p") == {"placed": 0, "held": 0, "deferred": 0, "refused": 1}
    ready = policy_status(writer, "ml", "any")["conditions"][0]["message"]
    assert ready.startswith("2 pods placed, 1 held, 0 deferred, 0 refused")


def test_a_gang_counts_each_of_its_pods_and_a_missing_member_holds_it() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR"))
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 8}))
    cache.put_policy(fakes.policy("p", namespace="wait", budgetRef={"name": "b"}))
    cache.put_budget(budget("wait", "Defer"))
    cache.put_policy(fakes.policy("any", namespace="ml"))
    for index in range(3):
        gang = {"greenplace.dev/gang": "train"}
        cache.put_pod(
            writer.add(fakes.pod(f"w{index}", fakes.gpus(1), namespace="wait", labels=gang))
        )
    short = {"greenplace.dev/gang-size": "4"}
    for index in range(2):
        labels = {"greenplace.dev/gang": "short"}
        body = fakes.pod(f"s{index}", fakes.gpus(1), labels=labels, annotations=short)
        cache.put_pod(writer.add(body))
    asyncio.run(cycle.run_cycle(cache, writer, NOW, status.StatusRecorder(writer)))
    assert {k: policy_status(writer, "wait", "p")[k] for k in COUNTS} == {
        "placed": 0,
        "held": 0,
        "deferred": 3,
        "refused": 0,
    }
    assert {k: policy_status(writer, "ml", "any")[k] for k in COUNTS} == {
        "placed": 0,
        "held": 2,
        "deferred": 0,
        "refused": 0,
    }


def test_past_ten_alike_a_cycle_combines_its_pod_events_into_one() -> None:
    """25 pods placed and 12 held in one cycle: 10 Events each one by one, then one combined
    per namespace, type and reason that counts the rest; a later cycle starts afresh."""
    writer = fakes.RecordingWriter()
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR"))
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 64}))
    cache.put_policy(fakes.policy("any", namespace="ml"))
    for index in range(25):
        cache.put_pod(writer.add(fakes.pod(f"p{index:02d}", fakes.gpus(1))))
    for index in range(12):
        held = fakes.pod(f"h{index:02d}", fakes.gpus(1), nodeSelector={"no": "node"})
        cache.put_pod(writer.add(held))

    report = asyncio.run(cycle.run_cycle(cache, writer, NOW, state=cycle.LoopState()))

    assert (report.placed, report.held) == (25, 12)
    by_reason: dict[str, list[tuple[str, str, str, str]]] = {}
    for event in writer.events:
        by_reason.setdefault(event[2], []).append(event)
    placed, held = by_reason["Placed"], by_reason["NoCompliantPool"]
    assert len(placed) == cycle.EVENTS_PER_REASON + 1
    assert len(held) == cycle.EVENTS_PER_REASON + 1
    combined = placed[-1][3]
    assert combined.startswith("(combined from similar events): 15 more pods of ml this cycle")
    assert "greenplace.dev/placement annotation" in combined
    assert held[-1][3].startswith("(combined from similar events): 2 more pods of ml")
    assert "greenplace.dev/held annotation" in held[-1][3]
    one_by_one = {name for name, _, _, message in placed[:-1]}
    assert len(one_by_one) == cycle.EVENTS_PER_REASON, "ten different pods, each its own Event"
    assert not any(m.startswith("(combined") for _, _, _, m in placed[:-1])

    watch(cache, writer)
    cache.put_pod(writer.add(fakes.pod("later", fakes.gpus(1))))
    writer.events.clear()
    asyncio.run(cycle.run_cycle(cache, writer, NOW, state=cycle.LoopState()))
    assert [(n, r) for n, _, r, _ in writer.events] == [("later", "Placed")]
