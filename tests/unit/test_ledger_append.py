"""The ledger's append runs beside the next cycle, one at a time, and never appends twice.

``controller.ledger.Ledger`` here on a fake store (the real ConfigMap store is proved in
tests/integration/test_ledger.py): the append blocks until the test lets it through, so each
test sees what the placement loop does while an append is in flight, never timing alone.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
from types import SimpleNamespace
from typing import Any

from greenplace.audit import chain, store
from greenplace.controller import ledger as ledger_
from greenplace.controller import snapshot
from greenplace.domain import model

AT = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)


class GatedStore:
    """Segments in memory; ``append`` waits for ``gate``; ``others`` appear when stale."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.gate = threading.Event()
        self.appends = 0
        self.others: list[str] = []  # lines another replica wrote, seen at the next check

    def segments(self) -> list[store.Segment]:
        return [
            store.Segment("greenplace-ledger-000001", 1, str(len(self.lines)), tuple(self.lines))
        ]

    def stale(self, head: store.Segment | None) -> bool:
        if self.others:
            self.lines += self.others
            self.others = []
            return True
        return False

    def append(self, head: store.Segment | None, lines: list[str]) -> store.Segment:
        assert self.gate.wait(30), "the test never let the append through"
        self.appends += 1
        self.lines += lines
        return self.segments()[0]


AT_RECORD = "2026-12-03T12:00:00Z"


def placement(uid: str) -> dict[str, Any]:
    return {"workload": f"ml/{uid}", "outcome": "Placed", "reason": "LowestCarbon",
            "pods": [{"name": uid, "uid": uid, "placedAt": "2026-12-03T12:00:00Z"}]}  # fmt: skip


def opened(fake: GatedStore, *found: dict[str, Any]) -> ledger_.Ledger:
    ledger = ledger_.Ledger(fake, chain.SigningKey.generate())  # type: ignore[arg-type]
    ledger.loaded = True
    ledger.new_entries = lambda *_: list(found)  # type: ignore[method-assign]
    return ledger


def record(ledger: ledger_.Ledger) -> Any:
    return ledger.record(snapshot.Decided(None, None, None, None, AT))  # type: ignore[arg-type]


def test_no_cycle_waits_for_the_append_in_flight_and_the_next_batch_follows_it_in_order() -> None:
    fake = GatedStore()
    ledger = opened(fake, placement("a"))

    async def scenario() -> None:
        assert await asyncio.wait_for(record(ledger), 5) == 1  # returned with the append pending
        ledger.new_entries = lambda *_: [placement("b")]  # type: ignore[method-assign]
        # The second cycle returns while the first append is still blocked in the store.
        assert await asyncio.wait_for(record(ledger), 5) == 1
        assert fake.appends == 0
        fake.gate.set()
        await ledger.drain(5)

    asyncio.run(scenario())
    # b was queued behind a's append and appended after it, in its own append.
    assert fake.appends == 2
    assert [json.loads(line)["entry"]["workload"] for line in fake.lines] == ["ml/a", "ml/b"]
    assert {("a", AT_RECORD), ("b", AT_RECORD)} <= ledger.placed


def test_what_another_replica_appended_meanwhile_is_not_appended_again() -> None:
    fake = GatedStore()
    fake.gate.set()
    other = ledger_.Ledger(fake, chain.SigningKey.generate())  # type: ignore[arg-type]
    sealed, _ = chain.seal(placement("a"), chain.Tail(), other.key, "2026-12-03T12:00:00Z")
    fake.others = [chain.canonical(sealed)]  # the other replica recorded pod a first
    ledger = opened(fake, placement("a"), placement("b"))

    async def scenario() -> None:
        await record(ledger)
        await ledger.drain(5)

    asyncio.run(scenario())
    assert [json.loads(line)["entry"]["workload"] for line in fake.lines] == ["ml/a", "ml/b"]


class FailingStore(GatedStore):
    """``append`` fails ``failures`` times: before writing, or (``lands``) after it wrote, as a
    write whose answer was lost (a timeout) does."""

    def __init__(self, failures: int, *, lands: bool = False) -> None:
        super().__init__()
        self.gate.set()
        self.failures, self.lands = failures, lands

    def append(self, head: store.Segment | None, lines: list[str]) -> store.Segment:
        if self.failures:
            self.failures -= 1
            if self.lands:
                self.lines += lines
            raise OSError("connection refused: the API server is down")
        return super().append(head, lines)


def cycle(*, pods: tuple[str, ...] = (), held: tuple[str, ...] = ()) -> snapshot.Decided:
    """A cycle that found ``pods`` placed (each with its signed record) and held ``held``."""
    decisions = tuple(
        model.Decision(w, model.Outcome.HELD, model.Reason.INSUFFICIENT_CAPACITY, "no room")
        for w in held
    )
    record = {"at": AT_RECORD, "pool": "burst-fr-0", "reason": "LowestCarbon"}
    found = {u: SimpleNamespace(uid=u, name=u, namespace="ml", record=record) for u in pods}
    built = SimpleNamespace(
        snapshot=SimpleNamespace(pools=(), workloads=()), members={}, kueue=set(),
        carbon_sources={},
    )  # fmt: skip
    gathered = SimpleNamespace(policies=())
    plan, cache = SimpleNamespace(decisions=decisions), SimpleNamespace(pods=found)
    return snapshot.Decided(gathered, built, plan, cache, AT)  # type: ignore[arg-type]


def real(fake: GatedStore) -> ledger_.Ledger:
    ledger = ledger_.Ledger(fake, chain.SigningKey.generate())  # type: ignore[arg-type]
    ledger.loaded = True
    return ledger


def workloads(fake: GatedStore) -> list[str]:
    return [json.loads(line)["entry"]["workload"] for line in fake.lines]


def test_entries_in_flight_count_as_recorded_when_the_next_cycle_works_out_its_own() -> None:
    fake = GatedStore()
    ledger = real(fake)

    async def scenario() -> list[int]:
        first = await ledger.record(cycle(pods=("a",), held=("ml/w",)))
        # The same facts again while the first append is blocked: nothing new to queue.
        again = await ledger.record(cycle(pods=("a",), held=("ml/w",)))
        more = await ledger.record(cycle(pods=("a", "b"), held=("ml/w",)))  # only b is new
        fake.gate.set()
        await ledger.drain(5)
        after = await ledger.record(cycle(pods=("a", "b"), held=("ml/w",)))  # in the chain now
        return [first, again, more, after]

    assert asyncio.run(scenario()) == [2, 0, 1, 0]
    assert workloads(fake) == ["ml/w", "ml/a", "ml/b"]
    assert ledger.writing is False


def test_a_failed_append_is_retried_by_the_next_cycle_and_appended_once() -> None:
    fake = FailingStore(failures=1)
    ledger = real(fake)

    async def scenario() -> list[int]:
        first = await ledger.record(cycle(pods=("a",)))
        await ledger.drain(5)
        assert fake.lines == [], "the append failed"
        # Its entry is still queued: the next cycle works out nothing new for a, and retries it.
        second = await ledger.record(cycle(pods=("a",), held=("ml/w",)))
        await ledger.drain(5)
        return [first, second]

    assert asyncio.run(scenario()) == [1, 1]
    assert workloads(fake) == ["ml/a", "ml/w"]  # in the order decided


def test_a_failed_append_that_landed_is_not_appended_again() -> None:
    fake = FailingStore(failures=1, lands=True)
    ledger = real(fake)

    async def scenario() -> None:
        await ledger.record(cycle(pods=("a",)))
        await ledger.drain(5)
        assert workloads(fake) == ["ml/a"], "the write landed, its answer was lost"
        await ledger.record(cycle(pods=("a", "b")))
        await ledger.drain(5)

    asyncio.run(scenario())
    assert workloads(fake) == ["ml/a", "ml/b"]


def test_a_state_queued_before_another_replica_wrote_is_worked_out_again_not_appended() -> None:
    fake = GatedStore()
    fake.gate.set()
    other = ledger_.Ledger(fake, chain.SigningKey.generate())  # type: ignore[arg-type]
    later = {"workload": "ml/w", "outcome": "Placed", "reason": "LowestCarbon",
             "pods": [{"name": "w", "uid": "w", "placedAt": "2026-12-03T12:00:05Z"}]}  # fmt: skip
    sealed, _ = chain.seal(later, chain.Tail(), other.key, "2026-12-03T12:00:05Z")
    fake.others = [chain.canonical(sealed)]  # meanwhile the new leader placed ml/w
    ledger = real(fake)

    async def scenario() -> None:
        await ledger.record(cycle(pods=("a",), held=("ml/w",)))  # our view: ml/w held
        await ledger.drain(5)

    asyncio.run(scenario())
    # The placement (a fact) is appended; the held state, older than the chain, is not.
    assert workloads(fake) == ["ml/w", "ml/a"]
    assert ledger.states["ml/w"] == ("Placed", "LowestCarbon", None)
