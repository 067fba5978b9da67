"""The pod rules: who is gated, how placement narrows affinity, what the atomic patch holds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from greenplace.controller import podspec, resources

POOL = {"greenplace.dev/pool": "ovh"}


def pod(gpus: int | str | None = 1, **spec: Any) -> dict[str, Any]:
    resources = {} if gpus is None else {"limits": {"nvidia.com/gpu": gpus}}
    return {
        "metadata": {"name": "p", "namespace": "ns", "resourceVersion": "7"},
        "spec": {"containers": [{"name": "c", "resources": resources}], **spec},
    }


ACCELERATORS = resources.Accelerators()


def asking(resource: str, count: int | str, **spec: Any) -> dict[str, Any]:
    body = pod(None, **spec)
    body["spec"]["containers"][0]["resources"] = {"limits": {resource: count}}
    return body


def sidecar(name: str, gpus: int, *, always: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "resources": {"limits": {"nvidia.com/gpu": gpus}}}
    if always:
        container["restartPolicy"] = "Always"
    return container


@pytest.mark.parametrize(
    ("body", "units"),
    [
        (pod(2), 2),
        (pod("4"), 4),
        (pod("1k"), 1000),  # a Kubernetes quantity, as the API server reads it
        (pod(None), 0),
        (pod(1, initContainers=[{"name": "i", "resources": {"limits": {"nvidia.com/gpu": 3}}}]), 3),
        # Sidecars run beside the app containers: their GPUs add up.
        (pod(1, initContainers=[sidecar("s", 2)]), 3),
        # An init container runs beside the sidecars started before it.
        (pod(1, initContainers=[sidecar("s", 2), sidecar("i", 4, always=False)]), 6),
        (asking("nvidia.com/mig-1g.10gb", 2), 2),
        (asking("amd.com/gpu", 1), 1),
        (asking("gpu.intel.com/i915", 1), 1),
        (asking("example.com/fpga", 1), 0),  # not governed, refused below
    ],
)
def test_accelerator_units(body: dict[str, Any], units: int) -> None:
    assert ACCELERATORS.request(body).units == units


def test_a_resource_claim_governs_a_pod_whatever_it_allocates() -> None:
    body = pod(None, resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}])
    request = ACCELERATORS.request(body)
    assert request.governed and request.units == 0
    assert podspec.gates_with_ours(body, ACCELERATORS) == [{"name": podspec.GATE}]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (asking("example.com/fpga", 1), "example.com/fpga looks like an accelerator"),
        (asking("google.com/tpu", 4), "google.com/tpu looks like an accelerator"),
        (pod("garbage"), "c/nvidia.com/gpu: 'garbage'"),
        (pod("500m"), "c/nvidia.com/gpu: '500m'"),
        (pod(-1), "c/nvidia.com/gpu: -1"),
    ],
)
def test_unknown_accelerators_and_unreadable_counts_are_refused(
    body: dict[str, Any], says: str
) -> None:
    refusal = podspec.refusal(body, ACCELERATORS)
    assert refusal is not None and says in refusal


def test_a_governed_resource_list_decides() -> None:
    only_amd = resources.Accelerators(("amd.com/gpu",), ())
    assert only_amd.request(pod(1)).units == 0
    assert podspec.refusal(pod(1), only_amd) is not None  # nvidia.com/gpu looks like one
    assert only_amd.request(asking("amd.com/gpu", 2)).units == 2


@pytest.mark.parametrize(
    ("body", "gates"),
    [
        (pod(1), [{"name": podspec.GATE}]),
        (pod(1, schedulingGates=[{"name": "other"}]), [{"name": "other"}, {"name": podspec.GATE}]),
        (pod(None), None),  # no GPU: not ours
        (pod(1, nodeName="n1"), None),  # bound pods cannot carry gates
        (pod(1, schedulingGates=[{"name": podspec.GATE}]), None),  # already gated
        (asking("nvidia.com/mig-3g.40gb", 1), [{"name": podspec.GATE}]),
    ],
)
def test_gates_with_ours(body: dict[str, Any], gates: list[dict[str, str]] | None) -> None:
    assert podspec.gates_with_ours(body, ACCELERATORS) == gates


def affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": list(t)} for t in terms]
            }
        }
    }


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": list(values)}


@pytest.mark.parametrize(
    ("spec", "matches"),
    [
        ({}, True),
        ({"nodeSelector": {"zone": "a"}}, True),
        ({"nodeSelector": {"zone": "b"}}, False),
        ({"affinity": affinity([expr("zone", "In", "a", "b")])}, True),
        ({"affinity": affinity([expr("zone", "NotIn", "a")])}, False),
        ({"affinity": affinity([expr("zone", "In", "b")], [expr("gen", "Gt", "3")])}, True),
        ({"affinity": affinity([expr("gen", "Lt", "3")])}, False),
        ({"affinity": affinity([expr("spot", "Exists")])}, False),
        ({"affinity": affinity([expr("spot", "DoesNotExist")])}, True),
        ({"affinity": affinity([])}, False),  # an empty term matches no node
    ],
)
def test_node_matches_reads_the_pods_own_constraints(spec: dict[str, Any], matches: bool) -> None:
    assert podspec.node_matches(pod(1, **spec), "n1", {"zone": "a", "gen": "4"}) is matches


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
