"""How far the planner's objective is from the exact optimum, and how much faster it gets there.

Why this benchmark exists: greedy placement is known to leave money and carbon on the table
(measured on a synthetic 1k jobs x 100 pools instance: greedy 8.5-20% worse than HiGHS, which
needs ~22 s to reach a 1% gap). The planner must stay within 2% of the optimum on average while
answering in milliseconds, or we must say by how much it misses.

Method: generated fleets (``bench_planner_scale.fleet``: sovereignty, ceilings, certificates,
Downgrade money budgets; no forecasts, so no deferral) of 200 workloads over 50 pools and 1,000
workloads over 100 pools, several seeds each. The planner decides which workloads are admitted
(arrival order) and where. The exact model, solved by HiGHS through ``scipy.optimize.milp``,
assigns *the same admitted workloads* to pools at minimum total objective (cost + priced carbon),
under the same GPU capacities and budgets, each workload to one pool among those the planner's own
explanation did not exclude by a hard rule. Gap = planner / optimum - 1 (HiGHS's own relative gap
is reported too: the true gap is within that much of the figure). The speed ratio compares the
MILP solve time (model building excluded) with the whole planning round, both in CPU seconds of
this process (the machine's other core is often busy, which would blur wall times).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from scipy import optimize, sparse

from bench import bench_planner_scale as scale
from bench import harness
from greenplace.domain import model
from greenplace.engine import objective, planner

NAME = "bench_optimality"
INSTANCES = ((200, 50, (1, 2, 3)), (1_000, 100, (1, 2)))
MILP_TIME_LIMIT_S = 30.0
# Reasons that say a pool could have taken the workload but lost on rank, room or budget: those
# pools are the MILP's candidates. Every other reason is a hard rule.
CANDIDATE = {
    model.Reason.OUTRANKED,
    model.Reason.INSUFFICIENT_CAPACITY,
    model.Reason.BUDGET_EXCEEDED,
}


def solve(snapshot: model.Snapshot, result: model.Plan) -> dict[str, float]:
    """The exact optimum for the planner's admitted set; returns objective, time and MIP gap."""
    pools = {p.name: i for i, p in enumerate(snapshot.pools)}
    workloads = {w.key: w for w in snapshot.workloads}
    budgets = {b.key: i for i, b in enumerate(snapshot.budgets)}
    placed = result.placed()
    # w, p, obj, €, kg, kWh, budgets
    columns: list[tuple[int, int, float, float, float, float, list[int]]] = []
    for row, decision in enumerate(placed):
        work = workloads[decision.workload]
        governing = [p for p in snapshot.policies if p.selects(work)]
        price = max(p.carbon_price_per_tco2e for p in governing)
        charged = sorted({budgets[f"{p.namespace}/{p.budget}"] for p in governing if p.budget})
        names = {decision.pool} | {r.pool for r in decision.alternatives if r.reason in CANDIDATE}
        for name in sorted(n for n in names if n is not None):
            pool = snapshot.pools[pools[name]]
            estimate = objective.estimate(
                objective.rate(pool, spot=work.spot, carbon_price_per_tco2e=price),
                work.gpu_hours,
                pool.gco2_per_kwh,
            )
            columns.append(
                (
                    row,
                    pools[name],
                    estimate.objective,
                    estimate.cost,
                    estimate.kgco2e,
                    estimate.kwh,
                    charged,
                )
            )
    n = len(columns)
    c = np.array([col[2] for col in columns])
    rows, cols, vals, lower, upper = [], [], [], [], []

    def constraint(entries: list[tuple[int, float]], low: float, high: float) -> None:
        index = len(lower)
        for j, value in entries:
            rows.append(index)
            cols.append(j)
            vals.append(value)
        lower.append(low)
        upper.append(high)

    for row in range(len(placed)):
        constraint([(j, 1.0) for j, col in enumerate(columns) if col[0] == row], 1, 1)
    by_pool: dict[int, list[tuple[int, float]]] = {}
    by_budget: dict[int, list[tuple[int, float, float, float]]] = {}
    for j, (row, pool_index, _, cost, kg, kwh, charged) in enumerate(columns):
        by_pool.setdefault(pool_index, []).append((j, workloads[placed[row].workload].gpus))
        for b in charged:
            by_budget.setdefault(b, []).append((j, cost, kg, kwh))
    for pool_index, entries in sorted(by_pool.items()):
        constraint(entries, 0, snapshot.pools[pool_index].gpus_free)
    for b, spends in sorted(by_budget.items()):
        budget = snapshot.budgets[b]
        if budget.money_remaining is not None:
            constraint([(j, cost) for j, cost, _, _ in spends], -np.inf, budget.money_remaining)
        if budget.kgco2e_remaining is not None:
            constraint([(j, kg) for j, _, kg, _ in spends], -np.inf, budget.kgco2e_remaining)
        if budget.kwh_remaining is not None:
            constraint([(j, kwh) for j, _, _, kwh in spends], -np.inf, budget.kwh_remaining)
    matrix = sparse.csr_array((vals, (rows, cols)), shape=(len(lower), n))
    start = time.process_time()
    solution = optimize.milp(
        c,
        constraints=optimize.LinearConstraint(matrix, lower, upper),
        integrality=np.ones(n),
        bounds=optimize.Bounds(0, 1),
        options={"time_limit": MILP_TIME_LIMIT_S, "mip_rel_gap": 1e-4},
    )
    seconds = time.process_time() - start
    if solution.x is None:
        raise RuntimeError(f"HiGHS found no solution: {solution.message}")
    return {
        "objective": float(c @ np.round(solution.x)),
        "seconds": seconds,
        "mip_gap": float(getattr(solution, "mip_gap", 0.0) or 0.0),
        "variables": n,
    }


def main() -> None:
    rows = []
    for n_workloads, n_pools, seeds in INSTANCES:
        for seed in seeds:
            snapshot = scale.fleet(n_workloads, n_pools, seed=seed, load=0.8, deferrable=False)
            everyone = {w.key for w in snapshot.workloads}
            start = time.process_time()
            planner.plan(snapshot, scale.T0)
            plan_seconds = time.process_time() - start
            result = planner.plan(snapshot, scale.T0, detail_for=everyone)
            greedy = sum(d.objective or 0.0 for d in result.placed())
            exact = solve(snapshot, result)
            gap = greedy / exact["objective"] - 1
            row = {
                "workloads": n_workloads,
                "pools": n_pools,
                "seed": seed,
                "placed": len(result.placed()),
                "planner_objective": round(greedy, 2),
                "milp_objective": round(exact["objective"], 2),
                "gap": round(gap, 5),
                "milp_reported_gap": round(exact["mip_gap"], 5),
                "planner_seconds": round(plan_seconds, 4),
                "milp_seconds": round(exact["seconds"], 3),
                "speed_ratio": round(exact["seconds"] / plan_seconds, 1),
                "milp_variables": exact["variables"],
            }
            rows.append(row)
            print(
                f"{n_workloads:>5} x {n_pools:>3} seed {seed}: placed {row['placed']}, planner "
                f"{greedy:,.0f} vs optimum {exact['objective']:,.0f} (gap {gap:+.2%}), "
                f"planner {plan_seconds * 1000:.0f} ms vs HiGHS {exact['seconds']:.2f} s "
                f"(x{row['speed_ratio']})"
            )
    mean_gap = statistics.mean(r["gap"] for r in rows)  # type: ignore[misc]
    worst_gap = max(r["gap"] for r in rows)  # type: ignore[type-var]
    ratio = statistics.mean(r["speed_ratio"] for r in rows)  # type: ignore[misc]
    print(f"mean gap {mean_gap:+.2%}, worst {worst_gap:+.2%}; HiGHS takes x{ratio:.0f} longer")
    harness.finish(
        NAME,
        {"instances": rows, "milp_time_limit_s": MILP_TIME_LIMIT_S},
        {"mean_gap": float(mean_gap), "worst_gap": float(worst_gap), "speed_ratio": float(ratio)},
    )


if __name__ == "__main__":
    main()
