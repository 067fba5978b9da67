"""What each MultiKueue worker cluster holds, read from the worker itself, with its age.

Why this module exists: greenplace dispatches Kueue Workloads of a manager cluster to worker
clusters (``dispatch``, ``greenplace operate --multikueue``). The facts of a worker (where it
is, whose law reaches it, what it is certified for, its price and grid) are GpuPools on the
manager whose ``spec.cluster`` names a MultiKueueCluster: *remote pools*. Free capacity cannot
be declared: it is read from the worker, with the kubeconfig Secret Kueue itself uses for that
MultiKueueCluster (``spec.clusterSource.kubeConfig``, a Secret in Kueue's namespace, key
``kubeconfig``). Every ``--worker-poll`` seconds greenplace lists the worker's nodes and bound,
non-terminal pods (read-only) and keeps a ``WorkerView`` with the time of that reading.

A view older than ``--worker-ttl`` is **stale**: its pools count no node (0 free GPUs), so the
planner never places into them; staleness never makes a cluster more compliant, it can only
take capacity away. A MultiKueueCluster that does not exist or is not ``Active`` (Kueue's own
condition), a kubeconfig Secret that is missing or unreadable, an unreachable worker, or a pool
whose nodeSelector matches no node of its worker: the pool is unused and its GpuPool status says
why (condition ``Worker``, ``pool_condition``). Nothing here raises into the operator: every
failure becomes a view's ``problem``.

Nodes of different workers may carry the same names and labels, so a remote snapshot names
each worker node ``<cluster>/<node>`` and labels it ``CLUSTER_LABEL=<cluster>``; each remote
pool selects its nodeSelector *and* that label (``remote_pool``), so a pool only ever counts
the nodes of its own worker.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import logging
from collections.abc import Iterable, Mapping

import yaml
from kubernetes import client
from kubernetes import config as kube_config

from greenplace.api import timestamps
from greenplace.controller import cache as cache_
from greenplace.controller import resources

__all__ = [
    "CLUSTER_LABEL",
    "KUBECONFIG_KEY",
    "WorkerView",
    "Workers",
    "contradictions",
    "pool_condition",
    "read_worker",
    "remote_pool",
    "split_pools",
    "usable_pools",
]

logger = logging.getLogger("greenplace.workers")

# The synthetic label a remote snapshot gives every worker node: which worker it is in.
CLUSTER_LABEL = "greenplace.dev/cluster"
KUBECONFIG_KEY = "kubeconfig"  # the Secret key Kueue reads a MultiKueueCluster's kubeconfig from
READ_TIMEOUT = (3.0, 10.0)  # seconds to connect, to read: a lost worker fails fast


@dataclasses.dataclass(frozen=True)
class WorkerView:
    """One worker cluster as greenplace last read it."""

    cluster: str
    # When the last successful reading was taken (None: never read).
    observed_at: datetime.datetime | None = None
    nodes: tuple[cache_.CachedNode, ...] = ()
    pods: tuple[cache_.CachedPod, ...] = ()  # bound, non-terminal pods using accelerators
    # Why the last reading failed or the cluster may not be used: (reason, message); None: fine.
    problem: tuple[str, str] | None = None

    def age(self, now: datetime.datetime) -> float | None:
        """Seconds since the last successful reading (None: never read)."""
        if self.observed_at is None:
            return None
        return max(0.0, (now - self.observed_at).total_seconds())

    def usable(self, now: datetime.datetime, ttl: float) -> bool:
        """Whether its pools may be planned into: read within ``ttl`` and not refused (a
        worker that cannot be reached is used until its last reading is ``ttl`` old)."""
        age = self.age(now)
        if age is None or age > ttl:
            return False
        return self.problem is None or self.problem[0] == "Unreachable"


def split_pools(
    pools: Iterable[cache_.CachedPool],
) -> tuple[tuple[cache_.CachedPool, ...], dict[str, tuple[cache_.CachedPool, ...]]]:
    """The local pools (no ``spec.cluster``) and the remote ones by MultiKueueCluster name."""
    local: list[cache_.CachedPool] = []
    remote: dict[str, list[cache_.CachedPool]] = {}
    for pool in sorted(pools, key=lambda p: p.name):
        if pool.spec.cluster is None:
            local.append(pool)
        else:
            remote.setdefault(pool.spec.cluster, []).append(pool)
    return tuple(local), {c: tuple(p) for c, p in sorted(remote.items())}


def remote_pool(pool: cache_.CachedPool) -> cache_.CachedPool:
    """``pool`` selecting only the nodes of its own worker (see the module docstring)."""
    selector = {**pool.spec.node_selector, CLUSTER_LABEL: pool.spec.cluster or ""}
    spec = pool.spec.model_copy(update={"node_selector": selector})
    return dataclasses.replace(pool, spec=spec)


def remote_nodes(view: WorkerView) -> tuple[cache_.CachedNode, ...]:
    """The worker's nodes as a remote snapshot names and labels them."""
    return tuple(
        dataclasses.replace(
            node,
            name=f"{view.cluster}/{node.name}",
            labels={**node.labels, CLUSTER_LABEL: view.cluster},
        )
        for node in view.nodes
    )


def remote_pods(view: WorkerView) -> tuple[cache_.CachedPod, ...]:
    """The worker's bound pods, bound to the remote snapshot's node names."""
    return tuple(
        dataclasses.replace(
            pod, uid=f"{view.cluster}/{pod.uid}", node_name=f"{view.cluster}/{pod.node_name}"
        )
        for pod in view.pods
    )


def pool_condition(
    pool: cache_.CachedPool,
    view: WorkerView | None,
    known: Mapping[str, cache_.CachedMultiKueueCluster],
    now: datetime.datetime,
    ttl: float,
) -> tuple[bool, str, str]:
    """The remote pool's ``Worker`` condition: (usable, reason, message)."""
    cluster = pool.spec.cluster or ""
    if cluster not in known:
        return (
            False,
            "ClusterNotFound",
            f"spec.cluster names MultiKueueCluster {cluster}, which does not exist on this "
            "manager: the pool is not used; fix: create it (with its kubeconfig Secret) or "
            "correct spec.cluster",
        )
    if view is None or (view.observed_at is None and view.problem is None):
        return False, "NotRead", f"worker {cluster} not read yet"
    age = view.age(now)
    # The time of the reading, not its age: the status then changes once per reading, not at
    # every cycle (a status write wakes the placement loop again).
    at = None if view.observed_at is None else timestamps.rfc3339(view.observed_at)
    since = "never read" if at is None else f"last read at {at}"
    if view.problem is not None and view.problem[0] != "Unreachable":
        reason, message = view.problem
        return False, reason, f"{message} ({since}); the pool is not used"
    if age is None or age > ttl:
        why = f": {view.problem[1]}" if view.problem else ""
        return (
            False,
            "Unreachable" if view.problem else "Stale",
            f"worker {cluster} {since}, older than the {ttl:.0f}s TTL{why}: its capacity "
            "counts as 0 free GPUs until it is read again",
        )
    matching = [
        n for n in view.nodes if _matches(n.labels, pool.spec.node_selector) and n.schedulable
    ]
    if not matching:
        return (
            False,
            "NoMatchingNodes",
            f"no schedulable node of worker {cluster} ({len(view.nodes)} nodes) matches "
            "spec.nodeSelector: the pool is not used; fix: label the worker's nodes or "
            "correct spec.nodeSelector",
        )
    lies = contradictions(pool, matching)
    if lies:
        return (
            False,
            "FactsContradictNodes",
            f"the worker's nodes contradict this GpuPool: {'; '.join(lies)}: the pool is not "
            "used; fix: correct the GpuPool's facts or the worker's node labels",
        )
    total = sum(n.gpus for n in matching)
    used = sum(p.gpus for p in view.pods if p.node_name in {n.name for n in matching})
    note = f" (last attempt failed: {view.problem[1]})" if view.problem else ""
    return (
        True,
        "Fresh",
        f"worker {cluster} read at {at}: {len(matching)} nodes, "
        f"{max(0, total - used)}/{total} GPUs free{note}",
    )


# Well-known node labels that state a fact a GpuPool also states: the region (Kubernetes'
# topology label, set by every cloud provider) and the GPU (NVIDIA's GPU feature discovery).
REGION_LABEL = "topology.kubernetes.io/region"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def contradictions(pool: cache_.CachedPool, nodes: Iterable[cache_.CachedNode]) -> list[str]:
    """Where the worker's own nodes say otherwise than the pool's facts (only labels a node
    carries are compared: a worker cannot make a pool compliant, only rule it out)."""
    found: set[str] = set()
    region, model = pool.spec.location.region, pool.spec.gpu.model
    family = _alnum(model.split("-")[0].split(" ")[0])  # "H100-80GB" -> "h100"
    for node in nodes:
        seen = node.labels.get(REGION_LABEL)
        if seen is not None and seen != region:
            found.add(f"node {node.name} is in region {seen}, spec.location.region is {region}")
        product = node.labels.get(GPU_PRODUCT_LABEL)
        if product is not None and family not in _alnum(product):
            found.add(f"node {node.name} has GPU {product}, spec.gpu.model is {model}")
    return sorted(found)


def _alnum(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def usable_pools(
    pools: Iterable[cache_.CachedPool], views: Mapping[str, WorkerView]
) -> list[cache_.CachedPool]:
    """The remote pools whose worker's nodes do not contradict them (``contradictions``)."""
    out = []
    for pool in pools:
        view = views.get(pool.spec.cluster or "")
        nodes = [
            n for n in (view.nodes if view else ()) if _matches(n.labels, pool.spec.node_selector)
        ]
        if not contradictions(pool, nodes):
            out.append(pool)
    return out


def _matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def read_worker(
    manager: client.ApiClient,
    cluster: str,
    *,
    known: cache_.CachedMultiKueueCluster | None,
    namespace: str,
    accelerators: resources.Accelerators,
    now: datetime.datetime,
    previous: WorkerView | None = None,
) -> WorkerView:
    """Read one worker (blocking): its nodes and bound pods, or why it cannot be used.

    A failed reading keeps the previous one's nodes and time (it goes stale after the TTL)."""
    kept = previous or WorkerView(cluster)

    def failed(reason: str, message: str) -> WorkerView:
        return dataclasses.replace(kept, problem=(reason, message))

    if known is None:
        return WorkerView(cluster, problem=("ClusterNotFound", f"no MultiKueueCluster {cluster}"))
    if not known.active:
        return dataclasses.replace(
            kept,
            problem=(
                "ClusterNotActive",
                f"MultiKueueCluster {cluster} is not Active for Kueue: {known.message}",
            ),
        )
    if known.secret is None:
        return failed(
            "BadKubeconfig",
            f"MultiKueueCluster {cluster} names no kubeconfig Secret "
            "(spec.clusterSource.kubeConfig with locationType Secret): greenplace reads the "
            "worker with the Secret Kueue uses",
        )
    try:
        secret = client.CoreV1Api(manager).read_namespaced_secret(
            known.secret, namespace, _request_timeout=READ_TIMEOUT
        )
        text = base64.b64decode((secret.data or {})[KUBECONFIG_KEY]).decode()
        worker = kube_config.new_client_from_config_dict(yaml.safe_load(text))
    except client.ApiException as error:
        return failed(
            "BadKubeconfig",
            f"Secret {namespace}/{known.secret} of MultiKueueCluster {cluster} cannot be read: "
            f"{error.status} {error.reason}",
        )
    except Exception as error:  # a malformed kubeconfig raises many kinds
        return failed(
            "BadKubeconfig",
            f"Secret {namespace}/{known.secret} key {KUBECONFIG_KEY} is not a usable "
            f"kubeconfig ({type(error).__name__}: {_short(error)}); fix: write the worker's "
            "kubeconfig there",
        )
    try:
        with worker:
            core = client.CoreV1Api(worker)
            serialize = worker.sanitize_for_serialization
            nodes = [serialize(n) for n in core.list_node(_request_timeout=READ_TIMEOUT).items]
            pods = core.list_pod_for_all_namespaces(
                field_selector="spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed",
                _request_timeout=READ_TIMEOUT,
            )
            bodies = [serialize(p) for p in pods.items]
    except Exception as error:  # connection refused, timeouts, TLS, 401/403
        return failed("Unreachable", f"worker {cluster}: {type(error).__name__}: {_short(error)}")
    parsed = cache_.Cache(accelerators)
    for body in nodes:
        parsed.put("Node", body)
    for body in bodies:
        parsed.put("Pod", body)
    bound = tuple(p for p in parsed.pods.values() if p.node_name and not p.terminal)
    return WorkerView(cluster, now, tuple(parsed.nodes.values()), bound)


def _short(error: Exception) -> str:
    """The error on one line, at most 200 characters."""
    text = " ".join(str(getattr(error, "reason", "") or error).split())
    return text[:200] or type(error).__name__


class Workers:
    """The views of every worker a GpuPool names, refreshed by ``poll``."""

    def __init__(self, namespace: str, accelerators: resources.Accelerators | None = None) -> None:
        self.namespace = namespace  # Kueue's, where the kubeconfig Secrets are
        self.accelerators = accelerators or resources.Accelerators()
        self.views: dict[str, WorkerView] = {}
        self.polled = False  # a first round of readings is done: views may be trusted

    def clusters(self, cache: cache_.Cache) -> list[str]:
        """The MultiKueueClusters some GpuPool names."""
        return sorted({p.spec.cluster for p in cache.pools.values() if p.spec.cluster})

    async def poll(
        self, cache: cache_.Cache, manager: client.ApiClient, now: datetime.datetime
    ) -> None:
        """Read every worker a GpuPool names, concurrently, off the event loop."""
        names = self.clusters(cache)
        known = dict(cache.multikueue_clusters)

        def one(name: str) -> WorkerView:
            return read_worker(
                manager, name, known=known.get(name), namespace=self.namespace,
                accelerators=self.accelerators, now=now, previous=self.views.get(name),
            )  # fmt: skip

        views = await asyncio.gather(*(asyncio.to_thread(one, name) for name in names))
        self.views = {view.cluster: view for view in views}
        for view in views:
            if view.problem is not None:
                logger.warning("worker %s: %s: %s", view.cluster, *view.problem)
        self.polled = True
        cache.changed.set()

    def staleness(self, now: datetime.datetime) -> dict[str, float]:
        """Seconds since each worker was last read (infinite: never)."""
        return {
            name: age if (age := view.age(now)) is not None else float("inf")
            for name, view in self.views.items()
        }
