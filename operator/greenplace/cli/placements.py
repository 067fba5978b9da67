"""``greenplace placements``: a table of governed pods, where each went and why (or why not).

Why this module exists: the first question after applying a policy is "where did my pods go?".
The answer is recorded on each pod (the placement annotation, or the held reason while gated);
this command reads it back with the node each pod was bound to.

Kueue Workloads that greenplace's AdmissionCheck answers (``--kueue``, docs/kueue.md) follow in
a second table: the check's state and message as written on the Workload, and the pool from the
placement record of a Ready check. A Workload shows once Kueue has reserved its quota (before,
no check state exists). Without Kueue's CRDs there is no second table and no error.
"""

# Imports inside functions on purpose: a command loads only what it runs (start-up time).
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from greenplace.cli import kubeapi, main, output
from greenplace.cli.output import Column

if TYPE_CHECKING:
    from kubernetes import client

    from greenplace.controller import kueue

__all__ = [
    "POD_COLUMNS",
    "WORKLOAD_COLUMNS",
    "Row",
    "kueue_objects",
    "our_check",
    "pod_records",
    "register",
    "rows",
    "table",
    "workload_records",
    "workload_rows",
]

Obj = Mapping[str, Any]
Row = tuple[str, ...]
WorkloadRow = tuple[str, ...]
# The carbon of a placement is the pool's grid intensity times its PUE (what the GPUs' kWh
# emit, data centre overhead included): ``gCO2e/kWh(xPUE)``, not the grid's ``pools`` shows.
CARBON = "gCO2e/kWh(xPUE)"


def _carbon(record: Obj) -> str:
    value = record.get("gco2ePerKwhWithPue")
    return f"{value:.0f}" if isinstance(value, int | float) else "-"


def _decision(record: Obj) -> str:
    reason = record.get("reason")
    return (
        f"{record['decision']} ({reason})"
        if reason and record["decision"] != "Placed"
        else (str(record["decision"]))
    )


POD_COLUMNS: tuple[Column, ...] = (
    Column("POD", lambda r: f"{r['namespace']}/{r['name']}"),
    Column("GPUS", lambda r: str(r["gpus"])),
    Column("DECISION", _decision),
    Column("POOL", lambda r: str(r.get("pool") or "-")),
    Column("NODE", lambda r: str(r.get("node") or "-")),
    Column(CARBON, _carbon),
    Column("REASON", lambda r: output.short_reason(str(r.get("message") or "")), "narrow"),
    Column("POLICIES", lambda r: ",".join(r.get("policies") or []) or "-", "wide"),
    Column("REASON", lambda r: output.strip_subject(str(r.get("message") or "")), "wide"),
)
WORKLOAD_COLUMNS: tuple[Column, ...] = (
    Column("WORKLOAD", lambda r: f"{r['namespace']}/{r['name']}"),
    Column("GPUS", lambda r: "?" if r["gpus"] is None else str(r["gpus"])),
    Column("CHECK", lambda r: str(r["check"])),
    Column("POOL", lambda r: str(r.get("pool") or "-")),
    Column(CARBON, _carbon),
    Column("REASON", lambda r: output.short_reason(str(r.get("message") or "")), "narrow"),
    Column("REASON", lambda r: output.strip_subject(str(r.get("message") or "")), "wide"),
)
HEADER: Row = tuple(c.header for c in POD_COLUMNS if c.shown != "wide")
WORKLOAD_HEADER: WorkloadRow = tuple(c.header for c in WORKLOAD_COLUMNS if c.shown != "wide")

DESCRIPTION = """\
Where each pod greenplace governs went (its pool and node, the pool's carbon intensity
including the data centre's PUE, and a short reason), or why it waits; then the Kueue
Workloads greenplace's AdmissionCheck answers. `greenplace why NAME` and -o wide give each
reason in full."""

EPILOG = """examples:
  greenplace placements                 # the context's namespace, else every namespace
  greenplace placements -n ml-eu -o wide
  greenplace placements -A -o json | jq '.items[] | select(.decision != "Placed")'"""


def register(subparsers: Any, names: set[str] | None = None) -> None:
    parser = subparsers.add_parser(
        "placements",
        help=main.help_of("placements"),
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kubeapi.add_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kubernetes import client

    namespace = kubeapi.namespace_of(args)
    core = client.CoreV1Api(kubeapi.connect(args))
    timeout = kubeapi.REQUEST_TIMEOUT
    pods = (
        core.list_namespaced_pod(namespace, _request_timeout=timeout)
        if namespace
        else core.list_pod_for_all_namespaces(_request_timeout=timeout)
    )
    found = pod_records([core.api_client.sanitize_for_serialization(p) for p in pods.items])
    workloads, ours = kueue_objects(core.api_client, namespace)
    kueue_found = workload_records(workloads, ours)
    output.emit(
        [*found, *kueue_found],
        args.output,
        [(found, POD_COLUMNS), (kueue_found, WORKLOAD_COLUMNS)],
        output.nothing_found(namespace),
    )
    return 0


def kueue_objects(
    api: client.ApiClient, namespace: str | None = None
) -> tuple[list[Obj], frozenset[str]]:
    """Kueue's Workloads (of ``namespace``, else all) and the names of the AdmissionChecks
    greenplace answers; nothing at all when Kueue's CRDs are not installed."""
    from kubernetes import client

    from greenplace.controller import kueue

    custom = client.CustomObjectsApi(api)
    timeout = kubeapi.REQUEST_TIMEOUT
    try:
        checks = custom.list_cluster_custom_object(
            kueue.GROUP, kueue.VERSION, "admissionchecks", _request_timeout=timeout
        )
    except client.ApiException as error:
        if error.status == 404:  # no Kueue in this cluster
            return [], frozenset()
        raise output.CliError(f"cannot list Kueue AdmissionChecks: {error.reason}") from error
    ours = frozenset(
        str(check["metadata"]["name"])
        for check in checks.get("items") or []
        if (check.get("spec") or {}).get("controllerName") == kueue.CONTROLLER_NAME
    )
    if not ours:
        return [], ours
    plural = kueue.KINDS["Workload"]
    found = (
        custom.list_namespaced_custom_object(
            kueue.GROUP, kueue.VERSION, namespace, plural, _request_timeout=timeout
        )
        if namespace
        else custom.list_cluster_custom_object(
            kueue.GROUP, kueue.VERSION, plural, _request_timeout=timeout
        )
    )
    items: list[Obj] = found.get("items") or []
    return items, ours


def our_check(workload: Obj, ours: frozenset[str]) -> Obj | None:
    """The state of the first of greenplace's checks on ``workload``, if it carries one."""
    for state in (workload.get("status") or {}).get("admissionChecks") or []:
        if isinstance(state, Mapping) and state.get("name") in ours:
            return state
    return None


def workload_records(workloads: Sequence[Obj], ours: frozenset[str]) -> list[dict[str, Any]]:
    """One row per Workload that carries one of greenplace's checks (``ours``), sorted."""
    from greenplace.controller import kueue

    out: list[dict[str, Any]] = []
    for body in sorted(workloads, key=_key):
        state = our_check(body, ours)
        if state is None:
            continue
        decision, message = _state_words(body, state)
        parsed = kueue.parse_workload(body)
        record = kueue.recorded(parsed) if not isinstance(parsed, str) else None
        carbon = (record or {}).get("gco2PerKwh")
        meta = body.get("metadata") or {}
        out.append({
            "kind": "Workload", "namespace": meta.get("namespace", ""),
            "name": meta.get("name", ""), "gpus": _gpus(parsed), "check": decision,
            "pool": (record or {}).get("pool"),
            "gco2ePerKwhWithPue": carbon if isinstance(carbon, int | float) else None,
            "message": parsed if isinstance(parsed, str) else message,
        })  # fmt: skip
    return out


def workload_rows(workloads: Sequence[Obj], ours: frozenset[str]) -> list[WorkloadRow]:
    """The default table's cells of ``workload_records``."""
    return _cells(workload_records(workloads, ours), WORKLOAD_COLUMNS)


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


def _gpus(parsed: kueue.KueueWorkload | str) -> int | None:
    from greenplace.controller import resources

    if isinstance(parsed, str):
        return None
    per_pod = resources.Accelerators()
    return sum(p.count * per_pod.request(p.template).units for p in parsed.pod_sets)


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


# A held annotation whose decision waits on purpose (``engine.decisions``: "<key> deferred until
# <time>: ..."), as opposed to one that waits for something to change.
_DEFERRED = re.compile(r"\S+ deferred until ")


def pod_records(pods: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per pod greenplace gated or placed, sorted by namespace and name."""
    from greenplace.controller import podspec, resources

    out: list[dict[str, Any]] = []
    for pod in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        row: dict[str, Any] = {
            "kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
            "gpus": resources.Accelerators().request(pod).units,
            "node": pod.get("spec", {}).get("nodeName"),
        }  # fmt: skip
        if podspec.is_gated(pod):
            held = annotations.get(podspec.HOLD_ANNOTATION, "Pending: not planned yet")
            reason, _, message = held.partition(": ")
            waits = "Deferred" if _DEFERRED.match(message) else "Held"
            row |= {"decision": waits, "reason": reason, "pool": None, "policies": [],
                    "gco2ePerKwhWithPue": None, "message": message}  # fmt: skip
        elif (record := podspec.placement_record(pod)) is not None:
            raw = annotations[podspec.PLACEMENT_ANNOTATION]
            record = record or {"message": f"unreadable placement record: {raw[:80]}"}
            carbon = record.get("gco2PerKwh")
            row |= {
                "decision": "Placed", "reason": record.get("reason"),
                "pool": record.get("pool", "?"), "policies": list(record.get("policies") or []),
                "gco2ePerKwhWithPue": carbon if isinstance(carbon, int | float) else None,
                "message": str(record.get("message", "")),
            }  # fmt: skip
        else:
            continue
        out.append(row)
    return out


def rows(pods: Sequence[Mapping[str, Any]]) -> list[Row]:
    """The default table's cells of ``pod_records``."""
    return _cells(pod_records(pods), POD_COLUMNS)


def _cells(records: Sequence[Obj], columns: Sequence[Column]) -> list[tuple[str, ...]]:
    return [tuple(c.cell(r) for c in columns if c.shown != "wide") for r in records]


table = output.table
