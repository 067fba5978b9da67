"""``greenplace placements``: a table of governed pods, where each went and why (or why not).

Why this module exists: the first question after applying a policy is "where did my pods go?".
The answer is recorded on each pod (the placement annotation, or the held reason while gated);
this command reads it back with the node each pod was bound to.

Kueue Workloads that greenplace's AdmissionCheck answers (``--kueue``, docs/kueue.md) follow in
a second table: the check's state and message as written on the Workload, and the pool from the
placement record of a Ready check. A Workload shows once Kueue has reserved its quota (before,
no check state exists). Without Kueue's CRDs there is no second table and no error.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client

from greenplace.controller import kube, kueue, podspec, resources

__all__ = [
    "Row",
    "kueue_objects",
    "our_check",
    "register",
    "rows",
    "table",
    "workload_rows",
]

Obj = Mapping[str, Any]
Row = tuple[str, str, str, str, str, str, str]
HEADER: Row = ("POD", "GPUS", "DECISION", "POOL", "NODE", "gCO2/kWh", "REASON")
WorkloadRow = tuple[str, str, str, str, str, str]
WORKLOAD_HEADER: WorkloadRow = ("WORKLOAD", "GPUS", "CHECK", "POOL", "gCO2/kWh", "REASON")


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
    workloads, ours = kueue_objects(core.api_client, args.namespace)
    if found := workload_rows(workloads, ours):
        print()
        print(table(WORKLOAD_HEADER, found))
    return 0


def kueue_objects(
    api: client.ApiClient, namespace: str | None = None
) -> tuple[list[Obj], frozenset[str]]:
    """Kueue's Workloads (of ``namespace``, else all) and the names of the AdmissionChecks
    greenplace answers; nothing at all when Kueue's CRDs are not installed."""
    custom = client.CustomObjectsApi(api)
    try:
        checks = custom.list_cluster_custom_object(kueue.GROUP, kueue.VERSION, "admissionchecks")
    except client.ApiException as error:
        if error.status == 404:  # no Kueue in this cluster
            return [], frozenset()
        raise SystemExit(
            f"greenplace: cannot list Kueue AdmissionChecks: {error.reason}"
        ) from error
    ours = frozenset(
        str(check["metadata"]["name"])
        for check in checks.get("items") or []
        if (check.get("spec") or {}).get("controllerName") == kueue.CONTROLLER_NAME
    )
    if not ours:
        return [], ours
    plural = kueue.KINDS["Workload"]
    found = (
        custom.list_namespaced_custom_object(kueue.GROUP, kueue.VERSION, namespace, plural)
        if namespace
        else custom.list_cluster_custom_object(kueue.GROUP, kueue.VERSION, plural)
    )
    items: list[Obj] = found.get("items") or []
    return items, ours


def our_check(workload: Obj, ours: frozenset[str]) -> Obj | None:
    """The state of the first of greenplace's checks on ``workload``, if it carries one."""
    for state in (workload.get("status") or {}).get("admissionChecks") or []:
        if isinstance(state, Mapping) and state.get("name") in ours:
            return state
    return None


def workload_rows(workloads: Sequence[Obj], ours: frozenset[str]) -> list[WorkloadRow]:
    """One row per Workload that carries one of greenplace's checks (``ours``), sorted."""
    out: list[WorkloadRow] = []
    for body in sorted(workloads, key=_key):
        state = our_check(body, ours)
        if state is None:
            continue
        decision, message = _state_words(body, state)
        parsed = kueue.parse_workload(body)
        record = kueue.recorded(parsed) if not isinstance(parsed, str) else None
        carbon = (record or {}).get("gco2PerKwh")
        out.append((
            _key(body), _gpus(parsed), decision, str((record or {}).get("pool", "-")),
            f"{carbon:.0f}" if isinstance(carbon, int | float) else "-",
            parsed if isinstance(parsed, str) else message,
        ))  # fmt: skip
    return out


def _state_words(workload: Obj, state: Obj) -> tuple[str, str]:
    """The CHECK cell (the state, with greenplace's reason code) and the message.

    greenplace writes ``Reason: message``. A Workload Kueue deactivated (a check Rejected it)
    is ``Deactivated``: Kueue has reset the check to Pending with its own words (``Reset to
    Pending after eviction. Previously: Rejected``) and tries it no more until it is reactivated;
    greenplace's reason is then in its Event (``greenplace why workload/...``).
    """
    name, message = str(state.get("state", "?")), str(state.get("message") or "")
    if (workload.get("spec") or {}).get("active") is False:
        return "Deactivated", message or "deactivated by Kueue"
    reason, colon, rest = message.partition(": ")
    if colon and reason.isalnum():
        name, message = f"{name} ({reason})", rest
    return name, message or "waiting for greenplace's answer"


def _gpus(parsed: kueue.KueueWorkload | str) -> str:
    if isinstance(parsed, str):
        return "?"
    per_pod = resources.Accelerators()
    return str(sum(p.count * per_pod.request(p.template).units for p in parsed.pod_sets))


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


# A held annotation whose decision waits on purpose (``engine.decisions``: "<key> deferred until
# <time>: ..."), as opposed to one that waits for something to change.
_DEFERRED = re.compile(r"\S+ deferred until ")


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
            waits = "Deferred" if _DEFERRED.match(message) else "Held"
            out.append((name, gpus, f"{waits} ({reason})", "-", node, "-", message))
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
