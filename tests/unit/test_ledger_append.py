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
from typing import Any

from greenplace.audit import chain, store
from greenplace.controller import ledger as ledger_
from greenplace.controller import snapshot

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


def test_a_cycle_does_not_wait_for_its_append_and_the_next_waits_for_the_previous() -> None:
    fake = GatedStore()
    ledger = opened(fake, placement("a"))

    async def scenario() -> None:
        assert await asyncio.wait_for(record(ledger), 5) == 1  # returned with the append pending
        assert fake.appends == 0
        order: list[str] = []

        def second_cycle_entries(*_: object) -> list[dict[str, Any]]:
            order.append(f"second cycle's entries after {fake.appends} append(s)")
            return []

        ledger.new_entries = second_cycle_entries  # type: ignore[method-assign]
        second = asyncio.create_task(record(ledger))
        await asyncio.sleep(0)  # one turn of the loop: the second cycle runs up to its first wait
        fake.gate.set()
        await asyncio.wait_for(second, 5)
        # The next cycle's ledger phase worked out its entries only once the append was done.
        assert order == ["second cycle's entries after 1 append(s)"]

    asyncio.run(scenario())
    assert fake.appends == 1
    assert [json.loads(line)["entry"]["workload"] for line in fake.lines] == ["ml/a"]
    assert ("a", "2026-12-03T12:00:00Z") in ledger.placed


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
