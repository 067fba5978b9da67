"""The loops carry their own state: the cycle's pools reach the reports, liveness reads the loops.

``loops.Loops`` runs here on the recording fake writer (``tests.fakes``) with a fake election
and a reporter that records what it is given, so each test waits on what the loops did (a
turn, a call), never on time alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections.abc import Callable, Sequence

import prometheus_client
import pytest

from greenplace.accounting import telemetry
from greenplace.controller import cache as cache_
from greenplace.controller import config as config_
from greenplace.controller import loops, podspec, records, reports, status
from greenplace.domain import model
from tests import fakes

FAST = config_.OperatorConfig(
    resync_seconds=0.05, report_seconds=0.05, debounce_seconds=0.01, settle_max_seconds=0.05
)


@dataclasses.dataclass
class FakeLeader:
    leading: bool = True
    released: bool = False

    async def release(self) -> None:
        self.released = True


class RecordingReporter(reports.Reporter):
    """Records the pools each report run is given instead of computing reports."""

    def __init__(self, writer: fakes.RecordingWriter) -> None:
        registry = prometheus_client.CollectorRegistry()
        super().__init__(status.StatusRecorder(writer), telemetry.AccountingMetrics(registry), None)
        self.given: list[tuple[str, ...]] = []

    async def run(
        self, cache: cache_.Cache, now: datetime.datetime, *, pools: Sequence[model.Pool] = ()
    ) -> None:
        self.given.append(tuple(p.name for p in pools))


def fleet(writer: fakes.RecordingWriter) -> cache_.Cache:
    """One French pool with a node, a policy for namespace ml and one gated one-GPU pod."""
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR"))
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 8}))
    cache.put_policy(fakes.policy("any", namespace="ml"))
    cache.put_pod(writer.add(fakes.pod("a", fakes.gpus(1))))
    return cache


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def listed(writer: fakes.RecordingWriter) -> loops.Loops:
    """The loops of one operator whose cache was just listed (``Loops.start`` lists first)."""
    running = loops.Loops(FAST, fleet(writer), prometheus_client.CollectorRegistry())
    running.listed_at = time.monotonic()  # no listing due for relist_seconds (300 s)
    return running


def started(leader: FakeLeader) -> tuple[loops.Loops, fakes.RecordingWriter, RecordingReporter]:
    """The loops of one operator, running on the fakes (call inside an event loop)."""
    writer = fakes.RecordingWriter()
    running = listed(writer)
    reporter = RecordingReporter(writer)
    running.run(leader, writer, status.StatusRecorder(writer), reporter)
    return running, writer, reporter


def test_the_pools_a_cycle_planned_reach_the_report_loop() -> None:
    async def scenario() -> None:
        running, writer, reporter = started(FakeLeader())
        await until(lambda: ("fr",) in reporter.given, "a report run given the planned pools")
        assert [p.name for p in running.planned_pools] == ["fr"]
        assert not podspec.is_gated(writer.pods["ml/a"])  # the cycle that planned them placed
        await running.stop()

    asyncio.run(scenario())


def test_a_standby_turns_but_neither_places_nor_reports() -> None:
    async def scenario() -> None:
        leader = FakeLeader(leading=False)
        running, writer, reporter = started(leader)
        turned = running.loop_turned_at
        await until(lambda: running.loop_turned_at > turned, "a standby turn")
        assert podspec.is_gated(writer.pods["ml/a"]) and not running.planned_pools
        leader.leading = True
        running.cache.changed.set()  # what the election does when it gains the lead
        await until(lambda: not podspec.is_gated(writer.pods["ml/a"]), "the new leader's cycle")
        assert all(given in ((), ("fr",)) for given in reporter.given)
        await running.stop()
        assert leader.released  # a graceful stop hands the Lease over at once

    asyncio.run(scenario())


def test_liveness_reads_the_loop_age_and_the_watch_age() -> None:
    async def scenario() -> None:
        writer = fakes.RecordingWriter()
        running = listed(writer)
        assert running.health() == {"starting": True}
        running.run(FakeLeader(), writer, status.StatusRecorder(writer), RecordingReporter(writer))
        healthy = running.health()
        assert healthy["leading"] is True and set(healthy) >= {"loopAgeSeconds", "watchAgeSeconds"}

        running.watch_event_at -= FAST.watch_stale_seconds + 1
        with pytest.raises(loops.StalledError, match=r"no watch event for 13\ds"):
            running.health()
        running.lease_event("some-other-namespace")  # not our Lease: proves nothing
        with pytest.raises(loops.StalledError, match="the watches are stalled"):
            running.health()
        running.lease_event(FAST.lease_namespace_in_use)
        assert running.health()["watchAgeSeconds"] < 1

        running.loop_turned_at -= FAST.stale_after_seconds + 1  # no turn for 31 s: stuck
        with pytest.raises(loops.StalledError, match=r"has not turned for 3\ds"):
            running.health()

        await running.stop()
        with pytest.raises(loops.StalledError, match="the placement loop has stopped"):
            running.health()

    asyncio.run(scenario())


def test_the_placement_loop_publishes_each_budgets_figures() -> None:
    """The ``greenplace_budget_*`` gauges docs/energy.md and the dashboard advertise, read from
    the registry the operator's /metrics serves: set each cycle from the figures the Budget's
    status gets, one row per limit, and dropped with the Budget."""

    def sample(name: str, unit: str) -> float | None:
        labels = {"namespace": "ml", "budget": "b", "unit": unit}
        return running.collectors.get_sample_value(f"greenplace_budget_{name}", labels)

    async def scenario() -> None:
        await until(lambda: sample("spent", "EUR") is not None, "the budget gauges")
        assert sample("limit", "EUR") == 100.0
        assert sample("spent", "EUR") == 2.0  # 1 GPU x the default 1 h x 2 EUR
        assert sample("remaining", "EUR") == 98.0
        assert sample("fraction_spent", "EUR") == 0.02
        assert sample("forecast", "EUR") is not None
        assert sample("spent", "kWh") == pytest.approx(0.7)  # 1 GPU-hour at 700 W
        assert sample("limit", "kgCO2e") is None  # no such limit: no row
        running.cache.remove("Budget", budget)
        running.cache.changed.set()
        await until(lambda: sample("limit", "EUR") is None, "the gone Budget's rows dropped")
        await running.stop()

    writer = fakes.RecordingWriter()
    running = listed(writer)
    budget = {
        "metadata": {"namespace": "ml", "name": "b", "generation": 1},
        "spec": {"period": "Month", "limits": {"money": 100, "kWh": 10}},
    }
    running.cache.put_budget(budget)
    running.cache.put_policy(fakes.policy("any", namespace="ml", budgetRef={"name": "b"}))

    async def start() -> None:
        running.run(FakeLeader(), writer, status.StatusRecorder(writer), RecordingReporter(writer))
        await scenario()

    asyncio.run(start())


def test_the_settle_wait_counts_from_the_oldest_change_not_yet_planned() -> None:
    """A pod created while the previous cycle ran is planned without a fresh settle wait, and a
    steady stream of changes is cut at settle_max from its first change (issue 15 latency)."""
    config = dataclasses.replace(FAST, debounce_seconds=0.2, settle_max_seconds=0.3)
    running = loops.Loops(
        config, fleet(fakes.RecordingWriter()), prometheus_client.CollectorRegistry()
    )
    changed = running.cache.changed

    async def settle_seconds(first_change_ago: float, stream: bool) -> float:
        changed.clear()
        changed.set()
        changed.since = time.monotonic() - first_change_ago

        async def keep_changing() -> None:  # a change every 50 ms: never quiet for 0.2 s
            while True:
                await asyncio.sleep(0.05)
                changed.set()

        feeder = asyncio.create_task(keep_changing()) if stream else None
        started_at = time.monotonic()
        await running._settle()
        if feeder is not None:
            feeder.cancel()
        return time.monotonic() - started_at

    async def scenario() -> tuple[float, float]:
        # The first change came 0.5 s ago (during the last cycle): past settle_max, no wait.
        stale = await settle_seconds(0.5, stream=True)
        # A fresh stream: cut at settle_max (0.3 s) from its first change, though never quiet.
        fresh = await settle_seconds(0.0, stream=True)
        return stale, fresh

    stale, fresh = asyncio.run(scenario())
    assert stale < 0.05, f"waited {stale:.3f} s for changes older than settle_max"
    assert 0.25 < fresh < 0.6, f"a steady stream settled after {fresh:.3f} s, not ~0.3 s"
