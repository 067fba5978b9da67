"""Prometheus metrics that make every signal's freshness and every fallback visible.

Why this module exists: a carbon feed that silently falls back to a static average looks healthy
unless someone can see it. ``SignalMetrics`` registers its collectors in a registry the operator
owns (and serves on ``/metrics``), never in the global default, so tests and several operators
in one process do not collide.

Metrics (labels ``kind`` = carbon_intensity | price, ``subject`` = grid zone | pool):

- ``greenplace_signal_attempts_total{kind,subject,source,reason}``: each source consulted and how
  it answered (``Fresh`` for the one used, else why it was skipped: ``Stale``, ``Timeout`` ...).
- ``greenplace_signal_state{kind,subject,reason}``: 1 for the current reason of the reading, 0
  for all others (``Fresh``, ``Fallback``, ``Unavailable``), for alerts and dashboards.
- ``greenplace_signal_age_seconds{kind,subject}``: age of the value in use (NaN when none).
- ``greenplace_signal_value{kind,subject}``: the value in use (NaN when none).
- ``greenplace_signal_source_info{kind,subject,source}``: 1 for the source in use.
"""

from __future__ import annotations

import prometheus_client

from greenplace.signals import contract

__all__ = ["SignalMetrics"]

_STATES = (
    contract.SignalReason.FRESH,
    contract.SignalReason.FALLBACK,
    contract.SignalReason.UNAVAILABLE,
)


class SignalMetrics:
    """The signal collectors, registered once in ``registry``."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.attempts = prometheus_client.Counter(
            "greenplace_signal_attempts",
            "Sources consulted per signal and how each answered (reason code).",
            ["kind", "subject", "source", "reason"],
            registry=registry,
        )
        self.state = prometheus_client.Gauge(
            "greenplace_signal_state",
            "1 for the current state of a signal (Fresh, Fallback, Unavailable), else 0.",
            ["kind", "subject", "reason"],
            registry=registry,
        )
        self.age = prometheus_client.Gauge(
            "greenplace_signal_age_seconds",
            "Age of the signal value in use, in seconds (NaN when no value).",
            ["kind", "subject"],
            registry=registry,
        )
        self.value = prometheus_client.Gauge(
            "greenplace_signal_value",
            "Signal value in use: gCO2e/kWh or currency per GPU-hour (NaN when none).",
            ["kind", "subject"],
            registry=registry,
        )
        self.source = prometheus_client.Gauge(
            "greenplace_signal_source_info",
            "1 for the source whose value is in use.",
            ["kind", "subject", "source"],
            registry=registry,
        )

    def record(self, reading: contract.Reading) -> None:
        kind, subject = str(reading.key.kind), reading.key.subject
        for attempt in reading.status.attempts:
            self.attempts.labels(kind, subject, attempt.source, str(attempt.reason)).inc()
        if reading.source is not None:
            self.attempts.labels(kind, subject, reading.source, "Fresh").inc()
        for state in _STATES:
            self.state.labels(kind, subject, str(state)).set(
                1.0 if state is reading.status.reason else 0.0
            )
        nan = float("nan")
        self.age.labels(kind, subject).set(nan if reading.age_s is None else reading.age_s)
        self.value.labels(kind, subject).set(nan if reading.value is None else reading.value)
        for labels in list(self._sources_of(kind, subject)):
            self.source.remove(*labels)
        if reading.source is not None:
            self.source.labels(kind, subject, reading.source).set(1.0)

    def _sources_of(self, kind: str, subject: str) -> list[tuple[str, str, str]]:
        found = []
        for metric in self.source.collect():
            for sample in metric.samples:
                labels = sample.labels
                if labels.get("kind") == kind and labels.get("subject") == subject:
                    found.append((kind, subject, labels["source"]))
        return found
