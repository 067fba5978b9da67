"""CO2e saved by letting a daily job wait for a cleaner hour, on the real 2020 grid traces.

Why this benchmark exists: temporal shifting is the carbon lever that needs no other region, and
the literature puts it at ~5-19% (Wiesner et al., Middleware 2021, whose traces these are). This
measures what greenplace's own deferral rule achieves, end to end through ``planner.plan``.

Method: one pool per zone (France, Great Britain, Germany; half-hourly, 15-minute for Germany),
one 1-GPU job of 1 hour arriving every day of 2020 at 00:00, 06:00, 12:00 and 18:00 UTC (four
daily jobs, to avoid picking a favourable hour). The planner sees the live intensity and a 24-hour
forecast equal to the trace (a perfect forecast: an upper bound for a real forecaster). When it
defers, the job is planned again at ``not_before`` until it is placed. Emissions are the trace's
mean intensity over the run actually chosen x energy (location-based accounting, the same trace
for deciding and for scoring). Baseline, in the same run: window 0 (placed at arrival).
"""

from __future__ import annotations

import bisect
import datetime
import time

from bench import harness
from greenplace.domain import model, series
from greenplace.engine import planner
from greenplace.signals import tracefile

NAME = "bench_temporal_shift"
DATA = tracefile.reference_data_dir() / "carbon-intensity"
ZONES = {"FR": "fr_ci.csv", "GB": "gb_ci.csv", "DE": "ger_ci.csv"}
WINDOWS_H = (0, 1, 2, 3, 4, 5, 6, 7, 8)
ARRIVALS_H = (0, 6, 12, 18)
YEAR = 2020
HORIZON = datetime.timedelta(hours=24)
JOB_HOURS = 1.0
HOUR = datetime.timedelta(hours=1)


def _window(trace: series.TimeSeries, start: datetime.datetime) -> series.TimeSeries:
    """The forecast the planner gets at ``start``: the trace over the next 24 hours."""
    lo = max(0, bisect.bisect_right(trace.times, start) - 1)
    hi = bisect.bisect_right(trace.times, start + HORIZON)
    return series.TimeSeries(trace.times[lo : hi + 1], trace.values[lo : hi + 1])


def _run(zone: str, trace: series.TimeSeries, arrival: datetime.datetime, window_h: int) -> float:
    """gCO2e/kWh over the hour the planner finally chose for a job arriving at ``arrival``."""
    policy = model.Policy(namespace="batch", name="daily", max_delay=window_h * HOUR)
    job = model.Workload(
        namespace="batch", name="daily", gpus=1, created=arrival, duration_hours=JOB_HOURS
    )
    now = arrival
    for _ in range(4 * window_h + 2):
        pool = model.Pool(
            name=f"pool-{zone.lower()}",
            location=model.Location("p", "r", zone, zone),
            gpu_model="H100",
            gpus_total=8,
            gpus_free=8,
            price_per_gpu_hour=2.0,
            currency="EUR",
            gco2_per_kwh=trace.at(now),
        )
        snapshot = model.Snapshot((pool,), (policy,), (job,), forecasts={zone: _window(trace, now)})
        (decision,) = planner.plan(snapshot, now).decisions
        if decision.outcome is model.Outcome.PLACED:
            break
        assert decision.not_before is not None, decision.message
        now = decision.not_before
    mean = trace.mean(now, now + JOB_HOURS * HOUR)
    assert mean is not None
    return mean


def main() -> None:
    started = time.perf_counter()
    days = [
        datetime.datetime(YEAR, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(days=d)
        for d in range(366)
    ]
    table: dict[str, dict[str, float]] = {}
    measured: dict[str, float] = {}
    for zone, filename in ZONES.items():
        trace = tracefile.load_csv(DATA / filename)
        arrivals = [day + h * HOUR for day in days for h in ARRIVALS_H]
        means = {}
        for window_h in WINDOWS_H:
            runs = [_run(zone, trace, a, window_h) for a in arrivals]
            means[window_h] = sum(runs) / len(runs)
        baseline = means[0]
        table[zone] = {f"{w}h": round(1 - means[w] / baseline, 4) for w in WINDOWS_H} | {
            "baseline_gco2_per_kwh": round(baseline, 1),
            "jobs_per_window": len(arrivals),
        }
        measured[f"saving_8h_{zone}"] = 1 - means[8] / baseline
        print(
            f"{zone}: at arrival {baseline:.1f} gCO2e/kWh; saved "
            + ", ".join(f"{w}h {1 - means[w] / baseline:.1%}" for w in WINDOWS_H[1:])
        )
    seconds = time.perf_counter() - started
    print(f"{seconds:.1f} s")
    harness.finish(
        NAME,
        {
            "savings_by_zone_and_window": table,
            "job_hours": JOB_HOURS,
            "arrivals_utc_h": list(ARRIVALS_H),
            "forecast": "perfect, 24 h horizon",
            "seconds": round(seconds, 1),
        },
        measured,
    )


if __name__ == "__main__":
    main()
