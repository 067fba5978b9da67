"""The auditor's report: every workload of a namespace placed in a time window, where it ran,
under which legal regime, which certifications covered its run, its energy, CO2e and cost.

Why this module exists: an auditor reads a table, not a hash chain. The report is made from
verified records only (``chain.verify`` first: the CLI refuses to render a broken ledger),
and shows what the records hold as they were written: the pool's facts as they stood at the
decision, not as the GpuPool says today. HTML for reading (one self-contained page, no
script) and CSV for spreadsheets, with the same rows and columns (``COLUMNS``). Pure.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from greenplace.api import timestamps
from greenplace.audit import chain

__all__ = [
    "COLUMNS",
    "Report",
    "build",
    "html_table",
    "to_csv",
    "to_html",
]

COLUMNS = (
    "placed at", "workload", "pods", "pool", "provider", "region", "country", "legal regime",
    "certifications valid over the run", "energy kWh", "kgCO2e", "cost", "currency", "reason",
    "record",
)  # fmt: skip
WAITING_COLUMNS = ("decided at", "workload", "outcome", "reason", "message", "record")


@dataclasses.dataclass(frozen=True)
class Report:
    namespace: str
    start: datetime.datetime
    end: datetime.datetime
    verification: str
    placed: tuple[tuple[str, ...], ...]
    waiting: tuple[tuple[str, ...], ...]


def _number(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else ""


def _regime(pool: Mapping[str, Any] | None) -> str:
    jurisdiction = (pool or {}).get("jurisdiction")
    if not isinstance(jurisdiction, Mapping):
        return "unknown"
    regimes = ", ".join(jurisdiction.get("regimes") or ()) or "none"
    exposures = ", ".join(jurisdiction.get("exposures") or ()) or "none"
    return (
        f"legal home {jurisdiction.get('legalHome')}; regimes {regimes}; "
        f"extraterritorial exposure {exposures}"
    )


def _certifications(pool: Mapping[str, Any] | None) -> str:
    shown = []
    for cert in (pool or {}).get("certifications") or ():
        name = f"{cert.get('name')} {cert.get('level') or ''}".strip()
        if cert.get("verified"):  # backed by a signed credential (docs/credentials.md)
            name += ", verified credential"
        covers = cert.get("coversRun")
        until = cert.get("validUntil")
        if covers is True:
            shown.append(f"{name} (until {until})")
        elif covers is False:
            shown.append(f"{name}: NOT over the whole run (until {until})")
        else:
            shown.append(f"{name} (until {until}; run length unknown)")
    return "; ".join(shown) or "none"


def _placed_row(record: Mapping[str, Any]) -> tuple[str, ...]:
    entry = record["entry"]
    pool = entry.get("pool") if isinstance(entry.get("pool"), Mapping) else None
    charge = entry.get("charge") or {}
    pods = entry.get("pods") or ()
    when = next((p.get("placedAt") for p in pods if p.get("placedAt")), record["at"])
    return (
        str(when),
        str(entry.get("workload")),
        ", ".join(str(p.get("name")) for p in pods),
        str((pool or {}).get("name") or entry.get("poolName") or ""),
        str((pool or {}).get("provider", "")),
        str((pool or {}).get("region", "")),
        str((pool or {}).get("country", "")),
        _regime(pool),
        _certifications(pool),
        _number(charge.get("kWh"), 3),
        _number(charge.get("kgCO2e"), 3),
        _number(charge.get("money"), 2),
        str((pool or {}).get("currency", "")),
        str(entry.get("reason")),
        f"{record['seq']}" + (" (recovered)" if entry.get("kind") == "recovered" else ""),
    )


def _waiting_row(record: Mapping[str, Any]) -> tuple[str, ...]:
    entry = record["entry"]
    return (
        str(record["at"]),
        str(entry.get("workload")),
        str(entry.get("outcome")),
        str(entry.get("reason")),
        str(entry.get("message") or ""),
        str(record["seq"]),
    )


def build(
    verification: chain.Verification,
    namespace: str,
    start: datetime.datetime,
    end: datetime.datetime,
) -> Report:
    """The report of ``namespace`` over [``start``, ``end``) from a verified chain."""
    if not verification.ok:
        raise ValueError(verification.summary())
    placed, waiting = [], []
    for record in verification.records:
        entry = record["entry"]
        at = timestamps.parse_rfc3339(record.get("at"))
        if entry.get("namespace") != namespace or at is None or not start <= at < end:
            continue
        if entry.get("outcome") == "Placed":
            placed.append(_placed_row(record))
        else:
            waiting.append(_waiting_row(record))
    return Report(namespace, start, end, verification.summary(), tuple(placed), tuple(waiting))


def to_csv(report: Report) -> str:
    """The placements as CSV (one header row, then one row per placement record)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(report.placed)
    return out.getvalue()


def html_table(table_id: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """An HTML table, every cell escaped (also ``greenplace finops reconcile -o html``)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #999;padding:.3em .5em;font-size:90%;vertical-align:top}"
    "th{background:#eee}#verification{font-weight:bold}"
)


def to_html(report: Report) -> str:
    """One self-contained HTML page: the verification, the placements, the other decisions."""
    window = f"{timestamps.rfc3339(report.start)} to {timestamps.rfc3339(report.end)}"
    title = f"greenplace placements in {report.namespace}, {window}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p id="verification">{html.escape(report.verification)}</p>'
        f"<h2>Placements ({len(report.placed)})</h2>"
        + html_table("placements", COLUMNS, report.placed)
        + f"<h2>Decisions that placed nothing ({len(report.waiting)})</h2>"
        + html_table("waiting", WAITING_COLUMNS, report.waiting)
        + "<p>Energy, CO2e and cost are the planner's estimate of each run as charged to its "
        "budgets; certifications are as the GpuPool stated them at the decision, "
        "those marked verified backed by a signed credential that verified then.</p>"
        "</body></html>"
    )
