"""One placement cycle in five numbered, timed phases: gather → snapshot → plan → apply → record.

Why this module exists: it is the only place where the planner's decisions become writes. Each
phase is timed (the report goes to the log and to metrics), and the phases never interleave, so
a plan is always made from one consistent view and applied as a whole. Placing a pod is one
atomic patch (see ``podspec.placement_patch``); its result is fed back into the cache at once,
so the next cycle counts that pod's GPUs even before the watch event arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kubernetes import client

from greenplace.controller import cache as cache_
from greenplace.controller import faults, feeds, kube, podspec, snapshot, status
from greenplace.domain import model
from greenplace.engine import planner

__all__ = ["CycleReport", "run_cycle"]

logger = logging.getLogger("greenplace.cycle")
APPLY_CONCURRENCY = 16


@dataclasses.dataclass
class CycleReport:
    at: datetime.datetime
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    placed: int = 0
    held: int = 0
    conflicts: int = 0
    refused: int = 0  # writes an admission policy refused (e.g. namespace without a policy)
    errors: int = 0
    plan: model.Plan | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] = time.perf_counter() - started

    def seconds_until_next_wake(self, limit: float) -> float:
        """How long the loop may sleep: until the earliest deferral ends, at most ``limit``.

        A deferred workload is re-planned when its ``not_before`` comes (a cleaner slot, the
        next budget period), not up to one resync later.
        """
        ends = [d.not_before for d in (self.plan.decisions if self.plan else ()) if d.not_before]
        if not ends:
            return limit
        return min(limit, max(0.5, (min(ends) - self.at).total_seconds()))

    def summary(self) -> str:
        phases = " ".join(f"{k}={v * 1000:.1f}ms" for k, v in self.phase_seconds.items())
        return (
            f"cycle: placed={self.placed} held={self.held} conflicts={self.conflicts} "
            f"refused={self.refused} errors={self.errors} {phases}"
        )


async def run_cycle(
    cache: cache_.Cache,
    writer: kube.Writer,
    now: datetime.datetime,
    recorder: status.StatusRecorder | None = None,
    signal_feeds: feeds.Feeds | None = None,
) -> CycleReport:
    report = CycleReport(at=now)
    with report.phase("1-gather"):
        observed = None
        if signal_feeds is not None:  # network reads: off the event loop
            sources = tuple(cache.signal_sources.values())
            observed = await asyncio.to_thread(signal_feeds.read, sources, now)
        gathered = snapshot.gather(cache, observed)
    with report.phase("2-snapshot"):
        built = snapshot.build(gathered, now)
        snap = built.snapshot
        cache.last_pools = snap.pools  # the EnergyReports use the pools as last planned
    with report.phase("3-plan"):
        faults.before_plan()
        # CPU-bound (about 1 s at 10k workloads): in a thread, so the webhook keeps answering.
        plan = await asyncio.to_thread(planner.plan, snap, now)
        report.plan = plan
    with report.phase("4-apply"):
        if recorder is not None:  # the admission policy needs them before any release
            await recorder.publish_allowed_pools(gathered, snap, now)
        pools = {p.name: p for p in snap.pools}
        guard = asyncio.Semaphore(APPLY_CONCURRENCY)
        decisions = [*plan.decisions, *(_incomplete(k, m) for k, m in built.incomplete.items())]

        async def apply_one(decision: model.Decision, pod: cache_.CachedPod) -> None:
            async with guard:
                await _apply(
                    decision, pod=pod, pools=pools, cache=cache, writer=writer, report=report
                )

        await asyncio.gather(
            *(
                apply_one(decision, pod)
                for decision in decisions
                for pod in built.members.get(decision.workload)
                or built.incomplete.get(decision.workload, ())
            )
        )
    with report.phase("5-record"):
        if recorder is not None:
            await recorder.record(gathered, snap, plan, built=built, now=now)
    return report


async def _apply(
    decision: model.Decision,
    *,
    pod: cache_.CachedPod,
    pools: Mapping[str, model.Pool],
    cache: cache_.Cache,
    writer: kube.Writer,
    report: CycleReport,
) -> None:
    try:
        if decision.pool is not None:
            record = _placement_record(decision, pools[decision.pool], report.at)
            ops = podspec.placement_patch(pod.body, pools[decision.pool].node_labels, record)
            cache.put("Pod", await writer.patch_pod(pod.namespace, pod.name, ops))
            faults.after_placement()
            report.placed += 1
            await writer.pod_event(pod.body, "Normal", "Placed", decision.message)
        else:
            report.held += 1
            ops_or_none = podspec.hold_patch(pod.body, decision.reason.value, decision.message)
            if ops_or_none is not None:
                cache.put("Pod", await writer.patch_pod(pod.namespace, pod.name, ops_or_none))
                await writer.pod_event(pod.body, "Warning", decision.reason.value, decision.message)
    except kube.WriteConflictError as conflict:
        report.conflicts += 1
        logger.info("re-planning later: %s", conflict)
    except kube.AdmissionRefusedError as refused:
        report.refused += 1
        logger.debug("admission refused: %s", refused)
    except client.ApiException as error:
        report.errors += 1
        logger.warning("pod %s: API error %s %s", pod.key, error.status, error.reason)


def _incomplete(key: str, members: tuple[cache_.CachedPod, ...]) -> model.Decision:
    return model.Decision(
        workload=key,
        outcome=model.Outcome.HELD,
        reason=model.Reason.GANG_INCOMPLETE,
        message=(
            f"{key} held: gang has {len(members)} waiting pods, fewer than its "
            f"{snapshot.GANG_SIZE_ANNOTATION} annotation; it is placed whole or not at all"
        ),
    )


def _placement_record(
    decision: model.Decision, pool: model.Pool, at: datetime.datetime
) -> dict[str, Any]:
    return {
        "pool": pool.name,
        "country": pool.location.country,
        "reason": decision.reason.value,
        "policies": list(decision.policies),
        "gco2PerKwh": pool.effective_gco2_per_kwh,
        "at": at.isoformat(timespec="seconds"),
        "message": decision.message,
    }
