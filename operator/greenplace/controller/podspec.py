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
from greenplace.controller import resources

__all__ = [
    "GATE",
    "HOLD_ANNOTATION",
    "PLACEMENT_ANNOTATION",
    "POOL_LABEL",
    "gates_with_ours",
    "hold_patch",
    "is_gated",
    "is_terminal",
    "node_matches",
    "placement_patch",
    "placement_record",
    "refusal",
]

GATE = "greenplace.dev/placement"
PLACEMENT_ANNOTATION = "greenplace.dev/placement"
HOLD_ANNOTATION = "greenplace.dev/held"
POOL_LABEL = models.POOL_LABEL

Pod = Mapping[str, Any]


def is_gated(pod: Pod) -> bool:
    return any(g.get("name") == GATE for g in pod.get("spec", {}).get("schedulingGates") or [])


def is_terminal(pod: Pod) -> bool:
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed")


def gates_with_ours(pod: Pod, accelerators: resources.Accelerators) -> list[dict[str, Any]] | None:
    """The pod's scheduling gates plus greenplace's, or None if this pod is not for us.

    Only pods that ask for a governed accelerator (``resources``) are gated; a pod already
    bound to a node (``spec.nodeName``) cannot carry a gate, and a pod already gated is left as
    it is.
    """
    spec = pod.get("spec", {})
    if not accelerators.request(pod).governed or spec.get("nodeName") or is_gated(pod):
        return None
    return [*(spec.get("schedulingGates") or []), {"name": GATE}]


def refusal(pod: Pod, accelerators: resources.Accelerators) -> str | None:
    """Why a pod of a governed namespace is refused at creation, or None.

    A pod asking for an accelerator greenplace does not govern, or for a count it cannot read,
    would otherwise run wherever kube-scheduler puts it.
    """
    request = accelerators.request(pod)
    if request.ungoverned:
        return (
            f"greenplace: resource {', '.join(request.ungoverned)} looks like an accelerator but "
            "is not governed by greenplace, so it could not be kept in the pools your policies "
            "allow. Ask the platform team to add it to the chart value accelerators.resources "
            "(or accelerators.prefixes), or request a governed one."
        )
    if request.unreadable:
        return (
            f"greenplace: accelerator counts must be whole numbers: {'; '.join(request.unreadable)}"
        )
    return None


def node_matches(pod: Pod, node_name: str, node_labels: Mapping[str, str]) -> bool:
    """Whether the pod's own ``nodeSelector`` and required node affinity admit this node.

    The rules kube-scheduler applies (``In``, ``NotIn``, ``Exists``, ``DoesNotExist``, ``Gt``,
    ``Lt``; ``matchFields`` on ``metadata.name``); terms are ORed, expressions ANDed.
    """
    spec = pod.get("spec") or {}
    if not all(node_labels.get(k) == v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms")
    if not terms:
        return True
    fields = {"metadata.name": node_name}
    return any(
        (term.get("matchExpressions") or term.get("matchFields"))
        and all(_expression(e, node_labels) for e in term.get("matchExpressions") or [])
        and all(_expression(e, fields) for e in term.get("matchFields") or [])
        for term in terms
    )


def _expression(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator")
    values = [str(v) for v in expression.get("values") or []]
    value = labels.get(key)
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


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
