"""What a remote pool's status says of its worker, and which nodes a remote pool counts.

Pure logic of ``controller.workers``: the ``Worker`` condition of each failure (cluster not
found, not Active, unreadable kubeconfig, unreachable, stale, no matching node) and of a fresh
reading; staleness takes capacity away and never adds it; nodes of two workers with the same
names and labels are counted by their own pools only. Reading a real worker (its Secret, its API
server) is proven in ``tests/integration/multi/test_dispatch.py``.
"""

from __future__ import annotations

import datetime

from greenplace.api import models
from greenplace.controller import cache as cache_
from greenplace.controller import resources, snapshot, workers
from tests import fakes

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
KNOWN = {
    "fr": cache_.CachedMultiKueueCluster("fr", "fr-kc", True, "Connected"),
    "off": cache_.CachedMultiKueueCluster("off", "off-kc", False, "kubeconfig unusable"),
}


def pool(name: str, cluster: str) -> cache_.CachedPool:
    spec = fakes.pool_spec(name, "FR")
    spec["cluster"] = cluster
    return cache_.CachedPool(name, 1, models.GpuPoolSpec.model_validate(spec))


def view(cluster: str, *pools: str, age: float = 1.0, **options: object) -> workers.WorkerView:
    parsed = cache_.Cache()
    for name in pools:
        parsed.put_node(fakes.node("n0", name, {"nvidia.com/gpu": 8}))  # same name everywhere
    return workers.WorkerView(
        cluster,
        NOW - datetime.timedelta(seconds=age),
        tuple(parsed.nodes.values()),
        **options,  # type: ignore[arg-type]
    )


def condition(p: cache_.CachedPool, v: workers.WorkerView | None) -> tuple[bool, str, str]:
    return workers.pool_condition(p, v, KNOWN, NOW, 60)


def test_a_fresh_worker_says_its_nodes_and_free_gpus() -> None:
    ok, reason, message = condition(pool("a", "fr"), view("fr", "a"))
    assert (ok, reason) == (True, "Fresh")
    assert "read at 2026-03-10T11:59:59Z: 1 nodes, 8/8 GPUs free" in message


def test_each_reason_a_pool_is_not_used() -> None:
    assert condition(pool("a", "nowhere"), None)[:2] == (False, "ClusterNotFound")
    off = workers.WorkerView("off", problem=("ClusterNotActive", "MultiKueueCluster off ..."))
    assert condition(pool("a", "off"), off)[:2] == (False, "ClusterNotActive")
    bad = workers.WorkerView("fr", problem=("BadKubeconfig", "Secret kueue-system/fr-kc ..."))
    assert condition(pool("a", "fr"), bad)[:2] == (False, "BadKubeconfig")
    assert condition(pool("a", "fr"), view("fr", "b"))[:2] == (False, "NoMatchingNodes")
    stale = condition(pool("a", "fr"), view("fr", "a", age=90))
    assert stale[:2] == (False, "Stale") and "last read at 2026-03-10T11:58:30Z" in stale[2]
    lost = view("fr", "a", age=90, problem=("Unreachable", "connection refused"))
    assert condition(pool("a", "fr"), lost)[:2] == (False, "Unreachable")


def test_an_unreachable_worker_is_used_until_its_reading_is_stale() -> None:
    recent = view("fr", "a", age=10, problem=("Unreachable", "connection refused"))
    assert recent.usable(NOW, 60) and condition(pool("a", "fr"), recent)[0]
    assert not view("fr", "a", age=61).usable(NOW, 60)
    refused = view("fr", "a", age=1, problem=("BadKubeconfig", "x"))
    assert not refused.usable(NOW, 60), "a refused cluster is not used even when just read"


def test_a_remote_pool_counts_only_its_own_workers_nodes() -> None:
    fr, de = pool("a", "fr"), pool("a2", "de")
    de_spec = de.spec.model_copy(update={"node_selector": fr.spec.node_selector})
    de = cache_.CachedPool("a2", 1, de_spec)  # the same selector, in another worker
    nodes = (*workers.remote_nodes(view("fr", "a")), *workers.remote_nodes(view("de", "a")))
    gathered = snapshot.Gathered(
        pools=(workers.remote_pool(fr), workers.remote_pool(de)), policies=(), nodes=nodes,
        pods=(),
    )  # fmt: skip
    built = snapshot.build(gathered, NOW)
    assert {p.name: p.gpus_total for p in built.snapshot.pools} == {"a": 8, "a2": 8}


def test_local_and_remote_pools_are_split_by_spec_cluster() -> None:
    local = cache_.CachedPool("l", 1, models.GpuPoolSpec.model_validate(fakes.pool_spec("l", "FR")))
    mine, remote = workers.split_pools([pool("a", "fr"), local, pool("b", "fr")])
    assert [p.name for p in mine] == ["l"]
    assert {c: [p.name for p in ps] for c, ps in remote.items()} == {"fr": ["a", "b"]}


def test_an_absent_or_inactive_cluster_is_not_read() -> None:
    missing = workers.read_worker(
        None,  # never called: nothing to read
        "nowhere", known=None, namespace="kueue-system",
        accelerators=resources.Accelerators(), now=NOW,
    )  # fmt: skip
    assert missing.problem is not None and missing.problem[0] == "ClusterNotFound"
    inactive = workers.read_worker(
        None,
        "off", known=KNOWN["off"], namespace="kueue-system",
        accelerators=resources.Accelerators(), now=NOW,
    )  # fmt: skip
    assert inactive.problem is not None and inactive.problem[0] == "ClusterNotActive"
    assert "kubeconfig unusable" in inactive.problem[1], "Kueue's own words"


def labelled(cluster: str, pool_name: str, **labels: str) -> workers.WorkerView:
    parsed = cache_.Cache()
    parsed.put_node(fakes.node("n0", pool_name, {"nvidia.com/gpu": 8}, **labels))
    return workers.WorkerView(cluster, NOW, tuple(parsed.nodes.values()))


def test_facts_the_worker_s_nodes_contradict_rule_the_pool_out() -> None:
    """Region and GPU as the worker's own well-known node labels state them; only labels a
    node carries are compared, and a contradiction only ever takes the pool away."""
    lying = labelled("fr", "a", **{workers.REGION_LABEL: "us-east-1"})
    ok, reason, message = condition(pool("a", "fr"), lying)
    assert (ok, reason) == (False, "FactsContradictNodes")
    assert "region us-east-1, spec.location.region is r" in message
    other_gpu = labelled("fr", "a", **{workers.GPU_PRODUCT_LABEL: "NVIDIA-A100-SXM4-80GB"})
    assert condition(pool("a", "fr"), other_gpu)[1] == "FactsContradictNodes"
    agreeing = labelled(
        "fr", "a", **{workers.REGION_LABEL: "r", workers.GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3"}
    )
    assert condition(pool("a", "fr"), agreeing)[:2] == (True, "Fresh")
    assert condition(pool("a", "fr"), view("fr", "a"))[:2] == (True, "Fresh"), "no labels: no say"
    views = {"fr": lying}
    assert workers.usable_pools([pool("a", "fr")], views) == []
    assert [p.name for p in workers.usable_pools([pool("a", "fr")], {"fr": agreeing})] == ["a"]
