"""A full listing corrects the cache without undoing fresher watch events."""

from __future__ import annotations

import time

from greenplace.controller.cache import KINDS, Cache


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


def test_every_kind_has_a_key_and_a_store() -> None:
    cache = Cache()
    for kind in KINDS:
        assert cache.reconcile(kind, [], time.monotonic()) == 0
