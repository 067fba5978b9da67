"""The improvement pass: better pools for the workloads arrival order admitted.

Why this module exists: arrival order decides *who* is admitted (an old workload is never displaced
by a young one) but, greedily, not *where* at least total objective: the first workloads take the
cheapest pools whatever their length. This pass re-assigns the admitted set longest-first, then
moves or swaps pairs into better-ranked pools, keeping a change only when every workload still
fits, every budget holds and the total objective drops, and the swaps only if walking each moved
workload again places it (the walk never downgrades a Defer or Reject class; see
``_Pass._swap_if_walked``); both steps are bounded so a round stays near linear. It is the
part of the planner measured against an exact solver (``bench/bench_optimality.py``).
"""

from __future__ import annotations

import collections
import dataclasses
import typing
from collections.abc import Sequence

from greenplace.domain import model
from greenplace.engine import classes, objective, walking

__all__ = [
    "IMPROVEMENT_ATTEMPTS",
    "IMPROVEMENT_WALKS",
    "SWAP_CHECKS",
    "SWAP_CHECKS_FLOOR",
    "SWAP_CHECKS_SCALE",
    "improve",
]

# How many orders the improvement pass tries before keeping the arrival-order assignment.
IMPROVEMENT_ATTEMPTS = 4
# ... and how many walks they may take in all (a 10,000-workload round gets one attempt).
IMPROVEMENT_WALKS = 12_000
# How many (workload, better pool) pairs the local improvement may look at in one round ...
SWAP_CHECKS = 20_000
# ... and, for large rounds, at most this many divided by the placed workloads (a 10,000-workload
# round gets 5,000, like IMPROVEMENT_WALKS gives it one attempt): keeps a round near linear.
SWAP_CHECKS_SCALE = 25_000_000
SWAP_CHECKS_FLOOR = 5_000

_DOWNGRADE = model.BudgetAction.DOWNGRADE


@dataclasses.dataclass(slots=True, eq=False)
class _Mover:
    """One admitted workload during the pass, and where it is now: the pass moves it."""

    index: int
    workload: model.Workload
    cls: classes.Class
    limit: int
    walk: walking.Walk


class SwapKind(typing.NamedTuple):
    """Workloads of one kind are interchangeable in a swap: same class, size, shape, duration
    and position in the class's ranking."""

    cls: classes.Class
    gpus: int
    largest_pod_gpus: int
    gpu_hours: float
    pos: int | None


# Placed workloads by pool index, then by kind, for the swap search.
_Where = collections.defaultdict[int, collections.defaultdict[SwapKind, list[_Mover]]]


def improve(placed: Sequence[walking.Placement], walker: walking.Walker) -> list[walking.Placement]:
    """Re-assign ``placed`` (at least two workloads, all placed by ``walker``) longest-first,
    kept only if all still fit and the total objective drops, then search moves and swaps; the
    same workloads, in the same order, where the pass leaves them."""
    movers = [_Mover(p.index, p.workload, p.cls, p.limit, p.walk) for p in placed]
    _Pass(walker).run(movers)
    return [walking.Placement(m.index, m.workload, m.cls, m.limit, m.walk) for m in movers]


class _Pass:
    def __init__(self, walker: walking.Walker) -> None:
        self.walker = walker
        self.state = walker.state
        self.pools = walker.pools
        self.now = walker.now

    def run(self, placed: list[_Mover]) -> None:
        state = self.state
        before = sum(_objective(r.walk) for r in placed)
        saved = state.save()
        first: list[_Mover] = []  # workloads that did not fit in an earlier attempt go first
        attempts = max(1, min(IMPROVEMENT_ATTEMPTS, IMPROVEMENT_WALKS // len(placed)))
        for _ in range(attempts):
            rest = sorted(
                (r for r in placed if r not in first),
                key=lambda r: (-r.workload.duration_hours, -r.workload.gpus, r.index),
            )
            order = first + rest
            walks, failed = self._assign(order)
            if not failed:
                break
            first += sorted(failed, key=lambda r: r.index)
        if failed or sum(_objective(w) for w in walks) >= before - objective.EPSILON:
            state.restore(saved)
        else:
            for result, walk in zip(order, walks, strict=True):
                result.walk = walk
        self._swap_if_walked(placed)

    def _assign(self, order: list[_Mover]) -> tuple[list[walking.Walk], list[_Mover]]:
        """Walk ``order`` from the round's initial capacity and budgets; return the walks and
        the workloads that found no pool."""
        walker = self.walker
        self.state.reset()
        walks: list[walking.Walk] = []
        failed: list[_Mover] = []
        for result in order:
            walk = walker.walk(result.cls, result.workload, result.limit)
            if walk.pos is None:
                failed.append(result)
            else:
                walker.commit(result.cls, result.workload, walk)
            walks.append(walk)
        return walks, failed

    def _swap_if_walked(self, placed: list[_Mover]) -> None:
        """The swap search, kept only if walking each workload it moved again places it (where
        the search left it, or in a better-ranked pool).

        The walk never downgrades a workload whose budget action is Defer or Reject: walked
        again, it stops at the first pool with room, and when that pool is over the budget it
        is not placed at all. A swap can leave such a workload behind a better-ranked pool with
        room but over its budget (by moving it to a worse pool, or other workloads out of a
        better one), and then walking it again finds no pool. The search is then undone and run
        again moving only workloads the walk may downgrade: walked again, each finds its own
        pool (or a better one), since giving it back frees the GPUs and budget it needs there.
        Should that fail too, the placements stay as walked before the search."""
        state = self.state
        walks = [r.walk for r in placed]
        for strict_too in (True, False):
            saved = state.save()
            if self._swap(placed, strict_too=strict_too):
                return
            state.restore(saved)
            for result, walk in zip(placed, walks, strict=True):
                result.walk = walk

    def _swap(self, placed: list[_Mover], *, strict_too: bool) -> bool:
        """Local improvement: move a workload to a better-ranked pool, or swap it with one
        there, when that lowers the total objective and every budget still holds. Bounded by
        ``SWAP_CHECKS`` (fewer for large rounds) so a round stays fast; moved workloads are walked
        again so their explanation matches the final state. Without ``strict_too``, workloads
        whose budget action is not Downgrade stay put. False when walking a moved workload again
        finds no pool (the walk and budgets are then left for the caller to restore)."""
        mobile = [r for r in placed if strict_too or r.cls.action is _DOWNGRADE]
        where: _Where = collections.defaultdict(lambda: collections.defaultdict(list))
        for r in mobile:
            assert r.walk.pos is not None
            where[r.cls.ranked[r.walk.pos]][_swap_kind(r)].append(r)
        moved: set[int] = set()
        checks = 0
        order = sorted(mobile, key=lambda r: (-r.workload.gpu_hours, r.index))
        improved = True
        limit = max(SWAP_CHECKS_FLOOR, min(SWAP_CHECKS, SWAP_CHECKS_SCALE // max(1, len(mobile))))
        while improved and checks < limit:
            improved = False
            for r in order:
                assert r.walk.pos is not None
                for better in range(r.walk.pos):
                    checks += 1
                    if checks > limit:
                        break
                    exchanged = self._exchange(r, better, where)
                    if exchanged:
                        moved.update(x.index for x in exchanged)
                        improved = True
                        break
        walker = self.walker
        for r in sorted((r for r in mobile if r.index in moved), key=lambda r: r.index):
            walker.uncommit(r.cls, r.workload, r.walk)
            walk = walker.walk(r.cls, r.workload, r.limit)
            if walk.pos is None:
                return False
            walker.commit(r.cls, r.workload, walk)
            r.walk = walk
        return True

    def _exchange(self, r: _Mover, better: int, where: _Where) -> list[_Mover]:
        """Move ``r`` to position ``better`` of its ranking, alone or swapping with a workload
        there; return the workloads moved (none if no move lowers the objective)."""
        cls, walk = r.cls, r.walk
        assert walk.pos is not None
        here, there = cls.ranked[walk.pos], cls.ranked[better]
        if not self._can_run(cls, better, r.workload):
            return []
        gain = r.workload.gpu_hours * (
            cls.rates[walk.pos].objective_per_gpu_hour(self.pools[here].gco2_per_kwh)
            - cls.rates[better].objective_per_gpu_hour(self.pools[there].gco2_per_kwh)
        )
        gpus = r.workload.gpus
        free = self.state.free
        # Alike workloads give alike swaps: one candidate of each kind is enough.
        candidates: list[_Mover | None] = [None, *(alike[0] for alike in where[there].values())]
        for other in candidates:
            other_gpus = 0 if other is None else other.workload.gpus
            if free[there] + other_gpus < gpus or free[here] + gpus < other_gpus:
                continue
            loss = 0.0
            if other is not None:
                back = other.cls.position.get(here)
                if back is None or not self._can_run(other.cls, back, other.workload):
                    continue
                mine = other.walk.pos
                assert mine is not None
                loss = other.workload.gpu_hours * (
                    other.cls.rates[back].objective_per_gpu_hour(self.pools[here].gco2_per_kwh)
                    - other.cls.rates[mine].objective_per_gpu_hour(self.pools[there].gco2_per_kwh)
                )
            if gain - loss <= objective.EPSILON:
                continue
            moves = [(r, better)]
            if other is not None:
                moves.append((other, other.cls.position[here]))
            if not self._budgets_hold(moves):
                continue
            for mover, pos in moves:
                self._relocate(mover, pos, where)
            return [mover for mover, _ in moves]
        return []

    def _budgets_hold(self, moves: list[tuple[_Mover, int]]) -> bool:
        """Whether every budget (money, kgCO2e, kWh) still holds after moving each workload to
        its new position."""
        money: dict[str, float] = {}
        kg: dict[str, float] = {}
        kwh: dict[str, float] = {}
        for r, pos in moves:
            assert r.walk.estimate is not None
            pool = self.pools[r.cls.ranked[pos]]
            after = r.cls.estimate(pos, r.workload.gpu_hours, pool.gco2_per_kwh)
            before = r.walk.estimate
            for budget in r.cls.budgets:
                key = budget.key
                money[key] = money.get(key, 0.0) + after.cost - before.cost
                kg[key] = kg.get(key, 0.0) + after.kgco2e - before.kgco2e
                kwh[key] = kwh.get(key, 0.0) + after.kwh - before.kwh
        state = self.state
        for left, delta in ((state.money, money), (state.kgco2e, kg), (state.kwh, kwh)):
            for key, change in delta.items():
                value = left[key]
                if value is not None and change > value + objective.EPSILON:
                    return False
        return True

    def _can_run(self, cls: classes.Class, pos: int, workload: model.Workload) -> bool:
        """Whether the pool at ``pos`` could take ``workload``, room apart."""
        pool = self.pools[cls.ranked[pos]]
        window = cls.windows[pos]
        return walking.obstacle(pool, workload, window=window, start=self.now) is None

    def _relocate(self, r: _Mover, pos: int, where: _Where) -> None:
        cls, walk = r.cls, r.walk
        assert walk.pos is not None
        old, new = cls.ranked[walk.pos], cls.ranked[pos]
        alike = where[old][_swap_kind(r)]
        alike.remove(r)
        if not alike:
            del where[old][_swap_kind(r)]
        self.walker.uncommit(cls, r.workload, walk)
        # A new Walk, not an update: the search may be undone (``_swap_if_walked``).
        estimate = cls.estimate(pos, r.workload.gpu_hours, self.pools[new].gco2_per_kwh)
        r.walk = dataclasses.replace(walk, pos=pos, stop=pos, estimate=estimate)
        where[new][_swap_kind(r)].append(r)
        self.walker.commit(cls, r.workload, r.walk)


def _swap_kind(r: _Mover) -> SwapKind:
    w = r.workload
    return SwapKind(r.cls, w.gpus, w.largest_pod_gpus, w.gpu_hours, r.walk.pos)


def _objective(walk: walking.Walk) -> float:
    assert walk.estimate is not None
    return walk.estimate.objective
