"""``greenplace placements``: a table of governed pods, where each went and why (or why not).

Why this module exists: the first question after applying a policy is "where did my pods go?".
The answer is recorded on each pod (the placement annotation, or the held reason while gated);
this command reads it back with the node each pod was bound to.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client

from greenplace.controller import kube, podspec, resources

__all__ = ["Row", "register", "rows", "table"]

Row = tuple[str, str, str, str, str, str, str]
HEADER: Row = ("POD", "GPUS", "DECISION", "POOL", "NODE", "gCO2/kWh", "REASON")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("placements", help="show where governed pods were placed")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--namespace", "-n", help="only this namespace")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    core = client.CoreV1Api(kube.api_client(args.kubeconfig))
    pods = (
        core.list_namespaced_pod(args.namespace)
        if args.namespace
        else core.list_pod_for_all_namespaces()
    )
    print(table(HEADER, rows([core.api_client.sanitize_for_serialization(p) for p in pods.items])))
    return 0


def rows(pods: Sequence[Mapping[str, Any]]) -> list[Row]:
    """One row per pod greenplace gated or placed, sorted by namespace and name."""
    out: list[Row] = []
    for pod in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        name = f"{meta['namespace']}/{meta['name']}"
        gpus = str(resources.Accelerators().request(pod).units)
        node = pod.get("spec", {}).get("nodeName") or "-"
        if podspec.is_gated(pod):
            held = annotations.get(podspec.HOLD_ANNOTATION, "Pending: not planned yet")
            reason, _, message = held.partition(": ")
            out.append((name, gpus, f"Held ({reason})", "-", node, "-", message))
        elif (record := podspec.placement_record(pod)) is not None:
            raw = annotations[podspec.PLACEMENT_ANNOTATION]
            record = record or {"message": f"unreadable placement record: {raw[:80]}"}
            carbon = record.get("gco2PerKwh")
            out.append((
                name, gpus, "Placed", str(record.get("pool", "?")), node,
                "-" if carbon is None else f"{carbon:.0f}", str(record.get("message", "")),
            ))  # fmt: skip
    return out


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Aligned columns; the last one (a reason, a message) is left unpadded."""
    everything = [tuple(header), *(tuple(r) for r in body)]
    widths = [max(len(r[i]) for r in everything) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in everything
    ]
    return "\n".join(lines)
