"""greenplace as MultiKueue's external dispatcher: one compliant worker cluster at a time.

Why this module exists: Kueue's MultiKueue runs Jobs of a manager cluster in worker clusters,
but its built-in dispatchers copy each Workload into every worker (AllAtOnce) or into a fixed
list (Incremental), so a Job's spec reaches clusters in jurisdictions it may not enter. With
``multiKueue.dispatcherName: greenplace.dev/dispatcher`` (``DISPATCHER_NAME``) Kueue leaves the
choice to greenplace: for each manager Workload with quota reserved, a MultiKueue check Pending
and no ``status.clusterName``, greenplace plans it with the same planner, rules, budgets,
ceilings and deferral as the pod and AdmissionCheck paths, over the *remote pools* (GpuPools
with ``spec.cluster``, capacity read from the workers: ``workers``), and writes ONE cluster into
``status.nominatedClusterNames``. Kueue copies the Workload only into nominated clusters, so only
the chosen worker ever receives it.

Rules of the choice:

- A cluster is nominated only when every remote pool of it that the Workload's pods could land
  in (their own node constraints) passes the sovereignty and certification rules
  (``ineligible``): greenplace does not run in the workers and cannot steer pods inside one, so
  one non-compliant pool makes the whole worker non-compliant.
- Among eligible clusters the planner picks the best pool with room (lowest carbon, or the
  policy's objective); its cluster is nominated. A stale or unreadable worker counts no room.
- Re-nomination (replace, never add): when the nomination is not admitted within
  ``--nomination-timeout`` or its worker is no longer usable, the next best eligible cluster not
  tried yet is nominated; with none, the nomination stays and the reason is said.
- Hold: no eligible cluster with room, a budget exhausted, a ceiling or a deferral says wait:
  nothing is nominated; the reason goes in an Event on the Workload and its Job (the planner's
  reason codes and words, as ``greenplace why`` shows them), tried again next cycles.
- Budgets are charged once per Workload, at its first nomination: a signed record (``records``)
  in the annotation ``cache.DISPATCH_ANNOTATION`` on the manager Workload keeps the charge, the
  cluster and pool nominated and when. A restarted operator reads nominations back from the
  Workload's status and that record, so it neither charges twice nor nominates twice. Tenants
  may write Workload annotations: an unsigned, edited or copied record is ignored (Warning
  ``UntrustedRecord``).

The contract with Kueue for writing the nomination (``nomination_apply``): Kueue v0.17 requires
an external dispatcher to write ``status.nominatedClusterNames`` with server-side apply as
Kueue's own field manager ``kueue-admission`` (Kueue PR #5782's release note): when a worker
admits the Workload, Kueue applies ``status.clusterName`` and drops the nominations in the same
apply, which removes them only if no other manager owns them, and Kueue's webhook refuses a
``clusterName`` and nominations together. A field manager of greenplace's own would keep the
nominations alive and make that admission fail. So greenplace applies, as ``kueue-admission``,
exactly the fields Kueue's own ``PrepareWorkloadPatch`` applies (read from the Workload just
before, with its ``resourceVersion`` so a concurrent change of Kueue's is never overwritten: the
apply then fails with a conflict and is retried next cycle). The MutatingAdmissionPolicy
alternative named in the issue is not shipped by Kueue v0.17.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from kubernetes import client

from greenplace.api import models, timestamps
from greenplace.controller import budgets, cycle, kube, kueue, records, snapshot, status, workers
from greenplace.controller import cache as cache_
from greenplace.domain import model
from greenplace.engine import planner, rules

__all__ = [
    "DISPATCHER_NAME",
    "FIELD_MANAGER",
    "MULTIKUEUE_CONTROLLER",
    "Action",
    "DispatchState",
    "Dispatcher",
    "KubeDispatchWriter",
    "choose",
    "ineligible",
    "nomination_apply",
]

logger = logging.getLogger("greenplace.dispatch")

DISPATCHER_NAME = "greenplace.dev/dispatcher"  # the manager Kueue's multiKueue.dispatcherName
MULTIKUEUE_CONTROLLER = "kueue.x-k8s.io/multikueue"
FIELD_MANAGER = "kueue-admission"  # Kueue's contract for external dispatchers (module docstring)
ANNOTATION_MANAGER = "greenplace-dispatcher"  # owns greenplace's record annotation
# Kueue's admission-managed conditions (pkg/workload: admissionManagedConditions).
_ADMISSION_CONDITIONS = frozenset({
    "QuotaReserved", "BlockedOnPreemptionGates", "Evicted", "Admitted", "Preempted",
    "Requeued", "DeactivationTarget", "Finished",
})  # fmt: skip
# A nominated Workload Kueue admitted keeps its GPUs reserved in the chosen pool until its
# worker has been read this long after the admission (its pods are then counted there).
ADMITTED_GRACE = datetime.timedelta(seconds=5)


# ---------------------------------------------------------------- pure logic


@dataclasses.dataclass(frozen=True)
class Nomination:
    """A nomination of greenplace's: the cluster and pool, and when it was made."""

    cluster: str
    pool: str
    at: datetime.datetime


def nomination(entry: cache_.CachedKueueWorkload) -> Nomination | None:
    """The Workload's current nomination if it is greenplace's: its signed record names the
    cluster its status nominates, alone."""
    record = entry.dispatch_record
    if record is None:
        return None
    cluster, pool = record.get("nominated"), record.get("nominatedPool")
    at = timestamps.parse_rfc3339(record.get("nominatedAt"))
    if not isinstance(cluster, str) or not isinstance(pool, str) or at is None:
        return None
    if entry.nominated != (cluster,) and entry.cluster_name != cluster:
        return None
    return Nomination(cluster, pool, at)


def multikueue_checks(admission_checks: Mapping[str, kueue.AdmissionCheck]) -> frozenset[str]:
    return frozenset(
        n for n, c in admission_checks.items() if c.controller == MULTIKUEUE_CONTROLLER
    )


def waiting(entry: cache_.CachedKueueWorkload, checks: frozenset[str]) -> bool:
    """Whether the Workload waits for a cluster: quota reserved, a MultiKueue check Pending,
    active and not ended, no ``status.clusterName``."""
    return (
        bool(entry.members) and entry.cluster_name is None and bool(entry.workload.pending(checks))
    )


def ineligible(
    workload: model.Workload,
    pools: Iterable[model.Pool],
    policies: Iterable[model.Policy],
    now: datetime.datetime,
) -> model.Rejection | None:
    """Why a cluster whose remote pools are ``pools`` may not receive ``workload``: the first
    pool its pods could land in that breaks a sovereignty or certification rule; None when
    every one passes (and there is at least one)."""
    governing = [p for p in policies if p.selects(workload)]
    candidates = [p for p in pools if workload.fits_pools is None or p.name in workload.fits_pools]
    if not candidates:
        return None
    end = now + datetime.timedelta(hours=workload.duration_hours)
    for pool in candidates:
        broken = rules.sovereignty_violation(pool, governing, workload.data_residency)
        if broken is not None:
            return broken
        window = rules.certificate_window(pool, governing, now)
        if isinstance(window, model.Rejection):
            return window
        if window.names and not window.covers(now, end):
            return model.Rejection(
                pool.name,
                model.Reason.CERTIFICATION_EXPIRES_DURING_RUN,
                f"pool {pool.name}: certification {window.names} expires during the "
                f"{workload.duration_hours:g} h run",
            )
    return None


@dataclasses.dataclass(frozen=True)
class Action:
    """What the dispatcher does for one Workload this cycle."""

    entry: cache_.CachedKueueWorkload
    decision: model.Decision
    cluster: str | None = None  # nominate this cluster (replacing any nomination)
    pool: str | None = None


@dataclasses.dataclass
class DispatchState:
    """What the dispatcher remembers between cycles (in memory; a restart reads the
    Workloads' status and records back)."""

    tried: dict[str, set[str]] = dataclasses.field(default_factory=dict)  # uid -> clusters
    warned: set[tuple[str, str, str]] = dataclasses.field(default_factory=set)
    admitted: set[str] = dataclasses.field(default_factory=set)  # uids counted as admitted


def remote_gathered(
    gathered: snapshot.Gathered,
    cache: cache_.Cache,
    *,
    views: Mapping[str, workers.WorkerView],
    to_plan: Iterable[cache_.CachedKueueWorkload],
    reserved: Iterable[tuple[cache_.CachedKueueWorkload, str]],
    now: datetime.datetime,
    ttl: float,
) -> snapshot.Gathered:
    """The cluster as a remote snapshot sees it: remote pools over the nodes of the usable
    workers, their bound pods, and the GPUs of nominations not yet running (``reserved``:
    Workload and pool) held as released to their pool."""
    _, remote = workers.split_pools(cache.pools.values())
    usable = [v for v in views.values() if v.usable(now, ttl)]
    held = tuple(
        dataclasses.replace(
            member,
            uid=f"dispatch/{member.uid}",
            gated=False,
            placed_pool=pool,
            record={"at": timestamps.rfc3339(now, microseconds=True)},
        )
        for entry, pool in reserved
        for member in entry.members
    )
    return dataclasses.replace(
        gathered,
        pools=tuple(
            workers.remote_pool(p)
            for pools in remote.values()
            for p in workers.usable_pools(pools, views)
        ),
        nodes=tuple(n for view in usable for n in workers.remote_nodes(view)),
        pods=(*(p for view in usable for p in workers.remote_pods(view)), *held),
        kueue_workloads=tuple(to_plan),
        admission_checks={
            name: check
            for name, check in gathered.admission_checks.items()
            if check.controller == MULTIKUEUE_CONTROLLER
        },
        flavors={},
        queue_flavors={},
        controller=MULTIKUEUE_CONTROLLER,
        remote=True,
    )


def choose(
    built: snapshot.Built,
    entries: Mapping[str, cache_.CachedKueueWorkload],
    cluster_of: Mapping[str, str],
    avoid: Mapping[str, frozenset[str]],
    now: datetime.datetime,
) -> list[Action]:
    """Plan the Workloads of ``entries`` (by workload key) over the remote snapshot ``built``.

    ``cluster_of``: each remote pool's cluster; ``avoid``: per workload key, the clusters not to
    nominate now (tried, or the one being replaced). Each Workload may only go to pools of
    clusters that are eligible for it (``ineligible``) and not avoided.
    """
    snap = built.snapshot
    pools_of: dict[str, list[model.Pool]] = {}
    for pool in snap.pools:
        pools_of.setdefault(cluster_of[pool.name], []).append(pool)
    narrowed, actions = [], []
    for planned in snap.workloads:
        entry = entries[planned.key]
        refused = {
            cluster: why
            for cluster, pools in sorted(pools_of.items())
            if (why := ineligible(planned, pools, snap.policies, now)) is not None
        }
        eligible = [c for c in sorted(pools_of) if c not in refused]
        open_ = [c for c in eligible if c not in avoid.get(planned.key, frozenset())]
        if not open_:
            actions.append(Action(entry, _no_cluster(planned, refused, eligible)))
            continue
        inside = frozenset(p.name for c in open_ for p in pools_of[c])
        fits = inside if planned.fits_pools is None else planned.fits_pools & inside
        narrowed.append(dataclasses.replace(planned, fits_pools=fits))
    plan = planner.plan(dataclasses.replace(snap, workloads=tuple(narrowed)), now)
    for decision in plan.decisions:
        cluster = cluster_of.get(decision.pool or "")
        actions.append(Action(entries[decision.workload], decision, cluster, decision.pool))
    return actions


def _no_cluster(
    workload: model.Workload, refused: Mapping[str, model.Rejection], eligible: list[str]
) -> model.Decision:
    if eligible:  # every eligible cluster was tried, or is the one being replaced
        message = (
            f"{workload.key} held: no other worker cluster may take it: "
            f"{', '.join(eligible)} already nominated"
        )
        reason = model.Reason.NO_POOL_WITH_ROOM
    else:
        why = "; ".join(f"cluster {c}: {r.message}" for c, r in refused.items())
        message = (
            f"{workload.key} held: no worker cluster may take it ({why or 'no remote pool'}); "
            "a cluster is nominated only when every pool of it its pods could run in complies"
        )
        reason = model.Reason.NO_COMPLIANT_POOL
    return model.Decision(
        workload=workload.key,
        outcome=model.Outcome.HELD,
        reason=reason,
        message=message,
        rejected_by_reason=tuple(
            sorted(collections_count(r.reason for r in refused.values()).items())
        ),
    )


def collections_count(reasons: Iterable[model.Reason]) -> dict[model.Reason, int]:
    counted: dict[model.Reason, int] = {}
    for reason in reasons:
        counted[reason] = counted.get(reason, 0) + 1
    return counted


def nomination_apply(body: Mapping[str, Any], clusters: list[str]) -> dict[str, Any]:
    """The server-side apply body (field manager ``kueue-admission``) that sets the
    Workload ``body``'s nominations to ``clusters``: what Kueue's ``PrepareWorkloadPatch``
    applies, from ``body`` as read, with its resourceVersion (module docstring)."""
    meta, current = body.get("metadata") or {}, body.get("status") or {}
    applied: dict[str, Any] = {}
    admission = current.get("admission")
    if admission is not None:
        applied["admission"] = admission
        applied["resourceRequests"] = []
    elif current.get("resourceRequests"):
        applied["resourceRequests"] = current["resourceRequests"]
    requeue = current.get("requeueState") or {}
    if requeue.get("count") is not None or requeue.get("requeueAt") is not None:
        applied["requeueState"] = requeue
    applied["conditions"] = [
        c for c in current.get("conditions") or [] if c.get("type") in _ADMISSION_CONDITIONS
    ]
    for field in ("accumulatedPastExecutionTimeSeconds", "clusterName", "unhealthyNodes"):
        if current.get(field) is not None:
            applied[field] = current[field]
    evictions = (current.get("schedulingStats") or {}).get("evictions")
    if evictions:
        applied["schedulingStats"] = {"evictions": evictions}
    if current.get("preemptionGates"):
        applied["preemptionGates"] = current["preemptionGates"]
    applied["admissionChecks"] = list(current.get("admissionChecks") or [])
    applied["nominatedClusterNames"] = list(clusters)
    return {
        "apiVersion": kueue.API_VERSION,
        "kind": "Workload",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "status": applied,
    }


def dispatch_record(
    previous: Mapping[str, Any] | None,
    *,
    decision: model.Decision,
    pool: model.Pool,
    cluster: str,
    charged: list[str],
    spend: budgets.Spend,
    at: datetime.datetime,
) -> dict[str, Any]:
    """The (unsigned) dispatch record after nominating ``cluster``: the first nomination's
    charge is kept as it was (``at``, ``budgets``, ``charge``), the nomination replaced."""
    nominated = {
        "nominated": cluster,
        "nominatedPool": pool.name,
        "nominatedAt": timestamps.rfc3339(at, microseconds=True),
    }
    if previous:
        kept = {k: v for k, v in previous.items() if k != records.SIGNATURE}
        return {**kept, **nominated, "message": decision.message}
    return {**cycle.placement_record(decision, pool, at, charged, spend), **nominated}


# ---------------------------------------------------------------- writes


class DispatchWriter(Protocol):
    """The writes of the dispatcher (``KubeDispatchWriter``; a fake in the unit tests)."""

    async def get_workload(self, namespace: str, name: str) -> Mapping[str, Any]: ...

    async def apply_status(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Mapping[str, Any]: ...

    async def annotate(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> Mapping[str, Any]: ...


class KubeDispatchWriter:
    """``DispatchWriter`` over the official client (blocking calls in threads)."""

    def __init__(self, api: client.ApiClient) -> None:
        self._custom = client.CustomObjectsApi(api)

    async def get_workload(self, namespace: str, name: str) -> Mapping[str, Any]:
        return await self._call(namespace, name, self._custom.get_namespaced_custom_object, {})

    async def apply_status(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        options = {"field_manager": FIELD_MANAGER, "force": True,
                   "_content_type": "application/apply-patch+yaml"}  # fmt: skip
        return await self._call(
            namespace, name, self._custom.patch_namespaced_custom_object_status, options,
            dict(body),
        )  # fmt: skip

    async def annotate(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> Mapping[str, Any]:
        patch = {"metadata": {"annotations": dict(annotations)}}
        options = {"field_manager": ANNOTATION_MANAGER,
                   "_content_type": "application/merge-patch+json"}  # fmt: skip
        return await self._call(
            namespace, name, self._custom.patch_namespaced_custom_object, options, patch
        )

    async def _call(
        self,
        namespace: str,
        name: str,
        method: Any,
        options: Mapping[str, Any],
        *body: Any,
    ) -> Mapping[str, Any]:
        """One call on the Workload ``namespace/name``; 404 and 409 are conflicts."""

        def call() -> Mapping[str, Any]:
            try:
                found: Mapping[str, Any] = method(
                    kueue.GROUP, kueue.VERSION, namespace, "workloads", name, *body,
                    _request_timeout=kube.REQUEST_TIMEOUT, **options,
                )  # fmt: skip
            except client.ApiException as error:
                raise _conflict(error, namespace, name) from error
            return found

        return await asyncio.to_thread(call)


def _conflict(error: client.ApiException, namespace: str, name: str) -> Exception:
    if error.status in (404, 409):
        return kube.WriteConflictError(f"Workload {namespace}/{name}: {error.reason}")
    same: Exception = error
    return same


# ---------------------------------------------------------------- the dispatcher


@dataclasses.dataclass(frozen=True)
class Settings:
    worker_ttl_seconds: float = 60.0
    nomination_timeout: datetime.timedelta = datetime.timedelta(minutes=5)


class Dispatcher:
    """Runs one dispatch round per placement cycle (``run``), after the local phases."""

    def __init__(
        self,
        views: workers.Workers,
        writer: DispatchWriter | None,
        settings: Settings | None = None,
        metrics: Any = None,  # metrics.PlacementMetrics (its dispatch collectors)
    ) -> None:
        self.workers = views
        self.writer = writer
        self.settings = settings or Settings()
        self.metrics = metrics
        self.state = DispatchState()

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
    ) -> list[Action]:
        """Nominate, re-nominate or hold every Workload waiting for a worker; write the
        remote pools' status. Nothing is done before the workers were read once."""
        views, ttl = self.workers.views, self.settings.worker_ttl_seconds
        await self._record_pools(cache, events, recorder, now)
        self._observe(cache, now)
        if not self.workers.polled or self.writer is None:
            return []
        checks = multikueue_checks(gathered.admission_checks)
        to_plan, reserved, avoid = [], [], {}
        for entry in gathered.kueue_workloads:
            if entry.untrusted_dispatch:
                await self._say(entry, events, "Warning", "UntrustedRecord", _UNTRUSTED)
            current = nomination(entry)
            if not waiting(entry, checks):
                if current is not None and self._arriving(entry, current, now):
                    reserved.append((entry, current.pool))
                continue
            uid = entry.workload.uid
            if current is None:
                to_plan.append(entry)
                avoid[entry.workload.key] = frozenset(self.state.tried.get(uid, ()))
                continue
            self.state.tried.setdefault(uid, set()).add(current.cluster)
            view = views.get(current.cluster)
            lost = view is None or not view.usable(now, ttl)
            late = now - current.at >= self.settings.nomination_timeout
            reserved.append((entry, current.pool))
            if lost or late:  # try the next best; without one the nomination stays
                to_plan.append(entry)
                avoid[entry.workload.key] = frozenset(self.state.tried[uid])
        if not to_plan:
            return []
        remote = remote_gathered(
            gathered, cache, views=views, to_plan=to_plan, reserved=reserved, now=now, ttl=ttl
        )
        built = snapshot.build(remote, now, ledger, deferral_step)
        entries = {e.workload.key: e for e in to_plan}
        cluster_of = {p.name: p.spec.cluster or "" for p in remote.pools}
        actions = choose(built, entries, cluster_of, avoid, now)
        pools = {p.name: p for p in built.snapshot.pools}
        budget_of = {
            p.key: f"{p.namespace}/{p.budget}" for p in built.snapshot.policies if p.budget
        }
        for action in actions:
            if action.cluster is not None and action.pool is not None:
                await self._nominate(
                    action, pools[action.pool], budget_of=budget_of, cache=cache,
                    events=events, ledger=ledger, now=now,
                )  # fmt: skip
            else:
                kind = "Normal" if action.decision.outcome is model.Outcome.DEFERRED else "Warning"
                decision = action.decision
                await self._say(action.entry, events, kind, decision.reason.value, decision.message)
        return actions

    def _arriving(
        self, entry: cache_.CachedKueueWorkload, current: Nomination, now: datetime.datetime
    ) -> bool:
        """Whether an admitted Workload's GPUs are still to be counted as reserved: its worker
        was not read since shortly after the admission."""
        if entry.cluster_name is None:
            return True
        view = self.workers.views.get(current.cluster)
        ready = [
            timestamps.parse_rfc3339(s.get("lastTransitionTime"))
            for s in entry.workload.checks.values()
            if s.get("state") == "Ready"
        ]
        since = max((t for t in ready if t is not None), default=current.at)
        return view is None or view.observed_at is None or view.observed_at < since + ADMITTED_GRACE

    async def _nominate(
        self,
        action: Action,
        pool: model.Pool,
        *,
        budget_of: Mapping[str, str],
        cache: cache_.Cache,
        events: kube.Writer,
        ledger: budgets.Ledger,
        now: datetime.datetime,
    ) -> None:
        entry, decision, cluster = action.entry, action.decision, action.cluster or ""
        workload = entry.workload
        previous = entry.dispatch_record
        charged: list[str] = []
        spend = budgets.Spend()
        if previous is None:
            charged = sorted({budget_of[p] for p in decision.policies if p in budget_of})
            for member in entry.members:
                spend = spend + budgets.charge(member, pool, pool.effective_gco2_per_kwh)
        record = dispatch_record(
            previous, decision=decision, pool=pool, cluster=cluster, charged=charged,
            spend=spend, at=now,
        )  # fmt: skip
        if cache.signer is None or self.writer is None:
            return
        signed = cache.signer.sign(workload.uid, record)
        text = json.dumps(signed, separators=(",", ":"))
        try:
            await self.writer.annotate(
                workload.namespace, workload.name, {cache_.DISPATCH_ANNOTATION: text}
            )
            if previous is None:
                ledger.charge(charged, spend, now, pool.name)
            fresh = await self.writer.get_workload(workload.namespace, workload.name)
            if (fresh.get("status") or {}).get("clusterName"):
                return  # admitted meanwhile: nominations are Kueue's now
            stored = await self.writer.apply_status(
                workload.namespace, workload.name, nomination_apply(fresh, [cluster])
            )
            if stored.get("spec"):
                cache.put("Workload", stored)
        except kube.WriteConflictError as conflict:
            logger.info("nominating later: %s", conflict)
            return
        except client.ApiException as error:
            logger.warning("workload %s: could not nominate %s: %s", workload.key, cluster, error)
            return
        self.state.tried.setdefault(workload.uid, set()).add(cluster)
        if self.metrics is not None:
            self.metrics.nominations.labels(cluster).inc()
        message = f"nominated worker cluster {cluster} (pool {pool.name}): {decision.message}"
        await self._say(entry, events, "Normal", "Dispatched", message)

    async def _say(
        self,
        entry: cache_.CachedKueueWorkload,
        events: kube.Writer,
        kind: str,
        reason: str,
        message: str,
    ) -> None:
        """An Event on the Workload and its Job, once per Workload, reason and message."""
        key = (entry.workload.uid, reason, message)
        if key in self.state.warned:
            return
        self.state.warned.add(key)
        for involved in kueue.involved(entry.workload):
            try:
                await events.pod_event(involved, kind, reason, message)
            except client.ApiException as error:
                logger.warning("workload %s: no Event: %s", entry.workload.key, error.reason)

    def _observe(self, cache: cache_.Cache, now: datetime.datetime) -> None:
        """Staleness gauges; admissions of our nominations, counted once each."""
        if self.metrics is None:
            return
        for name, age in self.workers.staleness(now).items():
            self.metrics.worker_staleness.labels(name).set(age)
        for entry in cache.kueue_workloads.values():
            current = nomination(entry)
            uid = entry.workload.uid
            if current is not None and entry.cluster_name and uid not in self.state.admitted:
                self.state.admitted.add(uid)
                self.metrics.admissions.labels(entry.cluster_name).inc()

    async def _warn_once(
        self, involved: Mapping[str, Any], reason: str, message: str, events: kube.Writer
    ) -> None:
        """A Warning Event on ``involved`` (``cluster_scoped``), once per object and reason."""
        meta = involved["metadata"]
        key = (f"{involved['kind']}/{meta['name']}", reason, "")
        if key in self.state.warned or not meta["uid"]:
            return
        self.state.warned.add(key)
        try:
            await events.pod_event(dict(involved), "Warning", reason, message)
        except client.ApiException as error:
            logger.warning("%s: no Event: %s", key[0], error.reason)

    async def _record_pools(
        self,
        cache: cache_.Cache,
        events: kube.Writer,
        recorder: status.StatusRecorder | None,
        now: datetime.datetime,
    ) -> None:
        """Each remote pool's status: nodes and GPUs of its worker, and the ``Worker``
        condition (why it is not used, or how fresh its reading is)."""
        if recorder is None:
            return
        _, remote = workers.split_pools(cache.pools.values())
        ttl = self.settings.worker_ttl_seconds
        for cluster, pools in remote.items():
            view = self.workers.views.get(cluster)
            for pool in pools:
                ok, reason, message = workers.pool_condition(
                    pool, view, cache.multikueue_clusters, now, ttl
                )
                nodes = [
                    n
                    for n in (view.nodes if view and ok else ())
                    if all(n.labels.get(k) == v for k, v in pool.spec.node_selector.items())
                ]
                names = {n.name for n in nodes}
                total = sum(n.gpus for n in nodes)
                used = sum(p.gpus for p in (view.pods if view else ()) if p.node_name in names)
                await recorder.write(
                    "gpupools",
                    None,
                    pool.name,
                    models_status(pool, len(nodes), total, max(0, total - used)),
                    conditions=[
                        ("Ready", ok, "NodesFound" if ok else reason, message),
                        ("Worker", ok, reason, message),
                    ],
                )
                if not ok:
                    group = f"{models.GROUP}/{models.VERSION}"
                    involved = cluster_scoped(group, "GpuPool", pool.name, pool.uid)
                    await self._warn_once(involved, reason, message, events)
        for name, known in cache.multikueue_clusters.items():
            if name not in remote:
                await self._warn_once(
                    cluster_scoped(kueue.API_VERSION, "MultiKueueCluster", name, known.uid),
                    "NoFacts", f"no GpuPool names {name} in spec.cluster: greenplace knows "
                    "nothing of this worker (location, jurisdiction, certifications) and never "
                    "nominates it; fix: declare its pools as GpuPools with spec.cluster: "
                    f"{name}", events,
                )  # fmt: skip


def cluster_scoped(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """An Event's involved object for a cluster-scoped object: its Events live in "default",
    as the kubelet's do."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", "uid": uid},
    }


def models_status(pool: cache_.CachedPool, nodes: int, total: int, free: int) -> Any:
    return models.GpuPoolStatus(
        observed_generation=pool.generation, nodes=nodes, gpus_total=total, gpus_free=free
    )


_UNTRUSTED = (
    f"annotation {cache_.DISPATCH_ANNOTATION} was not written by greenplace (its signature does "
    "not match this Workload): it is ignored for nominations and budgets. Only the operator "
    "writes it; remove it."
)
