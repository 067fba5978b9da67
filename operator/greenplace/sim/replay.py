"""Replay one online strategy over a scenario in simulated, event-driven time.

Why this module exists: the operator re-plans when a gated pod appears, when capacity frees up and
when a signal changes. The simulator does the same, and only then: time jumps from one event to
the next (an arrival, a completion, a change of any carbon or price signal while something
waits, or the latest start of a waiting job, when a carbon ceiling yields), so a year of
half-hourly signals replays in seconds. At each event it builds the ``Snapshot`` the
controller would build (free GPUs, intensity and price now, every waiting job) and asks the
strategy; whatever it places starts now and holds its GPUs for the job's duration.
The snapshot also carries each budget's spend so far in its current period (runs are charged
when they start, as the operator projects them) and every zone's recorded trace over the next
``Scenario.forecast_horizon`` as the forecast (perfect foresight, so deferral is judged at its
best). A workload deferred until ``not_before`` sleeps and is re-planned then, or as soon as
GPUs free up (the operator's cycle plans every gated pod whenever capacity changes, so a
deferred pod takes room freed in a cleaner pool at once); a refused one is never started.

A strategy that places a job into a pool without room is a bug, and stops the replay loudly.
"""

from __future__ import annotations

import dataclasses
import datetime
import heapq
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

from greenplace.domain import model
from greenplace.sim import scenario as sc
from greenplace.sim import strategies

__all__ = ["Progress", "Run", "Schedule", "replay"]

# Called with the strategy's name and the fraction of simulated time done (0..1).
Progress = Callable[[str, float], None]

# (namespace, period kind, period start) -> [money, kgCO2e, kWh] charged so far.
Spend = defaultdict[tuple[str, sc.Period, datetime.date], list[float]]


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """One job started in one pool at one instant."""

    job: sc.Job
    pool: str
    start: datetime.datetime

    @property
    def end(self) -> datetime.datetime:
        return self.start + self.job.duration


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    """What a strategy did with the scenario: the runs, and the jobs it never started."""

    strategy: str
    runs: tuple[Run, ...]
    never_started: tuple[sc.Job, ...]
    decisions: int = 0  # calls to the strategy (planner rounds)
    wall_s: float = 0.0


def replay(
    scenario: sc.Scenario, strategy: strategies.OnlineStrategy, progress: Progress | None = None
) -> Schedule:
    started_wall = time.perf_counter()
    state = _State(scenario, strategy)
    start_s, span_s = scenario.start.timestamp(), (scenario.end - scenario.start).total_seconds()
    next_percent = 1
    while (now_s := state.advance()) is not None:
        state.plan(now_s)
        done = (now_s - start_s) / span_s
        if progress is not None and done * 100 >= next_percent:
            next_percent = int(done * 100) + 1
            progress(strategy.name, done)
    if progress is not None:
        progress(strategy.name, 1.0)
    return Schedule(
        strategy=strategy.name,
        runs=tuple(state.runs),
        never_started=state.never_started(),
        decisions=state.decisions,
        wall_s=time.perf_counter() - started_wall,
    )


class _State:
    """The simulated cluster between two events: free GPUs, running jobs, waiting jobs."""

    def __init__(self, scenario: sc.Scenario, strategy: strategies.OnlineStrategy) -> None:
        self.scenario, self.strategy = scenario, strategy
        self.jobs = sorted(scenario.jobs, key=lambda j: (j.arrival, j.key))
        self.arrivals_s = [j.arrival.timestamp() for j in self.jobs]
        self.end_s = scenario.end.timestamp()
        self.signal_s = _signal_changes(scenario)
        self.free = {p.name: p.pool.gpus_total for p in scenario.pools}
        self.pools = {p.name: p for p in scenario.pools}
        self.running: list[tuple[float, int, str, int]] = []  # (end, seq, pool, gpus)
        self.pending: dict[str, tuple[sc.Job, model.Workload]] = {}
        self.refused: list[sc.Job] = []
        # (not_before, key) of deferred workloads; stale once the key was planned again.
        self.wake_ups: list[tuple[float, str]] = []
        self.asleep: dict[str, float] = {}  # deferred workload key -> not_before
        # (latest start, key) of waiting deferrable jobs: a ceiling that held them may yield then.
        self.latest_starts: list[tuple[float, str]] = []
        self.spend: Spend = defaultdict(lambda: [0.0, 0.0, 0.0])
        self.runs: list[Run] = []
        self.next_arrival = self.next_signal = self.decisions = 0
        self.now_s = scenario.start.timestamp()
        self.freed = False  # the last event freed GPUs

    def advance(self) -> float | None:
        """Jump to the next event and apply it; None when nothing can happen any more."""
        candidates = []
        if self.next_arrival < len(self.jobs):
            candidates.append(self.arrivals_s[self.next_arrival])
        if self.running:
            candidates.append(self.running[0][0])
        awake = len(self.pending) > len(self.asleep)
        if awake and self.next_signal < len(self.signal_s):
            candidates.append(self.signal_s[self.next_signal])
        wake = self.wake_ups
        while wake and (wake[0][0] <= self.now_s or self.asleep.get(wake[0][1]) != wake[0][0]):
            heapq.heappop(wake)
        if wake:
            candidates.append(wake[0][0])
        latest = self.latest_starts
        while latest and (latest[0][0] <= self.now_s or latest[0][1] not in self.pending):
            heapq.heappop(latest)
        if latest:
            candidates.append(latest[0][0])
        if not candidates:
            return None
        self.now_s = now_s = max(self.now_s, min(candidates))
        if now_s >= self.end_s:
            return None
        self.freed = bool(self.running) and self.running[0][0] <= now_s
        while self.running and self.running[0][0] <= now_s:
            _, _, pool_name, gpus = heapq.heappop(self.running)
            self.free[pool_name] += gpus
        while self.next_arrival < len(self.jobs) and self.arrivals_s[self.next_arrival] <= now_s:
            job = self.jobs[self.next_arrival]
            self.pending[job.key] = (job, job.workload())
            latest_start = self.scenario.latest_start(job)
            if latest_start > job.arrival:
                heapq.heappush(self.latest_starts, (latest_start.timestamp(), job.key))
            self.next_arrival += 1
        while self.next_signal < len(self.signal_s) and self.signal_s[self.next_signal] <= now_s:
            self.next_signal += 1
        for key in [k for k, not_before in self.asleep.items() if not_before <= now_s]:
            del self.asleep[key]
        return now_s

    def plan(self, now_s: float) -> None:
        """Ask the strategy about every awake waiting job, and apply its answer. When GPUs
        were freed, the deferred jobs are asked too: the operator's cycle plans every gated
        pod, so room freed in a cleaner pool reaches a deferred pod at once (with a perfect
        forecast, nothing else can change a deferred job's plan before its ``not_before``)."""
        if self.freed:
            self.asleep.clear()
        waiting = tuple(w for key, (_, w) in self.pending.items() if key not in self.asleep)
        if not waiting:
            return
        now = datetime.datetime.fromtimestamp(now_s, datetime.UTC)
        snapshot = model.Snapshot(
            pools=_pools_now(self.scenario, now, self.free),
            policies=self.scenario.policies,
            workloads=waiting,
            budgets=_budgets_now(self.scenario, now, self.spend),
            forecasts=self.scenario.forecasts(now),
        )
        self.decisions += 1
        choice = self.strategy.choose(snapshot, now)
        for key, pool_name in choice.placed.items():
            self._start(self.pending.pop(key)[0], pool_name, now)
        for key in choice.refused:
            self.refused.append(self.pending.pop(key)[0])
        for key, not_before in choice.deferred.items():
            self.asleep[key] = not_before.timestamp()
            heapq.heappush(self.wake_ups, (not_before.timestamp(), key))

    def _start(self, job: sc.Job, pool_name: str, now: datetime.datetime) -> None:
        if self.free.get(pool_name, -1) < job.gpus:
            raise RuntimeError(
                f"strategy {self.strategy.name} placed {job.key} ({job.gpus} GPUs) in "
                f"{pool_name} with {self.free.get(pool_name)} free at {now.isoformat()}: a bug"
            )
        self.free[pool_name] -= job.gpus
        self.runs.append(Run(job, pool_name, now))
        end_s = now.timestamp() + job.duration.total_seconds()
        heapq.heappush(self.running, (end_s, len(self.runs), pool_name, job.gpus))
        _charge(self.scenario, self.spend, job, self.pools[pool_name], now)

    def never_started(self) -> tuple[sc.Job, ...]:
        waiting = tuple(j for j, _ in self.pending.values())
        return tuple(self.refused) + waiting + tuple(self.jobs[self.next_arrival :])


def _signal_changes(scenario: sc.Scenario) -> list[float]:
    """Every instant at which a pool's carbon or price signal may change, in order."""
    zones = {p.pool.location.grid_zone for p in scenario.pools}
    traces = [scenario.carbon[z] for z in zones if z in scenario.carbon]
    traces += [scenario.prices[p.name] for p in scenario.pools if p.name in scenario.prices]
    instants: set[float] = set()
    for trace in traces:
        instants.update(trace.change_times(scenario.start, scenario.end))
    return sorted(instants)


def _pools_now(
    scenario: sc.Scenario, now: datetime.datetime, free: Mapping[str, int]
) -> tuple[model.Pool, ...]:
    """The pools as the controller would see them at ``now``: free GPUs, intensity, price."""
    return tuple(
        dataclasses.replace(
            p.pool,
            gpus_free=free[p.name],
            gco2_per_kwh=scenario.grid_gco2_at(p, now),
            price_per_gpu_hour=scenario.price_at(p, now),
        )
        for p in scenario.pools
    )


def _budgets_now(
    scenario: sc.Scenario, now: datetime.datetime, spend: Spend
) -> tuple[model.Budget, ...]:
    return tuple(
        b.for_planner(now, *spend[(b.namespace, b.period, b.period.start_of(now))])
        for b in scenario.budgets
    )


def _charge(
    scenario: sc.Scenario, spend: Spend, job: sc.Job, pool: sc.SimPool, now: datetime.datetime
) -> None:
    periods = {b.period for b in scenario.budgets if b.namespace == job.namespace}
    if not periods:
        return
    cost = scenario.run_cost(job, pool, now)
    for period in periods:
        bucket = spend[(job.namespace, period, period.start_of(now))]
        bucket[0] += cost.money
        bucket[1] += cost.kgco2e
        bucket[2] += cost.kwh
