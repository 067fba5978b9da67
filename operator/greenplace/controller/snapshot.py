"""Build the planner's snapshot from the cache: pools with free GPUs, policies, pending pods.

Why this module exists: the planner sees values, not watches. This is where observed state
becomes those values, with one rule for capacity that holds across rounds: a pool's free GPUs
are its nodes' allocatable GPUs minus the requests of every live pod bound to them, minus the
pods greenplace has released to the pool that the scheduler has not bound yet.

Only pods greenplace released itself count as released: their placement record carries its
signature (``records``); a record anyone else wrote is ignored and reported. A released pod that
stays unbound for ``RELEASE_RESERVATION`` (it can never run there, or the scheduler is slow)
stops holding its GPUs, so a pod that cannot schedule never holds a pool's capacity forever.

Gangs: gated pods that share the label ``greenplace.dev/gang`` or the same controlling Job are
one workload, placed in one pool or not at all. A gang that declares its size (annotation
``greenplace.dev/gang-size``) is not planned until that many of its pods are waiting. A gang is
governed by every policy that selects one of its members and by the strictest residency of
its members (``model.Workload``): no member loses its rules by joining a gang.

Each workload may only go to pools with a node its pods' own constraints admit (node selector,
required node affinity, the accelerators each pod asks for): ``Workload.fits_pools``.

Values tenants write on pods are bounded (expected duration, gang size); a value out of bounds
is replaced by its documented fallback and reported (``Built.warnings``), never fatal.

The data-residency label (``model.DATA_RESIDENCY_LABEL``) is checked by the rule of
``domain.countries.residency_problem`` (country codes or regimes joined by ``_``). A value it
refuses is reported (``InvalidLabel``) and kept, never dropped: dropping it would let the pod run
anywhere. Its unknown codes match no pool, so the pod runs only where the codes it names
correctly allow (``FR_Germany``: France), and waits (``NoCompliantPool``, every pool
``ResidencyNotMet``) when it names none (``fr``, ``France``). A bad residency value can only
narrow where a pod may run.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

from greenplace.api import convert, timestamps
from greenplace.controller import budgets as budgets_
from greenplace.controller import cache as cache_
from greenplace.controller import credentials as credentials_
from greenplace.controller import feeds, kueue, podspec, resources
from greenplace.domain import countries, model
from greenplace.signals import contract, planning

__all__ = [
    "GANG_LABEL",
    "GANG_SIZE_ANNOTATION",
    "MAX_GANG_SIZE",
    "RELEASE_RESERVATION",
    "Built",
    "Decided",
    "Gathered",
    "Warning",
    "build",
    "gather",
]

GANG_LABEL = "greenplace.dev/gang"
GANG_SIZE_ANNOTATION = "greenplace.dev/gang-size"
MAX_GANG_SIZE = 10_000
# How long GPUs released to a pool stay reserved for a pod the scheduler has not bound yet.
RELEASE_RESERVATION = datetime.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class Gathered:
    """A consistent copy of the cache, taken at the start of a cycle."""

    pools: tuple[cache_.CachedPool, ...]
    policies: tuple[cache_.CachedPolicy, ...]
    nodes: tuple[cache_.CachedNode, ...]
    pods: tuple[cache_.CachedPod, ...]
    signal_sources: tuple[cache_.CachedSignalSource, ...] = ()
    billing_exports: tuple[cache_.CachedBillingExport, ...] = ()
    budgets: tuple[cache_.CachedBudget, ...] = ()
    observed: feeds.Observed = dataclasses.field(default_factory=feeds.Observed.empty)
    budget_status: Mapping[tuple[str, str], Mapping[str, Any]] = dataclasses.field(
        default_factory=dict
    )
    # Kueue (``controller.kueue``), empty unless the operator answers its AdmissionChecks.
    kueue_workloads: tuple[cache_.CachedKueueWorkload, ...] = ()
    admission_checks: Mapping[str, kueue.AdmissionCheck] = dataclasses.field(default_factory=dict)
    flavors: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    queue_flavors: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    # Whose checks the Kueue Workloads are planned for: greenplace's own AdmissionCheck; or,
    # in a remote snapshot (``dispatch``), MultiKueue's, over worker pools that lie in no
    # flavor of this cluster (``remote``: Kueue's flavors do not narrow them).
    controller: str = kueue.CONTROLLER_NAME
    remote: bool = False
    # Each pool's certification credentials as verified this cycle (``controller.credentials``);
    # a certification whose credential is absent here does not count.
    credentials: credentials_.Checked = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def flavor_pools(self) -> kueue.Flavors:
        """The pools inside each Kueue ResourceFlavor, worked out once per cycle."""
        return kueue.Flavors.of(self.flavors, {p.name: p.spec.node_selector for p in self.pools})

    @property
    def our_checks(self) -> frozenset[str]:
        """The AdmissionChecks greenplace answers (controllerName greenplace.dev/placement),
        less those it cannot honour (``kueue.check_problem``: marked Active=False instead)."""
        return frozenset(
            name
            for name, check in self.admission_checks.items()
            if check.controller == self.controller and (check.problem is None or self.remote)
        )


def gather(
    cache: cache_.Cache,
    observed: feeds.Observed | None = None,
    checked: credentials_.Checked | None = None,
) -> Gathered:
    return Gathered(
        credentials=checked or {},
        budget_status=dict(cache.budget_status),
        # Remote pools (``spec.cluster``) hold a worker's nodes: never this cluster's pods.
        pools=tuple(p for p in cache.pools.values() if p.spec.cluster is None),
        policies=tuple(cache.policies.values()),
        nodes=tuple(cache.nodes.values()),
        pods=tuple(cache.pods.values()),
        signal_sources=tuple(cache.signal_sources.values()),
        billing_exports=tuple(cache.billing_exports.values()),
        budgets=tuple(cache.budgets.values()),
        observed=observed or feeds.Observed.empty(),
        kueue_workloads=tuple(cache.kueue_workloads.values()),
        admission_checks=dict(cache.admission_checks),
        flavors=dict(cache.flavors),
        queue_flavors=dict(cache.queue_flavors),
    )


def pool_nodes(pool: cache_.CachedPool, nodes: tuple[cache_.CachedNode, ...]) -> list[str]:
    selector = pool.spec.node_selector
    return [n.name for n in nodes if n.schedulable and model.labels_match(n.labels, selector)]


@dataclasses.dataclass(frozen=True)
class Warning:
    """Something a tenant wrote on a pod that greenplace ignored or replaced (an Event)."""

    pod: cache_.CachedPod
    reason: str  # stable: InvalidAnnotation, InvalidLabel, UntrustedRecord, ReleasedUnbound
    message: str
    # Set when ``pod`` is a Kueue pod set's template: the Event goes on the Workload and Job.
    workload: cache_.CachedKueueWorkload | None = None


@dataclasses.dataclass(frozen=True)
class Built:
    """The snapshot, and the pods behind each of its workloads (a gang has several)."""

    snapshot: model.Snapshot
    members: dict[str, tuple[cache_.CachedPod, ...]]
    incomplete: dict[str, tuple[cache_.CachedPod, ...]]  # gangs still waiting for members
    carbon_sources: dict[str, str | None] = dataclasses.field(default_factory=dict)  # per pool
    spent: dict[tuple[str, str], budgets_.Spend] = dataclasses.field(default_factory=dict)
    warnings: tuple[Warning, ...] = ()
    # Kueue Workloads waiting for one of our checks, by workload key (planned like gangs;
    # the cycle answers their check instead of patching pods).
    kueue: dict[str, cache_.CachedKueueWorkload] = dataclasses.field(default_factory=dict)
    # Per Kueue workload key: the pools its pods' own constraints admit (None: every pool),
    # before the flavor narrows them (the cycle asks what another flavor would do).
    kueue_fits: dict[str, frozenset[str] | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Decided:
    """One cycle once its writes are done: what it saw, built and decided, and the cache as its
    writes left it. What the records of a cycle (the ledger, the PolicyReports) are made of."""

    gathered: Gathered
    built: Built
    plan: model.Plan
    cache: cache_.Cache
    at: datetime.datetime


FALLBACK_SOURCE = "spec.carbonIntensity.fallbackGramsPerKwh"


def build(
    gathered: Gathered,
    now: datetime.datetime | None = None,
    ledger: budgets_.Ledger | None = None,
    deferral_step: datetime.timedelta = model.DEFAULT_DEFERRAL_STEP,
) -> Built:
    """The snapshot at ``now`` (budget periods; default: the current instant), whose deferrals
    weigh later starts ``deferral_step`` apart.

    ``ledger`` holds what each Budget was charged (the placement loop keeps one); without it,
    spending is read from the Budgets' status and signed records, as after a restart.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    node_gpus = {n.name: n.gpus for n in gathered.nodes}
    used_on_node: collections.Counter[str] = collections.Counter()
    released_to_pool: collections.Counter[str] = collections.Counter()
    warnings: list[Warning] = []
    for pod in gathered.pods:
        if pod.untrusted_record and not pod.terminal:
            warnings.append(Warning(pod, "UntrustedRecord", _UNTRUSTED))
        if pod.terminal:
            continue
        if pod.node_name:
            used_on_node[pod.node_name] += pod.gpus
        elif not pod.gated and pod.placed_pool:
            at = timestamps.parse_rfc3339((pod.record or {}).get("at"))
            if at is not None and now - at < RELEASE_RESERVATION:
                released_to_pool[pod.placed_pool] += pod.gpus
            else:
                warnings.append(Warning(pod, "ReleasedUnbound", _unbound(pod)))
    released_to_pool.update(_kueue_reserved(gathered, now))

    pools = []
    carbon_sources: dict[str, str | None] = {}
    for pool in sorted(gathered.pools, key=lambda p: p.name):
        in_pool = pool_nodes(pool, gathered.nodes)
        total = sum(node_gpus[n] for n in in_pool)
        used = sum(used_on_node[n] for n in in_pool) + released_to_pool[pool.name]
        domain_pool, carbon_sources[pool.name] = _with_signals(
            convert.pool_to_domain(
                pool.name,
                pool.spec,
                gpus_total=total,
                gpus_free=max(0, total - used),
                gpus_per_node=max((node_gpus[n] for n in in_pool), default=0),
                checked=gathered.credentials.get(pool.name),
            ),
            gathered.observed,
        )
        pools.append(domain_pool)
    carriers = tuple(w.carrier for w in gathered.kueue_workloads if w.carrier is not None)
    spent = (ledger or budgets_.Ledger()).spent(
        gathered.budgets, gathered.budget_status, (*gathered.pods, *carriers), now
    )
    policies = tuple(
        convert.policy_to_domain(p.namespace, p.name, p.spec)
        for p in sorted(gathered.policies, key=lambda p: (p.namespace, p.name))
    )
    members, incomplete = _group(p for p in gathered.pods if p.gated and not p.terminal)
    fitting = _Fitting(gathered)
    workloads = tuple(_workload(key, pods, fitting) for key, pods in members.items())
    waiting = _kueue_waiting(gathered)
    workloads += tuple(_kueue_workload(entry, fitting, gathered) for entry in waiting.values())
    for entry in waiting.values():
        # One member per pod set (``uid/pod set/index``): its pods share one template.
        for head in {m.uid.rsplit("/", 1)[0]: m for m in entry.members}.values():
            unread = convert.timing(head.annotations).problems
            warnings.extend(Warning(head, "InvalidAnnotation", p, entry) for p in unread)
    for pods in (*members.values(), *incomplete.values()):
        for pod in pods:
            problems = [*convert.timing(pod.annotations).problems, _gang_size_problem(pod)]
            warnings.extend(Warning(pod, "InvalidAnnotation", p) for p in problems if p)
            residency = _residency_problem(pod)
            if residency is not None:
                warnings.append(Warning(pod, "InvalidLabel", residency))
    return Built(
        snapshot=model.Snapshot(
            pools=tuple(pools),
            policies=policies,
            workloads=workloads,
            budgets=budgets_.domain_budgets(gathered.budgets, spent, now),
            forecasts=dict(gathered.observed.forecasts),
            deferral_step=deferral_step,
        ),
        members=members,
        incomplete=incomplete,
        carbon_sources=carbon_sources,
        spent=spent,
        warnings=tuple(warnings),
        kueue=waiting,
        kueue_fits={key: fitting.of(entry.members) for key, entry in waiting.items()},
    )


_UNTRUSTED = (
    f"annotation {podspec.PLACEMENT_ANNOTATION} was not written by greenplace (its signature "
    "does not match this pod): it is ignored for capacity and budgets. Only the operator "
    "writes it; remove it."
)


def _unbound(pod: cache_.CachedPod) -> str:
    return (
        f"released to pool {pod.placed_pool} more than {RELEASE_RESERVATION} ago and still not "
        "bound: its GPUs are no longer reserved for it. It may never fit a node of that pool "
        "(see kubectl describe pod); delete and recreate it to be placed again."
    )


class _Fitting:
    """Which pools have a node a pod's own constraints admit, computed once per distinct set
    of constraints (pods of one Job share theirs)."""

    def __init__(self, gathered: Gathered) -> None:
        self._nodes = [n for n in gathered.nodes if n.schedulable]
        self._pools_of = {
            n.name: [
                p.name for p in gathered.pools if model.labels_match(n.labels, p.spec.node_selector)
            ]
            for n in self._nodes
        }
        self._all = frozenset(p.name for p in gathered.pools)
        # A pool without nodes is left to the planner, which says it has no room.
        self._empty = self._all - {pool for pools in self._pools_of.values() for pool in pools}
        self._known: dict[str, frozenset[str]] = {}

    def pools(self, pod: cache_.CachedPod) -> frozenset[str]:
        spec = pod.body.get("spec") or {}
        key = json.dumps(
            [spec.get("nodeSelector"), spec.get("affinity"), sorted(pod.request.items())],
            sort_keys=True,
            default=str,
        )
        found = self._known.get(key)
        if found is None:
            found = self._known[key] = frozenset(
                pool
                for node in self._nodes
                if podspec.node_matches(pod.body, node.name, node.labels)
                and resources.offers_each(node.offered, pod.request)
                for pool in self._pools_of[node.name]
            )
        return found

    def of(self, pods: tuple[cache_.CachedPod, ...]) -> frozenset[str] | None:
        """Pools admitting every pod; None when that is every pool (no restriction)."""
        fits = self._all
        for pod in pods:
            fits = fits & (self.pools(pod) | self._empty)
        return None if fits == self._all else fits


def _gang_size_problem(pod: cache_.CachedPod) -> str | None:
    raw = pod.annotations.get(GANG_SIZE_ANNOTATION)
    if raw is None or _declared(raw) is not None:
        return None
    return (
        f"{GANG_SIZE_ANNOTATION}={str(raw)[:40]!r} is not a whole number from 1 to "
        f"{MAX_GANG_SIZE}: the gang is placed with the pods that exist"
    )


def _residency_problem(pod: cache_.CachedPod) -> str | None:
    value = pod.labels.get(model.DATA_RESIDENCY_LABEL)
    problem = None if value is None else countries.residency_problem(value)
    if problem is None:
        return None
    return (
        f"{problem}. Kept, never dropped: codes that are neither match no pool, so the pod runs "
        "only where its valid codes allow, and waits (every pool ResidencyNotMet) if it names none"
    )


def _declared(raw: object) -> int | None:
    try:
        size = int(str(raw)[:40])
    except ValueError:
        return None
    return size if 1 <= size <= MAX_GANG_SIZE else None


def _with_signals(pool: model.Pool, observed: feeds.Observed) -> tuple[model.Pool, str | None]:
    """The pool with the signals' intensity and price; without a signal value its spec's
    fallback intensity stays. Only intensity and price can change (``signals.planning``)."""
    zone = pool.location.grid_zone
    reading = observed.carbon.get(zone)
    carbon = (
        None
        if reading is None
        else planning.carbon_for_planner(reading, planning.MissingCarbon.HOLD)
    )
    if carbon is None or carbon.gco2_per_kwh is None:
        kept = contract.SignalStatus(contract.SignalReason.FALLBACK, FALLBACK_SOURCE)
        carbon = planning.PlannerCarbon(pool.gco2_per_kwh, kept, True, None)
        source = FALLBACK_SOURCE if pool.gco2_per_kwh is not None else None
    else:
        source = f"SignalSource {observed.owner[reading.key]}/{carbon.source}" if reading else None
    (updated,) = planning.apply_to_pools([pool], {zone: carbon}, observed.prices)
    return updated, source


def _gang(pod: cache_.CachedPod) -> str | None:
    """The gang a pod belongs to: its gang label, else its controlling Job; None if alone."""
    if GANG_LABEL in pod.labels:
        return f"{pod.namespace}/{pod.labels[GANG_LABEL]}"
    for owner in pod.body.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("controller") and owner.get("kind") == "Job":
            return f"{pod.namespace}/{owner.get('name')}"
    return None


def _declared_size(pods: tuple[cache_.CachedPod, ...]) -> int:
    for pod in pods:
        raw = pod.annotations.get(GANG_SIZE_ANNOTATION)
        if raw is not None:
            return _declared(raw) or 0  # unreadable: "whatever is there" (a Warning says so)
    return 0


def _group(
    pods: Iterable[cache_.CachedPod],
) -> tuple[dict[str, tuple[cache_.CachedPod, ...]], dict[str, tuple[cache_.CachedPod, ...]]]:
    groups: dict[str, list[cache_.CachedPod]] = collections.defaultdict(list)
    for pod in pods:
        groups[_gang(pod) or pod.key].append(pod)
    ready: dict[str, tuple[cache_.CachedPod, ...]] = {}
    waiting: dict[str, tuple[cache_.CachedPod, ...]] = {}
    for key, group in groups.items():
        members = tuple(sorted(group, key=lambda p: p.name))
        (ready if len(members) >= _declared_size(members) else waiting)[key] = members
    return ready, waiting


def _kueue_waiting(gathered: Gathered) -> dict[str, cache_.CachedKueueWorkload]:
    ours = gathered.our_checks
    return {
        entry.workload.key: entry
        for entry in sorted(gathered.kueue_workloads, key=lambda e: e.workload.key)
        if entry.members and entry.workload.pending(ours)
    }


def _kueue_reserved(gathered: Gathered, now: datetime.datetime) -> collections.Counter[str]:
    """GPUs of Kueue Workloads our check made Ready whose pods are not all bound yet, by pool:
    held like released pods (``RELEASE_RESERVATION``), so the next Workload is not placed
    into the same free GPUs. A pod arrived once it is bound or done; pods of a Workload carry
    its signed record, which is how they are told apart. An ended Workload (deleted or
    Finished) holds nothing."""
    ours = gathered.our_checks
    arrived: collections.Counter[tuple[str, str]] = collections.Counter()
    for pod in gathered.pods:
        text = pod.annotations.get(kueue.RECORD_ANNOTATION)
        if isinstance(text, str) and (pod.node_name or pod.terminal):
            arrived[pod.namespace, text] += pod.gpus
    reserved: collections.Counter[str] = collections.Counter()
    for entry in gathered.kueue_workloads:
        record, workload = entry.carrier.record if entry.carrier else None, entry.workload
        ready = [workload.checks[c] for c in sorted(ours) if c in workload.checks]
        if record is None or workload.ended or not ready or ready[0].get("state") != "Ready":
            continue
        at = timestamps.parse_rfc3339(record.get("at"))
        pool = record.get("pool")
        if at is None or now - at >= RELEASE_RESERVATION or not isinstance(pool, str):
            continue
        texts = {
            (update.get("annotations") or {}).get(kueue.RECORD_ANNOTATION)
            for update in ready[0].get("podSetUpdates") or []
        }
        came = sum(arrived[workload.namespace, t] for t in texts if isinstance(t, str))
        reserved[pool] += max(0, sum(m.gpus for m in entry.members) - came)
    return reserved


def _kueue_workload(
    entry: cache_.CachedKueueWorkload, fitting: _Fitting, gathered: Gathered
) -> model.Workload:
    """A Kueue Workload as one gang, placed only in pools inside the flavors Kueue assigned."""
    planned = _workload(entry.workload.key, entry.members, fitting)
    if gathered.remote:
        return planned
    inside = gathered.flavor_pools.pools_in(entry.workload.flavors)
    fits = inside if planned.fits_pools is None else planned.fits_pools & inside
    return dataclasses.replace(planned, fits_pools=fits)


def _workload(key: str, pods: tuple[cache_.CachedPod, ...], fitting: _Fitting) -> model.Workload:
    namespace, name = key.split("/", 1)
    shared_labels = dict(pods[0].labels)
    for pod in pods[1:]:
        shared_labels = {k: v for k, v in shared_labels.items() if pod.labels.get(k) == v}
    differ = any(pod.labels != pods[0].labels for pod in pods[1:])
    timing = convert.Timing.of_gang(convert.timing(p.annotations) for p in pods)
    return model.Workload(
        namespace=namespace,
        name=name,
        gpus=sum(p.gpus for p in pods),
        created=min(p.created for p in pods),
        labels=shared_labels,
        pods=tuple(p.name for p in pods),
        gpus_per_pod=tuple(p.gpus for p in pods),
        duration_hours=timing.duration_hours,
        deadline=timing.deadline,
        max_delay=timing.max_delay,
        member_labels=tuple(dict(p.labels) for p in pods) if differ else (),
        fits_pools=fitting.of(pods),
    )
