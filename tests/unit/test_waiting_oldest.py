"""``greenplace_waiting_oldest_seconds{outcome}``: how long the oldest waiting workload has existed.

The chart's GreenplaceWorkloadHeld alert reads it: a count of held workloads cannot tell one pod
held for a day from a stream of pods held for a second each. Cycles run against
``tests.fakes.RecordingWriter``; pods are created at 11:00 (``fakes.NOW_ISO``) or later.
"""

from __future__ import annotations

import asyncio
import datetime

import prometheus_client

from greenplace.controller import cache as cache_
from greenplace.controller import cycle, metrics, records
from tests import fakes

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)


def test_the_oldest_waiting_workload_of_each_outcome_gives_the_age() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR"))
    cache.put_node(fakes.node("n1", "fr", fakes.gpus(8)))
    cache.put_policy(fakes.policy("any"))
    nowhere = {"nodeSelector": {"no": "node"}}  # held: no pool has such a node
    cache.put_pod(writer.add(fakes.pod("old", fakes.gpus(1), **nowhere)))
    newer = fakes.pod("newer", fakes.gpus(1), **nowhere)
    newer["metadata"]["creationTimestamp"] = "2026-03-10T11:40:00Z"
    cache.put_pod(writer.add(newer))
    placed = fakes.pod("placed", fakes.gpus(1))
    placed["metadata"]["creationTimestamp"] = "2026-03-09T00:00:00Z"  # older, but not waiting
    cache.put_pod(writer.add(placed))
    registry = prometheus_client.CollectorRegistry()
    observed = metrics.PlacementMetrics(registry)

    def oldest(outcome: str) -> float | None:
        return registry.get_sample_value("greenplace_waiting_oldest_seconds", {"outcome": outcome})

    state = cycle.LoopState()
    observed.observe(asyncio.run(cycle.run_cycle(cache, writer, NOW, state=state)))
    assert (oldest("Held"), oldest("Deferred"), oldest("Refused")) == (3600, 0, 0)
    assert oldest("Placed") is None
    cache.drop_pod("uid-ml-old")
    later = NOW + datetime.timedelta(minutes=5)
    observed.observe(asyncio.run(cycle.run_cycle(cache, writer, later, state=state)))
    assert oldest("Held") == 25 * 60, "the newer pod is the oldest one left"
    cache.drop_pod("uid-ml-newer")
    observed.observe(asyncio.run(cycle.run_cycle(cache, writer, later, state=state)))
    assert oldest("Held") == 0
