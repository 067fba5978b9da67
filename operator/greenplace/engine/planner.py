"""The placement planner: one pure function from a snapshot to a plan.

Why this module exists: every placement greenplace makes — in the operator, the simulator and the
benchmarks — goes through ``plan``. It reads only its arguments (no clock, no I/O, no Kubernetes),
so the same snapshot always gives the same plan, and the plan says for every workload which pools
were weighed and why each one lost.

Rules applied today, in order, per workload and pool:

1. the workload must be selected by at least one ``Policy`` of its namespace (fail-closed);
2. sovereignty: the pool's country is in every selecting policy's allowed countries;
3. carbon: the pool's effective intensity (grid x PUE) is known and under every ceiling;
4. capacity: the pool has enough free GPUs left in this round.

Among the pools that pass, the lowest effective carbon intensity wins, then the lowest price,
then the name (so ties are deterministic).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable

from greenplace.domain import model

__all__ = ["plan"]


def plan(snapshot: model.Snapshot, now: datetime.datetime) -> model.Plan:
    """Decide where each workload of ``snapshot`` runs now, or why it waits."""
    free = {pool.name: pool.gpus_free for pool in snapshot.pools}
    pools = sorted(snapshot.pools, key=lambda p: p.name)
    decisions = []
    for workload in sorted(snapshot.workloads, key=lambda w: (w.created, w.key)):
        decision = _decide(workload, pools, snapshot.policies, free)
        if decision.pool is not None:
            free[decision.pool] -= workload.gpus
        decisions.append(decision)
    return model.Plan(at=now, decisions=tuple(decisions))


def _decide(
    workload: model.Workload,
    pools: list[model.Pool],
    policies: Iterable[model.Policy],
    free: dict[str, int],
) -> model.Decision:
    governing = tuple(p for p in policies if p.selects(workload))
    policy_keys = tuple(sorted(p.key for p in governing))
    if not governing:
        return model.Decision(
            workload=workload.key,
            outcome=model.Outcome.HELD,
            reason=model.Reason.NO_POLICY,
            message=(
                f"{workload.key} held: no PlacementPolicy in namespace {workload.namespace} "
                "selects it; create one (greenplace never places a governed pod without rules)"
            ),
        )

    rejections: list[model.Rejection] = []
    compliant: list[model.Pool] = []
    for pool in pools:
        rejection = _first_violation(pool, governing)
        if rejection is not None:
            rejections.append(rejection)
        elif free[pool.name] < workload.gpus:
            rejections.append(
                model.Rejection(
                    pool.name,
                    model.Reason.INSUFFICIENT_CAPACITY,
                    f"needs {workload.gpus} GPUs, {free[pool.name]} free",
                )
            )
        else:
            compliant.append(pool)

    if not compliant:
        any_allowed = any(r.reason is model.Reason.INSUFFICIENT_CAPACITY for r in rejections)
        reason = model.Reason.NO_POOL_WITH_ROOM if any_allowed else model.Reason.NO_COMPLIANT_POOL
        summary = "; ".join(f"{r.pool}: {r.message}" for r in rejections) or "no GpuPool exists"
        what = "no allowed pool has room" if any_allowed else "no pool satisfies"
        return model.Decision(
            workload=workload.key,
            outcome=model.Outcome.HELD,
            reason=reason,
            message=f"{workload.key} held: {what} {', '.join(policy_keys)} ({summary})",
            policies=policy_keys,
            alternatives=tuple(rejections),
        )

    best, *others = sorted(compliant, key=_preference)
    rejections.extend(
        model.Rejection(
            p.name,
            model.Reason.OUTRANKED,
            f"{_describe_carbon(p)} vs {_describe_carbon(best)} in {best.name}",
        )
        for p in others
    )
    return model.Decision(
        workload=workload.key,
        outcome=model.Outcome.PLACED,
        reason=model.Reason.LOWEST_CARBON,
        message=(
            f"{workload.key} placed in {best.name} ({best.location.country}, "
            f"{_describe_carbon(best)}): lowest carbon among {len(compliant)} compliant pools "
            f"with room under {', '.join(policy_keys)}"
        ),
        pool=best.name,
        policies=policy_keys,
        alternatives=tuple(rejections),
    )


def _first_violation(
    pool: model.Pool, policies: tuple[model.Policy, ...]
) -> model.Rejection | None:
    """The first hard rule of ``policies`` that ``pool`` breaks, if any."""
    for policy in policies:
        countries = policy.allowed_countries
        if countries is not None and pool.location.country not in countries:
            return model.Rejection(
                pool.name,
                model.Reason.COUNTRY_NOT_ALLOWED,
                f"excluded by PlacementPolicy {policy.key} (country {pool.location.country} "
                f"not in allowed {', '.join(sorted(countries))})",
            )
        ceiling = policy.max_gco2_per_kwh
        intensity = pool.effective_gco2_per_kwh
        if ceiling is not None and intensity is None:
            return model.Rejection(
                pool.name,
                model.Reason.CARBON_UNKNOWN,
                f"excluded by PlacementPolicy {policy.key} (carbon intensity of grid zone "
                f"{pool.location.grid_zone} unknown, ceiling {ceiling:g} gCO2e/kWh)",
            )
        if ceiling is not None and intensity is not None and intensity > ceiling:
            return model.Rejection(
                pool.name,
                model.Reason.CARBON_ABOVE_CEILING,
                f"excluded by PlacementPolicy {policy.key} ({_describe_carbon(pool)} "
                f"above ceiling {ceiling:g})",
            )
    return None


def _preference(pool: model.Pool) -> tuple[float, float, str]:
    intensity = pool.effective_gco2_per_kwh
    return (math.inf if intensity is None else intensity, pool.price_per_gpu_hour, pool.name)


def _describe_carbon(pool: model.Pool) -> str:
    intensity = pool.effective_gco2_per_kwh
    return "carbon unknown" if intensity is None else f"{intensity:.0f} gCO2e/kWh"
