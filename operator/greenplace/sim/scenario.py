"""What one simulation replays: the fleet, the rules, the jobs and the signals, as frozen values.

Why this module exists: every strategy (the planner, the baselines, the oracle) and the accounting
read the same inputs, so they live in one value built once by ``loading`` (from files) or by a test
(by hand). The planner's own types (``domain.model``) are reused where they exist; what only the
simulator needs (GPU power, job durations and deadlines, budgets, signal traces) is added here.

Energy model (attributional, ``greenplace.accounting.energy``): a running job draws
``gpus x gpu_watts x PUE`` (``gpu_watts`` is the GpuPool's tdpWatts) from the grid for its whole
duration, at the mean grid intensity of its zone over the run, plus the pool's embodied gCO2e
per GPU-hour; idle draw of unused GPUs is not attributed to any job.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping

from greenplace.accounting import energy
from greenplace.api import convert
from greenplace.domain import model, series
from greenplace.engine import deferral, rules
from greenplace.sim import signal

__all__ = [
    "RESIDENCY_RULE",
    "Breach",
    "Budget",
    "Cost",
    "Job",
    "Period",
    "Scenario",
    "SimPool",
    "breaches",
    "go_duration",
    "time_annotations",
]


@dataclasses.dataclass(frozen=True, slots=True)
class SimPool:
    """A pool as the planner sees it (capacity in ``pool.gpus_total``, busy-GPU power in
    ``pool.gpu_watts``) plus what only the simulator needs."""

    pool: model.Pool
    idle_watts: float = 0.0
    # Grid intensity assumed when the zone's signal has no value (GpuPool carbonIntensity).
    fallback_gco2_per_kwh: float | None = None

    @property
    def name(self) -> str:
        return self.pool.name


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """One workload of the trace: placed whole (a gang of ``gpus``), declaring its time as a pod
    does, in ``annotations`` (``greenplace.dev/expected-duration-hours``, ``deadline``,
    ``max-delay``), read by the operator's own ``convert.timing``. It runs for the duration it
    declares; its window is its own deadline or maximum delay, else the governing policies'
    ``spec.deferral.maxDelay`` (``Scenario.latest_start``). A value the operator would replace by
    a fallback is refused here: a simulation on a fallback would not be the one asked for."""

    namespace: str
    name: str
    arrival: datetime.datetime
    gpus: int
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    model_name: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timing: convert.Timing = dataclasses.field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        read = convert.timing(self.annotations)
        if convert.DURATION_ANNOTATION not in self.annotations:
            raise ValueError(f"job {self.key}: no {convert.DURATION_ANNOTATION}")
        if read.problems:
            raise ValueError(f"job {self.key}: {'; '.join(read.problems)}")
        object.__setattr__(self, "timing", read)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def duration(self) -> datetime.timedelta:
        return datetime.timedelta(hours=self.timing.duration_hours)

    @property
    def hours(self) -> float:
        return self.timing.duration_hours

    def workload(self) -> model.Workload:
        """The planner's view of this job while it waits, as ``controller.snapshot`` builds it
        for one pod."""
        return model.Workload(
            namespace=self.namespace,
            name=self.name,
            gpus=self.gpus,
            created=self.arrival,
            labels=self.labels,
            pods=(self.name,),
            duration_hours=self.timing.duration_hours,
            deadline=self.timing.deadline,
            max_delay=self.timing.max_delay,
        )


def time_annotations(
    duration: datetime.timedelta,
    *,
    deadline: datetime.datetime | None = None,
    max_delay: datetime.timedelta | None = None,
) -> dict[str, str]:
    """The annotations a pod would carry to declare this duration, deadline and maximum delay
    (a trace's columns become these)."""
    found = {convert.DURATION_ANNOTATION: repr(duration.total_seconds() / 3600)}
    if deadline is not None:
        found[convert.DEADLINE_ANNOTATION] = (
            deadline.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
        )
    if max_delay is not None:
        found[convert.MAX_DELAY_ANNOTATION] = go_duration(max_delay)
    return found


def go_duration(value: datetime.timedelta) -> str:
    """``value`` (whole seconds) in the API's canonical duration form: 36h, 1h30m, 0s."""
    seconds = round(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    return text or "0s"


class Period(enum.StrEnum):
    """A Budget's calendar period, as the API spells it (``spec.period``)."""

    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"
    QUARTER = "Quarter"

    def start_of(self, when: datetime.datetime) -> datetime.date:
        """First day (UTC) of the period holding ``when``: the key spend is summed under."""
        return convert.period_bounds(self.value, when)[0].date()

    def end_of(self, when: datetime.datetime) -> datetime.datetime:
        """First instant (UTC) of the next period."""
        return convert.period_bounds(self.value, when)[1]


@dataclasses.dataclass(frozen=True, slots=True)
class Budget:
    """Limits on what one namespace spends per period (a ``Budget``); None means no limit."""

    namespace: str
    name: str
    period: Period
    money_limit: float | None = None
    kgco2e_limit: float | None = None
    kwh_limit: float | None = None
    currency: str = "EUR"
    action: model.BudgetAction = model.BudgetAction.DEFER

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def for_planner(
        self, when: datetime.datetime, money_spent: float, kgco2e_spent: float, kwh_spent: float
    ) -> model.Budget:
        """The planner's view of this budget in the period holding ``when``."""
        return model.Budget(
            namespace=self.namespace,
            name=self.name,
            currency=self.currency,
            money_limit=self.money_limit,
            money_spent=money_spent,
            kgco2e_limit=self.kgco2e_limit,
            kgco2e_spent=kgco2e_spent,
            kwh_limit=self.kwh_limit,
            kwh_spent=kwh_spent,
            period_end=self.period.end_of(when),
            action=self.action,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Cost:
    """What one run of a job in a pool from an instant costs, by the energy model above."""

    grid_gco2_per_kwh: float
    kwh: float
    kgco2e: float
    money: float


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    """Inputs of one simulation over ``[start, end)``."""

    pools: tuple[SimPool, ...]
    policies: tuple[model.Policy, ...]
    jobs: tuple[Job, ...]
    # Grid carbon intensity (gCO2e/kWh, before PUE) per grid zone.
    carbon: Mapping[str, signal.Signal]
    start: datetime.datetime
    end: datetime.datetime
    budgets: tuple[Budget, ...] = ()
    # Price per GPU-hour per pool name; a pool without one keeps its list price.
    prices: Mapping[str, signal.Signal] = dataclasses.field(default_factory=dict)
    # How far ahead the planner's forecasts reach (commercial carbon forecasts: 24-72 h).
    forecast_horizon: datetime.timedelta = datetime.timedelta(hours=72)

    def __post_init__(self) -> None:
        names = [p.name for p in self.pools]
        if len(set(names)) != len(names):
            raise ValueError(f"pool names must be unique, got {sorted(names)}")
        keys = [j.key for j in self.jobs]
        if len(set(keys)) != len(keys):
            raise ValueError("job names must be unique within a namespace")
        if self.end <= self.start:
            raise ValueError(f"simulation end {self.end} is not after start {self.start}")

    def pool(self, name: str) -> SimPool:
        for candidate in self.pools:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no pool {name!r} in the scenario")

    def grid_gco2_at(self, pool: SimPool, when: datetime.datetime) -> float | None:
        """The zone's intensity at ``when``, else the pool's fallback, else None (unknown)."""
        zone = self.carbon.get(pool.pool.location.grid_zone)
        value = None if zone is None else zone.at(when)
        return pool.fallback_gco2_per_kwh if value is None else value

    def mean_grid_gco2(
        self, pool: SimPool, start: datetime.datetime, end: datetime.datetime
    ) -> float | None:
        zone = self.carbon.get(pool.pool.location.grid_zone)
        value = None if zone is None else zone.mean(start, end)
        return pool.fallback_gco2_per_kwh if value is None else value

    def price_at(self, pool: SimPool, when: datetime.datetime) -> float:
        trace = self.prices.get(pool.name)
        value = None if trace is None else trace.at(when)
        return pool.pool.price_per_gpu_hour if value is None else value

    def mean_price(self, pool: SimPool, start: datetime.datetime, end: datetime.datetime) -> float:
        trace = self.prices.get(pool.name)
        value = None if trace is None else trace.mean(start, end)
        return pool.pool.price_per_gpu_hour if value is None else value

    def run_cost(self, job: Job, pool: SimPool, start: datetime.datetime) -> Cost:
        end = start + job.duration
        grid = self.mean_grid_gco2(pool, start, end)
        if grid is None:
            raise ValueError(
                f"no carbon intensity for pool {pool.name} (grid zone "
                f"{pool.pool.location.grid_zone}) over {start:%Y-%m-%d %H:%M}..{end:%H:%M}: "
                "give that zone a trace covering the simulation, or set the pool's "
                "carbonIntensity.fallbackGramsPerKwh"
            )
        gpu_hours = job.gpus * job.hours
        wh = energy.facility_wh(
            energy.wh_from_mean_power(job.gpus * pool.pool.gpu_watts, job.duration.total_seconds()),
            pool.pool.pue,
        )
        grams = energy.carbon_gco2e(wh, grid, gpu_hours, pool.pool.embodied_gco2_per_gpu_hour)
        money = energy.cost(gpu_hours, self.mean_price(pool, start, end))
        return Cost(grid, wh / 1000.0, grams / 1000.0, money)

    def forecasts(self, now: datetime.datetime) -> dict[str, series.TimeSeries]:
        """Per grid zone, the recorded trace over the forecast horizon (perfect foresight)."""
        windows = {z: s.forecast(now, self.forecast_horizon) for z, s in self.carbon.items()}
        return {zone: window for zone, window in windows.items() if window is not None}

    def governing(self, job: Job) -> tuple[model.Policy, ...]:
        workload = job.workload()
        return tuple(p for p in self.policies if p.selects(workload))

    def latest_start(self, job: Job) -> datetime.datetime:
        """When ``job`` must start at the latest, as the planner computes it
        (``engine.deferral``: deadline - duration, or arrival + its own maximum delay, else the
        governing policies' tightest ``spec.deferral.maxDelay``); its arrival when it declares
        no window and no policy gives one."""
        delays = [p.max_delay for p in self.governing(job) if p.max_delay is not None]
        latest = deferral.window_latest_start(job.workload(), min(delays, default=None))
        return job.arrival if latest is None else latest

    def deadline(self, job: Job) -> datetime.datetime:
        """The latest acceptable end of ``job``: a run ending later is a deadline miss."""
        return self.latest_start(job) + job.duration


# The rule named when a workload's own data-residency label excludes a pool (not a policy).
RESIDENCY_RULE = f"label {model.DATA_RESIDENCY_LABEL}"


@dataclasses.dataclass(frozen=True, slots=True)
class Breach:
    """One hard rule a run breaks: the policy key (or ``RESIDENCY_RULE``) and the reason code."""

    rule: str
    reason: model.Reason


def breaches(
    policies: tuple[model.Policy, ...],
    pool: model.Pool,
    workload: model.Workload,
    start: datetime.datetime,
) -> tuple[Breach, ...]:
    """Every hard rule that excludes running ``workload`` in ``pool`` from ``start`` for its
    whole duration: the planner's own rules (``engine.rules``), so the simulator counts what
    the planner enforces and nothing else. Per policy: countries, regimes, extraterritorial
    exposure, then certifications (name, level, valid at ``start`` and until the run ends);
    then the workload's data-residency label. Empty: the run is compliant."""
    end = start + datetime.timedelta(hours=workload.duration_hours)
    found = []
    for policy in policies:
        rejection = rules.sovereignty_violation(pool, (policy,), None)
        if rejection is not None:
            found.append(Breach(policy.key, rejection.reason))
            continue
        window = rules.certificate_window(pool, (policy,), start)
        if isinstance(window, model.Rejection):
            found.append(Breach(policy.key, window.reason))
        elif not window.covers(start, end):
            found.append(Breach(policy.key, model.Reason.CERTIFICATION_EXPIRES_DURING_RUN))
    residency = workload.data_residency
    if residency is not None:
        outside = rules.residency_violation(pool, residency)
        if outside is not None:
            found.append(Breach(RESIDENCY_RULE, outside.reason))
    return tuple(found)
