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

# Imports inside functions on purpose: a command loads only what it runs (start-up time).
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from greenplace.cli import kubeapi, main, output, placements
from greenplace.cli.output import Column

if TYPE_CHECKING:
    from kubernetes import client

__all__ = [
    "BUDGET_COLUMNS",
    "POOL_COLUMNS",
    "REPORT_COLUMNS",
    "budget_records",
    "budget_rows",
    "pool_records",
    "pool_rows",
    "register",
    "report_records",
    "report_rows",
    "why",
    "why_dispatch",
    "why_pod",
    "why_workload",
]

Obj = Mapping[str, Any]
# greenplace's API group (``api.models.GROUP``/``VERSION``; a unit test keeps them equal),
# written here so that the read commands do not load the pydantic models to list objects.
GROUP, VERSION = "greenplace.dev", "v1alpha1"

DESCRIPTIONS = {
    "pools": """\
GPU pools (cluster-scoped): free and total GPUs, the grid's carbon intensity the last plan
used (GRID-gCO2e/kWh, before the data centre's PUE) and where it came from. -o wide adds the
PUE and the intensity a placement pays (gCO2e/kWh(xPUE), as `placements` shows it). Pools of
MultiKueue workers (spec.cluster) follow in their own table.""",
    "budgets": """\
Budgets: for each limit (money in the Budget's currency, kgCO2e, kWh), spent/limit this period
and whether it is exceeded. -o wide adds the linear forecast at the period end and what
remains.""",
    "reports": """\
EnergyReports: per model and pool, GPU Wh, gCO2e and cost per request, and the energy/carbon
grades.""",
    "why": """\
Why one pod or Kueue Workload was placed where it is, or why it waits: greenplace's full
reason. NAME is a pod's name, pod/NAME, workload/NAME (a Kueue Workload) or job/NAME (the
Workload of a Kueue-managed Job), in the namespace of -n (else the context's, else
"default", as kubectl finds one object); NAMESPACE/NAME and KIND/NAMESPACE/NAME also work.""",
}
EPILOGS = {
    "why": """\
examples:
  greenplace why -n ml-ch train-patient-model
  greenplace why ml-ch/train-patient-model -o json
  greenplace why -n sovereign job/train""",
}
KINDS = {"pod": "pod", "pods": "pod", "workload": "workload", "workloads": "workload",
         "job": "job", "jobs": "job"}  # fmt: skip


def register(subparsers: Any, names: set[str] | None = None) -> None:
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "pools": _pools, "budgets": _budgets, "reports": _reports, "why": _why,
    }  # fmt: skip
    for name, func in commands.items():
        if names is not None and name not in names:
            continue
        parser = subparsers.add_parser(
            name,
            help=main.help_of(name),
            description=DESCRIPTIONS[name],
            epilog=EPILOGS.get(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == "why":
            parser.add_argument(
                "target",
                metavar="NAME",
                help="NAME, pod/NAME, workload/NAME or job/NAME (or NAMESPACE/NAME, "
                "KIND/NAMESPACE/NAME)",
            )
        kubeapi.add_flags(parser, cluster_scoped=name == "pools")
        parser.set_defaults(func=func)


# ---------------------------------------------------------------- pools


def pool_records(pools: Sequence[Obj]) -> list[dict[str, Any]]:
    """One row per GpuPool, sorted by name; remote pools (``spec.cluster``) carry their worker
    and how fresh its reading is (the ``Worker`` condition the dispatcher writes)."""
    out: list[dict[str, Any]] = []
    for pool in sorted(pools, key=lambda p: p["metadata"]["name"]):
        spec, status = pool.get("spec") or {}, pool.get("status") or {}
        grid, pue = status.get("carbonGramsPerKwh"), spec.get("pue")
        worker: Obj = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Worker"), {}
        )
        row: dict[str, Any] = {
            "kind": "GpuPool", "name": pool["metadata"]["name"],
            "cluster": spec.get("cluster"),
            "country": (spec.get("location") or {}).get("country"),
            "gpuModel": (spec.get("gpu") or {}).get("model"),
            "gpusFree": status.get("gpusFree"), "gpusTotal": status.get("gpusTotal"),
            "gridGco2ePerKwh": grid, "pue": pue,
            "gco2ePerKwhWithPue": grid * (1.0 if pue is None else pue)
            if isinstance(grid, int | float) else None,
            "carbonSource": status.get("carbonSource"),
            **_pool_billing(spec, status, pool),
        }  # fmt: skip
        if spec.get("cluster"):
            row |= {"worker": worker.get("reason") or "NotRead",
                    "workerMessage": worker.get("message")}  # fmt: skip
        out.append(row)
    return out


def _pool_billing(spec: Obj, status: Obj, pool: Obj) -> dict[str, Any]:
    """The pool's price in its spec and the effective price of its newest reconciled billing
    period (``status.billing``, from the operator's FOCUS exports; docs/finops.md)."""
    price, billing = spec.get("price") or {}, status.get("billing") or {}
    return {
        "pricePerGpuHour": price.get("onDemandPerGpuHour"),
        "priceCurrency": price.get("currency"),
        "billedPerGpuHour": billing.get("effectivePerGpuHour"),
        "billedCurrency": billing.get("currency"),
        "billedPeriodStart": billing.get("periodStart"),
        "billedPeriodEnd": billing.get("periodEnd"),
        "billing": _reason(pool, "Billed"),
    }


def _period(r: Obj) -> str:
    """The billed period as ``finops reconcile`` and the Budget's Reconciled condition write
    it: its first and its end day (excluded)."""
    start, end = r.get("billedPeriodStart"), r.get("billedPeriodEnd")
    if not isinstance(start, str) or not isinstance(end, str):
        return "-"
    return f"{start[:10]}/{end[:10]}"


def _money(value: object, currency: object, digits: int | None = None) -> str:
    """An amount and its currency, "-" for none: to the cent (``output.amount``), or to
    ``digits`` significant digits for a tiny amount such as a cost per request."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    shown = output.amount(value) if digits is None else output.number(value, digits)
    return f"{shown} {currency or ''}".strip()


def _text(key: str) -> Callable[[Obj], str]:
    return lambda r: "?" if r.get(key) is None else str(r[key])


def _free(r: Obj) -> str:
    return f"{_text('gpusFree')(r)}/{_text('gpusTotal')(r)}"


POOL_COLUMNS: tuple[Column, ...] = (
    Column("POOL", _text("name")),
    Column("COUNTRY", _text("country")),
    Column("GPU", _text("gpuModel")),
    Column("FREE/TOTAL", _free),
    Column("GRID-gCO2e/kWh", lambda r: output.number(r.get("gridGco2ePerKwh"))),
    Column("PUE", lambda r: output.number(r.get("pue")), "wide"),
    Column(placements.CARBON, lambda r: output.number(r.get("gco2ePerKwhWithPue")), "wide"),
    Column("PRICE/GPU-h", lambda r: _money(r["pricePerGpuHour"], r["priceCurrency"]), "wide"),
    Column("BILLED/GPU-h", lambda r: _money(r["billedPerGpuHour"], r["billedCurrency"])),
    Column("PERIOD(BILLED)", _period, "wide"),
    Column("BILLING", _text("billing"), "wide"),
    Column("SOURCE", lambda r: str(r.get("carbonSource") or "-")),
)
WORKER_POOL_COLUMNS: tuple[Column, ...] = (
    Column("WORKER POOL", _text("name")),
    Column("CLUSTER", _text("cluster")),
    Column("COUNTRY", _text("country")),
    Column("FREE/TOTAL", _free),
    Column("WORKER", _text("worker")),
    Column("MESSAGE", lambda r: str(r.get("workerMessage") or "-")),
)


def pool_rows(pools: Sequence[Obj]) -> list[tuple[str, ...]]:
    """The default table's cells for local pools."""
    return _cells(pool_records(pools), POOL_COLUMNS)


def worker_pool_rows(pools: Sequence[Obj]) -> list[tuple[str, ...]]:
    """The default table's cells for remote pools."""
    return _cells(pool_records(pools), WORKER_POOL_COLUMNS)


# ---------------------------------------------------------------- budgets

# (key in limits/spent, column, unit: None for the Budget's currency)
_DIMENSIONS = (("money", "MONEY", None), ("kgCO2e", "CARBON", "kgCO2e"), ("kWh", "ENERGY", "kWh"))


def budget_records(budgets: Sequence[Obj]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for budget in sorted(budgets, key=_key):
        spec, status = budget.get("spec") or {}, budget.get("status") or {}
        meta = budget["metadata"]
        out.append({
            "kind": "Budget", "namespace": meta.get("namespace", ""), "name": meta["name"],
            "period": spec.get("period"), "currency": spec.get("currency", "EUR"),
            "limits": dict(spec.get("limits") or {}), "spent": dict(status.get("spent") or {}),
            "forecastAtPeriodEnd": dict(status.get("forecastAtPeriodEnd") or {}),
            "remaining": dict(status.get("remaining") or {}),
            "exceeded": _condition(budget, "Exceeded"),
            # Corrected to the bill (docs/finops.md): the correction included in spent.money
            # and whether every charge of the period is reconciled (the condition's reason).
            "correction": status.get("correction"),
            "reconciled": _reason(budget, "Reconciled"),
            # The period before, corrected by a bill that arrived after it ended.
            "previousPeriod": dict(status.get("previousPeriod") or {}),
        })  # fmt: skip
    return out


def _unit(record: Obj, unit: str | None) -> str:
    return str(record.get("currency") or "EUR") if unit is None else unit


def _spent(key: str, unit: str | None) -> Callable[[Obj], str]:
    def cell(r: Obj) -> str:
        limit = r["limits"].get(key)
        if limit is None:
            return "-"
        spent = output.amount(r["spent"].get(key) or 0)
        return f"{spent}/{output.amount(limit)} {_unit(r, unit)}"

    return cell


def _pair(field: str) -> Callable[[Obj], str]:
    def cell(r: Obj) -> str:
        parts = [
            f"{output.amount(r[field][key])} {_unit(r, unit)}"
            for key, _, unit in _DIMENSIONS
            if r["limits"].get(key) is not None and r[field].get(key) is not None
        ]
        return ", ".join(parts) or "-"

    return cell


def _correction(r: Obj) -> str:
    value = r["correction"]
    shown = _money(value, _unit(r, None))
    return f"+{shown}" if shown != "-" and value > 0 else shown


def _charged(r: Obj) -> str:
    """What the placements were charged at the pools' prices: spent.money - correction."""
    spent, correction = r["spent"].get("money"), r["correction"]
    if not isinstance(spent, int | float) or not isinstance(correction, int | float):
        return "-"
    return _money(spent - correction, _unit(r, None))


def _previous(r: Obj) -> str:
    """The period before this one: its money, corrected where reconciled, and by how much."""
    previous = r["previousPeriod"]
    money = _money(previous.get("money"), _unit(r, None))
    if money == "-":
        return money
    correction = {**r, "correction": previous.get("correction")}
    return f"{str(previous.get('periodStart'))[:10]}: {money} ({_correction(correction)})"


BUDGET_COLUMNS: tuple[Column, ...] = (
    Column("BUDGET", lambda r: f"{r['namespace']}/{r['name']}"),
    Column("PERIOD", _text("period")),
    *(Column(f"{name}(SPENT/LIMIT)", _spent(key, unit)) for key, name, unit in _DIMENSIONS),
    Column("FORECAST(PERIOD END)", _pair("forecastAtPeriodEnd"), "wide"),
    Column("REMAINING", _pair("remaining"), "wide"),
    Column("CHARGED(PRICE)", _charged, "wide"),
    Column("CORRECTION", _correction),
    Column("BILL", _text("reconciled")),
    Column("PREVIOUS(CORRECTED)", _previous, "wide"),
    Column("EXCEEDED", _text("exceeded")),
)


def budget_rows(budgets: Sequence[Obj]) -> list[tuple[str, ...]]:
    return _cells(budget_records(budgets), BUDGET_COLUMNS)


# ---------------------------------------------------------------- reports


def report_records(reports: Sequence[Obj]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for report in sorted(reports, key=_key):
        meta = report["metadata"]
        # A report with no rows yet (no traffic, Prometheus not read yet) is listed all the same.
        for row in (report.get("status") or {}).get("rows") or [{}]:
            out.append({
                "kind": "EnergyReportRow", "namespace": meta.get("namespace", ""),
                "name": meta["name"], "model": row.get("model"), "pool": row.get("pool"),
                "gpuWhPerRequest": row.get("gpuWhPerRequest"),
                "gCO2ePerRequest": row.get("gCO2ePerRequest"),
                "costPerRequest": row.get("costPerRequest"), "currency": row.get("currency"),
                "billedCostPerRequest": row.get("billedCostPerRequest"),
                "energyGrade": row.get("energyGrade"), "carbonGrade": row.get("carbonGrade"),
            })  # fmt: skip
    return out


def _cost(key: str) -> Callable[[Obj], str]:
    return lambda r: _money(r.get(key), r.get("currency"), 4)


REPORT_COLUMNS: tuple[Column, ...] = (
    Column("REPORT", lambda r: f"{r['namespace']}/{r['name']}"),
    Column("MODEL", lambda r: str(r.get("model") or "-")),
    Column("POOL", lambda r: str(r.get("pool") or "-")),
    Column("GPU-Wh/req", lambda r: output.number(r.get("gpuWhPerRequest"), 4)),
    Column("gCO2e/req", lambda r: output.number(r.get("gCO2ePerRequest"), 4)),
    Column("COST/req", _cost("costPerRequest")),
    Column("BILLED/req", _cost("billedCostPerRequest")),
    Column(
        "GRADES(ENERGY/CARBON)",
        lambda r: f"{r.get('energyGrade') or '?'}/{r.get('carbonGrade') or '?'}",
    ),
)


def report_rows(reports: Sequence[Obj]) -> list[tuple[str, ...]]:
    return _cells(report_records(reports), REPORT_COLUMNS)


# ---------------------------------------------------------------- why


def why_pod(pod: Obj) -> dict[str, Any]:
    """The decision recorded on a pod, as data: its state (waiting, placed, ungoverned,
    unreadable), pool, node, reason code, and greenplace's message without its subject."""
    from greenplace.controller import podspec

    meta = pod["metadata"]
    annotations = meta.get("annotations") or {}
    data: dict[str, Any] = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"],
                            "node": (pod.get("spec") or {}).get("nodeName")}  # fmt: skip
    if podspec.is_gated(pod):
        held = annotations.get(podspec.HOLD_ANNOTATION)
        reason, colon, message = (held or "").partition(": ")
        if not colon:
            reason, message = "", held or "not planned yet"
        return data | {"state": "Waiting", "reason": reason or None,
                       "message": output.strip_verb(message)}  # fmt: skip
    record = podspec.placement_record(pod)
    if record is None:
        return data | {
            "state": "NotGoverned",
            "message": "not governed by greenplace (no gate, no placement record)",
        }
    if not record:
        raw = annotations[podspec.PLACEMENT_ANNOTATION]
        return data | {"state": "Unreadable",
                       "message": f"unreadable placement record {raw[:200]!r}"}  # fmt: skip
    message = output.strip_subject(str(record.get("message", "")))
    where, colon, reason = message.removeprefix("placed in ").partition(": ")
    if not message.startswith("placed in ") or not colon:  # not greenplace's usual words
        where, reason = str(record.get("pool")), message
    return data | {
        "state": "Placed", "pool": record.get("pool"), "where": where,
        "reason": record.get("reason"), "message": reason, "record": dict(record),
    }  # fmt: skip


def why(pod: Obj) -> str:
    """The decision recorded on a pod, in full, once."""
    data = why_pod(pod)
    name = f"{data['namespace']}/{data['name']}"
    if data["state"] == "Waiting":
        code = f", {data['reason']}" if data.get("reason") else ""
        return f"{name} waits (gated{code}): {data['message']}"
    if data["state"] == "Placed":
        node = data.get("node") or "not bound yet"
        code = f"{data['reason']}: " if data.get("reason") else ""
        return f"{name} placed in {data['where']}, node {node}: {code}{data['message']}"
    if data["state"] == "NotGoverned":
        return f"{name} is {data['message']}"
    return f"{name}: {data['message']}"


def why_dispatch(workload: Obj, events: Sequence[Obj] = ()) -> str:
    """What greenplace's MultiKueue dispatcher did with a manager Workload: the cluster it
    nominated (or Kueue admitted it in), its record, and its last Event (why it waits)."""
    from greenplace.controller import cache as cache_

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


def why_workload(workload: Obj, ours: frozenset[str], events: Sequence[Obj] = ()) -> str:
    """greenplace's answer on a Kueue Workload: its check, its record, its last Event."""
    from greenplace.controller import kueue

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
            f"{record.get('country')}, {output.number(record.get('gco2PerKwh'))} "
            f"gCO2e/kWh(xPUE), policies {', '.join(record.get('policies') or []) or '-'}, "
            f"budgets {', '.join(record.get('budgets') or []) or '-'}, at {record.get('at')}"
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


# ---------------------------------------------------------------- the commands


def _pools(args: argparse.Namespace) -> int:
    every = pool_records(_list(args, "gpupools", namespaced=False))
    remote = [p for p in every if p.get("cluster")]
    local = [p for p in every if not p.get("cluster")]
    output.emit(
        every, args.output, [(local, POOL_COLUMNS), (remote, WORKER_POOL_COLUMNS)],
        output.nothing_found(None),
    )  # fmt: skip
    return 0


def _budgets(args: argparse.Namespace) -> int:
    namespace = kubeapi.namespace_of(args)
    found = budget_records(_list(args, "budgets", namespace=namespace))
    output.emit(found, args.output, [(found, BUDGET_COLUMNS)], output.nothing_found(namespace))
    return 0


def _reports(args: argparse.Namespace) -> int:
    namespace = kubeapi.namespace_of(args)
    found = report_records(_list(args, "energyreports", namespace=namespace))
    output.emit(found, args.output, [(found, REPORT_COLUMNS)], output.nothing_found(namespace))
    return 0


def target(args: argparse.Namespace) -> tuple[str, str, str]:
    """(kind, namespace, name) of ``why``'s argument, its -n and the context's namespace."""
    parts = args.target.split("/")
    kind = "pod"
    if len(parts) > 1 and parts[0] in KINDS:
        kind, parts = KINDS[parts[0]], parts[1:]
    if len(parts) > 2 or not all(parts):
        raise output.CliError(
            f"greenplace why: {args.target!r}: give NAME, pod/NAME, workload/NAME or job/NAME "
            "(with -n NAMESPACE), or NAMESPACE/NAME"
        )
    if args.all_namespaces:
        raise output.CliError("a resource cannot be retrieved by name across all namespaces")
    if len(parts) == 2:
        namespace, name = parts
        if args.namespace and args.namespace != namespace:
            raise output.CliError(
                f"{args.target} names namespace {namespace}, -n names {args.namespace}"
            )
        return kind, namespace, name
    return kind, args.namespace or kubeapi.context_namespace(args) or "default", parts[0]


def _why(args: argparse.Namespace) -> int:
    kind, namespace, name = target(args)
    if kind != "pod":
        return _why_kueue(args, kind, namespace, name)
    from kubernetes import client

    core = client.CoreV1Api(kubeapi.connect(args))
    body = core.read_namespaced_pod(name, namespace, _request_timeout=kubeapi.REQUEST_TIMEOUT)
    pod = core.api_client.sanitize_for_serialization(body)
    if args.output in ("json", "yaml"):
        output.emit([why_pod(pod)], args.output, [], "")
    else:
        print(why(pod))
    return 0


def _why_kueue(args: argparse.Namespace, kind: str, namespace: str, name: str) -> int:
    """``why workload/NAME`` or ``why job/NAME`` (the Workload the Job owns)."""
    api = kubeapi.connect(args)
    workloads, ours = placements.kueue_objects(api, namespace)
    if kind == "job":
        owned = [
            w for w in workloads
            if any(o.get("kind") == "Job" and o.get("name") == name
                   for o in w["metadata"].get("ownerReferences") or [])
        ]  # fmt: skip
    else:
        owned = [w for w in workloads if w["metadata"]["name"] == name]
    texts: list[str]
    if owned:
        texts = [why_workload(w, ours, _events(api, w)) for w in owned]
    else:
        texts = _dispatched(api, kind, namespace, name)
    if not texts:
        where = "Kueue is not installed or " if not ours else ""
        raise output.CliError(
            f"no Kueue Workload for {kind} {namespace}/{name} ({where}no greenplace "
            "AdmissionCheck exists, or Kueue has not made its Workload yet)"
        )
    if args.output in ("json", "yaml"):
        items = [
            {"kind": "Workload", "namespace": namespace, "name": n, "text": t}
            for n, t in zip(_names(owned, api, kind, namespace, name), texts, strict=False)
        ]
        output.emit(items, args.output, [], "")  # fmt: skip
    else:
        print("\n".join(texts))
    return 0


def _names(owned: Sequence[Obj], api: client.ApiClient, kind: str, ns: str, name: str) -> list[str]:
    if owned:
        return [str(w["metadata"]["name"]) for w in owned]
    return [str(w["metadata"]["name"]) for w in _kueue_workloads(api, kind, ns, name)]


def _events(api: client.ApiClient, workload: Obj) -> list[Obj]:
    """greenplace's Events on the Workload ``workload``."""
    from kubernetes import client

    meta = workload["metadata"]
    events = client.CoreV1Api(api).list_namespaced_event(
        meta["namespace"],
        field_selector=f"involvedObject.kind=Workload,involvedObject.name={meta['name']}",
        _request_timeout=kubeapi.REQUEST_TIMEOUT,
    )
    return [
        e for e in api.sanitize_for_serialization(events.items)
        if (e.get("source") or {}).get("component") == "greenplace"
        or e.get("reportingComponent") == "greenplace"
    ]  # fmt: skip


def _kueue_workloads(api: client.ApiClient, kind: str, namespace: str, name: str) -> list[Obj]:
    """Kueue's Workloads of ``kind`` ``namespace/name`` (none when Kueue is not installed)."""
    from kubernetes import client

    from greenplace.controller import kueue

    custom = client.CustomObjectsApi(api)
    try:
        found = custom.list_namespaced_custom_object(
            kueue.GROUP, kueue.VERSION, namespace, kueue.KINDS["Workload"],
            _request_timeout=kubeapi.REQUEST_TIMEOUT,
        )  # fmt: skip
    except client.ApiException:
        return []
    return [
        w for w in found.get("items") or []
        if (kind == "workload" and w["metadata"]["name"] == name)
        or (kind == "job" and any(o.get("kind") == "Job" and o.get("name") == name
                                  for o in w["metadata"].get("ownerReferences") or []))
    ]  # fmt: skip


def _dispatched(api: client.ApiClient, kind: str, namespace: str, name: str) -> list[str]:
    """``why_dispatch`` of the Workloads of ``kind`` ``namespace/name`` that wait on a
    MultiKueue check (none when there is no such Workload)."""
    return [why_dispatch(w, _events(api, w)) for w in _kueue_workloads(api, kind, namespace, name)]


def _list(
    args: argparse.Namespace, plural: str, namespaced: bool = True, namespace: str | None = None
) -> list[Obj]:
    """The objects of ``plural``: of ``namespace``, else of every namespace (or cluster-scoped)."""
    from kubernetes import client

    custom = client.CustomObjectsApi(kubeapi.connect(args))
    timeout = kubeapi.REQUEST_TIMEOUT
    found = (
        custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, _request_timeout=timeout
        )
        if namespaced and namespace
        else custom.list_cluster_custom_object(GROUP, VERSION, plural, _request_timeout=timeout)
    )
    items: list[Obj] = found.get("items", [])
    return items


def _cells(records: Sequence[Obj], columns: Sequence[Column]) -> list[tuple[str, ...]]:
    return [tuple(c.cell(r) for c in columns if c.shown != "wide") for r in records]


def _key(obj: Obj) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"


def _condition(obj: Obj, kind: str, field: str = "status", none: str = "?") -> str:
    """The ``field`` of ``obj``'s condition of type ``kind``, ``none`` without one."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get(field) or condition.get("status"))
    return none


def _reason(obj: Obj, kind: str) -> str:
    """Why the condition is as it is (its reason), "-" when the operator set none."""
    return _condition(obj, kind, "reason", "-")
