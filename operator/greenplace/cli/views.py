"""``greenplace pools|budgets|reports|why``: read what the operator reports, as a person would.

Why this module exists: a platform engineer asks four questions besides "where did my pods go"
(``placements``): how full and how clean is each pool, how far is each team into its budget,
what does a request cost per model, and why does this one pod wait. The answers are in the status
the operator writes and in the pod's annotations; these commands print them. Installed as
``greenplace`` and as the kubectl plugin ``kubectl-greenplace``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client

from greenplace.api import models
from greenplace.cli import placements
from greenplace.controller import kube, podspec

__all__ = ["budget_rows", "pool_rows", "register", "report_rows", "why"]

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
    parser = subparsers.add_parser("why", help="why a pod was placed where it is, or waits")
    parser.add_argument("pod", help="NAMESPACE/NAME")
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


def _pools(args: argparse.Namespace) -> int:
    header = ("POOL", "COUNTRY", "GPU", "FREE/TOTAL", "gCO2/kWh", "SOURCE")
    print(placements.table(header, pool_rows(_list(args, "gpupools"))))
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
    namespace, _, name = args.pod.partition("/")
    if not name:
        raise SystemExit("greenplace why: give the pod as NAMESPACE/NAME")
    core = client.CoreV1Api(kube.api_client(args.kubeconfig))
    try:
        pod = core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, namespace))
    except client.ApiException as error:
        raise SystemExit(f"greenplace why: pod {args.pod}: {error.reason}") from error
    print(why(pod))
    return 0


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
