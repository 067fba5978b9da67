"""The exact offline oracle: the best schedule in hindsight, as a MILP over time slots (HiGHS).

Why this module exists: savings against a blind baseline say how much better greenplace is;
the gap to the optimum says how much is left on the table. The oracle knows every arrival and the
whole signal in advance, obeys the same hard rules as the planner (sovereignty, carbon ceilings
checked at the start instant, capacity), and minimises the chosen objective exactly, up to the MIP
gap HiGHS proves, on instances small enough to solve (``Settings.max_jobs``).

Model. For job j, allowed pool p and candidate start t (the arrival, then every slot boundary up to
``late_slots`` slots past the job's latest start), a binary x[j,p,t]; a slack u[j] in [0,1] when j
cannot run at all. Each job runs once: sum x[j,.,.] + u[j] = 1. Capacity per pool p and slot s:
the GPUs of every x whose run overlaps s stay within p's GPUs (a run occupies each slot it
touches, so the slotted model is slightly conservative: an online strategy in continuous time can
occasionally pack tighter and beat the oracle by a hair). Cost of x: kgCO2e (or money) of that run,
computed by ``metrics`` rules, plus a tie-break on the other axis, plus ``miss_penalty`` if it
starts after the latest start; u costs ``drop_penalty``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import enum
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from greenplace import errors
from greenplace.domain import model
from greenplace.sim import replay
from greenplace.sim import scenario as sc

__all__ = [
    "Objective",
    "OracleSkippedError",
    "OracleTooLargeError",
    "OracleUnavailableError",
    "Progress",
    "Settings",
    "Solution",
    "solve",
]


# Called with the seconds HiGHS has spent, its time limit, the proven relative gap (None before a
# first solution) and whether the solve is over: at the start, about once a second during the
# branch and bound (HiGHS's MIP interrupt callback), and once at the end.
Progress = Callable[[float, float, float | None, bool], None]


class Objective(enum.StrEnum):
    CARBON = "carbon"
    COST = "cost"


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    objective: Objective = Objective.CARBON
    slot_minutes: int = 60
    late_slots: int = 4
    max_jobs: int = 600
    max_variables: int = 400_000
    time_limit_s: float = 120.0
    mip_rel_gap: float = 1e-4
    miss_penalty: float = 1e4
    drop_penalty: float = 1e6
    tie_break_weight: float = 1e-6


@dataclasses.dataclass(frozen=True, slots=True)
class Solution:
    schedule: replay.Schedule
    status: str
    mip_gap: float
    variables: int
    constraints: int
    solve_s: float

    @property
    def note(self) -> str:
        return (
            f"HiGHS {self.status}, proven gap {self.mip_gap * 100:.3g}%, {self.variables} "
            f"variables, {self.constraints} constraints, solved in {self.solve_s:.1f} s"
        )


class OracleSkippedError(errors.GreenplaceError, ValueError):
    """The oracle cannot run here; the message says why and what to do."""


class OracleTooLargeError(OracleSkippedError):
    """The instance is over the configured size; the message says what to shrink."""


class OracleUnavailableError(OracleSkippedError):
    """HiGHS is not installed."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Candidate:
    job: sc.Job
    pool: sc.SimPool
    start: datetime.datetime
    cost: float
    slots: range


def solve(
    scenario: sc.Scenario, settings: Settings | None = None, progress: Progress | None = None
) -> Solution:
    settings = settings or Settings()
    if len(scenario.jobs) > settings.max_jobs:
        raise OracleTooLargeError(
            f"oracle skipped: {len(scenario.jobs)} jobs > max {settings.max_jobs}; simulate a "
            "shorter window (--start/--end) or raise --oracle-max-jobs"
        )
    started = time.perf_counter()
    jobs = sorted(scenario.jobs, key=lambda j: (j.arrival, j.key))
    candidates = [_candidates(scenario, job, settings) for job in jobs]
    variables = sum(map(len, candidates)) + len(jobs)
    if variables > settings.max_variables:
        raise OracleTooLargeError(
            f"oracle skipped: {variables} variables > max {settings.max_variables}; use longer "
            "slots (--oracle-slot-minutes) or a shorter window"
        )

    matrix = _Matrix.build(candidates, settings.drop_penalty)
    num_cols, num_rows = len(matrix.costs), len(jobs) + len(matrix.capacity_bounds)
    highspy = _highspy()
    with _stdout_silenced():  # HiGHS prints a banner from C++ when it is created
        highs = highspy.Highs()
    highs.setOptionValue("output_flag", False)
    highs.setOptionValue("log_to_console", False)
    highs.setOptionValue("time_limit", settings.time_limit_s)
    highs.setOptionValue("mip_rel_gap", settings.mip_rel_gap)
    highs.setOptionValue("threads", 1)
    highs.passModel(
        num_cols,
        num_rows,
        len(matrix.a_index),
        int(highspy.MatrixFormat.kColwise),
        int(highspy.ObjSense.kMinimize),
        0.0,
        matrix.costs,
        [0.0] * num_cols,
        [1.0] * num_cols,
        [1.0] * len(jobs) + [0.0] * len(matrix.capacity_bounds),
        [1.0] * len(jobs) + matrix.capacity_bounds,
        matrix.a_start,
        matrix.a_index,
        matrix.a_value,
        matrix.integrality,
    )
    failures = _report_progress(highs, settings.time_limit_s, progress)
    highs.run()
    if failures:
        raise failures[0]
    status = highs.modelStatusToString(highs.getModelStatus())
    values = highs.getSolution().col_value
    if len(values) != num_cols:
        raise RuntimeError(f"oracle found no solution: HiGHS {status}")
    runs = [
        replay.Run(option.job, option.pool.name, option.start)
        for option, value in zip(matrix.columns, values, strict=False)
        if value > 0.5
    ]
    placed = {run.job.key for run in runs}
    schedule = replay.Schedule(
        strategy="oracle",
        runs=tuple(sorted(runs, key=lambda r: (r.start, r.job.key))),
        never_started=tuple(j for j in jobs if j.key not in placed),
        decisions=1,
        wall_s=time.perf_counter() - started,
    )
    if progress is not None:
        progress(highs.getRunTime(), settings.time_limit_s, _gap(highs.getInfo().mip_gap), True)
    return Solution(
        schedule=schedule,
        status=status,
        mip_gap=highs.getInfo().mip_gap,
        variables=num_cols,
        constraints=num_rows,
        solve_s=schedule.wall_s,
    )


def _report_progress(highs: Any, limit_s: float, progress: Progress | None) -> list[Exception]:
    """Subscribes ``progress`` to HiGHS's MIP interrupt callback; returns where a failure of
    ``progress`` is kept (an exception raised inside a callback makes HiGHS end in a solve
    error, so it is caught there and raised again after the run)."""
    failures: list[Exception] = []
    if progress is None:
        return failures
    progress(0.0, limit_s, None, False)

    def report(event: Any) -> None:
        try:
            progress(event.data_out.running_time, limit_s, _gap(event.data_out.mip_gap), False)
        except Exception as error:  # raised again after highs.run()
            failures.append(error)
            event.interrupt()

    highs.cbMipInterrupt.subscribe(report)
    return failures


def _gap(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclasses.dataclass(slots=True)
class _Matrix:
    """The MILP in HiGHS's column-wise form: rows 0..J-1 assign jobs, then capacity rows."""

    costs: list[float] = dataclasses.field(default_factory=list)
    integrality: list[int] = dataclasses.field(default_factory=list)
    a_start: list[int] = dataclasses.field(default_factory=list)
    a_index: list[int] = dataclasses.field(default_factory=list)
    a_value: list[float] = dataclasses.field(default_factory=list)
    capacity_bounds: list[float] = dataclasses.field(default_factory=list)
    columns: list[_Candidate] = dataclasses.field(default_factory=list)  # the x columns

    @classmethod
    def build(cls, candidates: list[list[_Candidate]], drop_penalty: float) -> _Matrix:
        matrix = cls()
        capacity_rows: dict[tuple[str, int], int] = {}
        for row, options in enumerate(candidates):
            for option in options:
                entries = [(row, 1.0)]
                for slot in option.slots:
                    key = (option.pool.name, slot)
                    if key not in capacity_rows:
                        capacity_rows[key] = len(candidates) + len(capacity_rows)
                        matrix.capacity_bounds.append(float(option.pool.pool.gpus_total))
                    entries.append((capacity_rows[key], float(option.job.gpus)))
                matrix._column(option.cost, 1, entries)
                matrix.columns.append(option)
        for row in range(len(candidates)):  # u[j]: the job cannot run
            matrix._column(drop_penalty, 0, [(row, 1.0)])
        matrix.a_start.append(len(matrix.a_index))
        return matrix

    def _column(self, cost: float, integral: int, entries: list[tuple[int, float]]) -> None:
        self.a_start.append(len(self.a_index))
        self.a_index.extend(row for row, _ in entries)
        self.a_value.extend(value for _, value in entries)
        self.costs.append(cost)
        self.integrality.append(integral)


def _candidates(scenario: sc.Scenario, job: sc.Job, settings: Settings) -> list[_Candidate]:
    governing = scenario.governing(job)
    if not governing:
        return []  # fail-closed, as the planner: no policy, no placement
    workload = job.workload()
    slot_s = settings.slot_minutes * 60
    origin = scenario.start.timestamp()
    first = math.floor((job.arrival.timestamp() - origin) / slot_s) + 1
    latest_start = scenario.latest_start(job)
    last_start = min(
        latest_start + datetime.timedelta(seconds=settings.late_slots * slot_s),
        scenario.end - datetime.timedelta(microseconds=1),
    )
    starts = [job.arrival]
    boundary = first
    while (moment := scenario.start + datetime.timedelta(seconds=boundary * slot_s)) <= last_start:
        starts.append(moment)
        boundary += 1
    found = []
    for start in starts:
        end = start + job.duration
        occupied = range(
            math.floor((start.timestamp() - origin) / slot_s),
            math.ceil((end.timestamp() - origin) / slot_s),
        )
        for pool in scenario.pools:
            if sc.breaches(governing, pool.pool, workload, start) or not _under_ceilings(
                scenario, governing, pool, start
            ):
                continue
            if scenario.mean_grid_gco2(pool, start, end) is None:
                continue  # the run would leave the signal's coverage
            cost = scenario.run_cost(job, pool, start)
            kg, money = cost.kgco2e, cost.money
            main, other = (kg, money) if settings.objective is Objective.CARBON else (money, kg)
            late = settings.miss_penalty if start > latest_start else 0.0
            found.append(
                _Candidate(
                    job, pool, start, main + settings.tie_break_weight * other + late, occupied
                )
            )
    return found


def _under_ceilings(
    scenario: sc.Scenario,
    governing: tuple[model.Policy, ...],
    pool: sc.SimPool,
    start: datetime.datetime,
) -> bool:
    ceilings = [p.max_gco2_per_kwh for p in governing if p.max_gco2_per_kwh is not None]
    if not ceilings:
        return True
    grid = scenario.grid_gco2_at(pool, start)
    return grid is not None and grid * pool.pool.pue <= min(ceilings)


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Point file descriptor 1 at /dev/null for the block (C++ output bypasses sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _highspy() -> Any:
    """HiGHS, imported on first use: only the oracle needs it (the ``sim`` extra)."""
    try:
        import highspy  # noqa: PLC0415  # optional dependency, imported where it is needed
    except ImportError as error:
        raise OracleUnavailableError(
            "oracle skipped: HiGHS is not installed; pip install 'greenplace[sim]'"
        ) from error
    return highspy
