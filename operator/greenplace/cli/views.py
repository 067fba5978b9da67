"""``greenplace pools|budgets|reports|why``: read what the operator reports, as a person would.

Why this module exists: a platform engineer asks four questions besides "where did my pods go"
(``placements``): how full and how clean is each pool, how far is each team into its budget,
what does a request cost per model, and why does this one pod wait. The answers are in the status
the operator writes and in the pod's annotations; these commands print them. Installed as
``greenplace`` and as the kubectl plugin ``kubectl-greenplace``.

``why`` names its object as kubectl does: ``NAMESPACE/NAME`` or ``pod/NAMESPACE/NAME`` for a pod,
``workload/NAMESPACE/NAME`` for a Kueue Workload, ``job/NAMESPACE/NAME`` for the Workload of a
Kueue-managed Job. For a Workload it prints greenplace's check state and message, the placement
record of a Ready check, and greenplace's last Event on it (which keeps the reason after Kueue
resets a rejected check to Pending with its own words). A manager Workload that waits on a
MultiKueue check shows what greenplace's dispatcher did instead (``why_dispatch``): the worker
cluster nominated or admitted in, the signed record, and the last Event (why it waits).
``pools`` lists remote pools (``spec.cluster``) apart, with their worker and its freshness.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client

from greenplace.api import models
from greenplace.cli import placements
from greenplace.controller import cache as cache_
from greenplace.controller import kube, kueue, podspec

__all__ = ["budget_rows", "pool_rows", "register", "report_rows", "why", "why_workload"]

Obj = Mapping[str, Any]


def register(subparsers: Any) -> None:
    commands: tuple[tuple[str, str, Callable[[argparse.Namespace], int]], ...] = (
        ("pools", "GPU pools: free GPUs, carbon in use and its source", _pools),
        ("budgets", "Budgets: spent, forecast at period end, remaining", _budgets),
        ("reports", "EnergyReports: Wh, gCO2e and cost per request, grades", _reports),
    )
    for name, help_text, func in commands:
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("--kubeconfig")
        parser.set_defaults(func=func)
    parser = subparsers.add_parser(
        "why", help="why a pod or Kueue Workload was placed where it is, or waits"
    )
    parser.add_argument(
        "pod",
        metavar="[pod/|workload/|job/]NAMESPACE/NAME",
        help="a pod (no prefix or pod/), a Kueue Workload (workload/), or a Kueue Job's "
        "Workload (job/)",
    )
    parser.add_argument("--kubeconfig")
    parser.set_defaults(func=_why)


def pool_rows(pools: Sequence[Obj]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for pool in sorted(pools, key=lambda p: p["metadata"]["name"]):
        spec, status = pool.get("spec", {}), pool.get("status") or {}
        location = spec.get("location", {})
        out.append((
            pool["metadata"]["name"], str(location.get("country", "?")),
            str(spec.get("gpu", {}).get("model", "?")),
            f"{status.get('gpusFree', '?')}/{status.get('gpusTotal', '?')}",
            _number(status.get("carbonGramsPerKwh")), str(status.get("carbonSource") or "-"),
        ))  # fmt: skip
    return out


def worker_pool_rows(pools: Sequence[Obj]) -> list[tuple[str, ...]]:
    """Remote pools (``spec.cluster``): their MultiKueue worker and how fresh its reading is
    (the ``Worker`` condition the dispatcher writes)."""
    out: list[tuple[str, ...]] = []
    for pool in sorted(pools, key=lambda p: p["metadata"]["name"]):
        spec, status = pool.get("spec", {}), pool.get("status") or {}
        worker: Obj = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Worker"), {}
        )
        out.append((
            pool["metadata"]["name"], str(spec.get("cluster")),
            str(spec.get("location", {}).get("country", "?")),
            f"{status.get('gpusFree', '?')}/{status.get('gpusTotal', '?')}",
            str(worker.get("reason") or "NotRead"), str(worker.get("message") or "-"),
        ))  # fmt: skip
    return out


def why_dispatch(workload: Obj, events: Sequence[Obj] = ()) -> str:
    """What greenplace's MultiKueue dispatcher did with a manager Workload: the cluster it
    nominated (or Kueue admitted it in), its record, and its last Event (why it waits)."""
    name, status = _key(workload), workload.get("status") or {}
    nominated = status.get("nominatedClusterNames") or []
    if status.get("clusterName"):
        state = f"admitted in worker cluster {status['clusterName']}"
    elif nominated:
        state = f"nominated to worker cluster {', '.join(nominated)}, not admitted yet"
    else:
        state = "no worker cluster nominated"
    lines = [f"{name} (Kueue Workload, MultiKueue): {state}"]
    text = ((workload.get("metadata") or {}).get("annotations") or {}).get(
        cache_.DISPATCH_ANNOTATION
    )
    if isinstance(text, str):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        if isinstance(record, dict):
            budgets = ", ".join(record.get("budgets") or [])
            charged = f"charged at {record.get('at')} to {budgets}" if budgets else "no Budget"
            lines.append(
                f"  record (unverified here): cluster {record.get('nominated')}, pool "
                f"{record.get('nominatedPool')}, nominated at {record.get('nominatedAt')}; "
                f"{charged}"
            )
        else:
            lines.append(f"  unreadable dispatch record {text[:200]!r}")
    return "\n".join([*lines, *_last_event(events)])


def budget_rows(budgets: Sequence[Obj]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for budget in sorted(budgets, key=_key):
        spec, status = budget.get("spec", {}), budget.get("status") or {}
        limits = spec.get("limits", {})
        spent, forecast = status.get("spent") or {}, status.get("forecastAtPeriodEnd") or {}
        cells = [
            f"{_number(spent.get(k))}/{_number(limits.get(k))}"
            f" (forecast {_number(forecast.get(k))})"
            for k in ("money", "kgCO2e", "kWh")
            if limits.get(k) is not None
        ]
        exceeded = _condition(budget, "Exceeded")
        out.append((_key(budget), str(spec.get("period", "?")), "; ".join(cells), exceeded))
    return out


def report_rows(reports: Sequence[Obj]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for report in sorted(reports, key=_key):
        for row in (report.get("status") or {}).get("rows") or []:
            out.append((
                _key(report), str(row.get("model")), str(row.get("pool")),
                _number(row.get("gpuWhPerRequest"), 4), _number(row.get("gCO2ePerRequest"), 4),
                f"{_number(row.get('costPerRequest'), 6)} {row.get('currency', '')}".strip(),
                f"{row.get('energyGrade', '?')}/{row.get('carbonGrade', '?')}",
            ))  # fmt: skip
    return out


def why(pod: Obj) -> str:
    """The decision recorded on a pod, in full."""
    meta = pod["metadata"]
    name = f"{meta['namespace']}/{meta['name']}"
    annotations = meta.get("annotations") or {}
    if podspec.is_gated(pod):
        held = annotations.get(podspec.HOLD_ANNOTATION)
        return f"{name} waits (gated): {held or 'not planned yet'}"
    record = podspec.placement_record(pod)
    if record is None:
        return f"{name} is not governed by greenplace (no gate, no placement record)"
    if not record:
        raw = annotations[podspec.PLACEMENT_ANNOTATION]
        return f"{name}: unreadable placement record {raw[:200]!r}"
    node = pod.get("spec", {}).get("nodeName") or "not bound yet"
    return f"{name} placed in {record.get('pool')} (node {node}): {record.get('message', '')}"


def why_workload(workload: Obj, ours: frozenset[str], events: Sequence[Obj] = ()) -> str:
    """greenplace's answer on a Kueue Workload: its check, its record, its last Event."""
    name = _key(workload)
    state = placements.our_check(workload, ours)
    if state is None:
        checks = ", ".join(sorted(ours)) or "none in this cluster"
        return (
            f"{name} (Kueue Workload) carries no greenplace check (greenplace's AdmissionChecks: "
            f"{checks}); its ClusterQueue may not list one, or Kueue has not reserved quota yet"
        )
    lines = [
        f"{name} (Kueue Workload): check {state.get('name')} is {state.get('state', '?')}: "
        f"{state.get('message') or 'no answer yet'}"
    ]
    if (workload.get("spec") or {}).get("active") is False:
        lines.append("  deactivated by Kueue: it is not tried again until spec.active is true")
    parsed = kueue.parse_workload(workload)
    if isinstance(parsed, str):
        lines.append(f"  unreadable for greenplace: {parsed}")
    elif (record := kueue.recorded(parsed)) is not None:
        lines.append(
            f"  record (unverified here): pool {record.get('pool')}, country "
            f"{record.get('country')}, {_number(record.get('gco2PerKwh'))} gCO2/kWh, policies "
            f"{', '.join(record.get('policies') or []) or '-'}, budgets "
            f"{', '.join(record.get('budgets') or []) or '-'}, at {record.get('at')}"
        )
    return "\n".join([*lines, *_last_event(events)])


def _last_event(events: Sequence[Obj]) -> list[str]:
    """The line saying greenplace's latest Event among ``events`` (none without one)."""
    ordered = sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime")))
    if not ordered:
        return []
    last = ordered[-1]
    return [
        f"  last greenplace Event ({last.get('lastTimestamp')}): {last.get('type')} "
        f"{last.get('reason')}: {last.get('message')}"
    ]


def _pools(args: argparse.Namespace) -> int:
    header = ("POOL", "COUNTRY", "GPU", "FREE/TOTAL", "gCO2/kWh", "SOURCE")
    every = _list(args, "gpupools")
    remote = [p for p in every if (p.get("spec") or {}).get("cluster")]
    local = [p for p in every if p not in remote]
    if local or not remote:  # a manager with only remote pools prints no empty table
        print(placements.table(header, pool_rows(local)) + ("\n" if remote else ""))
    if remote:
        header = ("WORKER POOL", "CLUSTER", "COUNTRY", "FREE/TOTAL", "WORKER", "MESSAGE")
        print(placements.table(header, worker_pool_rows(remote)))
    return 0


def _budgets(args: argparse.Namespace) -> int:
    header = ("BUDGET", "PERIOD", "SPENT/LIMIT", "EXCEEDED")
    print(placements.table(header, budget_rows(_list(args, "budgets"))))
    return 0


def _reports(args: argparse.Namespace) -> int:
    header = ("REPORT", "MODEL", "POOL", "Wh/req", "gCO2e/req", "COST/req", "GRADES")
    print(placements.table(header, report_rows(_list(args, "energyreports"))))
    return 0


def _why(args: argparse.Namespace) -> int:
    kind, _, rest = args.pod.partition("/")
    if kind in ("workload", "workloads", "job", "jobs"):
        return _why_kueue(args, kind.rstrip("s"), rest)
    if kind in ("pod", "pods"):
        args.pod = rest
    namespace, _, name = args.pod.partition("/")
    if not name or "/" in name:
        raise SystemExit(
            "greenplace why: give NAMESPACE/NAME (a pod), workload/NAMESPACE/NAME or "
            "job/NAMESPACE/NAME"
        )
    core = client.CoreV1Api(kube.api_client(args.kubeconfig))
    try:
        pod = core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
    except client.ApiException as error:
        raise SystemExit(f"greenplace why: pod {args.pod}: {error.reason}") from error
    print(why(pod))
    return 0


def _why_kueue(args: argparse.Namespace, kind: str, target: str) -> int:
    """``why workload/NS/NAME`` or ``why job/NS/NAME`` (the Workload the Job owns)."""
    namespace, _, name = target.partition("/")
    if not name or "/" in name:
        raise SystemExit(f"greenplace why: give the {kind} as {kind}/NAMESPACE/NAME")
    api = kube.api_client(args.kubeconfig)
    workloads, ours = placements.kueue_objects(api, namespace)
    if kind == "job":
        owned = [
            w for w in workloads
            if any(o.get("kind") == "Job" and o.get("name") == name
                   for o in w["metadata"].get("ownerReferences") or [])
        ]  # fmt: skip
    else:
        owned = [w for w in workloads if w["metadata"]["name"] == name]
    if not owned:
        dispatched = _dispatched(api, kind, namespace, name)
        if dispatched:
            print("\n".join(dispatched))
            return 0
        where = "Kueue is not installed or " if not ours else ""
        raise SystemExit(
            f"greenplace why: no Kueue Workload for {kind} {namespace}/{name} ({where}no "
            "greenplace AdmissionCheck exists, or Kueue has not made its Workload yet)"
        )
    for workload in owned:
        print(why_workload(workload, ours, _events(api, workload)))
    return 0


def _events(api: client.ApiClient, workload: Obj) -> list[Obj]:
    """greenplace's Events on the Workload ``workload``."""
    meta = workload["metadata"]
    events = client.CoreV1Api(api).list_namespaced_event(
        meta["namespace"],
        field_selector=f"involvedObject.kind=Workload,involvedObject.name={meta['name']}",
    )
    return [
        e for e in api.sanitize_for_serialization(events.items)
        if (e.get("source") or {}).get("component") == "greenplace"
        or e.get("reportingComponent") == "greenplace"
    ]  # fmt: skip


def _dispatched(api: client.ApiClient, kind: str, namespace: str, name: str) -> list[str]:
    """``why_dispatch`` of the Workloads of ``kind`` ``namespace/name`` that wait on a
    MultiKueue check (none when there is no such Workload)."""
    custom = client.CustomObjectsApi(api)
    try:
        found = custom.list_namespaced_custom_object(
            kueue.GROUP, kueue.VERSION, namespace, kueue.KINDS["Workload"]
        )
    except client.ApiException:
        return []
    owned = [
        w for w in found.get("items") or []
        if (kind == "workload" and w["metadata"]["name"] == name)
        or (kind == "job" and any(o.get("kind") == "Job" and o.get("name") == name
                                  for o in w["metadata"].get("ownerReferences") or []))
    ]  # fmt: skip
    return [why_dispatch(workload, _events(api, workload)) for workload in owned]


def _list(args: argparse.Namespace, plural: str) -> list[Obj]:
    """Every object of ``plural`` (in all namespaces, for namespaced kinds)."""
    custom = client.CustomObjectsApi(kube.api_client(args.kubeconfig))
    found = custom.list_cluster_custom_object(models.GROUP, models.VERSION, plural)
    items: list[Obj] = found.get("items", [])
    return items


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _condition(obj: Obj, kind: str) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return "?"


def _number(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:.{digits}g}"
    return str(value)
