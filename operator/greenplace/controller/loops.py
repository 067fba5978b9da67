"""The operator's loops and the state they carry: placement, EnergyReports, relisting, liveness.

Why this module exists: the cache (``cache``) holds what the watches saw; this module holds
what the loops did, and runs them. ``Loops`` starts, for one operator process:

- the election for the Lease (``leadership``): only the leader places and reports;
- the placement loop: it waits for the cache to change and lets a burst settle (``_settle``),
  or for the periodic resync, or for the earliest deferral to end, then runs one cycle
  (``cycle.run_cycle``). A replica that becomes leader lists everything again first (``relist``),
  so it acts on an exact view, and the leader lists again every ``relist_seconds`` to catch
  deletions a watch can miss (see ``cache``). The cycle's report says which pools it planned
  with; the loop hands them to the report loop (``planned_pools``);
- the report loop: every ``report_seconds`` it recomputes each EnergyReport (``reports``) with
  the pools the last cycle planned.

``health`` is the liveness check: the placement loop turns and watch events arrive (the Lease,
renewed every few seconds and watched, proves it; ``lease_event``). It raises ``StalledError``;
the kopf wiring (``handlers``) turns that into kopf's probe failure, so nothing here knows kopf.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import time
from typing import Any, Protocol

import prometheus_client
from kubernetes import client

from greenplace import errors
from greenplace.accounting import telemetry as accounting_telemetry
from greenplace.controller import (
    billing,
    credentials,
    cycle,
    dispatch,
    exports,
    feeds,
    kube,
    leadership,
    metrics,
    reports,
    status,
    workers,
)
from greenplace.controller import cache as cache_
from greenplace.controller import config as config_
from greenplace.domain import model
from greenplace.signals import telemetry as signal_telemetry

__all__ = ["Loops", "StalledError"]

logger = logging.getLogger("greenplace.operator")


class StalledError(errors.GreenplaceError, RuntimeError):
    """The operator is alive but not working: a loop stopped or stuck, or the watches silent."""


class Leader(Protocol):
    """What the loops ask of the election (``leadership.Leadership``)."""

    @property
    def leading(self) -> bool:
        """Whether this replica may place and report now."""

    async def release(self) -> None:
        """Give the Lease up (a graceful stop): a standby takes over at once."""


class Loops:
    """The loops of one operator process and what they carry from one turn to the next.

    All times are ``time.monotonic()`` seconds, so a jump of the wall clock neither kills nor
    hides a stalled loop.
    """

    def __init__(
        self,
        config: config_.OperatorConfig,
        cache: cache_.Cache,
        collectors: prometheus_client.CollectorRegistry,
    ) -> None:
        self.config = config
        self.cache = cache
        self.collectors = collectors
        self.placement_metrics = metrics.PlacementMetrics(collectors)
        # One per registry: the reporter's report gauges and the Budgets' figures.
        self.accounting_metrics = accounting_telemetry.AccountingMetrics(collectors)
        self.cycle_state = cycle.LoopState()  # the ledger and the Events already posted
        # Pools as the last cycle planned them (signal values applied): the EnergyReports'.
        self.planned_pools: tuple[model.Pool, ...] = ()
        started = time.monotonic()
        self.loop_turned_at = started  # the placement loop's last turn (led or not)
        self.watch_event_at = started  # the last Lease event seen through the watch
        self.listed_at = -math.inf  # when the last full listing began
        self.elected: Leader | None = None
        # MultiKueue's dispatcher (``--multikueue``): the workers' views and what it did.
        self.dispatcher: dispatch.Dispatcher | None = None
        if config.multikueue:
            self.dispatcher = dispatch.Dispatcher(
                workers.Workers(config.kueue_namespace, config.accelerators),
                None,
                dispatch.Settings(
                    worker_ttl_seconds=config.worker_ttl_seconds,
                    nomination_timeout=datetime.timedelta(
                        seconds=config.nomination_timeout_seconds
                    ),
                ),
                self.placement_metrics,
            )
        self._api: client.ApiClient | None = None
        self._writer: kube.KubeWriter | None = None  # its queued Events are posted at stop
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # --- start, stop ------------------------------------------------------------------
    async def start(self, api: client.ApiClient) -> None:
        """List everything, then start the election, the placement loop and the report loop."""
        self._api = api
        await self.relist()
        for name, error in self.cache.invalid.items():
            logger.warning("ignoring invalid %s: %s", name, error)
        config = self.config
        lease = leadership.LeaseSettings(
            config.lease_namespace_in_use, config.identity, lease_seconds=config.lease_seconds
        )
        elected = leadership.Leadership(api, lease, on_change=self._leadership_changed)
        self._tasks["election"] = asyncio.create_task(elected.run())
        writer = self._writer = kube.KubeWriter(api, instance=config.identity)
        recorder = status.StatusRecorder(
            writer,
            billing=billing.BillingPrices(
                exports.BillingExports(
                    credentials.api_reader(api, config.lease_namespace_in_use),
                    config.lease_namespace_in_use,
                ),
                [billing.shorthand([str(p.resolve()) for p in config.focus_exports])]
                if config.focus_exports
                else (),
            ),
        )
        signal_feeds = feeds.Feeds(
            signal_telemetry.SignalMetrics(self.collectors),
            memory=datetime.timedelta(seconds=config.signal_memory_seconds),
            credentials_dir=config.credentials_dir,
            own_namespace=config.namespace,
            trace_directories=config.trace_directories,
            allow_hosts=config.allow_signal_hosts,
            allow_insecure_http=config.allow_insecure_signal_http,
        )
        reporter = reports.Reporter(
            recorder,
            self.accounting_metrics,
            config.prometheus_url,
            own_namespace=config.namespace,
            allow_hosts=config.allow_signal_hosts,
            allow_insecure_http=config.allow_insecure_signal_http,
        )
        if self.dispatcher is not None:
            self.dispatcher.writer = dispatch.KubeDispatchWriter(api)
            self._tasks["workers"] = asyncio.create_task(
                self._worker_loop(elected, self.dispatcher.workers, api)
            )
        self.run(elected, writer, recorder, reporter, signal_feeds)

    def run(
        self,
        elected: Leader,
        writer: kube.Writer,
        recorder: status.StatusRecorder,
        reporter: reports.Reporter,
        signal_feeds: feeds.Feeds | None = None,
    ) -> None:
        """Start the placement and report loops on these parts (``start`` builds the real ones)."""
        self.elected = elected
        self._tasks["placement"] = asyncio.create_task(
            self._placement_loop(elected, writer, recorder, signal_feeds)
        )
        self._tasks["reports"] = asyncio.create_task(self._report_loop(elected, reporter))

    async def stop(self) -> None:
        """Stop the loops and hand the Lease over at once (a graceful stop)."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self.cycle_state.audit is not None:  # the last cycle's records, before the handover
            await self.cycle_state.audit.drain(timeout=10.0)
        if self.elected is not None:
            await self.elected.release()
        if self._writer is not None:  # a standby may lead already: these Events are ours
            await self._writer.close()

    def _leadership_changed(self, leading: bool) -> None:
        self.placement_metrics.leader.set(1 if leading else 0)
        self.cache.changed.set()  # wake the placement loop: to start placing, or to stop

    # --- liveness ---------------------------------------------------------------------
    def lease_event(self, namespace: str | None) -> None:
        """A Lease event arrived through the watch: the watches deliver (``health``)."""
        if namespace == self.config.lease_namespace_in_use:
            self.watch_event_at = time.monotonic()

    def health(self) -> dict[str, Any]:
        """The liveness payload; ``StalledError`` when a loop is dead or stuck, or no watch
        event arrives."""
        placement, elected = self._tasks.get("placement"), self.elected
        if placement is None or elected is None:
            return {"starting": True}
        if placement.done():
            raise StalledError("the placement loop has stopped")
        now = time.monotonic()
        watch_age = now - self.watch_event_at
        if watch_age > self.config.watch_stale_seconds:
            raise StalledError(
                f"no watch event for {watch_age:.0f}s (the Lease is written at least every "
                f"{self.config.lease_seconds:.0f}s): the watches are stalled"
            )
        loop_age = now - self.loop_turned_at
        if loop_age > self.config.stale_after_seconds:
            raise StalledError(f"the placement loop has not turned for {loop_age:.0f}s")
        return {
            "leading": elected.leading,
            "watchAgeSeconds": round(watch_age, 1),
            "loopAgeSeconds": round(loop_age, 1),
        }

    # --- relisting --------------------------------------------------------------------
    async def relist(self) -> int:
        """List every watched kind and reconcile the cache with it; return objects found gone."""
        api = self._api
        if api is None:
            raise RuntimeError("Loops.relist() before Loops.start()")
        listed_at = self.listed_at = time.monotonic()
        watched_kinds = self.cache.watched
        listings = await asyncio.to_thread(
            lambda: [kube.list_watched(api, w) for w in watched_kinds]
        )
        return sum(
            self.cache.reconcile(watched.kind, bodies, listed_at)
            for watched, bodies in zip(watched_kinds, listings, strict=True)
        )

    # --- the placement loop -----------------------------------------------------------
    async def _placement_loop(
        self,
        elected: Leader,
        writer: kube.Writer,
        recorder: status.StatusRecorder,
        signal_feeds: feeds.Feeds | None,
    ) -> None:
        config, cache = self.config, self.cache
        sleep_s = config.resync_seconds
        led = False  # whether we led at the previous turn: gaining the lead calls for a listing
        failures = 0  # consecutive failed cycles: retried after 2, 4, 8 ... s (at most a resync)
        while True:
            try:
                await asyncio.wait_for(cache.changed.wait(), timeout=sleep_s)
                await self._settle()
            except TimeoutError:
                pass  # periodic resync: signals and time move on even when nothing changes
            cache.changed.clear()
            now = datetime.datetime.now(datetime.UTC)
            if not elected.leading:  # a standby keeps its cache warm and waits
                self.loop_turned_at, led, sleep_s = time.monotonic(), False, config.resync_seconds
                continue
            try:
                # The startup listing serves a replica that leads at once; one that gains the
                # lead later lists again, and the leader does every relist_seconds.
                age = time.monotonic() - self.listed_at
                if not led:  # another replica may have charged Budgets meanwhile
                    self.cycle_state.ledger.forget()
                if (not led and age > config.lease_seconds) or age > config.relist_seconds:
                    gone = await self.relist()
                    self.placement_metrics.relisted.inc()
                    if gone:
                        logger.info("listing found %d objects deleted while unwatched", gone)
                led = True
                report = await cycle.run_cycle(
                    cache,
                    writer,
                    now,
                    recorder,
                    signal_feeds,
                    state=self.cycle_state,
                    deferral_step=config.deferral_step,
                    dispatcher=self.dispatcher,
                )
                self.planned_pools = report.pools
                self.loop_turned_at = time.monotonic()
                self.placement_metrics.observe(report)
                self.accounting_metrics.publish_budgets(recorder.budget_figures)
                sleep_s = report.seconds_until_next_wake(
                    config.resync_seconds, datetime.datetime.now(datetime.UTC)
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad cycle stop placement for good
                self.placement_metrics.cycle_failures.inc()
                self.loop_turned_at = time.monotonic()  # it turns (liveness); failures: metrics
                failures += 1
                sleep_s = min(config.resync_seconds, 2.0**failures)
                logger.exception("placement cycle failed; retrying within %.0f s", sleep_s)
                await asyncio.sleep(1.0)
                continue
            failures = 0
            busy = report.placed or report.conflicts or report.errors
            logger.log(logging.INFO if busy else logging.DEBUG, report.summary())

    async def _settle(self) -> None:
        """Let a burst of events settle: wait until the cache is quiet for ``debounce_seconds``.

        Pods created one after another (``kubectl apply`` of a list, a Job's pods) are then
        planned in one cycle, which can leave room for the last of them, instead of being placed
        greedily as they trickle in. Bounded by ``settle_max_seconds`` counted from the oldest
        change not yet planned, so a steady stream still gets cycles and a pod created while the
        previous cycle ran is not kept waiting for a whole new settle after it.
        """
        changed, config = self.cache.changed, self.config
        deadline = (changed.since or time.monotonic()) + config.settle_max_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            changed.clear()
            try:
                await asyncio.wait_for(
                    changed.wait(), timeout=min(config.debounce_seconds, remaining)
                )
            except TimeoutError:
                return  # quiet

    # --- the worker loop (MultiKueue) -------------------------------------------------
    async def _worker_loop(
        self, elected: Leader, views: workers.Workers, api: client.ApiClient
    ) -> None:
        """Read every worker a GpuPool names each ``worker_poll_seconds`` (the leader only);
        each round wakes the placement loop, which dispatches with the fresh views."""
        while True:
            try:
                if elected.leading:
                    await views.poll(self.cache, api, datetime.datetime.now(datetime.UTC))
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad reading stop the readings for good
                logger.exception("reading the MultiKueue workers failed; retrying")
            await asyncio.sleep(self.config.worker_poll_seconds)

    # --- the report loop --------------------------------------------------------------
    async def _report_loop(self, elected: Leader, reporter: reports.Reporter) -> None:
        """Recompute every EnergyReport each ``report_seconds`` (the first after one cycle)."""
        config = self.config
        while True:
            await asyncio.sleep(min(config.report_seconds, config.resync_seconds))
            try:
                if elected.leading:
                    now = datetime.datetime.now(datetime.UTC)
                    await reporter.run(self.cache, now, pools=self.planned_pools)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("energy reports failed; retrying at the next period")
            await asyncio.sleep(max(config.report_seconds - config.resync_seconds, 0))
