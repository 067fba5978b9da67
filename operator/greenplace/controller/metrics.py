"""Prometheus metrics of the placement loop: placements applied, waits by reason and outcome.

Why this module exists: operators are run by people who alert on numbers. Every cycle updates
these collectors, which live in a registry the operator owns and serves on ``/metrics`` (with
the signal and accounting collectors), never in the global default registry.

- ``greenplace_placements_total{reason}``: pods placed (their patch applied), by reason code.
- ``greenplace_held_workloads{reason}``: workloads waiting after the last cycle (held, deferred
  or refused), by reason.
- ``greenplace_waiting_workloads{outcome}``: the same workloads by outcome (``Held``: until
  something changes; ``Deferred``: until a known time; ``Refused``: not as they stand), one
  series per outcome, so a deferral is never mistaken for a hold.
- ``greenplace_waiting_oldest_seconds{outcome}``: age (since creation) of the oldest workload
  waiting with each outcome after the last cycle, 0 when none: a pod held for hours shows here.
- ``greenplace_cycle_phase_seconds{phase}``: duration of each numbered phase.
- ``greenplace_write_conflicts_total``: patches refused because the object changed (re-planned).
- ``greenplace_leader``: 1 on the replica holding the Lease (the one placing), 0 on standbys.
- ``greenplace_relists_total``: full listings that reconciled the cache with the API server.
- ``greenplace_worker_staleness_seconds{cluster}``: age of the last reading of each MultiKueue
  worker a GpuPool names (``--multikueue``; ``+Inf`` until first read).
- ``greenplace_dispatch_nominations_total{cluster}``: Workloads greenplace nominated to a worker.
- ``greenplace_dispatch_admissions_total{cluster}``: nominated Workloads Kueue admitted there
  (``status.clusterName`` set), counted once each.
- ``greenplace_cycle_failures_total``: cycles that raised (logged with the traceback); the loop
  retries at the next change or resync, so a rising count with held pods is worth an alert.
- ``greenplace_write_refusals_total{reason}``: greenplace's own pod writes the API server refused
  (``AdmissionRefused``: an admission policy; ``AnnotationsTooLarge``); the pod says why.
- ``greenplace_pod_warnings_total{reason}``: values on pods greenplace ignored or replaced, counted
  each cycle they are seen (``InvalidAnnotation``, ``UntrustedRecord``, ``ReleasedUnbound``).
- ``greenplace_isolated_workloads_total``: workloads held because planning them raised.
- ``greenplace_kueue_answers_total{state,reason}``: answers written to greenplace's Kueue
  AdmissionCheck, by check state (``Ready``, ``Retry``, ``Rejected``; ``Parked``: deactivated
  until a long deferral ends) and reason code.
- ``greenplace_budget_spent_ratio{namespace,budget}``: spent / limit of each Budget this period,
  the highest over its limits (what ``alertThresholds`` compare with); 1 is exhausted.
- ``greenplace_budget_alerts_total{namespace,budget,threshold}``: alert thresholds announced
  (one Warning Event each, once per threshold and period).
"""

from __future__ import annotations

import collections

import prometheus_client

from greenplace.controller import budgets, cycle
from greenplace.domain import model

__all__ = ["PlacementMetrics"]


class PlacementMetrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.placements = prometheus_client.Counter(
            "greenplace_placements",
            "Pods placed (patch applied), by reason code.",
            ["reason"],
            registry=registry,
        )
        self.held = prometheus_client.Gauge(
            "greenplace_held_workloads",
            "Workloads waiting after the last cycle (held, deferred or refused), by reason code.",
            ["reason"],
            registry=registry,
        )
        self.waiting = prometheus_client.Gauge(
            "greenplace_waiting_workloads",
            "Workloads waiting after the last cycle, by outcome (Held, Deferred, Refused).",
            ["outcome"],
            registry=registry,
        )
        self.oldest = prometheus_client.Gauge(
            "greenplace_waiting_oldest_seconds",
            "Age of the oldest workload waiting after the last cycle, by outcome (0: none).",
            ["outcome"],
            registry=registry,
        )
        self.phase = prometheus_client.Histogram(
            "greenplace_cycle_phase_seconds",
            "Duration of each phase of the placement cycle.",
            ["phase"],
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=registry,
        )
        self.conflicts = prometheus_client.Counter(
            "greenplace_write_conflicts",
            "Patches refused because the object changed under the operator (then re-planned).",
            registry=registry,
        )

        self.leader = prometheus_client.Gauge(
            "greenplace_leader",
            "1 while this replica holds the leader Lease and places pods.",
            registry=registry,
        )
        self.cycle_failures = prometheus_client.Counter(
            "greenplace_cycle_failures",
            "Placement cycles that failed with an error (then retried).",
            registry=registry,
        )
        self.refusals = prometheus_client.Counter(
            "greenplace_write_refusals",
            "Pod writes of greenplace the API server refused, by reason.",
            ["reason"],
            registry=registry,
        )
        self.pod_warnings = prometheus_client.Counter(
            "greenplace_pod_warnings",
            "Values on pods greenplace ignored or replaced, by reason (each cycle seen).",
            ["reason"],
            registry=registry,
        )
        self.isolated = prometheus_client.Counter(
            "greenplace_isolated_workloads",
            "Workloads held because planning them raised (the others were planned).",
            registry=registry,
        )
        self.kueue_answers = prometheus_client.Counter(
            "greenplace_kueue_answers",
            "Answers written to greenplace's Kueue AdmissionCheck, by state and reason code.",
            ["state", "reason"],
            registry=registry,
        )
        self.budget_ratio = prometheus_client.Gauge(
            "greenplace_budget_spent_ratio",
            "Spent / limit of each Budget this period, the highest over its limits.",
            ["namespace", "budget"],
            registry=registry,
        )
        self.budget_alerts = prometheus_client.Counter(
            "greenplace_budget_alerts",
            "Budget alert thresholds announced (one Warning Event each per period).",
            ["namespace", "budget", "threshold"],
            registry=registry,
        )
        self.relisted = prometheus_client.Counter(
            "greenplace_relists",
            "Full listings that reconciled the cache with the API server.",
            registry=registry,
        )
        # MultiKueue dispatch (``dispatch``, ``--multikueue``).
        self.worker_staleness = prometheus_client.Gauge(
            "greenplace_worker_staleness_seconds",
            "Seconds since each MultiKueue worker a GpuPool names was last read.",
            ["cluster"],
            registry=registry,
        )
        self.nominations = prometheus_client.Counter(
            "greenplace_dispatch_nominations",
            "Workloads greenplace nominated to a MultiKueue worker cluster.",
            ["cluster"],
            registry=registry,
        )
        self.admissions = prometheus_client.Counter(
            "greenplace_dispatch_admissions",
            "Workloads greenplace nominated that Kueue admitted in a worker (clusterName set).",
            ["cluster"],
            registry=registry,
        )
        self._budgets: set[tuple[str, str]] = set()  # the Budgets with a ratio row

    def observe(self, report: cycle.CycleReport) -> None:
        for phase, seconds in report.phase_seconds.items():
            self.phase.labels(phase).observe(seconds)
        self.conflicts.inc(report.conflicts)
        for reason, count in report.refusals.items():
            self.refusals.labels(reason).inc(count)
        for reason, count in report.warnings.items():
            self.pod_warnings.labels(reason).inc(count)
        self.isolated.inc(report.isolated)
        for reason, count in report.placed_by_reason.items():
            self.placements.labels(reason).inc(count)
        for (state, reason), count in report.kueue_answers.items():
            self.kueue_answers.labels(state, reason).inc(count)
        if report.budget_alerts is not None:
            self._observe_budgets(report.budget_alerts)
        if report.plan is None:
            return
        held: collections.Counter[str] = collections.Counter()
        waiting: collections.Counter[model.Outcome] = collections.Counter()
        for decision in report.plan.decisions:
            if decision.outcome is not model.Outcome.PLACED:
                held[decision.reason.value] += 1
                waiting[decision.outcome] += 1
        for code in model.Reason:
            if code not in model.PLACEMENT_REASONS:  # nothing waits for being placed
                self.held.labels(code.value).set(held.get(code.value, 0))
        for outcome in model.Outcome:
            if outcome is not model.Outcome.PLACED:
                self.waiting.labels(outcome.value).set(waiting[outcome])
                since = report.oldest_waiting.get(outcome)
                age = 0.0 if since is None else (report.at - since).total_seconds()
                self.oldest.labels(outcome.value).set(max(0.0, age))

    def _observe_budgets(self, alerts: dict[tuple[str, str], budgets.Alerts]) -> None:
        """Set each Budget's ratio, drop the rows of Budgets gone, count announced thresholds."""
        for namespace, name in self._budgets - alerts.keys():
            self.budget_ratio.remove(namespace, name)
        self._budgets = set(alerts)
        for (namespace, name), alert in alerts.items():
            self.budget_ratio.labels(namespace, name).set(alert.ratio)
            for threshold in alert.new:
                self.budget_alerts.labels(namespace, name, f"{threshold:g}").inc()
