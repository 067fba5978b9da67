"""Replay a full year (2020, real half-hourly FR/DE/GB grid intensity) with over 10,000 GPU jobs.

Why this benchmark exists: issue 6 promises that a year of a team's history replays in under a
minute, and that the savings we claim against carbon-blind placement are measured, on real grid
data, with zero sovereignty violations. It replays the example fleet and policies
(``examples/simulate/``) with a seeded synthetic workload of 30 jobs a day (10,980 jobs) under
first-fit (the baseline), cheapest, lowest-carbon and greenplace's planner, then solves the exact
oracle on three days of the same workload to measure how far greenplace is from the optimum.
Wall time is reported and thresholded; CPU time too, as it does not grow when the machine is
shared with other work.

Run: ``.venv/bin/python -m bench.bench_simulate_year`` (or ``make bench``).
"""

from __future__ import annotations

import datetime
import pathlib
import sys
import tempfile
import time

from bench import harness
from greenplace.signals import tracefile
from greenplace.sim import loading, oracle, run, synthetic

NAME = "simulate_year"
REPO = harness.BENCH_DIR.parent
EXAMPLE = REPO / "examples" / "simulate"
SHARED = tracefile.reference_data_dir() / "carbon-intensity"
SEED = 2020
JOBS_PER_DAY = 30
START = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
LAST_ARRIVAL = datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC)
END = datetime.datetime(2021, 1, 4, tzinfo=datetime.UTC)  # deferred work may finish
ORACLE_WEEK = (datetime.datetime(2020, 3, 2, tzinfo=datetime.UTC), 3)  # start, days
ONLINE = ("first-fit", "cheapest", "lowest-carbon", "greenplace")


def _inputs(
    workload: pathlib.Path, start: datetime.datetime, end: datetime.datetime
) -> loading.Inputs:
    return loading.Inputs(
        fleet=EXAMPLE / "fleet.yaml",
        policies=EXAMPLE / "policies.yaml",
        workload=workload,
        carbon={
            "FR": str(SHARED / "fr_ci.csv"),
            "DE": str(SHARED / "ger_ci.csv"),
            "GB": str(SHARED / "gb_ci.csv"),
        },
        start=start,
        end=end,
    )


def _progress(strategy: str, fraction: float) -> None:
    if int(fraction * 100) % 10 == 0:
        print(f"  {strategy}: {fraction * 100:3.0f}% of 2020", file=sys.stderr)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workload = pathlib.Path(tmp) / "year.csv"
        synthetic.write_csv(synthetic.generate(SEED, START, LAST_ARRIVAL, JOBS_PER_DAY), workload)
        loaded = time.perf_counter()
        scenario = loading.load(_inputs(workload, START, END))
        load_s = time.perf_counter() - loaded
        started, started_cpu = time.perf_counter(), time.process_time()
        year = run.compare(scenario, ONLINE, progress=_progress)
        replay_s = time.perf_counter() - started
        replay_cpu_s = time.process_time() - started_cpu

        week_start, days = ORACLE_WEEK
        week = loading.load(
            _inputs(workload, week_start, week_start + datetime.timedelta(days=days + 2))
        )
        week = week.__class__(
            **{
                **{f: getattr(week, f) for f in week.__dataclass_fields__},
                "jobs": tuple(
                    j for j in week.jobs if j.arrival < week_start + datetime.timedelta(days=days)
                ),
            }
        )
        week_started = time.perf_counter()
        week_result = run.compare(
            week, ("first-fit", "greenplace", "oracle"), oracle.Settings(time_limit_s=60)
        )
        oracle_s = time.perf_counter() - week_started

    record = run.record(year)
    week_record = run.record(week_result)
    by_name = {e["strategy"]: e for e in record["strategies"]}
    week_by_name = {e["strategy"]: e for e in week_record["strategies"]}
    print(
        f"{len(scenario.jobs):,} jobs over 2020, replayed in {replay_s:.1f} s wall, "
        f"{replay_cpu_s:.1f} s CPU (load {load_s:.1f} s)"
    )
    for name in ONLINE:
        entry = by_name[name]
        saved = entry["savings_vs_baseline_pct"]
        print(
            f"  {name:14s} {entry['wall_s']:6.1f} s  CO2e saved {saved['kgco2e']:+6.1f}%  money "
            f"saved {saved['money']:+6.1f}%  misses {entry['total']['deadline_misses']:5d}  "
            f"sovereignty violations {entry['total']['sovereignty_violations']}  "
            f"ceiling breaches {entry['total']['ceiling_breaches']}"
        )
    gap = (week_by_name.get("greenplace") or {}).get("gap_to_oracle_pct") or {}
    print(f"oracle week {week_start:%Y-%m-%d}: greenplace CO2e gap {gap.get('kgco2e')}%")
    violations = record["sovereignty_violations_by_policy_respecting_strategies"]
    measured = {
        "jobs": float(len(scenario.jobs)),
        "replay_wall_s": replay_s,
        "replay_cpu_s": replay_cpu_s,
        "sovereignty_violations": float(violations),
        "greenplace_co2e_saving_pct": by_name["greenplace"]["savings_vs_baseline_pct"]["kgco2e"],
        "lowest_carbon_co2e_saving_pct": by_name["lowest-carbon"]["savings_vs_baseline_pct"][
            "kgco2e"
        ],
        "greenplace_deadline_misses": float(by_name["greenplace"]["total"]["deadline_misses"]),
        "greenplace_ceiling_breaches": float(by_name["greenplace"]["total"]["ceiling_breaches"]),
    }
    harness.finish(
        NAME,
        {
            "jobs": len(scenario.jobs),
            "load_s": round(load_s, 2),
            "replay_wall_s": round(replay_s, 2),
            "replay_cpu_s": round(replay_cpu_s, 2),
            "oracle_week_wall_s": round(oracle_s, 2),
            "year": record,
            "oracle_week": week_record,
        },
        measured,
    )


if __name__ == "__main__":
    main()
