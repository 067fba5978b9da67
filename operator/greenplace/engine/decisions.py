"""The planner's decisions and their human messages.

Why this module exists: a decision is what people and tools read (annotations, Events,
``greenplace explain``): its reason code, its one-line message, the most telling rejected pools
and the count of all of them. Writing them apart from the search keeps the wording in one place
and lets the walk record passed-over pools cheaply (position, reason, free GPUs), turning them
into messages only for the final decision of each workload.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence

from greenplace.domain import model
from greenplace.engine import classes, deferral, rounds, rules, walking

__all__ = ["Explainer", "budget_unknown", "no_policy"]

R = model.Reason
# How a placed decision counts the better-ranked compliant pools its walk passed over (every
# reason the walk counts).
_PASSED_OVER = {
    R.INSUFFICIENT_CAPACITY: "without room",
    R.POD_TOO_LARGE_FOR_NODE: "with nodes too small",
    R.CERTIFICATION_EXPIRES_DURING_RUN: "with a certification expiring during the run",
    R.BUDGET_EXCEEDED: "over budget",
}


class Explainer:
    """Writes the decisions of one round (and caches the rejection of a full pool)."""

    def __init__(self, context: rounds.Context, later: deferral.Deferral) -> None:
        self.context = context
        self.pools = context.pools
        self.later = later
        # Each pool's effective intensity as messages write it, once per round.
        self.carbon = [_carbon(pool) for pool in context.pools]
        self.full: dict[tuple[int, int], model.Rejection] = {}

    def finish(self, result: walking.Result) -> model.Decision:
        """The final decision for ``result``: the one that stopped it, or where it is placed."""
        if result.decision is not None:
            return result.decision
        cls, walk, workload = result.cls, result.walk, result.workload
        assert cls is not None and walk is not None
        assert walk.pos is not None and walk.estimate is not None
        pos, estimate, limit = walk.pos, walk.estimate, result.limit
        best = self.pools[cls.ranked[pos]]
        outranked, tail_counts = self._tail(cls, walk, workload, limit)
        counts = _counts(cls.static_counts, walk.counts, tail_counts)
        intensity = best.effective_gco2_per_kwh
        where = (
            f"{best.name} ({best.location.country}, {self.carbon[cls.ranked[pos]]}, "
            f"{estimate.cost:.2f} {best.currency}, {estimate.kgco2e:.2f} kgCO2e)"
        )
        compliant = f"{cls.above} compliant pools"
        if pos >= cls.above:
            reason = R.CEILING_WAIVED_AT_DEADLINE
            latest = deferral.latest_start(cls, workload)
            assert latest is not None
            why = (
                f"carbon ceiling waived at the deadline: its latest start {_at(latest)} has come "
                f"and none of the {compliant} under the ceiling had room, so it runs above it, "
                f"in the pool with the lowest cost + carbon among the {len(cls.ranked)} that pass "
                "every other rule (set carbon.ceilingYieldsAtDeadline false to hold instead)"
            )
        elif walk.downgraded is not None:
            reason = R.DOWNGRADED_FOR_BUDGET
            why = f"downgraded: {walk.downgraded.pool} {walk.downgraded.message}"
        elif (math.inf if intensity is None else intensity) <= cls.min_intensity_from[pos + 1]:
            reason, why = R.LOWEST_CARBON, f"lowest carbon among {_left(cls, walk, pos)}"
        else:
            reason = R.BEST_OBJECTIVE
            why = (
                f"lowest cost + carbon at {cls.carbon_price:g} {best.currency}/tCO2e among "
                f"{_left(cls, walk, pos)}"
            )
        if best.gco2_per_kwh is None and cls.cost_only:
            why += (
                f"; carbon of grid zone {best.location.grid_zone} unknown, ranked on cost + "
                "embodied carbon only (onMissingSignal CostOnly)"
            )
        return model.Decision(
            workload=workload.key,
            outcome=model.Outcome.PLACED,
            reason=reason,
            message=f"{workload.key} placed in {where}: {why} under {', '.join(cls.keys)}",
            pool=best.name,
            policies=cls.keys,
            alternatives=(*self._skipped(cls, walk, workload), *outranked, *cls.static[:limit]),
            cost=estimate.cost,
            kgco2e=estimate.kgco2e,
            objective=estimate.objective,
            rejected_by_reason=counts,
        )

    def not_placed(
        self, cls: classes.Class, workload: model.Workload, walk: walking.Walk, limit: int
    ) -> model.Decision:
        """Why the walk found no pool: a budget, a gang larger than any pool, no pool under
        the ceiling now (deferred to the first slot under it, if any), no room, or no pool."""
        tail, tail_counts = self._tail(cls, walk, workload, limit)
        alternatives = (*self._skipped(cls, walk, workload), *tail, *cls.static[:limit])
        counts = _counts(cls.static_counts, walk.counts, tail_counts)
        summary = _summary(alternatives, counts)
        keys = ", ".join(cls.keys)
        common = {
            "workload": workload.key,
            "policies": cls.keys,
            "alternatives": alternatives,
            "rejected_by_reason": counts,
        }
        if walk.stopped_by_budget:
            if walk.blocked is None:
                budget, rejection = _first_budget(cls), walk.downgraded
            else:
                budget, rejection = walk.blocked.budget, walk.blocked.rejection
            refuse = budget.action is model.BudgetAction.REJECT
            when = "" if budget.period_end is None else f" until {_at(budget.period_end)}"
            verb = "refused" if refuse else f"deferred{when}"
            return model.Decision(
                outcome=model.Outcome.REFUSED if refuse else model.Outcome.DEFERRED,
                reason=R.BUDGET_EXCEEDED,
                message=f"{workload.key} {verb}: {rejection.message if rejection else ''} "
                f"(Budget {budget.key} action {budget.action.value}; {summary})",
                not_before=None if refuse else budget.period_end,
                **common,  # type: ignore[arg-type]
            )
        # A class whose pools have no GPUs at all (scaled to zero) says nothing about gang size.
        if 0 < cls.largest_pool_gpus < workload.gpus:
            return model.Decision(
                outcome=model.Outcome.REFUSED,
                reason=R.GANG_TOO_LARGE,
                message=f"{workload.key} refused: its {len(workload.pods) or 1} pods need "
                f"{workload.gpus} GPUs together, more than the largest pool allowed by {keys} "
                f"({cls.largest_pool_gpus} GPUs); fix: split the job or add a larger GpuPool "
                f"({summary})",
                **common,  # type: ignore[arg-type]
            )
        if not cls.ranked:
            slot = self.later.first_slot_under_ceiling(cls, workload)
            if slot is not None:
                start, pool = slot.start, slot.pool
                return model.Decision(
                    outcome=model.Outcome.DEFERRED,
                    reason=R.DEFERRED_UNTIL_UNDER_CEILING,
                    message=f"{workload.key} deferred until {_at(start)}: no pool allowed by "
                    f"{keys} is under its carbon ceiling now; {pool.name} is forecast to be "
                    f"under it then, within the deferral window ({summary})",
                    not_before=start,
                    **common,  # type: ignore[arg-type]
                )
        if walk.counts.get(R.INSUFFICIENT_CAPACITY):
            reason, what = R.NO_POOL_WITH_ROOM, "no allowed pool has room"
        else:
            reason, what = R.NO_COMPLIANT_POOL, "no pool satisfies"
        return model.Decision(
            outcome=model.Outcome.HELD,
            reason=reason,
            message=f"{workload.key} held: {what} {keys} ({summary})",
            **common,  # type: ignore[arg-type]
        )

    def deferred(
        self,
        cls: classes.Class,
        workload: model.Workload,
        walk: walking.Walk,
        limit: int,
        slot: deferral.CleanerSlot,
    ) -> model.Decision:
        """The workload waits for ``slot``, cleaner than the pool the walk found now."""
        here, later, start, saving = slot.here, slot.later, slot.start, slot.saving
        gpu_hours = workload.gpu_hours
        waiting = model.Rejection(
            here.name,
            R.DEFERRED_FOR_CLEANER_SLOT,
            f"best pool now, but {later.name} from {_at(start)} is forecast {saving:.0%} cleaner",
        )
        tail, tail_counts = self._tail(cls, walk, workload, limit)
        return model.Decision(
            workload=workload.key,
            outcome=model.Outcome.DEFERRED,
            reason=R.DEFERRED_FOR_CLEANER_SLOT,
            message=f"{workload.key} deferred until {_at(start)}: running then in {later.name} "
            f"is forecast to emit {gpu_hours * slot.later_gco2 / 1000:.2f} kgCO2e instead of "
            f"{gpu_hours * slot.now_gco2 / 1000:.2f} in {here.name} now ({saving:.0%} less; "
            f"objective {gpu_hours * slot.later_objective:.2f} vs "
            f"{gpu_hours * slot.now_objective:.2f}), "
            f"within its deferral window under {', '.join(cls.keys)}",
            pool=None,
            policies=cls.keys,
            alternatives=(
                *self._skipped(cls, walk, workload),
                waiting,
                *tail,
                *cls.static[:limit],
            ),
            not_before=start,
            rejected_by_reason=_counts(
                cls.static_counts,
                walk.counts,
                tail_counts,
                {R.DEFERRED_FOR_CLEANER_SLOT: 1},
            ),
        )

    def _tail(
        self, cls: classes.Class, walk: walking.Walk, workload: model.Workload, limit: int
    ) -> tuple[tuple[model.Rejection, ...], dict[model.Reason, int]]:
        """The pools ranked after the one the walk stopped at: outranked by it."""
        if walk.stop is None or walk.estimate is None:
            return (), {}
        best = self.pools[cls.ranked[walk.stop]]
        chosen = f"{self.carbon[cls.ranked[walk.stop]]} in {best.name}"
        chosen_objective = f"{walk.estimate.objective:.2f} {best.currency}"
        rejections = []
        for pos in range(walk.stop + 1, min(len(cls.ranked), walk.stop + 1 + limit)):
            index = cls.ranked[pos]
            pool = self.pools[index]
            rate = cls.rates[pos].objective_per_gpu_hour(pool.gco2_per_kwh)
            rejections.append(
                model.Rejection(
                    pool.name,
                    R.OUTRANKED,
                    f"{self.carbon[index]} vs {chosen}; objective "
                    f"{workload.gpu_hours * rate:.2f} vs {chosen_objective}",
                )
            )
        count = len(cls.ranked) - walk.stop - 1
        return tuple(rejections), {R.OUTRANKED: count}

    def _skipped(
        self, cls: classes.Class, walk: walking.Walk, workload: model.Workload
    ) -> tuple[model.Rejection, ...]:
        """The walk's passed-over pools as rejections, written for the final decision only."""
        end = self.context.run_end(workload)
        gpus = workload.gpus
        return tuple(
            entry
            if isinstance(entry, model.Rejection)
            else self._full(cls.ranked[entry.pos], gpus)
            if entry.reason is R.INSUFFICIENT_CAPACITY and entry.free == 0
            else _passed_over(
                self.pools[cls.ranked[entry.pos]],
                reason=entry.reason,
                workload=workload,
                free=entry.free,
                window=cls.windows[entry.pos],
                end=end,
            )
            for entry in walk.skipped
        )

    def _full(self, index: int, gpus: int) -> model.Rejection:
        """A full pool's rejection: the same value for every workload of that size."""
        key = (index, gpus)
        rejection = self.full.get(key)
        if rejection is None:
            rejection = self.full[key] = _no_room(self.pools[index], gpus, 0)
        return rejection


def no_policy(workload: model.Workload) -> model.Decision:
    return model.Decision(
        workload=workload.key,
        outcome=model.Outcome.HELD,
        reason=R.NO_POLICY,
        message=(
            f"{workload.key} held: no PlacementPolicy in namespace {workload.namespace} "
            "selects it; create one (greenplace never places a governed pod without rules)"
        ),
    )


def budget_unknown(workload: model.Workload, cls: classes.Class) -> model.Decision:
    return model.Decision(
        workload=workload.key,
        outcome=model.Outcome.HELD,
        reason=R.BUDGET_UNKNOWN,
        message=f"{workload.key} held: {', '.join(cls.keys)} charges Budget "
        f"{cls.missing_budget}, which does not exist; fix: create it or remove the reference",
        policies=cls.keys,
    )


def _carbon(pool: model.Pool) -> str:
    intensity = pool.effective_gco2_per_kwh
    return "carbon unknown" if intensity is None else f"{intensity:.0f} gCO2e/kWh"


def _at(when: datetime.datetime) -> str:
    return when.isoformat(timespec="minutes")


def _left(cls: classes.Class, walk: walking.Walk, pos: int) -> str:
    """The compliant pools a placement at ``pos`` was chosen among: all of them, or those left
    after the walk passed over the better-ranked ones, with why (e.g. "2 without room"). The
    chosen pool is compared with every pool ranked after it, whether or not that one has room."""
    left = cls.above - pos
    pools = f"{left} compliant pool{'' if left == 1 else 's'}"
    if not pos:
        return pools
    counts = walk.counts
    passed = ", ".join(f"{counts[r]} {label}" for r, label in _PASSED_OVER.items() if counts.get(r))
    return f"the {pools} left ({passed})"


def _passed_over(
    pool: model.Pool,
    *,
    reason: model.Reason,
    workload: model.Workload,
    free: int,
    window: rules.CertificateWindow | None,
    end: datetime.datetime,
) -> model.Rejection:
    if reason is R.INSUFFICIENT_CAPACITY:
        return _no_room(pool, workload.gpus, free)
    if reason is R.POD_TOO_LARGE_FOR_NODE:
        return model.Rejection(
            pool.name,
            reason,
            f"a pod needs {workload.largest_pod_gpus} GPUs, nodes offer "
            f"{pool.gpus_per_node}; fix: split the pod or choose a pool with bigger nodes",
        )
    assert window is not None and window.valid_until is not None
    return model.Rejection(
        pool.name,
        reason,
        f"certification {window.names} valid until {window.valid_until:%Y-%m-%d %H:%M}, "
        f"before the expected end {end:%Y-%m-%d %H:%M} of a {workload.duration_hours:g} h "
        "run; fix: renew the certification or shorten the run",
    )


def _no_room(pool: model.Pool, gpus: int, free: int) -> model.Rejection:
    return model.Rejection(pool.name, R.INSUFFICIENT_CAPACITY, f"needs {gpus} GPUs, {free} free")


def _first_budget(cls: classes.Class) -> model.Budget:
    """The budget whose period ends first: the earliest a deferred workload may fit again."""
    never = datetime.datetime.max.replace(tzinfo=datetime.UTC)
    return min(cls.budgets, key=lambda b: (b.period_end or never, b.key))


def _counts(*counters: Mapping[model.Reason, int]) -> tuple[tuple[model.Reason, int], ...]:
    total: dict[model.Reason, int] = {}
    for counter in counters:
        for reason, n in counter.items():
            total[reason] = total.get(reason, 0) + n
    return tuple(sorted((reason, n) for reason, n in total.items() if n > 0))


def _summary(
    alternatives: Sequence[model.Rejection], counts: Sequence[tuple[model.Reason, int]]
) -> str:
    if not alternatives and not counts:
        return "no GpuPool exists"
    detail = "; ".join(f"{r.pool}: {r.message}" for r in alternatives)
    total = sum(n for _, n in counts)
    if total <= len(alternatives):
        return detail
    tally = ", ".join(f"{n} {reason.value}" for reason, n in counts)
    return f"{detail}; {total} pools in all: {tally}"
