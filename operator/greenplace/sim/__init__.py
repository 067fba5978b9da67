"""The what-if simulator: a fleet, policies, a workload trace and grid signals, in simulated time.

Why this package exists: before a platform team turns greenplace on they ask what it would have
saved them, in money and CO2e, and what it would have cost them in delay. The simulator answers from
their own fleet and history by running the operator's own planner (``greenplace.engine.planner``)
event by event, next to baseline strategies and an exact offline oracle, on the same inputs.

Modules, bottom up: ``scenario`` (values), ``signal`` (step signals with O(log n) means),
``crd`` (CR YAML to values), ``loading`` (files to a scenario), ``strategies`` and ``replay``
(online strategies in simulated time), ``oracle`` (MILP over time slots), ``metrics`` (money, kWh,
CO2e, misses, violations, budgets), ``run`` (all strategies side by side), ``table``, ``svg`` and
``html`` (outputs), ``synthetic`` (seeded workloads for examples and benchmarks).
"""
