"""Report and budget figures as Prometheus gauges, in a registry the operator serves.

Why this module exists: dashboards (charts/greenplace/dashboards/greenplace.json) and alerts read
the same figures as the ``EnergyReport`` resources. Collectors are registered in a registry the
caller owns (never the global one). Every report gauge carries ``namespace`` and ``report`` (the
``EnergyReport``'s own namespace and name) so several reports coexist; each ``publish`` replaces
only that report's rows, so a model that stopped serving disappears instead of showing its last
value forever, and ``forget`` removes a deleted report's rows.

Gauges, labels ``namespace``, ``report``, ``model``, ``pool``, ``zone`` (and ``currency`` on
money):
``greenplace_request_energy_wh`` (GPU Wh/request), ``greenplace_request_facility_energy_wh``,
``greenplace_request_carbon_gco2e``, ``greenplace_request_cost``, ``greenplace_tokens_cost_per_1k``,
``greenplace_tokens_carbon_gco2e_per_1k``, ``greenplace_report_requests``,
``greenplace_report_energy_wh`` (facility), ``greenplace_report_carbon_gco2e``,
``greenplace_report_cost``,
``greenplace_request_grade{scale=energy|carbon,grade}`` (1 = A .. 5 = E),
``greenplace_report_unattributed_energy_wh{namespace,report,pool}``,
``greenplace_report_window_seconds{namespace,report}``;
budgets: ``greenplace_budget_{limit,spent,forecast,remaining}{namespace,budget,unit}`` and
``greenplace_budget_fraction_spent``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping

import prometheus_client

from greenplace.accounting import budget, report

__all__ = ["AccountingMetrics"]

_REPORT = ["namespace", "report"]
_ROW = [*_REPORT, "model", "pool", "zone"]
_MONEY = [*_ROW, "currency"]
_BUDGET = ["namespace", "budget", "unit"]


class AccountingMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: list[str]) -> prometheus_client.Gauge:
            return prometheus_client.Gauge(name, doc, labels, registry=registry)

        self.row_gauges = {
            "gpu_wh_per_request": gauge(
                "greenplace_request_energy_wh", "GPU energy per request (Wh, no PUE).", _ROW
            ),
            "facility_wh_per_request": gauge(
                "greenplace_request_facility_energy_wh", "Energy per request x PUE (Wh).", _ROW
            ),
            "gco2e_per_request": gauge(
                "greenplace_request_carbon_gco2e",
                "gCO2e per request (operational + embodied).",
                _ROW,
            ),
            "gco2e_per_1k_tokens": gauge(
                "greenplace_tokens_carbon_gco2e_per_1k", "gCO2e per 1000 tokens.", _ROW
            ),
            "requests": gauge("greenplace_report_requests", "Requests served in the window.", _ROW),
            "facility_wh": gauge(
                "greenplace_report_energy_wh", "Facility energy in the window (Wh).", _ROW
            ),
            "gco2e": gauge("greenplace_report_carbon_gco2e", "gCO2e in the window.", _ROW),
        }
        self.money_gauges = {
            "cost_per_request": gauge("greenplace_request_cost", "Cost per request.", _MONEY),
            "cost_per_1k_tokens": gauge(
                "greenplace_tokens_cost_per_1k", "Cost per 1000 tokens.", _MONEY
            ),
            "cost": gauge("greenplace_report_cost", "GPU cost in the window.", _MONEY),
        }
        self.grade = gauge(
            "greenplace_request_grade",
            "A-E label as a number, 1 = A .. 5 = E.",
            [*_ROW, "scale", "grade"],
        )
        self.unattributed = gauge(
            "greenplace_report_unattributed_energy_wh",
            "GPU energy in the window charged to no model (idle GPUs, free MIG slices).",
            [*_REPORT, "pool"],
        )
        self.window = gauge(
            "greenplace_report_window_seconds", "Length of the accounting window.", _REPORT
        )
        # What each report set, to replace or remove only its own rows.
        self._published: dict[
            tuple[str, str], list[tuple[prometheus_client.Gauge, tuple[str, ...]]]
        ] = {}
        self.budget_gauges = {
            field: gauge(f"greenplace_budget_{name}", doc, _BUDGET)
            for field, name, doc in (
                ("limit", "limit", "Budget limit for the period."),
                ("spent", "spent", "Spent so far in the period."),
                ("forecast_at_end", "forecast", "Linear-burn forecast at the period end."),
                ("remaining", "remaining", "Limit minus spent."),
                ("fraction_spent", "fraction_spent", "Spent / limit."),
            )
        }
        self._budget_rows: set[tuple[str, str, str]] = set()  # (namespace, budget, unit) set

    def publish(self, energy_report: report.EnergyReport, namespace: str, name: str) -> None:
        """Replace the rows of report ``namespace/name`` with those of ``energy_report``."""
        self.forget(namespace, name)
        published = self._published[(namespace, name)] = []

        def put(g: prometheus_client.Gauge, labels: Iterable[str], value: float) -> None:
            key = (namespace, name, *labels)
            g.labels(*key).set(value)
            published.append((g, key))

        for row in energy_report.rows:
            labels = (row.model, row.pool, row.grid_zone)
            for field, g in self.row_gauges.items():
                value = getattr(row, field)
                if value is not None:
                    put(g, labels, value)
            for field, g in self.money_gauges.items():
                value = getattr(row, field)
                if value is not None:
                    put(g, (*labels, row.currency), value)
            for scale, letter in (("energy", row.energy_grade), ("carbon", row.carbon_grade)):
                if letter is not None:
                    put(self.grade, (*labels, scale, str(letter)), letter.rank)
        for pool, wh in energy_report.unattributed_gpu_wh.items():
            put(self.unattributed, (pool,), wh)
        window = energy_report.window_end - energy_report.window_start
        put(self.window, (), window.total_seconds())

    def forget(self, namespace: str, name: str) -> None:
        """Remove every row report ``namespace/name`` published (deleted, or refused)."""
        for g, key in self._published.pop((namespace, name), []):
            with contextlib.suppress(KeyError):  # already gone
                g.remove(*key)

    def reports(self) -> set[tuple[str, str]]:
        """(namespace, name) of the reports that have rows published."""
        return set(self._published)

    def publish_budget(
        self, namespace: str, name: str, unit: str, figures: budget.BudgetFigures
    ) -> None:
        for field, g in self.budget_gauges.items():
            g.labels(namespace, name, unit).set(getattr(figures, field))

    def publish_budgets(
        self, figures: Mapping[tuple[str, str], Mapping[str, budget.BudgetFigures]]
    ) -> None:
        """Set every Budget's figures per unit, and drop the rows of limits or Budgets gone."""
        rows = {(ns, name, unit) for (ns, name), units in figures.items() for unit in units}
        for labels in self._budget_rows - rows:
            for g in self.budget_gauges.values():
                g.remove(*labels)
        self._budget_rows = rows
        for (namespace, name), units in figures.items():
            for unit, each in units.items():
                self.publish_budget(namespace, name, unit, each)
