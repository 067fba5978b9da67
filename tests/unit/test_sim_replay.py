"""A small scenario replayed under every strategy, with every figure computed by hand.

Fleet: ``fr`` (FR, 4 GPUs, 500 W, PUE 1.0, 3 EUR/GPU-h) then ``de`` (DE, 4 GPUs, 500 W, PUE 1.2,
2 EUR/GPU-h), so a busy GPU draws 0.5 kW in fr and 0.6 kW in de.
Grid: FR 100 g/kWh from 00:00, 50 from 01:00, 50 from 02:00, 100 from 03:00 to 06:00; DE 400 flat.
Policies: ml and web may use FR and DE under a ceiling of 300 g/kWh effective (de is 480: never).
Jobs: ml/train 4 GPUs x 2 h at 00:00, deadline 06:00; web/serve 2 GPUs x 1 h at 01:00, not
deferrable (deadline 02:00). Budget ml/daily: 20 EUR per day.

first-fit and lowest-carbon: train -> fr 00-02 (mean 75 g): 8 GPU-h, 4 kWh, 0.3 kg, 24 EUR;
  serve -> de 01-02 (fr full): 2 GPU-h, 1.2 kWh, 0.48 kg, 4 EUR. Total 5.2 kWh, 0.78 kg, 28 EUR.
greenplace (the planner, with the FR trace as its forecast): train is deferred to 01:00, the
  cleanest 2 h within its window (fr 01-03, mean 50 g: 4 kWh, 0.2 kg, 24 EUR, held 1 h); serve
  arrives at 01:00, its latest start (not deferrable): fr is full and de above the ceiling, which
  yields at the deadline (the default), so it runs in de 01-02 (480 g effective): 1.2 kWh,
  0.48 kg, 4 EUR, no hold, one ceiling breach. Total 5.2 kWh, 0.68 kg, 28 EUR, held 1 h.
greenplace with ceilings that never yield (``carbon_ceiling_yields_at_deadline=False``, the
  behaviour before the waiver): serve waits at 01:00 and runs in fr 03-04 (100 g): 1 kWh, 0.1 kg,
  6 EUR, held 2 h, ends 04:00 > 02:00: one miss. Total 5 kWh, 0.3 kg, 30 EUR, held 3 h.
Ceiling breaches (runs started above 300 g effective): first-fit and lowest-carbon 1 (serve in
  de), cheapest 1 (train in de), greenplace 1 (serve, waived), strict greenplace 0.
cheapest: train -> de 00-02: 4.8 kWh, 1.92 kg, 16 EUR; serve -> fr 01-02 (de full): 1 kWh,
  0.05 kg, 6 EUR. Total 5.8 kWh, 1.97 kg, 22 EUR; ml spends 16 EUR: no overrun (others: 24 > 20).
"""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from greenplace.domain import model, series
from greenplace.sim import metrics, oracle, replay, signal, strategies
from greenplace.sim import scenario as sc

T0 = datetime.datetime(2020, 3, 2, tzinfo=datetime.UTC)
H = datetime.timedelta(hours=1)


def sim_pool(name: str, country: str, *, pue: float, price: float) -> sc.SimPool:
    return sc.SimPool(
        pool=model.Pool(
            name=name,
            location=model.Location(provider="p", region="r", country=country, grid_zone=country),
            gpu_model="H100",
            gpus_total=4,
            gpus_free=4,
            price_per_gpu_hour=price,
            currency="EUR",
            pue=pue,
            gpu_watts=500.0,
        ),
    )


def policy(
    namespace: str, countries: set[str], ceiling: float | None = 300.0, *, yields: bool = True
) -> model.Policy:
    return model.Policy(
        namespace=namespace,
        name="eu",
        allowed_countries=frozenset(countries),
        max_gco2_per_kwh=ceiling,
        carbon_ceiling_yields_at_deadline=yields,
    )


def job(namespace: str, name: str, *, at_h: int, gpus: int, hours: int, deadline_h: int) -> sc.Job:
    return sc.Job(
        namespace=namespace,
        name=name,
        arrival=T0 + at_h * H,
        gpus=gpus,
        annotations=sc.time_annotations(hours * H, deadline=T0 + deadline_h * H),
        model_name="m",
    )


FR_TRACE = series.TimeSeries(
    tuple(T0 + i * H for i in range(7)), (100.0, 50.0, 50.0, 100.0, 100.0, 100.0, 100.0)
)


def hand_scenario(*, yields: bool = True) -> sc.Scenario:
    return sc.Scenario(
        pools=(
            sim_pool("fr", "FR", pue=1.0, price=3.0),
            sim_pool("de", "DE", pue=1.2, price=2.0),
        ),
        policies=(
            policy("ml", {"FR", "DE"}, yields=yields),
            policy("web", {"FR", "DE"}, yields=yields),
        ),
        jobs=(
            job("ml", "train", at_h=0, gpus=4, hours=2, deadline_h=6),
            job("web", "serve", at_h=1, gpus=2, hours=1, deadline_h=2),
        ),
        carbon={"FR": signal.from_series(FR_TRACE, "test"), "DE": signal.constant(400.0)},
        start=T0,
        end=T0 + 6 * H,
        budgets=(sc.Budget("ml", "daily", sc.Period.DAY, money_limit=20.0),),
    )


def outcome(name: str, scenario: sc.Scenario | None = None) -> metrics.Outcome:
    scenario = scenario or hand_scenario()
    strategy = strategies.by_name(name)
    schedule = replay.replay(scenario, strategy)
    return metrics.evaluate(scenario, schedule, respects_policies=strategy.respects_policies)


def placements(result: metrics.Outcome) -> dict[str, tuple[str, int]]:
    return {c.run.job.key: (c.run.pool, int((c.run.start - T0) / H)) for c in result.costs}


FF = {"ml/train": ("fr", 0), "web/serve": ("de", 1)}


@pytest.mark.parametrize(
    ("strategy", "yields", "where", "kwh", "kg", "money", "held_h", "misses", "overruns", "above"),
    [
        ("first-fit", True, FF, 5.2, 0.78, 28, 0, 0, 1, 1),
        ("lowest-carbon", True, FF, 5.2, 0.78, 28, 0, 0, 1, 1),
        ("greenplace", True, {"ml/train": ("fr", 1), "web/serve": ("de", 1)}, 5.2, 0.68, 28, 1,
         0, 1, 1),
        ("greenplace", False, {"ml/train": ("fr", 1), "web/serve": ("fr", 3)}, 5.0, 0.3, 30, 3,
         1, 1, 0),
        ("cheapest", True, {"ml/train": ("de", 0), "web/serve": ("fr", 1)}, 5.8, 1.97, 22, 0, 0,
         0, 1),
    ],
)  # fmt: skip
def test_hand_computed_totals(
    *,
    strategy: str,
    yields: bool,
    where: dict[str, tuple[str, int]],
    kwh: float,
    kg: float,
    money: float,
    held_h: float,
    misses: int,
    overruns: int,
    above: int,
) -> None:
    result = outcome(strategy, hand_scenario(yields=yields))
    assert placements(result) == where
    total = result.total
    assert total.gpu_hours == pytest.approx(10.0, abs=1e-12)
    assert total.kwh == pytest.approx(kwh, abs=1e-12)
    assert total.kgco2e == pytest.approx(kg, abs=1e-12)
    assert total.money == pytest.approx(money, abs=1e-12)
    assert total.held_hours == pytest.approx(held_h, abs=1e-12)
    assert total.deadline_misses == misses
    assert total.budget_overruns == overruns
    assert total.sovereignty_violations == 0
    assert total.never_started == 0
    assert total.ceiling_breaches == above


def test_per_namespace_split_of_greenplace() -> None:
    by_ns = outcome("greenplace").by_namespace
    assert by_ns["ml"] == metrics.Totals(
        jobs=1, jobs_run=1, gpu_hours=8.0, kwh=4.0, kgco2e=pytest.approx(0.2), money=24.0,
        held_hours=1.0, budget_overruns=1,
    )  # fmt: skip
    assert by_ns["web"].held_hours == 0.0
    assert by_ns["web"].deadline_misses == 0
    assert by_ns["web"].kgco2e == pytest.approx(0.48)
    assert by_ns["web"].ceiling_breaches == 1
    strict = outcome("greenplace", hand_scenario(yields=False)).by_namespace
    assert strict["web"].held_hours == 2.0
    assert strict["web"].deadline_misses == 1
    assert strict["web"].kgco2e == pytest.approx(0.1)


def test_violations_are_counted_not_assumed() -> None:
    """de first in fleet order and ml allowed in FR only: unguarded breaks the rule, others not."""
    base = hand_scenario()
    scenario = sc.Scenario(
        pools=tuple(reversed(base.pools)),
        policies=(policy("ml", {"FR"}, ceiling=None), policy("web", {"FR", "DE"}, None)),
        jobs=base.jobs,
        carbon=base.carbon,
        start=base.start,
        end=base.end,
    )
    unguarded = outcome("unguarded", scenario)
    assert unguarded.total.sovereignty_violations == 1
    assert [(v.job, v.pool, v.policies) for v in unguarded.violations] == [
        ("ml/train", "de", ("ml/eu",))
    ]
    for name in ("first-fit", "cheapest", "lowest-carbon", "greenplace"):
        assert outcome(name, scenario).total.sovereignty_violations == 0, name


def test_job_never_started_counts_as_held_until_the_end_and_a_miss() -> None:
    base = hand_scenario(yields=False)
    scenario = sc.Scenario(
        pools=base.pools[1:],  # de only: above every ceiling
        policies=base.policies,
        jobs=base.jobs[:1],
        carbon=base.carbon,
        start=base.start,
        end=base.end,
    )
    result = outcome("greenplace", scenario)
    assert result.total == metrics.Totals(
        jobs=1, held_hours=6.0, deadline_misses=1, never_started=1
    )


def test_a_yielding_ceiling_lets_the_job_start_at_its_latest_start() -> None:
    """de only (480 g effective, ceiling 300): train waits until 04:00 (deadline 06:00 - 2 h),
    then runs above the ceiling and ends on time: held 4 h, 4.8 kWh x 400 g = 1.92 kg, 16 EUR."""
    base = hand_scenario()
    scenario = dataclasses.replace(base, pools=base.pools[1:], jobs=base.jobs[:1])
    result = outcome("greenplace", scenario)
    assert placements(result) == {"ml/train": ("de", 4)}
    assert result.total.held_hours == 4.0
    assert result.total.deadline_misses == 0
    assert result.total.ceiling_breaches == 1
    assert result.total.kgco2e == pytest.approx(1.92, abs=1e-12)


def test_signal_mean_matches_time_series() -> None:
    fast = signal.from_series(FR_TRACE, "test")
    for a, b in [(0, 1), (0.5, 2.25), (1, 6), (2.5, 3.5)]:
        start, end = T0 + a * H, T0 + b * H
        assert fast.mean(start, end) == pytest.approx(FR_TRACE.mean(start, end), rel=1e-12)
    assert fast.at(T0 + 6.5 * H) is None
    assert fast.mean(T0, T0 + 7 * H) is None


def test_oracle_finds_the_hand_computed_optimum() -> None:
    """Hourly slots, carbon objective: train 01-03 (mean 50) would collide with serve 01-02 in fr,
    and de is above the ceiling, so the optimum runs serve on time in fr 01-02 (0.05 kg) and
    train in fr 02-04 (mean 75: 0.3 kg): 0.35 kg, 30 EUR, no miss (greenplace: same CO2e, 1 miss).
    """
    scenario = hand_scenario()
    solution = oracle.solve(scenario, oracle.Settings(slot_minutes=60))
    result = metrics.evaluate(scenario, solution.schedule, respects_policies=True)
    assert placements(result) == {"ml/train": ("fr", 2), "web/serve": ("fr", 1)}
    assert result.total.kgco2e == pytest.approx(0.35, abs=1e-12)
    assert result.total.money == pytest.approx(30.0, abs=1e-12)
    assert result.total.deadline_misses == 0
    assert result.total.sovereignty_violations == 0
    assert solution.status == "Optimal"


def test_oracle_refuses_instances_over_its_size() -> None:
    with pytest.raises(oracle.OracleTooLargeError, match="max 1"):
        oracle.solve(hand_scenario(), oracle.Settings(max_jobs=1))
