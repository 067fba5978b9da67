"""What greenplace reads from and writes to a Pod, as pure functions over its JSON.

Why this module exists: the rules for touching a gated pod are strict (a gate can only be added
at creation; while gated, placement may only be narrowed: every required node-affinity term
gains the pool's expressions) and a mistake either breaks sovereignty or gets the patch refused.
Keeping them here, free of any client, makes them easy to test and to reuse from the webhook,
the apply phase and the CLI.

The placement patch is one JSON patch that narrows the affinity, records the decision and
removes the gate together, guarded by the pod's resourceVersion: the API server applies all of
it or none of it, so no crash can leave a pod released without its pool restriction.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from greenplace.api import models

__all__ = [
    "GATE",
    "GPU_RESOURCE",
    "HOLD_ANNOTATION",
    "PLACEMENT_ANNOTATION",
    "POOL_LABEL",
    "gates_with_ours",
    "gpu_request",
    "hold_patch",
    "is_gated",
    "is_terminal",
    "placement_patch",
    "placement_record",
]

GATE = "greenplace.dev/placement"
GPU_RESOURCE = "nvidia.com/gpu"
PLACEMENT_ANNOTATION = "greenplace.dev/placement"
HOLD_ANNOTATION = "greenplace.dev/held"
POOL_LABEL = models.POOL_LABEL

Pod = Mapping[str, Any]


def gpu_request(pod: Pod) -> int:
    """GPUs the pod needs: the max of init containers and the sum of app containers."""
    spec = pod.get("spec", {})

    def of(container: Mapping[str, Any]) -> int:
        resources = container.get("resources") or {}
        for section in ("limits", "requests"):
            value = (resources.get(section) or {}).get(GPU_RESOURCE)
            if value is not None:
                try:
                    return max(0, int(str(value)))
                except ValueError:
                    return 0
        return 0

    app = sum(of(c) for c in spec.get("containers") or [])
    init = max((of(c) for c in spec.get("initContainers") or []), default=0)
    return max(app, init)


def is_gated(pod: Pod) -> bool:
    return any(g.get("name") == GATE for g in pod.get("spec", {}).get("schedulingGates") or [])


def is_terminal(pod: Pod) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def gates_with_ours(pod: Pod) -> list[dict[str, Any]] | None:
    """The pod's scheduling gates plus greenplace's, or None if this pod is not for us.

    Only pods that request GPUs are gated; a pod already bound to a node (``spec.nodeName``)
    cannot carry a gate, and a pod already gated is left as it is.
    """
    spec = pod.get("spec", {})
    if gpu_request(pod) == 0 or spec.get("nodeName") or is_gated(pod):
        return None
    return [*(spec.get("schedulingGates") or []), {"name": GATE}]


def narrowed_affinity(pod: Pod, node_labels: Mapping[str, str]) -> dict[str, Any]:
    """The pod's affinity with every required node term restricted to ``node_labels``.

    Terms are ORed by the scheduler, so the pool's expressions go into every term; with no
    required terms, one term holding only the pool's expressions is created.
    """
    affinity = copy.deepcopy(pod.get("spec", {}).get("affinity") or {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    pool_expressions = [
        {"key": key, "operator": "In", "values": [value]}
        for key, value in sorted(node_labels.items())
    ]
    required["nodeSelectorTerms"] = [
        {**term, "matchExpressions": [*(term.get("matchExpressions") or []), *pool_expressions]}
        for term in terms
    ]
    return affinity


def placement_patch(
    pod: Pod, node_labels: Mapping[str, str], record: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One atomic JSON patch: narrow to the pool, record the decision, remove the gate."""
    metadata = pod.get("metadata", {})
    spec = pod.get("spec", {})
    remaining = [g for g in spec.get("schedulingGates") or [] if g.get("name") != GATE]
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": metadata["resourceVersion"]},
        *_annotation_ops(metadata, {PLACEMENT_ANNOTATION: json.dumps(record, sort_keys=True)}),
        {"op": "add", "path": "/spec/affinity", "value": narrowed_affinity(pod, node_labels)},
    ]
    if HOLD_ANNOTATION in (metadata.get("annotations") or {}):
        ops.append({"op": "remove", "path": f"/metadata/annotations/{_escape(HOLD_ANNOTATION)}"})
    if remaining:
        ops.append({"op": "replace", "path": "/spec/schedulingGates", "value": remaining})
    else:
        ops.append({"op": "remove", "path": "/spec/schedulingGates"})
    return ops


def placement_record(pod: Pod) -> dict[str, Any] | None:
    """The decision greenplace recorded on a placed pod: None without one, ``{}`` when the
    annotation is unreadable (garbage is reported by callers, never fatal)."""
    raw = (pod.get("metadata", {}).get("annotations") or {}).get(PLACEMENT_ANNOTATION)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def hold_patch(pod: Pod, reason: str, message: str) -> list[dict[str, Any]] | None:
    """Record why the pod waits, or None when the recorded reason is already this one."""
    text = f"{reason}: {message}"
    if (pod.get("metadata", {}).get("annotations") or {}).get(HOLD_ANNOTATION) == text:
        return None
    return _annotation_ops(pod.get("metadata", {}), {HOLD_ANNOTATION: text})


def _annotation_ops(metadata: Mapping[str, Any], values: Mapping[str, str]) -> list[dict[str, Any]]:
    if not metadata.get("annotations"):
        return [{"op": "add", "path": "/metadata/annotations", "value": dict(values)}]
    return [
        {"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value}
        for key, value in values.items()
    ]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
