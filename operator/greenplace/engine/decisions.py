"""The planner's decisions in words.

Why this module exists: a decision is what people and tools read (annotations, Events,
``greenplace explain``): its one-line message, the most telling rejected pools and the count of
all of them. The planner has already chosen the outcome, the reason, the pool and the time
(``engine.verdicts``); this module only writes them down, so the wording lives in one place,
and the walk records passed-over pools cheaply (``walking.Passed``) to have them written only
for the final decision of each workload.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence

from greenplace.domain import model
from greenplace.engine import classes, rounds, rules, verdicts, walking

__all__ = ["Explainer"]

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
    """Writes the decisions of one round, and caches what many of them repeat (each pool's
    carbon, a full pool's rejection)."""

    def __init__(self, context: rounds.Context) -> None:
        self.context = context
        self.pools = context.pools
        # Each pool's effective intensity as messages write it, once per round.
        self.carbon = [_carbon(pool) for pool in context.pools]
        self.full: dict[tuple[int, int], model.Rejection] = {}

    def word(self, verdict: verdicts.Verdict) -> model.Decision:
        """The decision ``verdict`` says, with its message and alternatives."""
        workload, cls = verdict.workload, verdict.cls
        if cls is None:
            return model.Decision(
                workload=workload.key,
                outcome=verdict.outcome,
                reason=verdict.reason,
                message=(
                    f"{workload.key} held: no PlacementPolicy in namespace {workload.namespace} "
                    "selects it; create one (greenplace never places a governed pod without rules)"
                ),
            )
        if verdict.reason is R.BUDGET_UNKNOWN:
            return model.Decision(
                workload=workload.key,
                outcome=verdict.outcome,
                reason=verdict.reason,
                message=f"{workload.key} held: {', '.join(cls.keys)} charges Budget "
                f"{cls.missing_budget}, which does not exist; fix: create it or remove the "
                "reference",
                policies=cls.keys,
            )
        walk = verdict.walk
        assert walk is not None
        if verdict.outcome is model.Outcome.PLACED:
            return self._placed(verdict, cls, walk)
        if verdict.reason is R.DEFERRED_FOR_CLEANER_SLOT:
            return self._deferred(verdict, cls, walk)
        return self._not_placed(verdict, cls, walk)

    def _placed(
        self, verdict: verdicts.Verdict, cls: classes.Class, walk: walking.Walk
    ) -> model.Decision:
        workload, reason, best = verdict.workload, verdict.reason, verdict.pool
        assert best is not None and walk.pos is not None and walk.estimate is not None
        pos, estimate, limit = walk.pos, walk.estimate, verdict.limit
        outranked, tail_counts = self._tail(cls, walk, workload, limit)
        counts = _counts(cls.static_counts, walk.counts, tail_counts)
        where = (
            f"{best.name} ({best.location.country}, {self.carbon[cls.ranked[pos]]}, "
            f"{estimate.cost:.2f} {best.currency}, {estimate.kgco2e:.2f} kgCO2e)"
        )
        if reason is R.CEILING_WAIVED_AT_DEADLINE:
            assert verdict.latest_start is not None
            why = (
                f"carbon ceiling waived at the deadline: its latest start "
                f"{_at(verdict.latest_start)} has come and none of the {cls.above} compliant "
                "pools under the ceiling had room, so it runs above it, in the pool with the "
                f"lowest cost + carbon among the {len(cls.ranked)} that pass every other rule "
                "(set carbon.ceilingYieldsAtDeadline false to hold instead)"
            )
        elif reason is R.DOWNGRADED_FOR_BUDGET:
            assert walk.downgraded is not None
            why = f"downgraded: {walk.downgraded.pool} {walk.downgraded.message}"
        elif reason is R.LOWEST_CARBON:
            why = f"lowest carbon among {_left(cls, walk, pos)}"
        else:
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
            outcome=verdict.outcome,
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

    def _not_placed(
        self, verdict: verdicts.Verdict, cls: classes.Class, walk: walking.Walk
    ) -> model.Decision:
        """A workload the walk found no pool for: a budget, a gang larger than any pool, no
        pool under the ceiling now, no room, or no compliant pool."""
        workload, reason, limit = verdict.workload, verdict.reason, verdict.limit
        tail, tail_counts = self._tail(cls, walk, workload, limit)
        alternatives = (*self._skipped(cls, walk, workload), *tail, *cls.static[:limit])
        counts = _counts(cls.static_counts, walk.counts, tail_counts)
        summary = _summary(alternatives, counts)
        keys = ", ".join(cls.keys)
        if reason is R.BUDGET_EXCEEDED:
            over = verdict.over_budget
            assert over is not None
            budget = over.budget
            if verdict.outcome is model.Outcome.REFUSED:
                verb = "refused"
            else:
                start = verdict.not_before
                verb = "deferred" if start is None else f"deferred until {_at(start)}"
            message = (
                f"{workload.key} {verb}: {over.rejection.message} "
                f"(Budget {budget.key} action {budget.action.value}; {summary})"
            )
        elif reason is R.GANG_TOO_LARGE:
            message = (
                f"{workload.key} refused: its {len(workload.pods) or 1} pods need "
                f"{workload.gpus} GPUs together, more than the largest pool allowed by {keys} "
                f"({cls.largest_pool_gpus} GPUs); fix: split the job or add a larger GpuPool "
                f"({summary})"
            )
        elif reason is R.DEFERRED_UNTIL_UNDER_CEILING:
            assert verdict.pool is not None and verdict.not_before is not None
            pool, start = verdict.pool, verdict.not_before
            forecast = self.context.forecasts.get(pool.location.grid_zone)
            grid = None if forecast is None else forecast.at(start)
            then = None if grid is None else grid * pool.pue
            message = (
                f"{workload.key} deferred until {_at(start)}: no pool allowed by {keys} is "
                f"under its carbon ceiling now; {pool.name} is forecast under it then "
                f"({_intensity(then)} vs {_carbon(pool)} now), within the deferral window "
                f"({summary})"
            )
        else:
            what = (
                "no allowed pool has room" if reason is R.NO_POOL_WITH_ROOM else "no pool satisfies"
            )
            message = f"{workload.key} held: {what} {keys} ({summary})"
            if verdict.latest_start is not None:
                message += (
                    f"; its carbon ceiling yields at its latest start {_at(verdict.latest_start)}"
                )
        return model.Decision(
            workload=workload.key,
            outcome=verdict.outcome,
            reason=reason,
            message=message,
            policies=cls.keys,
            alternatives=alternatives,
            not_before=verdict.not_before,
            rejected_by_reason=counts,
        )

    def _deferred(
        self, verdict: verdicts.Verdict, cls: classes.Class, walk: walking.Walk
    ) -> model.Decision:
        """The workload waits for a slot cleaner than the pool the walk found now."""
        slot, workload, limit = verdict.cleaner, verdict.workload, verdict.limit
        assert slot is not None
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
            outcome=verdict.outcome,
            reason=verdict.reason,
            message=f"{workload.key} deferred until {_at(start)}: forecast "
            f"{slot.later_gco2_per_kwh:.0f} gCO2e/kWh in {later.name} then vs "
            f"{_intensity(slot.now_gco2_per_kwh)} in {here.name} now; running then "
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


def _carbon(pool: model.Pool) -> str:
    return _intensity(pool.effective_gco2_per_kwh)


def _intensity(gco2_per_kwh: float | None) -> str:
    return "carbon unknown" if gco2_per_kwh is None else f"{gco2_per_kwh:.0f} gCO2e/kWh"


def _at(when: datetime.datetime) -> str:
    return when.isoformat(timespec="seconds")


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
