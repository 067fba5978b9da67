"""Accounting: energy, carbon and cost of GPU work, per workload, per request and per model.

Why this package exists: placement decisions and budgets are only as good as the figures behind
them. Everything here is a pure computation over values and times passed in (``energy``,
``attribution``, ``grading``, ``budget``, ``report``) except two thin adapters: ``serving``
(PromQL over DCGM, Kepler and serving metrics, through a query callable) and ``telemetry``
(the ``prometheus_client`` gauges the operator serves on ``/metrics``). See docs/energy.md.
"""
