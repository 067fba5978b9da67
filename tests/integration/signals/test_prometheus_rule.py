"""The chart's PrometheusRule, checked and run by the real Prometheus.

Why this module exists: an alert whose PromQL does not parse, or names a series the operator
does not export, never fires and says nothing. The rules rendered by helm are checked with
``promtool check rules``, their logic is run on synthetic series with ``promtool test rules``
(Prometheus's own engine: what fires, what does not, a standby's stale gauges ignored), and the
file is loaded by a real ``prometheus`` whose /api/v1/rules must report every rule healthy.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import urllib.request
from typing import Any

import pytest
import yaml

from tests import charts, metricnames
from tests.integration.conftest import wait_for

from . import prometheus_fixture

ALERTS = {
    "GreenplaceBudgetBurn",
    "GreenplaceBudgetExhausted",
    "GreenplaceCycleFailing",
    "GreenplaceSignalNotFresh",
    "GreenplaceWorkloadHeld",
}


def rendered(*sets: str) -> list[dict[str, Any]]:
    result = charts.helm_template(*sets)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    return [d for d in docs if d["kind"] == "PrometheusRule"]


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The rule groups the chart renders (held over 600 s), as a Prometheus rule file."""
    (rule,) = rendered("prometheusRule.enabled=true", "prometheusRule.heldSeconds=600",
                       "prometheusRule.labels.release=kube-prometheus")  # fmt: skip
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus"
    path = tmp_path_factory.mktemp("rules") / "greenplace.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    _, binary = prometheus_fixture.binaries()
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_rule_is_off_by_default() -> None:
    assert rendered() == []


def test_promtool_checks_the_rules(rules_file: pathlib.Path) -> None:
    checked = promtool("check", "rules", str(rules_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout, checked.stdout


def test_every_series_a_rule_reads_is_exported(rules_file: pathlib.Path) -> None:
    exported = metricnames.exported(metricnames.operator_registry())
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    uses = {r["alert"]: metricnames.query_uses(r["expr"], r["alert"]) for r in rules}
    assert (
        {u.series for found in uses.values() for u in found}
        == {
            "greenplace_budget_spent_ratio",
            "greenplace_cycle_failures_total",
            "greenplace_signal_state",
            "greenplace_waiting_oldest_seconds",
            "greenplace_leader",
        }
        <= set(exported)
    )
    # The series each rule watches (its first) carries the labels it matches and groups by;
    # ``instance`` comes from the scrape.
    for name, (watched, *_) in uses.items():
        assert watched.labels - {"instance"} <= exported[watched.series], name


# Two replicas: op-a leads; op-b lost the Lease and keeps stale gauges (which must not fire).
A, B = 'instance="op-a"', 'instance="op-b"'
CARBON = f'{A},kind="carbon_intensity"'
SERIES = [
    (f"greenplace_leader{{{A}}}", "1x40"),
    (f"greenplace_leader{{{B}}}", "0x40"),
    (f'greenplace_budget_spent_ratio{{{A},namespace="ml",budget="monthly"}}', "0.5 0.85x39"),
    (f'greenplace_budget_spent_ratio{{{A},namespace="ml",budget="daily"}}', "1x40"),
    (f'greenplace_budget_spent_ratio{{{B},namespace="ml",budget="stale"}}', "0.95x40"),
    (f"greenplace_cycle_failures_total{{{A}}}", "0x10 1x30"),
    (f'greenplace_signal_state{{{CARBON},subject="FR",reason="Fallback"}}', "1x40"),
    (f'greenplace_signal_state{{{CARBON},subject="FR",reason="Fresh"}}', "0x40"),
    (f'greenplace_signal_state{{{CARBON},subject="DE",reason="Fallback"}}', "0x30 1x10"),
    (f'greenplace_waiting_oldest_seconds{{{A},outcome="Held"}}', "0+60x40"),
    (f'greenplace_waiting_oldest_seconds{{{A},outcome="Deferred"}}', "9000x40"),
    (f'greenplace_waiting_oldest_seconds{{{B},outcome="Refused"}}', "9000x40"),
]


def alert(name: str, at: str, *fired: tuple[dict[str, str], dict[str, str]]) -> dict[str, Any]:
    """A ``promtool test rules`` case: at ``at``, exactly the alerts ``fired`` (labels besides
    the alert name, annotations as Prometheus expands them)."""
    expected = [{"exp_labels": labels, "exp_annotations": notes} for labels, notes in fired]
    return {"eval_time": at, "alertname": name, "exp_alerts": expected}


def test_the_rules_fire_on_what_they_watch_only(
    rules_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    budget = {"severity": "warning", "namespace": "ml"}
    fr = {"severity": "warning", "kind": "carbon_intensity", "subject": "FR", "reason": "Fallback"}
    cases = [
        alert("GreenplaceBudgetBurn", "0m"),  # 50%
        alert("GreenplaceBudgetBurn", "5m", ({**budget, "budget": "monthly"}, {
            "summary": "Budget ml/monthly has spent 85% of a limit this period",
            "description": "kubectl -n ml describe budget monthly: its ThresholdReached "
            "condition and BudgetThresholdReached Events say which limit.",
        })),
        alert("GreenplaceBudgetExhausted", "5m", ({**budget, "budget": "daily"}, {
            "summary": "Budget ml/daily is spent: its action (Defer, Reject or Downgrade) "
            "applies to new pods",
        })),
        alert("GreenplaceCycleFailing", "5m"),
        alert("GreenplaceCycleFailing", "12m", ({"severity": "critical", "instance": "op-a"}, {
            "summary": "greenplace placement cycles failed on op-a in the last 10m: pods "
            "wait; the operator's log has the traceback",
        })),
        alert("GreenplaceSignalNotFresh", "10m"),  # not yet 15 minutes
        alert("GreenplaceSignalNotFresh", "20m", (fr, {
            "summary": "carbon_intensity of FR is Fallback: planned with a fallback value, or "
            "held (kubectl get signalsources)",
        })),
        alert("GreenplaceWorkloadHeld", "10m"),  # 600 s: not over
        alert("GreenplaceWorkloadHeld", "11m", ({"severity": "warning", "outcome": "Held"}, {
            "summary": "A workload has waited Held for 11m 0s: its greenplace.dev/held "
            "annotation says why (greenplace why)",
        })),
    ]  # fmt: skip
    series = [{"series": name, "values": values} for name, values in SERIES]
    tests = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    spec = tmp_path / "tests.yaml"
    spec.write_text(yaml.safe_dump(tests))
    ran = promtool("test", "rules", str(spec))
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_a_real_prometheus_loads_every_rule_healthy(
    rules_file: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    server = prometheus_fixture.PrometheusServer(
        tmp_path / "tsdb", tmp_path, rule_files=(rules_file,)
    )
    server.start()

    def evaluated() -> dict[str, Any] | None:
        with urllib.request.urlopen(f"{server.url}/api/v1/rules", timeout=5) as answer:
            found: dict[str, Any] = json.load(answer)
        assert found["status"] == "success", found
        rules = [r for g in found["data"]["groups"] for r in g["rules"]]
        # "unknown" until the first evaluation (every second here).
        return found if rules and all(r["health"] != "unknown" for r in rules) else None

    try:
        body = wait_for(evaluated, 30, "every rule evaluated once")
    finally:
        server.stop()
    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
    health = {r["name"]: (r["health"], r.get("lastError", "")) for r in rules}
    assert {g["file"] for g in body["data"]["groups"]} == {str(rules_file)}
    assert health == {name: ("ok", "") for name in ALERTS}
