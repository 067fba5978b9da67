"""A full listing corrects the cache without undoing fresher watch events."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from greenplace.controller.cache import KINDS, Cache
from tests import fakes, kubeobjects


def node(name: str, gpus: int = 8) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {}},
        "status": {"allocatable": {"nvidia.com/gpu": str(gpus)}},
    }


def test_a_listing_drops_objects_deleted_while_unwatched() -> None:
    cache = Cache()
    cache.put("Node", node("ghost"))
    cache.put("Node", node("kept"))
    listed_at = time.monotonic()
    gone = cache.reconcile("Node", [node("kept", 4)], listed_at)
    assert gone == 1
    assert set(cache.nodes) == {"kept"}
    assert cache.nodes["kept"].gpus == 4  # the listing's state replaces the older one


def test_a_listing_never_undoes_an_event_seen_after_it_began() -> None:
    cache = Cache()
    cache.put("Node", node("old"))
    listed_at = time.monotonic()
    # While the (slow) listing ran, the watch saw a new node, a change and a deletion.
    cache.put("Node", node("new"))
    cache.put("Node", node("old", 2))
    cache.put("Node", node("deleted"))
    cache.remove("Node", node("deleted"))
    listing = [node("old", 8), node("deleted")]  # taken before those events
    assert cache.reconcile("Node", listing, listed_at) == 0
    assert set(cache.nodes) == {"old", "new"}  # "deleted" is not resurrected
    assert cache.nodes["old"].gpus == 2  # the watch's fresher state wins


def test_a_pod_deleted_while_unwatched_stops_holding_its_gpus() -> None:
    cache = Cache()
    pod = {
        "metadata": {"name": "a", "namespace": "ns", "uid": "u1"},
        "spec": {"nodeName": "n1", "containers": [
            {"name": "m", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }  # fmt: skip
    cache.put("Pod", pod)
    assert "u1" in cache.pods
    assert cache.reconcile("Pod", [], time.monotonic()) == 1
    assert not cache.pods


# One valid object of each watched kind, and the cache's store of that kind.
ONE_OF_EACH: dict[str, tuple[Mapping[str, Any], str]] = {
    "GpuPool": (fakes.gpu_pool("fr", "FR"), "pools"),
    "PlacementPolicy": (kubeobjects.policy("ml", "eu", ["FR"]), "policies"),
    "Node": (node("n1"), "nodes"),
    "Pod": (fakes.pod("a", fakes.gpus(1)), "pods"),
    "SignalSource": (
        kubeobjects.signal_source("grid", [kubeobjects.static_source({"FR": 50})], ["FR"]),
        "signal_sources",
    ),
    "BillingExport": (
        kubeobjects.resource("BillingExport", "bills", {"file": {"paths": ["/bills/a.csv"]}}),
        "billing_exports",
    ),
    "Budget": (kubeobjects.budget("ml", "team", money=100, action="Reject"), "budgets"),
    "EnergyReport": (kubeobjects.energy_report("ml", "serving", window="1h"), "reports"),
    # Kueue's kinds (watched with --kueue).
    "Workload": (
        {"metadata": {"namespace": "ml", "name": "w", "uid": "u"},
         "spec": {"podSets": [{"name": "main", "count": 1, "template": {"spec": {}}}]}},
        "kueue_workloads",
    ),
    "AdmissionCheck": (
        {"metadata": {"name": "gp"}, "spec": {"controllerName": "greenplace.dev/placement"}},
        "admission_checks",
    ),
    "ResourceFlavor": ({"metadata": {"name": "f"}, "spec": {}}, "flavors"),
    "ClusterQueue": (
        {"metadata": {"name": "cq"}, "spec": {"resourceGroups": [{"flavors": [{"name": "f"}]}]}},
        "queue_flavors",
    ),
    # MultiKueue's worker clusters (watched with --multikueue).
    "MultiKueueCluster": (
        {"metadata": {"name": "fr"}, "spec": {"clusterSource": {"kubeConfig": {
            "locationType": "Secret", "location": "fr-kc"}}}},
        "multikueue_clusters",
    ),
}  # fmt: skip


def test_every_watched_kind_is_cached_and_dropped_by_a_listing_without_it() -> None:
    assert set(ONE_OF_EACH) == set(KINDS)
    cache = Cache()
    for kind, (body, store) in ONE_OF_EACH.items():
        cache.put(kind, body)
        assert len(getattr(cache, store)) == 1, (kind, cache.invalid)
    listed_at = time.monotonic()
    for kind, (body, store) in ONE_OF_EACH.items():
        kept = cache.reconcile(kind, [body], listed_at)  # listed: nothing gone, still there
        assert (kept, len(getattr(cache, store))) == (0, 1), kind
        relisted_at = time.monotonic() + 0.001  # a later listing, begun after that put
        assert cache.reconcile(kind, [], relisted_at) == 1, kind  # not listed: gone
        assert not getattr(cache, store), kind
    assert not cache.invalid
