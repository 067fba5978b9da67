"""The placement planner: one pure function from a snapshot to a plan.

Why this module exists: every placement greenplace makes — in the operator, the simulator and the
benchmarks — goes through ``plan``. It reads only its arguments (no clock, no I/O, no Kubernetes),
so the same snapshot always gives the same plan, and the plan says for every workload which pools
were weighed and why each one lost. ``docs/planner.md`` is the user-facing description.

A round, for the workloads in arrival order (oldest first, then by key):

1. **Governance**: the workload must be selected by at least one ``Policy`` of its namespace
   (fail-closed); every selecting policy applies (their rules intersect).
2. **Hard rules** (``engine.rules``), computed once per round for each *class* of workloads that
   share policies, data residency and spot flag (``engine.classes``): location, legal regime,
   extraterritorial exposure, certifications (valid now), budget currency, carbon ceiling on
   grid x PUE.
3. **Ranking**: compliant pools sorted once per class by the objective rate per GPU-hour
   (``engine.objective``), then effective intensity, price and name, so ties are deterministic.
4. **Walk** (``engine.walking``): the first pool in rank order with room for the whole gang,
   nodes big enough for its largest pod, certifications valid for the whole expected run, and
   room in every budget (money, kgCO2e and kWh). When a budget would be exceeded the budget's
   action decides: Downgrade keeps walking to cheaper pools, Defer waits for the next period,
   Reject refuses.
5. **Deferral** (``engine.deferral``): a workload with a deferral window (max delay, deadline)
   waits for a later slot when the grid forecasts promise at least
   ``deferral_min_saving_fraction`` less carbon and a lower objective; with no compliant pool
   under its carbon ceiling now, it waits for the first slot under the ceiling.
6. **Commit**: GPUs and budgets are consumed, so nothing is over-committed within the round.

Then an improvement pass (``engine.improvement``) re-assigns the admitted workloads longest-first
(long runs gain most from the cheapest capacity) and keeps the result only if every one of them
still fits and the total objective drops; workloads that found no room may then backfill the
space that freed up. Who is admitted stays decided by arrival order, so the pass never trades an
old workload for a young one.

The round's answer is one ``verdicts.Verdict`` per workload (outcome, reason, pool, when to look
again, and the evidence); ``plan`` then has ``engine.decisions`` put each into words.
"""

from __future__ import annotations

import collections
import datetime
from collections.abc import Collection

from greenplace.domain import model
from greenplace.engine import (
    classes,
    decisions,
    deferral,
    improvement,
    rounds,
    verdicts,
    walking,
)

__all__ = ["DEFERRAL_STEP", "DETAIL_LIMIT", "decide", "plan", "why_not"]

R = model.Reason

# How many rejected pools of each kind (passed over, outranked, excluded) a decision details;
# ``rejected_by_reason`` still counts all of them, and ``why_not`` details every pool.
DETAIL_LIMIT = 3
# Granularity of the later start times the planner considers when deferring.
DEFERRAL_STEP = deferral.DEFERRAL_STEP


def plan(
    snapshot: model.Snapshot, now: datetime.datetime, *, detail_for: Collection[str] = ()
) -> model.Plan:
    """Decide where each workload of ``snapshot`` runs now, or why it waits.

    ``detail_for`` names workloads (``namespace/name``) whose decisions list every rejected pool
    instead of the most telling few; it never changes what is decided.
    """
    planning = _Round(snapshot, now, frozenset(detail_for))
    explainer = decisions.Explainer(planning.context)
    return model.Plan(at=now, decisions=tuple(explainer.word(v) for v in planning.run()))


def decide(
    snapshot: model.Snapshot, now: datetime.datetime, *, detail_for: Collection[str] = ()
) -> tuple[verdicts.Verdict, ...]:
    """What ``plan`` decides, before it is worded: one verdict per workload, in arrival order."""
    return tuple(_Round(snapshot, now, frozenset(detail_for)).run())


def why_not(
    snapshot: model.Snapshot, now: datetime.datetime, workload: str, pool: str
) -> tuple[model.Decision | None, model.Rejection | None]:
    """The decision for ``workload`` with every alternative, and why ``pool`` was not chosen.

    The rejection is None when ``pool`` was chosen; the decision is None when the snapshot has no
    such workload. A pool that was never weighed (no policy governs the workload, a budget is
    missing) gets the decision's own reason.
    """
    decision = plan(snapshot, now, detail_for={workload}).decision(workload)
    if decision is None or decision.pool == pool:
        return decision, None
    for rejection in decision.alternatives:
        if rejection.pool == pool:
            return decision, rejection
    if all(p.name != pool for p in snapshot.pools):
        return decision, model.Rejection(pool, R.NO_COMPLIANT_POOL, "no GpuPool of that name")
    return decision, model.Rejection(pool, decision.reason, decision.message)


class _Round:
    """One planning round: the steps above, in order; ``plan`` wraps it in a pure function.

    What the round knows is one ``rounds.Context``, what it has left one ``rounds.State``; the
    work is split by concern: ``catalog`` (classes and their rankings), ``walker`` (the walk,
    and the only code that consumes the state), ``deferral`` (forecast slots) and
    ``engine.verdicts`` (which outcome and reason).
    """

    def __init__(
        self, snapshot: model.Snapshot, now: datetime.datetime, detail_for: frozenset[str]
    ) -> None:
        self.now = now
        self.detail_for = detail_for
        self.context = context = rounds.Context.of(snapshot, now)
        self.pools = context.pools
        self.by_namespace: dict[str, list[model.Policy]] = collections.defaultdict(list)
        for policy in sorted(snapshot.policies, key=lambda p: p.key):
            self.by_namespace[policy.namespace].append(policy)
        self.workloads = sorted(snapshot.workloads, key=lambda w: (w.created, w.key))
        state = rounds.State.initial(context)
        self.catalog = classes.Catalog(context)
        self.walker = walking.Walker(context, state)
        self.deferral = deferral.Deferral(context, state)

    def run(self) -> list[verdicts.Verdict]:
        """The verdict on each workload, in arrival order."""
        entries = [self._decide(i, w) for i, w in enumerate(self.workloads)]
        placed = [e for e in entries if isinstance(e, walking.Placement)]
        if len(placed) >= 2:
            improved = iter(improvement.improve(placed, self.walker))
            entries = [next(improved) if isinstance(e, walking.Placement) else e for e in entries]
            # Workloads that found no room may take what the improvement freed (with fewer than
            # two placed workloads nothing was moved, so nothing was freed).
            entries = [
                self._try(i, e.workload, e.cls, e.limit)
                if isinstance(e, verdicts.Verdict)
                and e.reason is R.NO_POOL_WITH_ROOM
                and e.cls is not None
                else e
                for i, e in enumerate(entries)
            ]
        return [
            verdicts.placed(self.context, e) if isinstance(e, walking.Placement) else e
            for e in entries
        ]

    def _decide(self, index: int, workload: model.Workload) -> walking.Placement | verdicts.Verdict:
        """Governance, then the workload's class (hard rules and ranking), then ``_try``."""
        governing = tuple(
            p for p in self.by_namespace.get(workload.namespace, ()) if p.selects(workload)
        )
        if not governing:
            return verdicts.no_policy(workload)
        cls = self.catalog.of(governing, workload)
        limit = len(self.pools) if workload.key in self.detail_for else DETAIL_LIMIT
        return self._try(index, workload, cls, limit)

    def _try(
        self, index: int, workload: model.Workload, cls: classes.Class, limit: int
    ) -> walking.Placement | verdicts.Verdict:
        """Walk, waive a yielding ceiling at the latest start, defer to a cleaner slot, or
        commit; a workload not placed gets its verdict now, from the round as it is now."""
        if cls.missing_budget is not None:
            return verdicts.budget_unknown(workload, cls)
        walker = self.walker
        walk = walker.walk(cls, workload, limit)
        if walk.pos is None:
            waived = self._waived(cls, workload, walk)
            if waived is not None:
                found = walker.walk(waived, workload, limit)
                if found.pos is not None:
                    walker.commit(waived, workload, found)
                    return walking.Placement(index, workload, waived, limit, found)
                if found.stopped_by_budget:  # only a budget stops it now: say so
                    return verdicts.not_placed(waived, workload, found, limit, self.deferral)
            return verdicts.not_placed(cls, workload, walk, limit, self.deferral)
        slot = self.deferral.cleaner_slot(cls, workload, walk.pos)
        if slot is None:
            walker.commit(cls, workload, walk)
            return walking.Placement(index, workload, cls, limit, walk)
        return verdicts.deferred_for_cleaner_slot(cls, workload, walk, limit, slot)

    def _waived(
        self, cls: classes.Class, workload: model.Workload, walk: walking.Walk
    ) -> classes.Class | None:
        """Past its latest start, a workload no pool under its ceilings can take now (and that
        no budget holds) walks the class whose yielding ceilings are waived: the compliant pools
        first, then those above a ceiling, best objective first. That walk decides when it
        places the workload or a budget stops it (the decision then names the budget,
        ``BudgetExceeded``, not the ceiling that no longer applies); otherwise the decision
        stays the one without waiver."""
        if not cls.waivable or walk.stopped_by_budget:
            return None
        latest = deferral.latest_start(cls, workload)
        if latest is None or latest > self.now:
            return None
        return self.catalog.waived(cls)
