"""``greenplace finops reconcile``: a FOCUS billing export split over the pools, to the cent.

Why this module exists: a FinOps team checks greenplace's cost against the invoice. This command
reads FOCUS exports (``accounting.focus``), takes the pools' billing rules from GpuPool manifests
(``--pools``) or from the cluster, and prints per billing period and account the bill split into
the pools, the parts kept apart and the remainder no pool claims (they add up to the BilledCost
of the export), and per pool and period the effective price per GPU-hour (docs/finops.md).

``-o json`` writes every amount as an exact decimal string and each period's fingerprint; given
back with ``--reconciled``, the periods it holds are reported and not applied again (and a
period whose rows changed since is named). ``-o html`` writes the two tables as one
self-contained page (no script, no fetch: it opens from a mail or an archive as it is).
Errors are one line and exit 1, as every command's.
"""

# Imports inside functions on purpose: a command loads only what it runs (start-up time).
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import html
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from greenplace.audit import report
from greenplace.cli import main, output

if TYPE_CHECKING:
    from greenplace.accounting import focus
    from greenplace.api import models

__all__ = ["document", "register"]

DOCUMENT_KIND = "FinopsReconciliation"
DESCRIPTION = """\
Reconcile FOCUS billing exports (CSV or Parquet, FOCUS 1.0 to 1.2) with the GpuPools.

Each pool claims the charges its spec.billing.match selects; per billing period and account
the bill is split into the pools, commitment purchases, unused commitments, credits, taxes,
support, adjustments and the remainder no pool claims, which add up to the export's BilledCost.
Per pool and period: GPU-hours and the effective price per GPU-hour (EffectiveCost, with
commitments amortised). Duplicated rows count once. Give back a previous -o json with
--reconciled: its periods are reported and not applied again (docs/finops.md)."""


def register(subparsers: Any, names: set[str] | None = None) -> None:
    parser = subparsers.add_parser(
        "finops",
        help=main.help_of("finops"),
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="finops_command", required=True, metavar="COMMAND")
    reconcile = commands.add_parser(
        "reconcile",
        help="split a FOCUS export over the pools; effective price per GPU-hour",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    reconcile.add_argument(
        "--file",
        action="append",
        required=True,
        type=pathlib.Path,
        metavar="F",
        help="a FOCUS export: .csv, .csv.gz or .parquet (repeat for several; a row in two "
        "files counts once)",
    )
    reconcile.add_argument(
        "--pools",
        type=pathlib.Path,
        metavar="YAML",
        help="GpuPool manifests to take the billing rules from (default: the cluster's)",
    )
    reconcile.add_argument(
        "--reconciled",
        type=pathlib.Path,
        metavar="JSON",
        help="a previous `-o json` of this command: its periods are not applied again",
    )
    reconcile.add_argument(
        "-o",
        "--output",
        choices=("table", "json", "html"),
        default="table",
        help="(default: table; html: one self-contained page on stdout)",
    )
    reconcile.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )
    reconcile.add_argument("--context", help="the kubeconfig context to use (default: its current)")
    reconcile.set_defaults(func=run_reconcile)


def run_reconcile(args: argparse.Namespace) -> int:
    from greenplace.accounting import focus

    pools = _pools_file(args.pools) if args.pools else _cluster_pools(args)
    previous = _reconciled(args.reconciled) if args.reconciled else {}
    export = focus.read_export(args.file)
    result = focus.reconcile(export, focus.claims_of(pools), previous)
    if result.duplicates:
        print(f"note: {result.duplicates} duplicated rows counted once", file=sys.stderr)
    for period, changed in sorted(result.already.items()):
        print(
            f"note: period {period} was reconciled before: not applied again"
            + ("; its rows changed since: re-check it with the provider" if changed else ""),
            file=sys.stderr,
        )
    if args.output == "json":
        print(json.dumps(document(result), indent=2))
        return 0
    pool_rows = [_pool_cells(p, result.currency) for p in result.pools]
    account_rows = [_account_cells(a, result.currency) for a in result.accounts]
    if args.output == "html":
        print(to_html(result, [str(f) for f in args.file], pool_rows, account_rows))
        return 0
    shown = []
    if pool_rows:
        shown.append(output.table(POOL_HEADER, pool_rows))
    if account_rows:
        shown.append(output.table(ACCOUNT_HEADER, account_rows))
    if shown:
        print("\n\n".join(shown))
    return 0


# ---------------------------------------------------------------- the pools


def _pools_file(path: pathlib.Path) -> list[tuple[str, models.GpuPoolSpec]]:
    import pydantic
    import yaml

    from greenplace.api import models

    try:
        documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0]
        raise output.CliError(f"{path}: not a readable YAML file: {reason}") from None
    pools = []
    for number, doc in enumerate(documents, start=1):
        if not isinstance(doc, dict) or doc.get("kind") != "GpuPool":
            continue
        name = (doc.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise output.CliError(f"{path}: document {number}: a GpuPool without metadata.name")
        try:
            pools.append((name, models.GpuPoolSpec.model_validate(doc.get("spec"))))
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(step) for step in first["loc"])
            raise output.CliError(f"{path}: GpuPool {name}: spec.{where}: {first['msg']}") from None
    if not pools:
        raise output.CliError(f"{path}: no GpuPool in it")
    return pools


def _cluster_pools(args: argparse.Namespace) -> list[tuple[str, models.GpuPoolSpec]]:
    """The GpuPools of the cluster; one that does not parse is named and refused."""
    import pydantic
    from kubernetes import client

    from greenplace.api import models
    from greenplace.cli import kubeapi

    custom = client.CustomObjectsApi(kubeapi.connect(args))
    found = custom.list_cluster_custom_object(
        models.GROUP, models.VERSION, "gpupools", _request_timeout=kubeapi.REQUEST_TIMEOUT
    )
    pools = []
    for item in found.get("items", []):
        name = item["metadata"]["name"]
        try:
            pools.append((name, models.GpuPoolSpec.model_validate(item.get("spec"))))
        except pydantic.ValidationError as error:
            reason = error.errors()[0]["msg"]
            raise output.CliError(f"GpuPool {name}: invalid spec: {reason}") from None
    return pools


def _reconciled(path: pathlib.Path) -> dict[focus.Period, str]:
    """The periods of a previous ``-o json`` and their fingerprints."""
    import datetime

    from greenplace.accounting import focus

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("kind") != DOCUMENT_KIND:
            raise ValueError(f"kind is not {DOCUMENT_KIND}")
        return {
            focus.Period(
                datetime.datetime.fromisoformat(entry["start"]),
                datetime.datetime.fromisoformat(entry["end"]),
            ): str(entry["fingerprint"])
            for entry in doc["periods"]
        }
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise output.CliError(
            f"{path}: not a `greenplace finops reconcile -o json` document ({error})"
        ) from None


# ---------------------------------------------------------------- printing

POOL_HEADER = (
    "POOL", "PERIOD", "GPU-HOURS", "LIST", "EFFECTIVE", "BILLED", "LIST/GPU-H", "EFFECTIVE/GPU-H",
)  # fmt: skip
ACCOUNT_HEADER = (
    "PERIOD", "ACCOUNT", "BILLED", "POOLS", "COMMITMENTS", "UNUSED", "CREDITS", "TAXES",
    "SUPPORT", "ADJUSTMENTS", "UNCLAIMED",
)  # fmt: skip
_CENT = Decimal("0.01")
_PRICE = Decimal("0.0001")


def cents(amount: Decimal) -> str:
    """An amount to the cent (half to even, as accounting rounds), thousands separated."""
    return f"{amount.quantize(_CENT, ROUND_HALF_EVEN):,}"


def _price(amount: Decimal | None, currency: str) -> str:
    return "-" if amount is None else f"{amount.quantize(_PRICE, ROUND_HALF_EVEN)} {currency}"


def _pool_cells(pool: focus.PoolPeriod, currency: str) -> list[str]:
    return [
        pool.pool,
        str(pool.period),
        f"{pool.gpu_hours.normalize():f}",
        cents(pool.costs.listed),
        cents(pool.costs.effective),
        cents(pool.costs.billed),
        _price(pool.per_gpu_hour(pool.costs.listed), currency),
        _price(pool.effective_per_gpu_hour, currency),
    ]


def _account_cells(account: focus.AccountPeriod, currency: str) -> list[str]:
    from greenplace.accounting import focus

    def billed(kind: focus.Kind) -> str:
        part = account.parts.get(kind)
        return "-" if part is None else cents(part.billed)

    return [
        str(account.period),
        account.account,
        f"{cents(account.total.billed)} {currency}",
        billed("pool"),
        *(billed(kind) for kind in focus.KEPT_APART),
        billed("unclaimed"),
    ]


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #999;padding:.3em .5em;font-size:90%;text-align:right}"
    "td:first-child,th{text-align:left}th{background:#eee}"
)


def to_html(
    result: focus.Reconciliation,
    files: Sequence[str],
    pool_rows: Sequence[Sequence[str]],
    account_rows: Sequence[Sequence[str]],
) -> str:
    """The tables of the command as one self-contained page, every text escaped (account ids
    and file names come from the export)."""
    title = f"FOCUS reconciliation of {', '.join(files)}"
    notes = [f"{result.duplicates} duplicated rows counted once"] if result.duplicates else []
    notes += [
        f"period {period} was reconciled before: not applied again"
        + ("; its rows changed since" if changed else "")
        for period, changed in sorted(result.already.items())
    ]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>Amounts in {html.escape(result.currency)}, rounded to the cent half to even; "
        "<code>-o json</code> gives them exactly.</p>"
        + "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)
        + "<h2>Pools: effective price per GPU-hour</h2>"
        + report.html_table("pools", POOL_HEADER, pool_rows)
        + "<h2>Accounts: the bill split, on the billed basis</h2>"
        + report.html_table("accounts", ACCOUNT_HEADER, account_rows)
        + "</body></html>"
    )


def _exact(amount: Decimal | None) -> str | None:
    return None if amount is None else f"{amount:f}"


def _costs(costs: focus.Costs) -> dict[str, str | None]:
    return {
        "billed": _exact(costs.billed),
        "effective": _exact(costs.effective),
        "list": _exact(costs.listed),
    }


def document(result: focus.Reconciliation) -> dict[str, Any]:
    """The ``-o json`` document: exact amounts as decimal strings, one entry per period."""
    periods: list[dict[str, Any]] = []
    for period, fingerprint in result.fingerprints.items():
        pools = [p for p in result.pools if p.period == period]
        accounts = [a for a in result.accounts if a.period == period]
        periods.append(
            {
                "start": period.start.isoformat(),
                "end": period.end.isoformat(),
                "fingerprint": fingerprint,
                "pools": [
                    {
                        "pool": p.pool,
                        "charges": p.charges,
                        "gpuHours": _exact(p.gpu_hours),
                        **_costs(p.costs),
                        "listPerGpuHour": _exact(p.per_gpu_hour(p.costs.listed)),
                        "billedPerGpuHour": _exact(p.per_gpu_hour(p.costs.billed)),
                        "effectivePerGpuHour": _exact(p.effective_per_gpu_hour),
                    }
                    for p in pools
                ],
                "accounts": [
                    {
                        "account": a.account,
                        "charges": a.charges,
                        "corrections": a.corrections,
                        "total": _costs(a.total),
                        "parts": {kind: _costs(costs) for kind, costs in _ordered(a.parts)},
                    }
                    for a in accounts
                ],
            }
        )
    return {
        "kind": DOCUMENT_KIND,
        "currency": result.currency,
        "duplicates": result.duplicates,
        "periods": periods,
        "alreadyReconciled": [
            {"start": p.start.isoformat(), "end": p.end.isoformat(), "changed": changed}
            for p, changed in sorted(result.already.items())
        ],
    }


def _ordered(parts: Mapping[focus.Kind, focus.Costs]) -> Sequence[tuple[str, focus.Costs]]:
    from greenplace.accounting import focus

    order = ("pool", *focus.KEPT_APART, "unclaimed")
    return [(kind, parts[kind]) for kind in order if kind in parts]
