"""The round's one state object: what is given back or restored is seen by the next walk, cursors
included (issue 11 item 1)."""

from __future__ import annotations

from greenplace.domain import model
from greenplace.engine import classes, rounds, walking
from tests import builders as b


def _round(
    free_a: int, free_b: int
) -> tuple[rounds.State, walking.Walker, classes.Class, model.Workload]:
    # Pool "a" is cleaner, so it ranks first; "b" is the fallback.
    snapshot = b.snapshot(
        [b.pool("a", gco2=10.0, free=free_a), b.pool("b", gco2=500.0, free=free_b)],
        [b.policy(budget="team")],
        [b.workload("w", gpus=2)],
        budgets=[b.budget(money=1_000)],
    )
    context = rounds.Context.of(snapshot, b.T0)
    state = rounds.State.initial(context)
    (workload,) = snapshot.workloads
    cls = classes.Catalog(context).of(snapshot.policies, workload)
    return state, walking.Walker(context, state), cls, workload


def _pool_of(cls: classes.Class, walk: walking.Walk) -> int | None:
    return None if walk.pos is None else cls.ranked[walk.pos]


def test_gpus_given_back_before_the_cursor_are_found_again() -> None:
    state, walker, cls, workload = _round(free_a=2, free_b=8)
    first = walker.walk(cls, workload, 3)
    assert _pool_of(cls, first) == 0
    walker.commit(cls, workload, first)
    # "a" is full: the walk moves its cursor past it and places in "b".
    assert _pool_of(cls, walker.walk(cls, workload, 3)) == 1
    assert state.cursors[cls] == 1
    walker.uncommit(cls, workload, first)
    assert _pool_of(cls, walker.walk(cls, workload, 3)) == 0


def test_restore_brings_back_gpus_budgets_and_cursors_and_may_be_done_twice() -> None:
    state, walker, cls, workload = _round(free_a=2, free_b=8)
    saved = state.save()
    walk = walker.walk(cls, workload, 3)
    walker.commit(cls, workload, walk)
    assert walker.walk(cls, workload, 3).counts == {model.Reason.INSUFFICIENT_CAPACITY: 1}
    assert state.free == [0, 8] and state.money != saved.money
    for _ in range(2):
        state.restore(saved)
        assert (state.free, state.money, state.cursors) == ([2, 8], saved.money, {})
        assert _pool_of(cls, walker.walk(cls, workload, 3)) == 0
        walker.commit(cls, workload, walk)
    state.reset()
    assert (state.free, state.money, state.cursors) == ([2, 8], saved.money, {})
