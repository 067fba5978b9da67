"""Build the planner's snapshot from the cache: pools with free GPUs, policies, pending pods.

Why this module exists: the planner sees values, not watches. This is where observed state
becomes those values, with one rule for capacity that holds across rounds: a pool's free GPUs
are its nodes' allocatable GPUs minus the requests of every live pod bound to them, minus the
pods greenplace has released to the pool that the scheduler has not bound yet.
"""

from __future__ import annotations

import collections
import dataclasses

from greenplace.api import convert
from greenplace.controller import cache as cache_
from greenplace.domain import model

__all__ = ["Gathered", "build", "gather"]


@dataclasses.dataclass(frozen=True)
class Gathered:
    """A consistent copy of the cache, taken at the start of a cycle."""

    pools: tuple[cache_.CachedPool, ...]
    policies: tuple[cache_.CachedPolicy, ...]
    nodes: tuple[cache_.CachedNode, ...]
    pods: tuple[cache_.CachedPod, ...]


def gather(cache: cache_.Cache) -> Gathered:
    return Gathered(
        pools=tuple(cache.pools.values()),
        policies=tuple(cache.policies.values()),
        nodes=tuple(cache.nodes.values()),
        pods=tuple(cache.pods.values()),
    )


def pool_nodes(pool: cache_.CachedPool, nodes: tuple[cache_.CachedNode, ...]) -> list[str]:
    selector = pool.spec.node_selector
    return [
        n.name
        for n in nodes
        if n.schedulable and all(n.labels.get(k) == v for k, v in selector.items())
    ]


def build(gathered: Gathered) -> model.Snapshot:
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
    for pool in sorted(gathered.pools, key=lambda p: p.name):
        members = pool_nodes(pool, gathered.nodes)
        total = sum(node_gpus[n] for n in members)
        used = sum(used_on_node[n] for n in members) + released_to_pool[pool.name]
        pools.append(
            convert.pool_to_domain(
                pool.name, pool.spec, gpus_total=total, gpus_free=max(0, total - used)
            )
        )
    policies = tuple(
        convert.policy_to_domain(p.namespace, p.name, p.spec)
        for p in sorted(gathered.policies, key=lambda p: (p.namespace, p.name))
    )
    workloads = tuple(
        model.Workload(
            namespace=pod.namespace,
            name=pod.name,
            gpus=pod.gpus,
            created=pod.created,
            labels=dict(pod.labels),
            pods=(pod.name,),
        )
        for pod in gathered.pods
        if pod.gated and not pod.terminal
    )
    return model.Snapshot(pools=tuple(pools), policies=policies, workloads=workloads)
