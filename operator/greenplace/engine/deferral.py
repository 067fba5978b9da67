"""Time-shifting: whether a workload that could run now should wait for a cleaner slot, and when
one with no pool under its carbon ceiling may run.

Why this module exists: deferral is the only part of the planner that looks at the future (grid
forecasts) and at the workload's window (max delay, deadline; ``latest_start``, which the
ceiling waiver uses too). It answers with a slot (when, where, and the numbers that justify
waiting) and never with a decision: ``engine.verdicts`` turns a slot into one. Forecast means
are cached per zone, start and run length for the round.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence

from greenplace.domain import model, series
from greenplace.engine import classes, objective, rounds, rules, walking

__all__ = [
    "DEFERRAL_STEP",
    "MAX_DEFERRAL",
    "CeilingSlot",
    "CleanerSlot",
    "Deferral",
    "latest_start",
    "window_latest_start",
]

# Granularity of the later start times the planner considers when deferring, unless the
# snapshot sets another (``model.Snapshot.deferral_step``).
DEFERRAL_STEP = model.DEFAULT_DEFERRAL_STEP
# The furthest ahead a deferral looks, whatever the window says.
MAX_DEFERRAL = datetime.timedelta(days=7)


@dataclasses.dataclass(slots=True)
class _ZoneSlot:
    """The best later start in one grid zone, for one pool of it (not changed once made; not
    frozen, as thousands are made in a large round)."""

    objective_per_gpu_hour: float
    step: int
    index: int
    mean_gco2_per_kwh: float

    @property
    def order(self) -> tuple[float, int, int]:
        """Best objective first, then earliest, then pool index."""
        return self.objective_per_gpu_hour, self.step, self.index


@dataclasses.dataclass(frozen=True, slots=True)
class _CleanestStep:
    """The later step with the lowest forecast mean intensity in a zone."""

    step: int
    mean_gco2_per_kwh: float


@dataclasses.dataclass(frozen=True, slots=True)
class CleanerSlot:
    """A later start forecast to beat running now: where and when, and why (per GPU-hour)."""

    here: model.Pool
    later: model.Pool
    start: datetime.datetime
    saving: float
    now_objective: float
    later_objective: float
    now_gco2: float
    later_gco2: float
    # Effective intensity (PUE included), gCO2e/kWh: here now, and there then (forecast means
    # over the run).
    now_gco2_per_kwh: float | None
    later_gco2_per_kwh: float


@dataclasses.dataclass(frozen=True, slots=True)
class CeilingSlot:
    """The first later start when a pool with room is forecast under every carbon ceiling."""

    start: datetime.datetime
    pool: model.Pool


class Deferral:
    """The deferral search of one round; reads the round's free GPUs as they are when asked."""

    def __init__(self, context: rounds.Context, state: rounds.State) -> None:
        self.pools = context.pools
        self.forecasts = context.forecasts
        self.now = context.now
        self.step = context.deferral_step
        self.state = state
        self.cumulative = {z: series.Cumulative(s) for z, s in sorted(self.forecasts.items())}
        self.means: dict[tuple[str, int, float], float | None] = {}
        self.zone_slots: dict[tuple[object, ...], _ZoneSlot | None] = {}
        # Per (zone, run hours): the cleanest step among the first 1, 2, ... steps.
        self.cleanest_steps: dict[tuple[str, float], list[_CleanestStep | None]] = {}

    def cleaner_slot(
        self, cls: classes.Class, workload: model.Workload, pos: int
    ) -> CleanerSlot | None:
        """The later start, within the workload's window, that beats the pool at ``pos`` of the
        class's ranking (where the walk found room now) by the class's minimum saving and on
        objective; None when running now is as good."""
        if not self.forecasts or cls.carbon_price <= 0:
            return None
        steps = self._steps(cls, workload)
        if steps < 1:
            return None
        here = self.pools[cls.ranked[pos]]
        # Forecast means are taken over the run rounded to the step (an estimate to decide
        # whether to wait; the placement itself is planned again when the time comes).
        step_hours = self.step.total_seconds() / 3600
        hours = max(step_hours, round(workload.duration_hours / step_hours) * step_hours)
        now_mean = self._mean(here.location.grid_zone, 0, hours)
        now_intensity = here.gco2_per_kwh if now_mean is None else now_mean
        now_rate = cls.rates[pos]
        now_objective = now_rate.objective_per_gpu_hour(now_intensity)
        now_gco2 = now_rate.gco2_per_gpu_hour(now_intensity)
        best: _ZoneSlot | None = None
        for zone, entries in cls.zones.items():
            found = self._zone_slot(cls, workload, zone, entries, hours=hours, steps=steps)
            if found is not None and (best is None or found.order < best.order):
                best = found
        if best is None:
            return None
        later_objective, step = best.objective_per_gpu_hour, best.step
        intensity = best.mean_gco2_per_kwh
        later = self.pools[best.index]
        later_rate = objective.rate(
            later, spot=workload.spot, carbon_price_per_tco2e=cls.carbon_price
        )
        later_gco2 = later_rate.gco2_per_gpu_hour(intensity)
        saving = 1 - later_gco2 / now_gco2 if now_gco2 > 0 else 0.0
        if later_objective >= now_objective - objective.EPSILON or saving < cls.min_saving:
            return None
        return CleanerSlot(
            here=here,
            later=later,
            start=self.now + step * self.step,
            saving=saving,
            now_objective=now_objective,
            later_objective=later_objective,
            now_gco2=now_gco2,
            later_gco2=later_gco2,
            now_gco2_per_kwh=None if now_intensity is None else now_intensity * here.pue,
            later_gco2_per_kwh=intensity * later.pue,
        )

    def first_slot_under_ceiling(
        self, cls: classes.Class, workload: model.Workload
    ) -> CeilingSlot | None:
        """The first start in the window when a pool with room is forecast under every ceiling."""
        steps = self._steps(cls, workload) if self.forecasts else 0
        for step in range(1, steps + 1):
            for entries in cls.zones.values():
                for entry in entries:
                    if self._fits(entry.index, workload) and self._allowed_at(
                        cls, entry.index, entry.window, step, workload.duration_hours
                    ):
                        return CeilingSlot(self.now + step * self.step, self.pools[entry.index])
        return None

    def _steps(self, cls: classes.Class, workload: model.Workload) -> int:
        """How many deferral steps the workload may still wait (at most ``MAX_DEFERRAL``
        after its creation, and ahead of now)."""
        latest = latest_start(cls, workload, longest_delay=MAX_DEFERRAL)
        if latest is None or latest <= self.now:
            return 0
        return min(latest - self.now, MAX_DEFERRAL) // self.step

    def _mean(self, zone: str, step: int, hours: float) -> float | None:
        """Forecast mean grid intensity of ``zone`` over a run starting ``step`` steps ahead."""
        key = (zone, step, hours)
        if key not in self.means:
            forecast = self.cumulative.get(zone)
            start = self.now + step * self.step
            self.means[key] = (
                None
                if forecast is None
                else forecast.mean(start, start + datetime.timedelta(hours=hours))
            )
        return self.means[key]

    def _cleanest_step(self, zone: str, hours: float, steps: int) -> _CleanestStep | None:
        """The later step with the lowest forecast mean intensity in ``zone`` among the first
        ``steps`` (earliest on ties). Kept as running minima per zone and run length, so the
        workloads of a round, each with its own window, share one scan."""
        if steps < 1:
            return None
        running = self.cleanest_steps.setdefault((zone, hours), [])
        while len(running) < steps:
            step = len(running) + 1
            mean = self._mean(zone, step, hours)
            best = running[-1] if running else None
            if mean is not None and (best is None or mean < best.mean_gco2_per_kwh):
                best = _CleanestStep(step, mean)
            running.append(best)
        return running[steps - 1]

    def _zone_slot(
        self,
        cls: classes.Class,
        workload: model.Workload,
        zone: str,
        entries: Sequence[classes.ZoneEntry],
        *,
        hours: float,
        steps: int,
    ) -> _ZoneSlot | None:
        """The best later start in one zone, for the first pool of the zone that can take the
        workload, for a run of ``hours`` that may wait ``steps``."""
        first = self.state.first_with_room((cls, zone), cls.zone_pools[zone])
        found = next((e for e in entries[first:] if self._fits(e.index, workload)), None)
        if found is None:
            return None
        key = (cls, zone, found.index, hours, steps)
        if key not in self.zone_slots:
            self.zone_slots[key] = self._slot_in(cls, zone, found, hours, steps)
        return self.zone_slots[key]

    def _slot_in(
        self,
        cls: classes.Class,
        zone: str,
        entry: classes.ZoneEntry,
        hours: float,
        steps: int,
    ) -> _ZoneSlot | None:
        index, rate, window = entry.index, entry.rate, entry.window
        cleanest = self._cleanest_step(zone, hours, steps)
        if cleanest is None:
            return None
        step, mean = cleanest.step, cleanest.mean_gco2_per_kwh
        if not self._allowed_at(cls, index, window, step, hours):
            allowed = [
                s for s in range(1, steps + 1) if self._allowed_at(cls, index, window, s, hours)
            ]
            means = [(m, s) for s in allowed if (m := self._mean(zone, s, hours)) is not None]
            if not means:
                return None
            mean, step = min(means)
        return _ZoneSlot(rate.objective_per_gpu_hour(mean), step, index, mean)

    def _fits(self, index: int, workload: model.Workload) -> bool:
        """Whether the pool has room and nodes for ``workload`` now (certifications are checked
        at each later start, by ``_allowed_at``)."""
        free = self.state.free[index]
        return walking.obstacle(self.pools[index], workload, free=free) is None

    def _allowed_at(
        self,
        cls: classes.Class,
        index: int,
        window: rules.CertificateWindow | None,
        step: int,
        hours: float,
    ) -> bool:
        """Certifications cover a run starting ``step`` steps ahead, under every ceiling."""
        if window is None and not cls.ceiling:
            return True
        start = self.now + step * self.step
        end = start + datetime.timedelta(hours=hours)
        if window is not None and not window.covers(start, end):
            return False
        pool = self.pools[index]
        forecast = self.forecasts.get(pool.location.grid_zone)
        intensity = None if forecast is None else forecast.at(start)
        return rules.ceiling_violation(pool, cls.policies, intensity) is None


def latest_start(
    cls: classes.Class,
    workload: model.Workload,
    *,
    longest_delay: datetime.timedelta | None = None,
) -> datetime.datetime | None:
    """When the workload must start at the latest: deadline - duration, or created + max delay
    (its own, else the tightest policy's; cut to ``longest_delay`` when given); None when it has
    neither."""
    return window_latest_start(workload, cls.max_delay, longest_delay=longest_delay)


def window_latest_start(
    workload: model.Workload,
    policy_max_delay: datetime.timedelta | None,
    *,
    longest_delay: datetime.timedelta | None = None,
) -> datetime.datetime | None:
    """``latest_start`` for a workload whose governing policies' tightest ``max_delay`` is
    ``policy_max_delay`` (the simulator asks it of each job, so its window is the planner's)."""
    delay = workload.max_delay if workload.max_delay is not None else policy_max_delay
    if delay is not None and longest_delay is not None:
        delay = min(delay, longest_delay)
    latest = None if delay is None else workload.created + delay
    if workload.deadline is not None:
        by_deadline = workload.deadline - datetime.timedelta(hours=workload.duration_hours)
        latest = by_deadline if latest is None else min(latest, by_deadline)
    return latest
