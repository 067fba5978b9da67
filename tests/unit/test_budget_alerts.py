"""A Budget's alertThresholds: a condition, one Warning Event per threshold and period, a metric.

Spend comes from real cycles placing pods (1 GPU at 2 EUR per GPU-hour, a 10 EUR Budget, so
2.5 h is 50%, 1.5 h more is 80%, 1 h more is 100%); the recorder writes to a RecordingWriter.
A restarted operator is a new cache (holding the status last written), recorder and ledger.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import prometheus_client
import pytest

from greenplace.api import models
from greenplace.controller import budgets, cycle, kube, metrics, records, status
from greenplace.controller import cache as cache_
from tests import fakes

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
NEXT_MONTH = datetime.datetime(2026, 4, 1, 0, 5, tzinfo=datetime.UTC)
THRESHOLDS = [0.5, 0.8, 1.0]


def budget(status_body: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ml", "name": "monthly", "generation": 1, "uid": "b-uid"},
        "spec": {"period": "Month", "limits": {"money": 10}, "alertThresholds": THRESHOLDS,
                 **spec},
        "status": status_body or {},
    }  # fmt: skip


class Operator:
    """One operator process: its cache, ledger and status recorder, cycling at ``now``."""

    def __init__(self, writer: fakes.RecordingWriter, budget_status: dict[str, Any]) -> None:
        self.writer = writer
        self.cache = cache_.Cache(signer=records.Signer(b"k" * 32))
        self.cache.put_pool(fakes.gpu_pool("fr", "FR"))
        self.cache.put_node(fakes.node("n1", "fr", fakes.gpus(8)))
        self.cache.put_policy(fakes.policy("fr", budgetRef={"name": "monthly"}))
        self.cache.put_budget(budget(budget_status))
        self.recorder = status.StatusRecorder(writer, clock=lambda: NOW)
        self.state = cycle.LoopState()

    def place(self, name: str, hours: float, now: datetime.datetime = NOW) -> cycle.CycleReport:
        """Create a gated 1-GPU pod of ``hours`` and run one cycle, which places it."""
        annotations = {"greenplace.dev/expected-duration-hours": f"{hours:g}"}
        self.cache.put_pod(self.writer.add(fakes.pod(name, fakes.gpus(1), annotations=annotations)))
        return self.cycle(now)

    def cycle(self, now: datetime.datetime = NOW) -> cycle.CycleReport:
        return asyncio.run(
            cycle.run_cycle(self.cache, self.writer, now, self.recorder, state=self.state)
        )


def alert_events(writer: fakes.RecordingWriter) -> list[str]:
    return [m for n, kind, reason, m in writer.events if reason == "BudgetThresholdReached"]


def reached(writer: fakes.RecordingWriter) -> dict[str, Any]:
    written = writer.last_status("budgets", "monthly")
    found: list[dict[str, Any]] = [
        c for c in written["conditions"] if c["type"] == "ThresholdReached"
    ]
    assert len(found) == 1
    return found[0]


def test_each_threshold_raises_one_event_and_the_condition_names_the_highest() -> None:
    writer = fakes.RecordingWriter()
    gp = Operator(writer, {})
    gp.place("below", 2)  # 4 EUR: 40%
    assert alert_events(writer) == []
    condition = reached(writer)
    assert (condition["status"], condition["reason"]) == ("False", "BelowThresholds")
    assert condition["message"] == "40% of 10 EUR spent this Month, below 50%"

    gp.place("half", 0.5)  # 5 EUR
    assert alert_events(writer) == ["50% of 10 EUR spent this Month (5.00)"]
    gp.cycle()
    gp.cycle(NOW + datetime.timedelta(hours=1))
    assert len(alert_events(writer)) == 1, "one Event per threshold, not one per cycle"
    gp.place("most", 1.5)  # 8 EUR
    gp.place("all", 1)  # 10 EUR
    gp.cycle()
    assert alert_events(writer) == [
        "50% of 10 EUR spent this Month (5.00)",
        "80% of 10 EUR spent this Month (8.00)",
        "100% of 10 EUR spent this Month (10.00)",
    ]
    condition = reached(writer)
    assert (condition["status"], condition["reason"]) == ("True", "AlertThreshold")
    assert condition["message"] == "100% of 10 EUR spent this Month (10.00)"
    assert writer.last_status("budgets", "monthly")["alertedThresholds"] == THRESHOLDS
    involved = [e for e in writer.events if e[2] == "BudgetThresholdReached"]
    assert {(name, kind) for name, kind, _, _ in involved} == {("monthly", "Warning")}


def test_a_jump_past_several_thresholds_raises_one_event_for_each() -> None:
    writer = fakes.RecordingWriter()
    Operator(writer, {}).place("big", 4.5)  # 9 EUR at once
    assert alert_events(writer) == [
        "50% of 10 EUR spent this Month (9.00)",
        "80% of 10 EUR spent this Month (9.00)",
    ]


def test_a_restarted_operator_does_not_announce_a_threshold_again() -> None:
    writer = fakes.RecordingWriter()
    Operator(writer, {}).place("most", 4)  # 8 EUR: 50% and 80%
    assert len(alert_events(writer)) == 2
    restarted = Operator(writer, writer.last_status("budgets", "monthly"))
    restarted.cache.put_pod(writer.pods["ml/most"])
    restarted.cycle()
    restarted.cycle()
    assert len(alert_events(writer)) == 2
    restarted.place("all", 1)
    assert alert_events(writer)[2:] == ["100% of 10 EUR spent this Month (10.00)"]


def test_a_new_period_announces_the_thresholds_again() -> None:
    writer = fakes.RecordingWriter()
    gp = Operator(writer, {})
    gp.place("march", 2.5)
    assert len(alert_events(writer)) == 1
    gp.cycle(NEXT_MONTH)  # nothing spent in April yet
    written = writer.last_status("budgets", "monthly")
    assert written["alertedThresholds"] == [] and reached(writer)["status"] == "False"
    gp.place("april", 2.5, NEXT_MONTH)
    assert alert_events(writer) == ["50% of 10 EUR spent this Month (5.00)"] * 2
    # A restart in April reading March's list (status not yet rewritten) still announces.
    march = {"periodStart": "2026-03-01T00:00:00Z", "alertedThresholds": THRESHOLDS}
    fresh = Operator(fakes.RecordingWriter(), march)
    fresh.place("april", 2.5, NEXT_MONTH)
    assert alert_events(fresh.writer) == ["50% of 10 EUR spent this Month (5.00)"]


class ConflictingWriter(fakes.RecordingWriter):
    """Refuses the first Budget status write as changed meanwhile, as the API server may."""

    refused = False

    async def patch_status(self, plural: str, namespace: str | None, name: str, body: Any) -> None:
        if plural == "budgets" and not self.refused:
            self.refused = True
            raise kube.WriteConflictError("budget changed")
        await super().patch_status(plural, namespace, name, body)


def test_the_event_waits_for_the_status_that_records_it() -> None:
    writer = ConflictingWriter()
    gp = Operator(writer, {})
    gp.place("half", 2.5)
    assert alert_events(writer) == [], "announced, yet not recorded: a restart would repeat it"
    gp.cycle()
    assert alert_events(writer) == ["50% of 10 EUR spent this Month (5.00)"]


def test_the_limit_furthest_spent_decides() -> None:
    limits = {"money": 100, "kgCO2e": 2}
    spec = models.BudgetSpec.model_validate(
        {"period": "Day", "currency": "USD", "limits": limits, "alertThresholds": [0.25, 0.75]}
    )
    found = budgets.alerts(spec, budgets.Spend(money=30, kg_co2e=1.6), [], NOW)
    assert found.ratio == pytest.approx(0.8)
    assert found.new == (0.25, 0.75)
    assert found.messages[0.75] == "75% of 2 kgCO2e spent this Day (1.60)"
    assert found.condition == (True, "AlertThreshold", found.messages[0.75])


def test_no_thresholds_no_alerts() -> None:
    spec = models.BudgetSpec.model_validate({"period": "Week", "limits": {"kWh": 5}})
    assert spec.alert_thresholds == []
    found = budgets.alerts(spec, budgets.Spend(kwh=50), [], NOW)
    assert (found.crossed, found.new) == ((), ())
    assert found.condition == (False, "NoThresholds", "spec.alertThresholds is empty")


def test_a_budget_without_limits_alerts_nothing_and_does_not_raise() -> None:
    # The CRD's CEL rule refuses it; a snapshot file or an old CRD may not.
    spec = models.BudgetSpec.model_validate(
        {"period": "Month", "limits": {}, "alertThresholds": [0.5]}
    )
    found = budgets.alerts(spec, budgets.Spend(money=6), [], NOW)
    assert (found.ratio, found.new) == (0.0, ())
    assert found.condition == (False, "NoLimits", "spec.limits sets no limit")


def test_forged_status_values_are_ignored() -> None:
    spec = models.BudgetSpec.model_validate(
        {"period": "Month", "limits": {"money": 10}, "alertThresholds": [0.5]}
    )
    start = "2026-03-01T00:00:00Z"
    junk: dict[str, Any]
    for junk in ({"periodStart": start, "alertedThresholds": "0.5"},
                 {"periodStart": 7, "alertedThresholds": [0.5]},
                 {"periodStart": start, "alertedThresholds": [None, "x", {}]}):  # fmt: skip
        assert budgets.alerts(spec, budgets.Spend(money=6), [junk], NOW).new == (0.5,)


def test_the_metrics_follow_the_budgets() -> None:
    registry = prometheus_client.CollectorRegistry()
    observed = metrics.PlacementMetrics(registry)
    writer = fakes.RecordingWriter()
    gp = Operator(writer, {})
    observed.observe(gp.place("most", 4))  # 8 EUR
    labels = {"namespace": "ml", "budget": "monthly"}
    assert registry.get_sample_value("greenplace_budget_spent_ratio", labels) == pytest.approx(0.8)
    for threshold, count in (("0.5", 1.0), ("0.8", 1.0), ("1", None)):
        sample = registry.get_sample_value(
            "greenplace_budget_alerts_total", {**labels, "threshold": threshold}
        )
        assert sample == count, threshold
    observed.observe(gp.cycle())
    assert (
        registry.get_sample_value("greenplace_budget_alerts_total", {**labels, "threshold": "0.8"})
        == 1.0
    )
    gp.cache.drop("Budget", "ml", "monthly")
    observed.observe(gp.cycle())
    assert registry.get_sample_value("greenplace_budget_spent_ratio", labels) is None
