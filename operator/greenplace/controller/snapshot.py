"""Build the planner's snapshot from the cache: pools with free GPUs, policies, pending pods.

Why this module exists: the planner sees values, not watches. This is where observed state
becomes those values, with one rule for capacity that holds across rounds: a pool's free GPUs
are its nodes' allocatable GPUs minus the requests of every live pod bound to them, minus the
pods greenplace has released to the pool that the scheduler has not bound yet.

Gangs: gated pods that share the label ``greenplace.dev/gang`` or the same controlling Job are
one workload, placed in one pool or not at all. A gang that declares its size (annotation
``greenplace.dev/gang-size``) is not planned until that many of its pods are waiting.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from collections.abc import Iterable

from greenplace.api import convert
from greenplace.controller import budgets as budgets_
from greenplace.controller import cache as cache_
from greenplace.controller import feeds
from greenplace.domain import model
from greenplace.signals import contract, planning

__all__ = ["GANG_LABEL", "GANG_SIZE_ANNOTATION", "Built", "Gathered", "build", "gather"]

GANG_LABEL = "greenplace.dev/gang"
GANG_SIZE_ANNOTATION = "greenplace.dev/gang-size"


@dataclasses.dataclass(frozen=True)
class Gathered:
    """A consistent copy of the cache, taken at the start of a cycle."""

    pools: tuple[cache_.CachedPool, ...]
    policies: tuple[cache_.CachedPolicy, ...]
    nodes: tuple[cache_.CachedNode, ...]
    pods: tuple[cache_.CachedPod, ...]
    signal_sources: tuple[cache_.CachedSignalSource, ...] = ()
    budgets: tuple[cache_.CachedBudget, ...] = ()
    observed: feeds.Observed = dataclasses.field(default_factory=feeds.Observed.empty)


def gather(cache: cache_.Cache, observed: feeds.Observed | None = None) -> Gathered:
    return Gathered(
        pools=tuple(cache.pools.values()),
        policies=tuple(cache.policies.values()),
        nodes=tuple(cache.nodes.values()),
        pods=tuple(cache.pods.values()),
        signal_sources=tuple(cache.signal_sources.values()),
        budgets=tuple(cache.budgets.values()),
        observed=observed or feeds.Observed.empty(),
    )


def pool_nodes(pool: cache_.CachedPool, nodes: tuple[cache_.CachedNode, ...]) -> list[str]:
    selector = pool.spec.node_selector
    return [n.name for n in nodes if n.schedulable and model.labels_match(n.labels, selector)]


@dataclasses.dataclass(frozen=True)
class Built:
    """The snapshot, and the pods behind each of its workloads (a gang has several)."""

    snapshot: model.Snapshot
    members: dict[str, tuple[cache_.CachedPod, ...]]
    incomplete: dict[str, tuple[cache_.CachedPod, ...]]  # gangs still waiting for members
    carbon_sources: dict[str, str | None] = dataclasses.field(default_factory=dict)  # per pool
    spent: dict[tuple[str, str], budgets_.Spend] = dataclasses.field(default_factory=dict)


FALLBACK_SOURCE = "spec.carbonIntensity.fallbackGramsPerKwh"


def build(gathered: Gathered, now: datetime.datetime | None = None) -> Built:
    """The snapshot at ``now`` (budget periods; default: the current instant)."""
    now = now or datetime.datetime.now(datetime.UTC)
    node_gpus = {n.name: n.gpus for n in gathered.nodes}
    used_on_node: collections.Counter[str] = collections.Counter()
    released_to_pool: collections.Counter[str] = collections.Counter()
    for pod in gathered.pods:
        if pod.terminal:
            continue
        if pod.node_name:
            used_on_node[pod.node_name] += pod.gpus
        elif not pod.gated and pod.placed_pool:
            released_to_pool[pod.placed_pool] += pod.gpus

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
            ),
            gathered.observed,
        )
        pools.append(domain_pool)
    spent = budgets_.spending(
        gathered.budgets, gathered.policies, gathered.pods, {p.name: p for p in pools}, now
    )
    policies = tuple(
        convert.policy_to_domain(p.namespace, p.name, p.spec)
        for p in sorted(gathered.policies, key=lambda p: (p.namespace, p.name))
    )
    members, incomplete = _group(p for p in gathered.pods if p.gated and not p.terminal)
    workloads = tuple(_workload(key, pods) for key, pods in members.items())
    return Built(
        snapshot=model.Snapshot(
            pools=tuple(pools),
            policies=policies,
            workloads=workloads,
            budgets=budgets_.domain_budgets(gathered.budgets, spent, now),
            forecasts=dict(gathered.observed.forecasts),
        ),
        members=members,
        incomplete=incomplete,
        carbon_sources=carbon_sources,
        spent=spent,
    )


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
        raw = (pod.body.get("metadata", {}).get("annotations") or {}).get(GANG_SIZE_ANNOTATION)
        if raw is not None:
            try:
                return int(raw)
            except ValueError:
                return 0  # unreadable size: treat as "whatever is there", never crash
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


def _workload(key: str, pods: tuple[cache_.CachedPod, ...]) -> model.Workload:
    namespace, name = key.split("/", 1)
    shared_labels = dict(pods[0].labels)
    for pod in pods[1:]:
        shared_labels = {k: v for k, v in shared_labels.items() if pod.labels.get(k) == v}
    return model.Workload(
        namespace=namespace,
        name=name,
        gpus=sum(p.gpus for p in pods),
        created=min(p.created for p in pods),
        labels=shared_labels,
        pods=tuple(p.name for p in pods),
        gpus_per_pod=tuple(p.gpus for p in pods),
        duration_hours=max(budgets_.expected_hours(p.body) for p in pods),
    )
