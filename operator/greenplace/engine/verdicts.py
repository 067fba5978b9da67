"""What the planner decided for one workload, before it is put into words.

Why this module exists: the outcome and reason code are the planner's answer (what the operator
does with the pod, what the metrics count, what a test asserts); the message is only how it is
said. A ``Verdict`` is that answer as a typed value (outcome, reason, pool, when to look again)
with the evidence the wording cites (the class and walk, the budget, the slot). The functions
here pick the outcome and reason from what the round found; ``engine.decisions`` turns a verdict
into a ``model.Decision`` and chooses nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

from greenplace.domain import model
from greenplace.engine import classes, deferral, rounds, walking

__all__ = [
    "Verdict",
    "budget_unknown",
    "deferred_for_cleaner_slot",
    "no_policy",
    "not_placed",
    "placed",
]

R = model.Reason
OUT = model.Outcome


# Not frozen (a frozen dataclass sets each field through object.__setattr__, a cost paid for
# every workload of a round), but never changed once made.
@dataclasses.dataclass(slots=True)
class Verdict:
    """The planner's answer for one workload, and the evidence its message cites."""

    workload: model.Workload
    outcome: model.Outcome
    reason: model.Reason
    # Placed: the chosen pool. Deferred to a slot: the pool forecast to be cleaner, or under the
    # carbon ceiling, then. Otherwise None.
    pool: model.Pool | None = None
    # Deferred: when to plan it again (the slot, or the end of the budget's period); held by a
    # carbon ceiling that yields at its latest start: that latest start.
    not_before: datetime.datetime | None = None
    # The class and walk that led here (None when no policy governs the workload, or its
    # budget is missing), and how many rejected pools of each kind the message details.
    cls: classes.Class | None = None
    walk: walking.Walk | None = None
    limit: int = 0
    # BudgetExceeded: the budget that stops it, and why.
    over_budget: walking.OverBudget | None = None
    # DeferredForCleanerSlot: the slot, with the figures that justify waiting.
    cleaner: deferral.CleanerSlot | None = None
    # CeilingWaivedAtDeadline: the latest start that has come. Held by a ceiling that yields:
    # the latest start to come, when it is planned again (also its ``not_before``).
    latest_start: datetime.datetime | None = None


def no_policy(workload: model.Workload) -> Verdict:
    """No policy of its namespace selects the workload: greenplace never places it without."""
    return Verdict(workload, OUT.HELD, R.NO_POLICY)


def budget_unknown(workload: model.Workload, cls: classes.Class) -> Verdict:
    """A governing policy charges a budget that does not exist."""
    return Verdict(workload, OUT.HELD, R.BUDGET_UNKNOWN, cls=cls)


def placed(context: rounds.Context, placement: walking.Placement) -> Verdict:
    """Placed where its final walk found room: above a waived ceiling, downgraded by a budget,
    in the lowest-carbon pool left, or in the pool with the best objective."""
    cls, workload, walk = placement.cls, placement.workload, placement.walk
    pos = walk.pos
    assert pos is not None
    pool = context.pools[cls.ranked[pos]]
    latest = None
    if pos >= cls.above:
        reason = R.CEILING_WAIVED_AT_DEADLINE
        latest = deferral.latest_start(cls, workload)
        assert latest is not None
    elif walk.downgraded is not None:
        reason = R.DOWNGRADED_FOR_BUDGET
    else:
        intensity = pool.effective_gco2_per_kwh
        lowest = (math.inf if intensity is None else intensity) <= cls.min_intensity_from[pos + 1]
        reason = R.LOWEST_CARBON if lowest else R.BEST_OBJECTIVE
    return Verdict(
        workload,
        OUT.PLACED,
        reason,
        pool=pool,
        cls=cls,
        walk=walk,
        limit=placement.limit,
        latest_start=latest,
    )


def deferred_for_cleaner_slot(
    cls: classes.Class,
    workload: model.Workload,
    walk: walking.Walk,
    limit: int,
    slot: deferral.CleanerSlot,
) -> Verdict:
    """The walk found room now, but the workload waits for ``slot``, forecast cleaner."""
    return Verdict(
        workload,
        OUT.DEFERRED,
        R.DEFERRED_FOR_CLEANER_SLOT,
        pool=slot.later,
        not_before=slot.start,
        cls=cls,
        walk=walk,
        limit=limit,
        cleaner=slot,
    )


def not_placed(
    cls: classes.Class,
    workload: model.Workload,
    walk: walking.Walk,
    limit: int,
    later: deferral.Deferral,
) -> Verdict:
    """Why the walk found no pool, in this order: a budget (refused under Reject, else deferred
    to the end of its period), a gang larger than any allowed pool, no pool under the carbon
    ceiling now (deferred to the first slot under it, if the window has one), no room, or no
    compliant pool."""

    over: walking.OverBudget | None = None
    pool: model.Pool | None = None
    not_before: datetime.datetime | None = None
    if walk.stopped_by_budget:
        over = walk.blocked
        if over is None:  # Downgrade passed over every pool: the first budget to end says when
            assert walk.downgraded is not None
            over = walking.OverBudget(_first_budget(cls), walk.downgraded)
        refuse = over.budget.action is model.BudgetAction.REJECT
        outcome, reason = (OUT.REFUSED if refuse else OUT.DEFERRED), R.BUDGET_EXCEEDED
        not_before = None if refuse else over.budget.period_end
    # A class whose pools have no GPUs at all (scaled to zero) says nothing about gang size.
    elif 0 < cls.largest_pool_gpus < workload.gpus:
        outcome, reason = OUT.REFUSED, R.GANG_TOO_LARGE
    elif not cls.ranked and (slot := later.first_slot_under_ceiling(cls, workload)) is not None:
        outcome, reason = OUT.DEFERRED, R.DEFERRED_UNTIL_UNDER_CEILING
        pool, not_before = slot.pool, slot.start
    elif walk.counts.get(R.INSUFFICIENT_CAPACITY):
        outcome, reason = OUT.HELD, R.NO_POOL_WITH_ROOM
    else:
        outcome, reason = OUT.HELD, R.NO_COMPLIANT_POOL
    latest = None
    if outcome is OUT.HELD and cls.waivable:
        # Its ceiling yields at its latest start: plan it again exactly then.
        latest = deferral.latest_start(cls, workload)
        if latest is not None and latest > later.now:
            not_before = latest
        else:
            latest = None
    return Verdict(
        workload,
        outcome,
        reason,
        pool=pool,
        not_before=not_before,
        cls=cls,
        walk=walk,
        limit=limit,
        over_budget=over,
        latest_start=latest,
    )


def _first_budget(cls: classes.Class) -> model.Budget:
    """The budget whose period ends first: the earliest a deferred workload may fit again."""
    never = datetime.datetime.max.replace(tzinfo=datetime.UTC)
    return min(cls.budgets, key=lambda b: (b.period_end or never, b.key))
