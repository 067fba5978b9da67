"""The metrics the operator exports, and the series its dashboard and its docs name.

Why this module exists: a dashboard panel or a documented metric naming a series the operator
does not export (or a label it does not carry) shows nothing, silently. The unit test checks
every name the Grafana dashboard and the docs use against the operator's collectors
(``operator_registry``); an integration test checks that a running operator really declares
each of those collectors on /metrics (``declared``).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from collections.abc import Iterator

import prometheus_client

from greenplace.accounting import telemetry as accounting_telemetry
from greenplace.controller import metrics
from greenplace.signals import telemetry as signal_telemetry

__all__ = ["DASHBOARD", "Use", "dashboard_uses", "declared", "doc_uses", "exported",
           "operator_registry"]  # fmt: skip

ROOT = pathlib.Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts/greenplace/dashboards/greenplace.json"

_SERIES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("_count", "_sum"),
}


@dataclasses.dataclass(frozen=True)
class Use:
    """A series named somewhere (a query, a doc), with the labels that place relies on."""

    series: str
    labels: frozenset[str]
    where: str


def operator_registry() -> prometheus_client.CollectorRegistry:
    """A registry with every collector the operator serves on /metrics (``handlers.register``:
    placement, signal and accounting metrics)."""
    registry = prometheus_client.CollectorRegistry()
    metrics.PlacementMetrics(registry)
    signal_telemetry.SignalMetrics(registry)
    accounting_telemetry.AccountingMetrics(registry)
    return registry


def exported(registry: prometheus_client.CollectorRegistry) -> dict[str, frozenset[str]]:
    """Series name (``_total``, ``_bucket`` ... included) and family name -> the labels it
    carries."""
    found: dict[str, frozenset[str]] = {}
    collectors = registry._names_to_collectors.values()
    for collector in set(collectors):
        kind, name = collector._type, collector._name  # type: ignore[attr-defined]
        labels = frozenset(collector._labelnames)  # type: ignore[attr-defined]
        found[name] = labels
        for suffix in _SERIES[kind]:
            found[name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return found


def declared(page: str) -> dict[str, str]:
    """Metric family -> type, from the ``# TYPE`` lines of a /metrics page (a family is
    declared even before it has a sample)."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", page, flags=re.MULTILINE))


_SELECTOR = re.compile(r"(greenplace_[a-z0-9_]+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)")


def query_uses(query: str, where: str) -> list[Use]:
    """The greenplace series a PromQL query (or Grafana ``label_values``) reads, each with the
    labels it matches on or groups by."""
    grouped = {label.strip() for g in _GROUPING.findall(query) for label in g.split(",")}
    values = _LABEL_VALUES.search(query)
    if values is not None:
        grouped.add(values.group(2))
    return [
        Use(name, frozenset(_MATCHER.findall(braces)) | grouped, where)
        for name, braces in _SELECTOR.findall(query)
    ]


def dashboard_uses(path: pathlib.Path = DASHBOARD) -> list[Use]:
    """Every series the dashboard's panels and template variables query."""
    dashboard = json.loads(path.read_text())
    uses = [
        use
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for use in query_uses(target["expr"], f"panel {panel['id']}")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else ""
        uses += query_uses(text, f"variable {variable['name']}")
    return uses


# A name in prose: ``greenplace_x{reason}`` (its labels) or ``greenplace_budget_{limit,spent}``
# (alternatives after a trailing underscore), optionally followed by labels.
_MENTION = re.compile(r"(greenplace_[a-z0-9_]*)(?:\{([a-z0-9_, ]+)\})?(?:\{([a-z0-9_, ]+)\})?")


def doc_uses(text: str, where: str) -> Iterator[Use]:
    """The metrics a document names, with the labels it says they carry."""
    for stem, first, second in _MENTION.findall(text):
        if stem.endswith("_") and first:
            names, labels = [stem + part.strip() for part in first.split(",")], second
        else:
            names, labels = [stem], first
        for name in names:
            yield Use(name, frozenset(x.strip() for x in labels.split(",") if x.strip()), where)
