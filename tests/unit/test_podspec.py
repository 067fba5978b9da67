"""The pod rules: who is gated, how placement narrows affinity, what the atomic patch holds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from greenplace.controller import podspec

POOL = {"greenplace.dev/pool": "ovh"}


def pod(gpus: int | str | None = 1, **spec: Any) -> dict[str, Any]:
    resources = {} if gpus is None else {"limits": {"nvidia.com/gpu": gpus}}
    return {
        "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "c", "resources": resources}], **spec},
    }


@pytest.mark.parametrize(
    ("body", "gpus"),
    [
        (pod(2), 2),
        (pod("4"), 4),
        (pod(None), 0),
        (pod("garbage"), 0),
        (pod(1, initContainers=[{"name": "i", "resources": {"limits": {"nvidia.com/gpu": 3}}}]), 3),
    ],
)
def test_gpu_request(body: dict[str, Any], gpus: int) -> None:
    assert podspec.gpu_request(body) == gpus


@pytest.mark.parametrize(
    ("body", "gates"),
    [
        (pod(1), [{"name": podspec.GATE}]),
        (pod(1, schedulingGates=[{"name": "other"}]), [{"name": "other"}, {"name": podspec.GATE}]),
        (pod(None), None),  # no GPU: not ours
        (pod(1, nodeName="n1"), None),  # bound pods cannot carry gates
        (pod(1, schedulingGates=[{"name": podspec.GATE}]), None),  # already gated
    ],
)
def test_gates_with_ours(body: dict[str, Any], gates: list[dict[str, str]] | None) -> None:
    assert podspec.gates_with_ours(body) == gates


def test_narrowing_creates_a_term_when_there_is_none() -> None:
    affinity = podspec.narrowed_affinity(pod(1), POOL)
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {"matchExpressions": [{"key": "greenplace.dev/pool", "operator": "In", "values": ["ovh"]}]}
    ]


def test_narrowing_adds_the_pool_to_every_existing_term_and_keeps_the_rest() -> None:
    zone = {"key": "zone", "operator": "In", "values": ["a"]}
    gpu = {"key": "gpu", "operator": "Exists"}
    original = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [zone]}, {"matchExpressions": [gpu]}]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}],
        },
        "podAntiAffinity": {"x": 1},
    }
    body = pod(1, affinity=original)
    affinity = podspec.narrowed_affinity(body, POOL)
    pool_expr = {"key": "greenplace.dev/pool", "operator": "In", "values": ["ovh"]}
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert terms == [
        {"matchExpressions": [zone, pool_expr]},
        {"matchExpressions": [gpu, pool_expr]},
    ]
    assert affinity["podAntiAffinity"] == {"x": 1}
    assert affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert body["spec"]["affinity"] is original  # the input is not mutated
    assert len(original["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"]) == 1  # fmt: skip


def test_placement_patch_is_guarded_and_does_everything_at_once() -> None:
    body = pod(1, schedulingGates=[{"name": "other"}, {"name": podspec.GATE}])
    body["metadata"]["annotations"] = {podspec.HOLD_ANNOTATION: "NoPoolWithRoom: x"}
    ops = podspec.placement_patch(body, POOL, {"pool": "ovh"})
    assert ops[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    by_path = {op["path"]: op for op in ops[1:]}
    assert json.loads(by_path["/metadata/annotations/greenplace.dev~1placement"]["value"]) == {
        "pool": "ovh"
    }
    assert by_path["/metadata/annotations/greenplace.dev~1held"]["op"] == "remove"
    assert by_path["/spec/schedulingGates"] == {
        "op": "replace", "path": "/spec/schedulingGates", "value": [{"name": "other"}],
    }  # fmt: skip
    assert "/spec/affinity" in by_path


def test_placement_patch_removes_the_last_gate() -> None:
    body = pod(1, schedulingGates=[{"name": podspec.GATE}])
    ops = podspec.placement_patch(body, POOL, {"pool": "ovh"})
    assert {"op": "remove", "path": "/spec/schedulingGates"} in ops
    assert ops[1] == {
        "op": "add", "path": "/metadata/annotations",
        "value": {podspec.PLACEMENT_ANNOTATION: '{"pool": "ovh"}'},
    }  # fmt: skip


def test_hold_patch_is_written_once_per_reason() -> None:
    body = pod(1)
    ops = podspec.hold_patch(body, "NoPolicy", "why")
    assert ops == [{"op": "add", "path": "/metadata/annotations",
                    "value": {podspec.HOLD_ANNOTATION: "NoPolicy: why"}}]  # fmt: skip
    body["metadata"]["annotations"] = {podspec.HOLD_ANNOTATION: "NoPolicy: why"}
    assert podspec.hold_patch(body, "NoPolicy", "why") is None
    assert podspec.hold_patch(body, "NoCompliantPool", "why") is not None
