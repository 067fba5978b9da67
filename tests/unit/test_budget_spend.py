"""What a Budget is charged for a placed pod is what the planner projected for it.

From the cache to the planner and back: plan a gated pod in a pool with a PUE and embodied
carbon, record the placement as the cycle does, and the spending ``controller.budgets`` computes
from that record equals the decision's cost and kgCO2e (and GPUs x hours x TDP x PUE kWh).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest

from greenplace.controller import budgets, cycle, podspec, snapshot
from greenplace.controller import cache as cache_
from greenplace.domain import model
from greenplace.engine import planner

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
PUE, TDP_WATTS, EMBODIED, PRICE = 1.3, 700.0, 20.0, 2.5


def pool_spec(fallback: float | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeSelector": {"greenplace.dev/pool": "fr"},
        "location": {"provider": "p", "region": "r", "country": "FR", "gridZone": "FR"},
        "gpu": {"model": "H100", "tdpWatts": TDP_WATTS},
        "price": {"currency": "EUR", "onDemandPerGpuHour": PRICE, "spotPerGpuHour": 1.0},
        "pue": PUE,
        "embodiedGramsPerGpuHour": EMBODIED,
    }
    if fallback is not None:
        spec["carbonIntensity"] = {"fallbackGramsPerKwh": fallback}
    return spec


def pod(name: str, gpus: int, *, annotations: dict[str, str], gated: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": gpus}}}]
    }
    if gated:
        spec["schedulingGates"] = [{"name": podspec.GATE}]
    return {
        "metadata": {
            "name": name, "namespace": "ml", "uid": name, "resourceVersion": "1",
            "creationTimestamp": "2026-03-10T11:00:00Z", "annotations": annotations,
        },
        "spec": spec,
    }  # fmt: skip


def cache_with(fallback: float | None, limits: dict[str, float]) -> cache_.Cache:
    cache = cache_.Cache()
    cache.put_pool({"metadata": {"name": "fr", "generation": 1}, "spec": pool_spec(fallback)})
    cache.put_node({
        "metadata": {"name": "n1", "labels": {"greenplace.dev/pool": "fr"}},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    })  # fmt: skip
    cache.put_policy({
        "metadata": {"namespace": "ml", "name": "fr", "generation": 1},
        "spec": {"budgetRef": {"name": "monthly"}},
    })  # fmt: skip
    cache.put_budget({
        "metadata": {"namespace": "ml", "name": "monthly", "generation": 1},
        "spec": {"period": "Month", "currency": "EUR", "limits": limits, "action": "Defer"},
    })  # fmt: skip
    return cache


@pytest.mark.parametrize(("fallback", "grid"), [(56.0, 56.0), (None, 1000.0)])
def test_a_placed_pod_is_charged_what_the_planner_projected(
    fallback: float | None, grid: float
) -> None:
    # grid None: no signal and no fallback, so the planner counted 1,000 gCO2e/kWh and the
    # placement record says null; both sides must count it the same way.
    cache = cache_with(fallback, {"money": 1000, "kgCO2e": 100, "kWh": 500})
    hours = {budgets.DURATION_ANNOTATION: "3"}
    cache.put_pod(pod("train", 2, annotations=hours, gated=True))
    built = snapshot.build(snapshot.gather(cache), NOW)
    (pool,) = built.snapshot.pools
    (decision,) = planner.plan(built.snapshot, NOW).decisions
    assert (decision.outcome, decision.pool) == (model.Outcome.PLACED, "fr")
    assert decision.cost is not None and decision.kgco2e is not None

    record = cycle._placement_record(decision, pool, NOW)
    assert record["gco2PerKwh"] == (None if fallback is None else grid * PUE)  # effective
    placed = {**hours, podspec.PLACEMENT_ANNOTATION: json.dumps(record, sort_keys=True)}
    cache.put_pod(pod("train", 2, annotations=placed, gated=False))
    spent = snapshot.build(snapshot.gather(cache), NOW).spent[("ml", "monthly")]

    gpu_hours = 2 * 3
    kwh = gpu_hours * TDP_WATTS / 1000 * PUE
    assert spent.money == pytest.approx(decision.cost) == gpu_hours * PRICE
    assert spent.kwh == pytest.approx(kwh)
    # Embodied carbon included, and the recorded effective intensity divided by the PUE again.
    assert spent.kg_co2e == pytest.approx(decision.kgco2e)
    assert spent.kg_co2e == pytest.approx((kwh * grid + gpu_hours * EMBODIED) / 1000)


def test_the_planner_sees_the_kwh_spent_and_holds_the_next_pod() -> None:
    # 5.46 kWh for the first pod (2 GPUs x 3 h x 0.7 kW x 1.3); the limit leaves 0.54 kWh, and
    # the second (1 GPU, 1 h) needs 0.91.
    cache = cache_with(56.0, {"kWh": 6})
    record = {"pool": "fr", "policies": ["ml/fr"], "gco2PerKwh": 72.8, "at": "2026-03-10T09:00Z"}
    annotations = {
        budgets.DURATION_ANNOTATION: "3",
        podspec.PLACEMENT_ANNOTATION: json.dumps(record),
    }
    cache.put_pod(pod("first", 2, annotations=annotations, gated=False))
    cache.put_pod(pod("second", 1, annotations={}, gated=True))
    built = snapshot.build(snapshot.gather(cache), NOW)
    (budget,) = built.snapshot.budgets
    assert (budget.kwh_limit, budget.money_limit, budget.kgco2e_limit) == (6, None, None)
    assert budget.kwh_spent == pytest.approx(5.46)
    (decision,) = planner.plan(built.snapshot, NOW).decisions
    assert decision.outcome is model.Outcome.DEFERRED
    assert decision.reason is model.Reason.BUDGET_EXCEEDED
    assert "projected 0.91 kWh exceeds the 0.54 kWh left in Budget ml/monthly" in decision.message
