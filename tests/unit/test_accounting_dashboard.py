"""The Grafana dashboard queries only metrics the operator really exports."""

from __future__ import annotations

import json
import pathlib
import re

import prometheus_client

from greenplace.accounting import telemetry as accounting_telemetry
from greenplace.signals import telemetry as signal_telemetry

DASHBOARD = (
    pathlib.Path(__file__).resolve().parents[2] / "charts/greenplace/dashboards/greenplace.json"
)


def test_dashboard_metric_names_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"greenplace_[a-z0-9_]+", e)}
    registry = prometheus_client.CollectorRegistry()
    accounting_telemetry.AccountingMetrics(registry)
    signal_telemetry.SignalMetrics(registry)
    exported = set()
    for family in registry.collect():
        exported |= {family.name, f"{family.name}_total"}
    assert used and used <= exported, used - exported
    assert {p["id"] for p in dashboard["panels"]} == set(range(1, len(dashboard["panels"]) + 1))
