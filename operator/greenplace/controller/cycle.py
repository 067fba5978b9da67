"""One placement cycle in six numbered, timed phases: gather, snapshot, plan, apply, record, ledger.

Why this module exists: it is the only place where the planner's decisions become writes. Each
phase is timed (the report goes to the log and to metrics), and the phases never interleave, so
a plan is always made from one consistent view and applied as a whole. Placing a pod is one
atomic patch (see ``podspec.placement_patch``); its result is fed back into the cache at once,
so the next cycle counts that pod's GPUs even before the watch event arrives, and the Budgets
the decision names are charged in the loop's ledger at once (``budgets.Ledger``).

One bad workload never stops the others: if the planner raises, the cycle finds the workloads
that make it raise by planning halves (``_plan_isolating``), holds them with reason
``PlanningFailed`` and plans the rest. A write the API server refuses for one pod (an admission
policy, annotations too large) is recorded on that pod as a reason and an Event.

Events are said as Kubernetes' own components say them (client-go's EventAggregator): per
namespace, type and reason, a cycle posts its first ``EVENTS_PER_REASON`` pod Events one by
one and combines the rest into one Event on the last pod, "(combined from similar events)". A
burst of 2,000 placements then costs the API server a few dozen Event writes, not 2,000
(bench_burst: an Event per pod was a fifth of the writes of a governed pod); every pod's own
decision stays in its ``greenplace.dev/placement`` or ``greenplace.dev/held`` annotation.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from kubernetes import client

from greenplace.api import timestamps
from greenplace.controller import (
    budgets,
    faults,
    feeds,
    kube,
    kueue,
    podspec,
    policyreports,
    records,
    snapshot,
    status,
)
from greenplace.controller import cache as cache_
from greenplace.controller import credentials as credentials_
from greenplace.controller import ledger as audit  # the placement ledger (docs/audit.md)
from greenplace.domain import model
from greenplace.engine import planner

__all__ = ["CycleReport", "Dispatching", "LoopState", "placement_record", "run_cycle"]

logger = logging.getLogger("greenplace.cycle")
APPLY_CONCURRENCY = 16
# Pod Events a cycle posts one by one per namespace, type and reason; the rest are combined
# into one (client-go's EventAggregator combines beyond 10 similar Events).
EVENTS_PER_REASON = 10
# The shortest sleep between cycles when a re-plan is due (a guard against spinning).
MIN_SLEEP_SECONDS = 0.1


class Dispatching(Protocol):
    """What the cycle asks of MultiKueue's dispatcher (``dispatch.Dispatcher``), run after the
    local phases of apply, before the record phase writes the Budgets' status."""

    async def run(
        self,
        gathered: snapshot.Gathered,
        cache: cache_.Cache,
        *,
        events: kube.Writer,
        ledger: budgets.Ledger,
        now: datetime.datetime,
        recorder: status.StatusRecorder | None = None,
        deferral_step: datetime.timedelta = model.DEFAULT_DEFERRAL_STEP,
    ) -> object: ...


@dataclasses.dataclass
class LoopState:
    """What the placement loop carries from one cycle to the next (owned by the loop)."""

    ledger: budgets.Ledger = dataclasses.field(default_factory=budgets.Ledger)
    # (pod uid, reason, message) already reported with an Event: reported once.
    warned: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)
    # Our Kueue AdmissionChecks' Active condition as last written: the problem, None when Active.
    activated: dict[str, str | None] = dataclasses.field(default_factory=dict)
    # The signed placement ledger (None: off), appended once the cycle's writes are done.
    audit: audit.Ledger | None = None
    # The namespaces' PolicyReports (None: off), brought up to date after the ledger.
    reports: policyreports.PolicyReports | None = None
    # Reads and verifies the pools' certification credentials (None: none is read, so a
    # certification that references one never counts).
    credentials: credentials_.Credentials | None = None


@dataclasses.dataclass
class CycleReport:
    at: datetime.datetime
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    placed: int = 0
    held: int = 0
    conflicts: int = 0
    refused: int = 0  # writes an admission policy refused (e.g. namespace without a policy)
    errors: int = 0
    isolated: int = 0  # workloads held because planning them raised
    warnings: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    refusals: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    # Pods actually placed (patch applied), by the decision's reason code.
    placed_by_reason: collections.Counter[str] = dataclasses.field(
        default_factory=collections.Counter
    )
    # Kueue AdmissionCheck answers written, by (state, reason code).
    kueue_answers: collections.Counter[tuple[str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    plan: model.Plan | None = None
    # Per outcome, when the oldest workload the plan decided it for was created (the metrics
    # read those still waiting: Held, Deferred, Refused).
    oldest_waiting: dict[model.Outcome, datetime.datetime] = dataclasses.field(default_factory=dict)
    # Each Budget's alert state, once the cycle recorded status (None: it did not).
    budget_alerts: dict[tuple[str, str], budgets.Alerts] | None = None
    # The pools this cycle planned with (signal values applied): the EnergyReports use them.
    pools: tuple[model.Pool, ...] = ()
    # When parked Kueue Workloads are due to be activated again (``kueue.park_patch``).
    unpark_at: list[datetime.datetime] = dataclasses.field(default_factory=list)
    # Pod Events of this cycle per (namespace, type, reason): how many were posted one by one,
    # and the rest (count, the last pod, its message), posted combined at the phase's end.
    events_posted: collections.Counter[tuple[str, str, str]] = dataclasses.field(
        default_factory=collections.Counter
    )
    events_combined: dict[tuple[str, str, str], tuple[int, Mapping[str, Any], str]] = (
        dataclasses.field(default_factory=dict)
    )

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] = time.perf_counter() - started

    def seconds_until_next_wake(self, limit: float, now: datetime.datetime) -> float:
        """How long the loop may sleep from ``now``: until the earliest ``not_before`` of the
        plan or time a parked Kueue Workload is activated again, at most ``limit``.

        A deferred workload is re-planned when its ``not_before`` comes (a cleaner slot, the
        next budget period), and one held by a carbon ceiling at its latest start, when the
        ceiling yields: not up to one resync later.
        """
        ends = [d.not_before for d in (self.plan.decisions if self.plan else ()) if d.not_before]
        ends += self.unpark_at
        if not ends:
            return limit
        return min(limit, max(MIN_SLEEP_SECONDS, (min(ends) - now).total_seconds()))

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
    *,
    state: LoopState | None = None,
    deferral_step: datetime.timedelta = model.DEFAULT_DEFERRAL_STEP,
    dispatcher: Dispatching | None = None,
) -> CycleReport:
    state = state or LoopState()
    report = CycleReport(at=now)
    with report.phase("1-gather"):
        observed = None
        if signal_feeds is not None:  # network reads: off the event loop
            sources = tuple(cache.signal_sources.values())
            observed = await asyncio.to_thread(signal_feeds.read, sources, now)
        checked = None
        if state.credentials is not None:  # API reads of Secrets/ConfigMaps: off the loop
            checked = await asyncio.to_thread(
                state.credentials.read, tuple(cache.pools.values()), now
            )
        gathered = snapshot.gather(cache, observed, checked)
    with report.phase("2-snapshot"):
        built = snapshot.build(gathered, now, state.ledger, deferral_step)
        snap = built.snapshot
        report.pools = snap.pools
    with report.phase("3-plan"):
        faults.before_plan()
        # CPU-bound (about 1 s at 10k workloads): in a thread, so the webhook keeps answering.
        plan, report.isolated = await asyncio.to_thread(_plan_isolating, snap, now)
        report.plan = plan
        report.oldest_waiting = _oldest_waiting(snap.workloads, plan)
    with report.phase("4-apply"):
        if recorder is not None:  # the admission policy needs them before any release
            await recorder.publish_allowed_pools(gathered, snap, now)
        pools = {p.name: p for p in snap.pools}
        budget_of = {p.key: f"{p.namespace}/{p.budget}" for p in snap.policies if p.budget}
        guard = asyncio.Semaphore(APPLY_CONCURRENCY)
        decisions = [*plan.decisions, *(_incomplete(k, m) for k, m in built.incomplete.items())]

        async def apply_one(decision: model.Decision, pod: cache_.CachedPod) -> None:
            async with guard:
                await _apply(
                    decision,
                    pod=pod,
                    pools=pools,
                    budget_of=budget_of,
                    cache=cache,
                    writer=writer,
                    report=report,
                    state=state,
                )

        await asyncio.gather(
            *(
                apply_one(decision, pod)
                for decision in decisions
                for pod in built.members.get(decision.workload)
                or built.incomplete.get(decision.workload, ())
            )
        )
        await asyncio.gather(
            *(
                _answer_kueue(
                    decision,
                    built.kueue[decision.workload],
                    gathered=gathered,
                    built=built,
                    pools=pools,
                    budget_of=budget_of,
                    cache=cache,
                    writer=writer,
                    report=report,
                    state=state,
                )
                for decision in plan.decisions
                if decision.workload in built.kueue
            ),
            _activate_checks(gathered, writer, report.at, state),
            _unpark_due(gathered, cache, writer, report),
        )
        await _post_combined(report, writer)
        await _warn(built.warnings, writer, report, state)
        if dispatcher is not None:  # MultiKueue: remote pools, charged in the same ledger
            await dispatcher.run(
                gathered, cache, events=writer, ledger=state.ledger, now=now,
                recorder=recorder, deferral_step=deferral_step,
            )  # fmt: skip
    with report.phase("5-record"):
        if recorder is not None:
            report.budget_alerts = await recorder.record(
                gathered, snap, plan, built=built, now=now, ledger=state.ledger
            )
    with report.phase("6-ledger"):  # its own phase: bench_burst reports the ledger's cost
        decided = snapshot.Decided(gathered, built, plan, cache, now)
        if state.audit is not None:  # every write of the cycle is done: its decisions are final
            await state.audit.record(decided)
        if state.reports is not None:
            await state.reports.publish(decided)
    return report


def _oldest_waiting(
    workloads: tuple[model.Workload, ...], plan: model.Plan
) -> dict[model.Outcome, datetime.datetime]:
    """Per outcome, the creation time of the oldest workload the plan decided it for."""
    created = {w.key: w.created for w in workloads}
    oldest: dict[model.Outcome, datetime.datetime] = {}
    for decision in plan.decisions:
        at = created.get(decision.workload)
        if at is None:
            continue
        if decision.outcome not in oldest or at < oldest[decision.outcome]:
            oldest[decision.outcome] = at
    return oldest


def _plan_isolating(snap: model.Snapshot, now: datetime.datetime) -> tuple[model.Plan, int]:
    """The plan of ``snap``; if planning raises, the workloads that make it raise (found by
    planning halves) are held with ``PlanningFailed`` and the others planned together."""
    try:
        return planner.plan(snap, now), 0
    except Exception:
        logger.exception("planning failed: isolating the workloads that make it fail")
    bad = _failing(snap, snap.workloads, now)
    good = tuple(w for w in snap.workloads if w.key not in bad)
    plan = planner.plan(dataclasses.replace(snap, workloads=good), now)
    held = tuple(
        model.Decision(
            workload=w.key,
            outcome=model.Outcome.HELD,
            reason=model.Reason.PLANNING_FAILED,
            message=f"{w.key} held: planning it failed ({bad[w.key]}); the operator log has the "
            "traceback. Check the values written on its pods (greenplace.dev/* annotations).",
        )
        for w in snap.workloads
        if w.key in bad
    )
    return dataclasses.replace(plan, decisions=(*plan.decisions, *held)), len(held)


def _failing(
    snap: model.Snapshot, workloads: tuple[model.Workload, ...], now: datetime.datetime
) -> dict[str, str]:
    """The workloads among ``workloads`` whose planning raises, with the error."""
    try:
        planner.plan(dataclasses.replace(snap, workloads=workloads), now)
        return {}
    except Exception as error:
        if len(workloads) == 1:
            return {workloads[0].key: f"{type(error).__name__}: {str(error)[:200]}"}
    middle = len(workloads) // 2
    return {
        **_failing(snap, workloads[:middle], now),
        **_failing(snap, workloads[middle:], now),
    }


async def _pod_event(
    pod: cache_.CachedPod,
    kind: str,
    reason: str,
    message: str,
    *,
    writer: kube.Writer,
    report: CycleReport,
) -> None:
    """The pod's Event, or, past ``EVENTS_PER_REASON`` alike this cycle, its share of one."""
    key = (pod.namespace, kind, reason)
    if report.events_posted[key] < EVENTS_PER_REASON:
        report.events_posted[key] += 1
        await writer.pod_event(pod.body, kind, reason, message)
        return
    count = report.events_combined[key][0] if key in report.events_combined else 0
    report.events_combined[key] = (count + 1, pod.body, message)


async def _post_combined(report: CycleReport, writer: kube.Writer) -> None:
    """One Event per (namespace, type, reason) for the pod Events this cycle combined."""
    for (namespace, kind, reason), (count, last, message) in report.events_combined.items():
        annotation = podspec.PLACEMENT_ANNOTATION if reason == "Placed" else podspec.HOLD_ANNOTATION
        await writer.pod_event(
            last, kind, reason,
            f"(combined from similar events): {count} more pods of {namespace} this cycle "
            f"({reason}); each pod's own decision is in its {annotation} annotation "
            f"(greenplace placements -n {namespace}). This one: {message}",
        )  # fmt: skip


async def _warn(
    warnings: tuple[snapshot.Warning, ...],
    writer: kube.Writer,
    report: CycleReport,
    state: LoopState,
) -> None:
    """One Warning Event per pod (or Kueue Workload) and problem."""
    for warning in warnings:
        workload = warning.workload.workload if warning.workload else None
        key = (workload.uid if workload else warning.pod.uid, warning.reason, warning.message)
        report.warnings[warning.reason] += 1
        if key in state.warned:
            continue
        state.warned.add(key)
        if workload is not None:  # a Kueue pod set's template: said on the Workload and Job
            await _workload_events(workload, "Warning", warning.reason, warning.message, writer)
            continue
        with contextlib.suppress(client.ApiException):
            await writer.pod_event(warning.pod.body, "Warning", warning.reason, warning.message)


async def _apply(
    decision: model.Decision,
    *,
    pod: cache_.CachedPod,
    pools: Mapping[str, model.Pool],
    budget_of: Mapping[str, str],
    cache: cache_.Cache,
    writer: kube.Writer,
    report: CycleReport,
    state: LoopState,
) -> None:
    try:
        if decision.pool is not None:
            pool = pools[decision.pool]
            charged, spend, record = _charged_record(
                decision, pool, (pod,), uid=pod.uid, budget_of=budget_of, cache=cache, at=report.at
            )
            ops = podspec.placement_patch(pod.body, pool.node_labels, record)
            cache.put("Pod", await writer.patch_pod(pod.namespace, pod.name, ops))
            state.ledger.charge(charged, spend, report.at, pool.name)
            faults.after_placement()
            report.placed += 1
            report.placed_by_reason[decision.reason.value] += 1
            await _pod_event(
                pod, "Normal", "Placed", decision.message, writer=writer, report=report
            )
        else:
            report.held += 1
            ops_or_none = podspec.hold_patch(pod.body, decision.reason.value, decision.message)
            if ops_or_none is not None:
                cache.put("Pod", await writer.patch_pod(pod.namespace, pod.name, ops_or_none))
                # Waiting on purpose for a cleaner hour is no problem to warn about.
                kind = "Normal" if decision.outcome is model.Outcome.DEFERRED else "Warning"
                await _pod_event(
                    pod, kind, decision.reason.value, decision.message, writer=writer, report=report
                )
    except kube.WriteConflictError as conflict:
        report.conflicts += 1
        logger.info("re-planning later: %s", conflict)
    except kube.AdmissionRefusedError as refused:
        report.refused += 1
        report.refusals[refused.code] += 1
        logger.info("admission refused: %s", refused)
        await _refused(pod, refused, cache=cache, writer=writer, warned=state.warned)
    except client.ApiException as error:
        report.errors += 1
        logger.warning("pod %s: API error %s %s", pod.key, error.status, error.reason)


async def _answer_kueue(
    decision: model.Decision,
    entry: cache_.CachedKueueWorkload,
    *,
    gathered: snapshot.Gathered,
    built: snapshot.Built,
    pools: Mapping[str, model.Pool],
    budget_of: Mapping[str, str],
    cache: cache_.Cache,
    writer: kube.Writer,
    report: CycleReport,
    state: LoopState,
) -> None:
    """Answer our checks on a Kueue Workload with the planner's decision (``kueue.verdict``);
    a Ready answer charges its budgets once, like the pods of a gang placed together."""
    workload = entry.workload
    pool = pools.get(decision.pool) if decision.pool else None
    charged: list[str] = []
    spend = budgets.Spend()
    annotations: dict[str, str] = {}
    if pool is not None:
        charged, spend, record = _charged_record(
            decision,
            pool,
            entry.members,
            uid=workload.uid,
            budget_of=budget_of,
            cache=cache,
            at=report.at,
        )
        annotations[kueue.RECORD_ANNOTATION] = json.dumps(record, separators=(",", ":"))
    verdict = kueue.verdict(
        decision,
        node_selector=pool.node_labels if pool is not None else {},
        annotations=annotations,
        now=report.at,
        other_flavors=_open_flavors(decision, entry, gathered, built, report.at),
    )
    if (
        decision.outcome == model.Outcome.DEFERRED
        and decision.not_before is not None
        and (verdict.requeue_after_seconds or 0) >= kueue.MIN_PARK_SECONDS
        and cache.signer is not None
    ):
        await _park(
            workload, decision, verdict=verdict, signer=cache.signer, writer=writer, report=report
        )
        return
    at = timestamps.rfc3339(report.at)
    pod_sets = [p.name for p in workload.pod_sets]
    states = [
        kueue.check_state(check, verdict, pod_sets, at)
        for check in workload.pending(gathered.our_checks)
    ]
    try:
        stored = await writer.apply_kueue_status(
            "Workload", workload.namespace, workload.name, {"admissionChecks": states}
        )
        if stored.get("spec"):  # what the next cycle sees before the watch brings it
            cache.put("Workload", stored)
    except kube.WriteConflictError as conflict:
        report.conflicts += 1
        logger.info("re-planning later: %s", conflict)
        return
    except client.ApiException as error:
        report.errors += 1
        logger.warning("workload %s: API error %s %s", workload.key, error.status, error.reason)
        return
    if pool is not None:
        state.ledger.charge(charged, spend, report.at, pool.name)
        report.placed += 1
        report.placed_by_reason[decision.reason.value] += 1
    else:
        report.held += 1
    report.kueue_answers[verdict.state, verdict.reason] += 1
    # Kueue resets a rejected check to Pending with its own words: the Events keep ours, on the
    # Workload and on its Job (where its owner looks).
    kind = "Normal" if verdict.state == "Ready" else "Warning"
    await _workload_events(workload, kind, verdict.reason, verdict.message, writer)


async def _park(
    workload: kueue.KueueWorkload,
    decision: model.Decision,
    *,
    verdict: kueue.CheckVerdict,
    signer: records.Signer,
    writer: kube.Writer,
    report: CycleReport,
) -> None:
    """Deactivate a Workload deferred for long, noting when it is activated again: Kueue
    frees its quota at once, where a Retry would hold it until then (docs/kueue.md)."""
    until = decision.not_before or report.at
    patch = kueue.park_patch(workload, until, verdict.reason, signer)
    try:
        await writer.patch_kueue("Workload", workload.namespace, workload.name, patch)
    except kube.WriteConflictError as conflict:
        report.conflicts += 1
        logger.info("re-planning later: %s", conflict)
        return
    except client.ApiException as error:
        report.errors += 1
        logger.warning("workload %s: API error %s %s", workload.key, error.status, error.reason)
        return
    report.held += 1
    report.unpark_at.append(until)
    report.kueue_answers["Parked", verdict.reason] += 1
    message = (  # first: Events are cut to their first kilobyte
        f"Parked until {timestamps.rfc3339(until)} (deactivated so its ClusterQueue's quota is "
        f"free meanwhile; greenplace activates it again then): {verdict.message}"
    )
    await _workload_events(workload, "Normal", verdict.reason, message, writer)


async def _unpark_due(
    gathered: snapshot.Gathered, cache: cache_.Cache, writer: kube.Writer, report: CycleReport
) -> None:
    """Activate each Workload greenplace parked whose time has come; note when the others'
    comes, so the loop wakes then."""
    for entry in gathered.kueue_workloads:
        workload = entry.workload
        until = kueue.parked_until(workload, cache.signer)
        if until is None:
            continue
        if until > report.at:
            report.unpark_at.append(until)
            continue
        try:
            stored = await writer.patch_kueue(
                "Workload", workload.namespace, workload.name, kueue.unpark_patch()
            )
            if stored.get("spec"):
                cache.put("Workload", stored)
        except (kube.WriteError, client.ApiException) as error:
            report.errors += 1
            logger.warning("workload %s: could not activate it again: %s", workload.key, error)
            continue
        message = "activated again: its park time has come; Kueue reserves quota anew"
        await _workload_events(workload, "Normal", "Unparked", message, writer)


async def _workload_events(
    workload: kueue.KueueWorkload, kind: str, reason: str, message: str, writer: kube.Writer
) -> None:
    for involved in kueue.involved(workload):
        try:
            await writer.pod_event(involved, kind, reason, message)
        except client.ApiException as error:
            logger.warning("workload %s: could not post the Event: %s", workload.key, error.reason)


def _open_flavors(
    decision: model.Decision,
    entry: cache_.CachedKueueWorkload,
    gathered: snapshot.Gathered,
    built: snapshot.Built,
    at: datetime.datetime,
) -> tuple[str, ...]:
    """The flavors of the Workload's ClusterQueue, other than those Kueue assigned, with a pool
    not ruled out for it for good; asked only when every pool of the assigned ones is."""
    workload = entry.workload
    queue = gathered.queue_flavors.get(workload.cluster_queue or "", frozenset())
    others = sorted(queue - workload.flavors)
    if not others or not kueue.ruled_out(decision):
        return ()
    flavors = gathered.flavor_pools
    planned = next(w for w in built.snapshot.workloads if w.key == decision.workload)
    fits = built.kueue_fits.get(decision.workload)
    open_ = []
    for flavor in others:
        inside = flavors.pools_in([flavor])
        probe = dataclasses.replace(planned, fits_pools=inside if fits is None else fits & inside)
        only = dataclasses.replace(built.snapshot, workloads=(probe,))
        (there,) = planner.plan(only, at).decisions
        if inside and not kueue.ruled_out(there):
            open_.append(flavor)
    return tuple(open_)


async def _activate_checks(
    gathered: snapshot.Gathered, writer: kube.Writer, at: datetime.datetime, state: LoopState
) -> None:
    """Mark each AdmissionCheck greenplace answers Active, or Active=False with the reason when
    it cannot honour it (``kueue.check_problem``: Kueue then admits nothing through it); once
    per check and state."""
    ours = {
        name: check.problem
        for name, check in gathered.admission_checks.items()
        if check.controller == kueue.CONTROLLER_NAME
    }
    for name, problem in sorted(ours.items()):
        if name in state.activated and state.activated[name] == problem:
            continue
        condition = {
            "type": "Active",
            "status": "True" if problem is None else "False",
            "reason": "Active" if problem is None else "UnknownParameters",
            "message": problem
            or "greenplace answers this check (controllerName greenplace.dev/placement)",
            "lastTransitionTime": timestamps.rfc3339(at),
        }
        try:
            await writer.apply_kueue_status(
                "AdmissionCheck", None, name, {"conditions": [condition]}
            )
        except (kube.WriteError, client.ApiException) as error:
            logger.warning(
                "AdmissionCheck %s: could not write its Active condition: %s", name, error
            )
            continue
        state.activated[name] = problem


async def _refused(
    pod: cache_.CachedPod,
    refused: kube.AdmissionRefusedError,
    *,
    cache: cache_.Cache,
    writer: kube.Writer,
    warned: set[tuple[str, str, str]],
) -> None:
    """Say on the pod why greenplace's own write was refused (the reason stays until the next
    decision), once; the hold annotation alone is a smaller write, which policies let through."""
    message = f"the API server refused greenplace's write: {refused.reason}"[:2048]
    if (pod.uid, refused.code, message) in warned:
        return
    warned.add((pod.uid, refused.code, message))
    try:
        await writer.pod_event(pod.body, "Warning", refused.code, message)
        ops = podspec.hold_patch(pod.body, refused.code, message)
        if ops is not None:
            cache.put("Pod", await writer.patch_pod(pod.namespace, pod.name, ops))
    except (kube.WriteConflictError, kube.AdmissionRefusedError, client.ApiException) as error:
        logger.warning("pod %s: could not record the refusal either: %s", pod.key, error)


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


def _charged_record(
    decision: model.Decision,
    pool: model.Pool,
    pods: tuple[cache_.CachedPod, ...],
    *,
    uid: str,
    budget_of: Mapping[str, str],
    cache: cache_.Cache,
    at: datetime.datetime,
) -> tuple[list[str], budgets.Spend, dict[str, Any]]:
    """The budgets ``pods`` placed in ``pool`` are charged to, what they are charged, and the
    placement record saying so, signed for ``uid`` (the pod's, or the Kueue Workload's)."""
    charged = sorted({budget_of[p] for p in decision.policies if p in budget_of})
    spend = budgets.Spend()
    for pod in pods:
        spend = spend + budgets.charge(pod, pool, pool.effective_gco2_per_kwh)
    record = placement_record(decision, pool, at, charged, spend)
    if cache.signer is not None:
        record = cache.signer.sign(uid, record)
    return charged, spend, record


def placement_record(
    decision: model.Decision,
    pool: model.Pool,
    at: datetime.datetime,
    charged: list[str] | None = None,
    spend: budgets.Spend | None = None,
) -> dict[str, Any]:
    """What greenplace records on a placed pod (then signed: ``records``). ``budgets`` and
    ``charge`` let a restarted operator recover charges its Budget status does not hold yet."""
    spend = spend or budgets.Spend()
    return {
        "pool": pool.name,
        "country": pool.location.country,
        "reason": decision.reason.value,
        "policies": list(decision.policies),
        "gco2PerKwh": pool.effective_gco2_per_kwh,
        "at": timestamps.rfc3339(at, microseconds=True),
        "message": decision.message,
        "budgets": charged or [],
        "charge": {
            "money": spend.money,
            "kgCO2e": spend.kg_co2e,
            "kWh": spend.kwh,
            "gpuHours": spend.gpu_hours,
        },
    }
