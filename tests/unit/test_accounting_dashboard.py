"""The Grafana dashboard and the docs name only series the operator exports, with their labels.

The operator's collectors (placement, signal and accounting: ``metricnames.operator_registry``)
are the reference; ``tests/integration/test_placement.py`` checks that a running operator
declares each of them on /metrics.
"""

from __future__ import annotations

import ast
import json

import pytest

from tests import metricnames

DOCUMENTS = [
    "docs/operator.md",
    "docs/signals.md",
    "docs/energy.md",
    "docs/install.md",
    "operator/greenplace/controller/metrics.py",
    "operator/greenplace/signals/telemetry.py",
    "operator/greenplace/accounting/telemetry.py",
]


def unknown(uses: list[metricnames.Use]) -> list[str]:
    """What in ``uses`` is not exported: a series, or a label the series does not carry."""
    series = metricnames.exported(metricnames.operator_registry())
    wrong = []
    for use in uses:
        if use.series not in series:
            wrong.append(f"{use.where}: {use.series} is not exported")
        elif not use.labels <= series[use.series]:
            missing = ", ".join(sorted(use.labels - series[use.series]))
            wrong.append(f"{use.where}: {use.series} has no label {missing}")
    return wrong


def test_every_series_and_label_the_dashboard_queries_is_exported() -> None:
    uses = metricnames.dashboard_uses()
    assert len({u.series for u in uses}) >= 15, "the dashboard's queries were not all read"
    assert unknown(uses) == []


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_metric_a_document_names_is_exported(document: str) -> None:
    text = (metricnames.ROOT / document).read_text()
    if document.endswith(".py"):  # what the module says it exports, not its code
        text = ast.get_docstring(ast.parse(text)) or ""
    uses = list(metricnames.doc_uses(text, document))
    assert uses, f"{document} names no metric: drop it from DOCUMENTS"
    assert unknown(uses) == []


def test_the_placement_metrics_are_checked_too() -> None:
    """A name or label that differs from the placement collectors' is caught, as a dashboard
    panel or a doc line on placements would be."""
    right = metricnames.query_uses('sum by (reason) (greenplace_placements_total{reason="x"})', "")
    assert unknown(right) == []
    wrong = metricnames.query_uses("sum by (pool) (greenplace_placed_total)", "panel 99")
    assert unknown(wrong) == ["panel 99: greenplace_placed_total is not exported"]
    label = metricnames.query_uses('greenplace_cycle_phase_seconds_count{stage="3-plan"}', "p")
    assert unknown(label) == ["p: greenplace_cycle_phase_seconds_count has no label stage"]


def test_panel_ids_are_one_to_n() -> None:
    dashboard = json.loads(metricnames.DASHBOARD.read_text())
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))
