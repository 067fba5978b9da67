"""Pure accounting: power model, carbon at the time used, budgets, grades, shared-GPU split."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

import prometheus_client
import pytest

from greenplace.accounting import attribution, budget, energy, grading, report, serving, telemetry
from greenplace.domain import series
from tests import builders

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
H = datetime.timedelta(hours=1)
M = attribution.Method


@pytest.mark.parametrize(
    ("tdp", "idle", "u", "want"),
    [(700, 100, 0.0, 100), (700, 100, 1.0, 700), (700, 100, 0.5, 400), (400, 50, 0.25, 137.5)],
)
def test_power_model_is_linear_between_idle_and_tdp(
    tdp: float, idle: float, u: float, want: float
) -> None:
    assert energy.modelled_power_w(tdp, idle, u) == pytest.approx(want)


@pytest.mark.parametrize(
    ("tdp", "idle", "u", "match"),
    [(700, 100, 50, "pass a fraction"), (100, 200, 0.5, "idle_w <= tdp_w")],
)
def test_power_model_refuses_nonsense(tdp: float, idle: float, u: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        energy.modelled_power_w(tdp, idle, u)


def test_units_pue_carbon_and_cost() -> None:
    assert energy.wh_from_millijoules(3.6e6) == 1.0
    assert energy.wh_from_mean_power(300.0, 3600.0) == 300.0
    assert energy.facility_wh(100.0, 1.25) == 125.0
    assert (
        energy.carbon_gco2e(2000.0, 50.0, gpu_hours=2.0, embodied_gco2e_per_gpu_hour=10.0) == 120.0
    )
    assert energy.cost(1.5, 2.0) == 3.0
    with pytest.raises(ValueError, match="PUE"):
        energy.facility_wh(1.0, 0.9)


def ts(*points: tuple[float, float]) -> series.TimeSeries:
    return series.TimeSeries(tuple(T0 + h * H for h, _ in points), tuple(v for _, v in points))


def test_intensity_is_weighted_by_when_the_energy_was_used() -> None:
    intensity = ts((0, 100.0), (1, 300.0), (2, 300.0))
    night_heavy = ts((0, 300.0), (1, 100.0), (2, 100.0))  # 300 W at 100 g, then 100 W at 300 g
    got = energy.energy_weighted_intensity(night_heavy, intensity, T0, T0 + 2 * H)
    assert got == pytest.approx((300 * 100 + 100 * 300) / 400)
    assert (
        energy.energy_weighted_intensity(ts((0, 0.0), (2, 0.0)), intensity, T0, T0 + 2 * H) is None
    )
    short = ts((0, 100.0), (1, 100.0))
    assert energy.energy_weighted_intensity(night_heavy, short, T0, T0 + 2 * H) is None


def test_budget_linear_burn() -> None:
    start, end = T0, T0 + 10 * H
    got = budget.burn(
        spent=20.0, limit=100.0, period_start=start, period_end=end, now=start + 4 * H
    )
    assert (got.forecast_at_end, got.remaining, got.burn_per_hour) == (50.0, 80.0, 5.0)
    assert got.exhausted_at is None and got.fraction_spent == 0.2
    hot = budget.burn(
        spent=60.0, limit=100.0, period_start=start, period_end=end, now=start + 4 * H
    )
    assert hot.forecast_at_end == 150.0
    assert hot.exhausted_at == start + datetime.timedelta(hours=100 / 15)
    over = budget.burn(
        spent=120.0, limit=100.0, period_start=start, period_end=end, now=start + 4 * H
    )
    assert over.remaining == -20.0 and over.exhausted_at == start + 4 * H
    at_start = budget.burn(spent=0.0, limit=1.0, period_start=start, period_end=end, now=start)
    assert (at_start.forecast_at_end, at_start.burn_per_hour) == (0.0, 0.0)
    with pytest.raises(ValueError, match="fix its bounds"):
        budget.burn(1.0, 1.0, end, start, start)


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (0.001, "A"),
        (0.03, "A"),
        (0.031, "B"),
        (0.1, "B"),
        (0.24, "C"),
        (0.34, "D"),
        (1.0, "D"),
        (8.5, "E"),
    ],
)
def test_energy_grades(value: float, want: str) -> None:
    assert grading.grade(value, grading.DEFAULT_ENERGY_SCALE) == want


def test_scales_are_configurable_and_checked() -> None:
    scale = grading.Scale.of("energy", "Wh/request", [1, 2, 3, 4])
    assert grading.grade(2.5, scale) is grading.Grade.C
    assert grading.Grade.E.rank == 5
    with pytest.raises(ValueError, match="four increasing"):
        grading.Scale("x", "u", (1.0, 1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="need 4"):
        grading.Scale.of("x", "u", [1, 2])


def row(pool: str, gpu: str, pod: str, wh: float, mig: str = "") -> attribution.DeviceRow:
    return attribution.DeviceRow(pool, "n1", gpu, pod, mig, wh, 1.0)


def use(pod: str, model: str, requests: float, tokens: float = 0.0) -> attribution.Usage:
    return attribution.Usage("p", pod, model, requests, tokens / 2, tokens / 2)


@pytest.mark.parametrize(
    ("case", "rows", "usages", "want", "unattributed"),
    [
        (
            "whole GPU",
            [row("p", "0", "a", 100)],
            [use("a", "m", 10)],
            {"m": (100, 1.0, {M.WHOLE_GPU})},
            {},
        ),
        (
            "time-sliced by tokens, each series repeating the GPU figure",
            [row("p", "0", "a", 100), row("p", "0", "b", 100)],
            [use("a", "m", 1, 300), use("b", "n", 1, 100)],
            {"m": (75, 0.75, {M.TOKEN_SHARE}), "n": (25, 0.25, {M.TOKEN_SHARE})},
            {},
        ),
        (
            "time-sliced by requests when no tokens",
            [row("p", "0", "a", 100), row("p", "0", "b", 100)],
            [use("a", "m", 1), use("b", "n", 3)],
            {"m": (25, 0.25, {M.REQUEST_SHARE}), "n": (75, 0.75, {M.REQUEST_SHARE})},
            {},
        ),
        (
            "time-sliced, nothing served: even split",
            [row("p", "0", "a", 100), row("p", "0", "b", 100)],
            [use("a", "m", 0), use("b", "n", 0)],
            {"m": (50, 0.5, {M.EVEN_SPLIT}), "n": (50, 0.5, {M.EVEN_SPLIT})},
            {},
        ),
        (
            "MIG slices, free slices unattributed",
            [row("p", "0", "a", 70, "1g.10gb"), row("p", "0", "b", 70, "4g.40gb")],
            [use("a", "m", 1), use("b", "n", 1)],
            {"m": (10, 1 / 7, {M.MIG_SLICE}), "n": (40, 4 / 7, {M.MIG_SLICE})},
            {"p": 20.0},
        ),
        (
            "one pod, two models (LoRA)",
            [row("p", "0", "a", 100)],
            [use("a", "m", 1, 100), use("a", "n", 1, 300)],
            {
                "m": (25, 0.25, {M.WHOLE_GPU, M.TOKEN_SHARE}),
                "n": (75, 0.75, {M.WHOLE_GPU, M.TOKEN_SHARE}),
            },
            {},
        ),
        (
            "GPU without pod and pod without serving metrics",
            [row("p", "0", "", 30), row("p", "1", "ghost", 50)],
            [],
            {},
            {"p": 80.0},
        ),
    ],
)
def test_attribution(
    case: str,
    rows: list[attribution.DeviceRow],
    usages: list[attribution.Usage],
    want: dict[str, tuple[float, float, set[attribution.Method]]],
    unattributed: dict[str, float],
) -> None:
    got = attribution.attribute(rows, usages)
    shares = {s.model: (s.gpu_wh, s.gpu_hours, set(s.methods)) for s in got.shares}
    assert set(shares) == set(want), case
    for model, (wh, hours, methods) in want.items():
        assert shares[model][0] == pytest.approx(wh), case
        assert shares[model][1] == pytest.approx(hours), case
        assert shares[model][2] == methods, case
    assert dict(got.unattributed_gpu_wh) == pytest.approx(unattributed), case


def test_mig_profile_must_be_readable() -> None:
    assert attribution.mig_fraction("2g.24gb", slices_total=4) == 0.5
    with pytest.raises(ValueError, match="GPU_I_PROFILE"):
        attribution.mig_fraction("weird")


@dataclasses.dataclass(frozen=True)
class S:
    labels: Mapping[str, str]
    value: float


def scripted(answers: Mapping[str, list[S]]) -> tuple[serving.QueryFn, list[str]]:
    asked: list[str] = []

    def query(text: str, at: datetime.datetime) -> list[S]:
        asked.append(text)
        return next((v for k, v in answers.items() if k in text), [])

    return query, asked


POOL = {"pool": "p", "Hostname": "n1", "gpu": "0", "pod": "a"}
SERVED = {
    "vllm:request_success_total": [S({"pool": "p", "pod": "a", "model_name": "m"}, 1000.0)],
    "vllm:generation_tokens_total": [S({"pool": "p", "pod": "a", "model_name": "m"}, 50000.0)],
}


def test_measure_uses_the_modelled_power_when_nothing_is_measured() -> None:
    query, asked = scripted({"DCGM_FI_DEV_GPU_UTIL": [S(POOL, 50.0)], **SERVED})
    got = serving.measure(query, T0, H, power_models={"p": serving.PowerModel(700.0, 100.0)})
    assert got.energy_source is serving.EnergySource.MODELLED
    assert [r.gpu_wh for r in got.rows] == [400.0]
    assert got.usages == (attribution.Usage("p", "a", "m", 1000.0, 0.0, 50000.0),)
    assert any("[3600s]" in q for q in asked)


def test_measure_with_kepler_gives_one_pseudo_gpu_per_pod() -> None:
    query, _ = scripted(
        {"kepler_container_gpu_joules_total": [S({"pool": "p", "pod": "a"}, 7200.0)]}
    )
    got = serving.measure(query, T0, H)
    assert got.energy_source is serving.EnergySource.KEPLER
    assert [(r.gpu, r.gpu_wh) for r in got.rows] == [("pod:a", 2.0)]


def test_measure_with_nothing_reports_nothing() -> None:
    query, _ = scripted({})
    got = serving.measure(query, T0, H)
    built = report.build(got, [], {})
    assert got.energy_source is serving.EnergySource.NONE and built.rows == ()
    assert any("no GPU energy series" in n for n in built.notes)
    with pytest.raises(ValueError, match="positive"):
        serving.measure(query, T0, datetime.timedelta(0))


def test_report_row_and_metrics_without_intensity() -> None:
    query, _ = scripted({"DCGM_FI_DEV_POWER_USAGE": [S(POOL, 300.0)], **SERVED})
    facts = [report.PoolFacts("p", "FR", 1.5, 2.0, "EUR", 10.0)]
    measured = serving.measure(query, T0 + H, H)
    with_carbon = report.build(measured, facts, {"FR": 100.0})
    (r,) = with_carbon.rows
    assert (r.gpu_wh, r.facility_wh, r.gco2e, r.cost) == (300.0, 450.0, 55.0, 2.0)
    assert (r.gpu_wh_per_request, r.gco2e_per_request, r.cost_per_request) == (0.3, 0.055, 0.002)
    assert r.cost_per_1k_tokens == pytest.approx(0.04)
    assert (r.energy_grade, r.carbon_grade) == (grading.Grade.C, grading.Grade.D)
    assert with_carbon.window_start == T0

    without = report.build(measured, facts, {"FR": None})
    (r,) = without.rows
    assert r.gco2e is None and r.carbon_grade is None and r.energy_grade is grading.Grade.C
    assert any("no carbon intensity for zone FR" in n for n in without.notes)
    unknown = report.build(measured, [], {})
    assert unknown.rows == () and "no GpuPool" in unknown.notes[0]

    registry = prometheus_client.CollectorRegistry()
    metrics = telemetry.AccountingMetrics(registry)
    metrics.publish(with_carbon, "ml", "r")
    own = {"namespace": "ml", "report": "r"}
    labels = {**own, "model": "m", "pool": "p", "zone": "FR"}
    assert registry.get_sample_value("greenplace_request_carbon_gco2e", labels) == 0.055
    metrics.publish(without, "ml", "r")
    assert registry.get_sample_value("greenplace_request_carbon_gco2e", labels) is None
    assert registry.get_sample_value("greenplace_request_energy_wh", labels) == 0.3
    assert registry.get_sample_value("greenplace_report_window_seconds", own) == 3600.0
    figures = budget.burn(20.0, 100.0, T0, T0 + 10 * H, T0 + 4 * H)
    metrics.publish_budget("ml", "monthly", "EUR", figures)
    assert (
        registry.get_sample_value(
            "greenplace_budget_forecast", {"namespace": "ml", "budget": "monthly", "unit": "EUR"}
        )
        == 50.0
    )


def test_pool_facts_from_a_planner_pool() -> None:
    pool = dataclasses.replace(builders.pool("gra", pue=1.3), embodied_gco2_per_gpu_hour=12.0)
    facts = report.PoolFacts.from_pool(pool)
    assert (facts.grid_zone, facts.pue, facts.embodied_gco2e_per_gpu_hour) == ("FR", 1.3, 12.0)
