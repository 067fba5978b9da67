"""One bad workload or refused write never stops the cycle for the others, and says why.

The cycle runs against ``tests.fakes.RecordingWriter``: planning that raises for one workload
holds only that one (``PlanningFailed``); a patch the API server refuses leaves the reason on
the pod and one Event; warnings about tenant-written values are posted once, not every cycle.
"""

from __future__ import annotations

import asyncio
import datetime

import pytest

from greenplace.api import convert
from greenplace.controller import cache as cache_
from greenplace.controller import cycle, podspec, records, status
from greenplace.domain import model
from greenplace.engine import planner
from tests import fakes

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)


def cache_with_pods(writer: fakes.RecordingWriter, *names: str) -> cache_.Cache:
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR"))
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 8}))
    cache.put_policy(fakes.policy("any", namespace="ml"))
    for name in names:
        cache.put_pod(writer.add(fakes.pod(name, fakes.gpus(1))))
    return cache


def test_a_workload_whose_planning_raises_is_held_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    writer = fakes.RecordingWriter()
    cache = cache_with_pods(writer, "a", "bad", "c")
    real = planner.plan

    def fragile(snap: model.Snapshot, now: datetime.datetime) -> model.Plan:
        if any(w.name == "bad" for w in snap.workloads):
            raise OverflowError("date value out of range")
        return real(snap, now)

    monkeypatch.setattr(planner, "plan", fragile)
    report = asyncio.run(cycle.run_cycle(cache, writer, NOW))
    assert report.isolated == 1 and report.placed == 2
    assert podspec.is_gated(writer.pods["ml/bad"])
    held = writer.pods["ml/bad"]["metadata"]["annotations"][podspec.HOLD_ANNOTATION]
    assert held.startswith("PlanningFailed: ml/bad held: planning it failed (OverflowError")
    assert not podspec.is_gated(writer.pods["ml/a"]) and not podspec.is_gated(writer.pods["ml/c"])


def test_a_refused_placement_says_why_on_the_pod_once() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_with_pods(writer, "a")
    writer.refuse["ml/a"] = "ValidatingAdmissionPolicy 'x' denied request: no"
    state = cycle.LoopState()
    for minute in range(3):
        at = NOW + datetime.timedelta(minutes=minute)
        report = asyncio.run(cycle.run_cycle(cache, writer, at, state=state))
        assert report.refused == 1 and report.refusals == {"AdmissionRefused": 1}
    warnings = [e for e in writer.events if e[2] == "AdmissionRefused"]
    assert len(warnings) == 1 and "denied request: no" in warnings[0][3]


def test_a_warning_about_a_pod_value_is_posted_once() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_with_pods(writer)
    hostile = fakes.pod("w", fakes.gpus(1), annotations={convert.DURATION_ANNOTATION: "1e308"})
    hostile["spec"]["nodeSelector"] = {"nowhere": "true"}  # stays held: it is seen every cycle
    cache.put_pod(writer.add(hostile))
    state = cycle.LoopState()
    for minute in range(3):
        at = NOW + datetime.timedelta(minutes=minute)
        report = asyncio.run(cycle.run_cycle(cache, writer, at, state=state))
        assert report.warnings["InvalidAnnotation"] == 1
    assert [e[2] for e in writer.events].count("InvalidAnnotation") == 1
    held = writer.pods["ml/w"]["metadata"]["annotations"][podspec.HOLD_ANNOTATION]
    assert "no node of the pool matches the pod's own nodeSelector" in held, held


def test_a_policy_without_rules_says_it_allows_every_pool() -> None:
    writer = fakes.RecordingWriter()
    cache = cache_with_pods(writer)  # its policy "any" has spec: {}
    cache.put_policy(fakes.policy("fr", namespace="ml", sovereignty={"allowedCountries": ["FR"]}))
    asyncio.run(cycle.run_cycle(cache, writer, NOW, status.StatusRecorder(writer)))
    reasons = {
        name: writer.last_status("placementpolicies", name)["conditions"][0]["reason"]
        for name in ("any", "fr")
    }
    assert reasons == {"any": "AllowsEveryPool", "fr": "Active"}


def test_a_policy_no_pool_passes_is_not_ready_and_says_why() -> None:
    """Argo CD and Flux read Ready: a policy that can never place a pod must not look green."""
    writer = fakes.RecordingWriter()
    cache = cache_with_pods(writer)
    cache.put_policy(fakes.policy("ch", namespace="ml", sovereignty={"allowedCountries": ["CH"]}))
    asyncio.run(cycle.run_cycle(cache, writer, NOW, status.StatusRecorder(writer)))
    written = writer.last_status("placementpolicies", "ch")
    (ready,) = written["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "NoAllowedPool"), ready
    assert "none of the" in ready["message"] and "spec.sovereignty" in ready["message"]
    assert written["allowedPools"] == []


def test_metrics_count_the_placements_applied_not_the_decisions() -> None:
    import prometheus_client  # noqa: PLC0415 - only this test reads metrics

    from greenplace.controller import metrics  # noqa: PLC0415

    writer = fakes.RecordingWriter()
    cache = cache_with_pods(writer, "placed", "refused")
    cache.put_pod(writer.add(fakes.pod("nowhere", fakes.gpus(1), nodeSelector={"no": "node"})))
    writer.refuse["ml/refused"] = "denied"
    registry = prometheus_client.CollectorRegistry()
    observed = metrics.PlacementMetrics(registry)
    for minute in range(3):
        at = NOW + datetime.timedelta(minutes=minute)
        observed.observe(asyncio.run(cycle.run_cycle(cache, writer, at)))

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    placed = sum(value("greenplace_placements_total", reason=r.value) for r in model.Reason)
    assert placed == 1, "one pod was placed; the refused one never was"
    assert value("greenplace_write_refusals_total", reason="AdmissionRefused") == 3
    assert value("greenplace_held_workloads", reason="NoCompliantPool") == 1
