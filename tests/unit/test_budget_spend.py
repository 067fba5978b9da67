"""What a Budget is charged for a placed pod is what the planner projected for it, and nothing
a tenant writes changes it.

From the cache to the planner and back: a cycle places a gated pod in a pool with a PUE and
embodied carbon, and the ledger charges the decision's cost and kgCO2e (and GPUs x hours x TDP x
PUE kWh); a restarted operator recovers the charge from the signed record. Forged, copied or
rewritten records change no capacity and no budget; deleting the pool keeps the charge.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import json
from typing import Any

import pytest

from greenplace.api import convert
from greenplace.controller import cache as cache_
from greenplace.controller import cycle, podspec, records, snapshot, status
from greenplace.domain import model
from greenplace.engine import planner
from tests import fakes

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
PUE, TDP_WATTS, EMBODIED, PRICE = 1.3, 700.0, 20.0, 2.5


def pool_spec(fallback: float | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeSelector": {"greenplace.dev/pool": "fr"},
        "location": {"provider": "p", "region": "r", "country": "FR", "gridZone": "FR"},
        "gpu": {"model": "H100", "tdpWatts": TDP_WATTS},
        "price": {"currency": "EUR", "onDemandPerGpuHour": PRICE},
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
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
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
    writer = fakes.RecordingWriter()
    hours = {convert.DURATION_ANNOTATION: "3"}
    cache.put_pod(writer.add(pod("train", 2, annotations=hours, gated=True)))
    state = cycle.LoopState()
    report = asyncio.run(cycle.run_cycle(cache, writer, NOW, state=state))
    assert report.plan is not None
    (decision,) = report.plan.decisions
    assert (decision.outcome, decision.pool) == (model.Outcome.PLACED, "fr")
    assert decision.cost is not None and decision.kgco2e is not None
    record = podspec.placement_record(writer.pods["ml/train"])
    assert record is not None and record["gco2PerKwh"] == (
        None if fallback is None else grid * PUE
    )  # effective intensity

    account = state.ledger.account(("ml", "monthly"))
    assert account is not None
    spent = account.spent
    gpu_hours = 2 * 3
    kwh = gpu_hours * TDP_WATTS / 1000 * PUE
    assert spent.money == pytest.approx(decision.cost) == gpu_hours * PRICE
    assert spent.kwh == pytest.approx(kwh)
    # Embodied carbon included, and the recorded effective intensity divided by the PUE again.
    assert spent.kg_co2e == pytest.approx(decision.kgco2e)
    assert spent.kg_co2e == pytest.approx((kwh * grid + gpu_hours * EMBODIED) / 1000)

    # A restarted operator whose Budget status never got this charge recovers it from the
    # signed record, once.
    restarted = cache_with(fallback, {"money": 1000, "kgCO2e": 100, "kWh": 500})
    restarted.put_pod(writer.pods["ml/train"])
    recovered = snapshot.build(snapshot.gather(restarted), NOW).spent[("ml", "monthly")]
    assert recovered == spent


def test_the_planner_sees_the_kwh_spent_and_holds_the_next_pod() -> None:
    # 5.46 kWh already charged (2 GPUs x 3 h x 0.7 kW x 1.3); the limit leaves 0.54 kWh, and
    # the second pod (1 GPU, 1 h) needs 0.91.
    cache = cache_with(56.0, {"kWh": 6})
    cache.put_budget(budget_with_status({"kWh": 6}, kwh_spent=5.46))
    cache.put_pod(pod("second", 1, annotations={}, gated=True))
    built = snapshot.build(snapshot.gather(cache), NOW)
    (budget,) = built.snapshot.budgets
    assert (budget.kwh_limit, budget.money_limit, budget.kgco2e_limit) == (6, None, None)
    assert budget.kwh_spent == pytest.approx(5.46)
    (decision,) = planner.plan(built.snapshot, NOW).decisions
    assert decision.outcome is model.Outcome.DEFERRED
    assert decision.reason is model.Reason.BUDGET_EXCEEDED
    assert "projected 0.91 kWh exceeds the 0.54 kWh left in Budget ml/monthly" in decision.message


def budget_with_status(limits: dict[str, float], *, kwh_spent: float) -> dict[str, Any]:
    start, _ = convert.period_bounds("Month", NOW)
    return {
        "metadata": {"namespace": "ml", "name": "monthly", "generation": 1},
        "spec": {"period": "Month", "currency": "EUR", "limits": limits, "action": "Defer"},
        "status": {
            "periodStart": start.isoformat().replace("+00:00", "Z"),
            "spent": {"money": 0, "kgCO2e": 0, "kWh": kwh_spent},
            "chargedThrough": NOW.isoformat(),
        },
    }


# -- what tenants write is not trusted ------------------------------------------------------


def forged(policies: list[str], pool: str = "fr") -> dict[str, str]:
    record = {"pool": pool, "policies": policies, "budgets": ["ml/monthly"], "at": NOW.isoformat(),
              "charge": {"money": 2_990_003, "kgCO2e": 0, "kWh": 0}, "gco2PerKwh": 1}  # fmt: skip
    return {podspec.PLACEMENT_ANNOTATION: json.dumps(record)}


def test_forged_records_change_neither_capacity_nor_budgets() -> None:
    cache = cache_with(56.0, {"money": 1000})
    # Never-schedulable pods in another namespace claiming the pool, and one with a copied
    # signature of a real placement.
    writer = fakes.RecordingWriter()
    cache.put_pod(writer.add(pod("real", 1, annotations={}, gated=True)))
    asyncio.run(cycle.run_cycle(cache, writer, NOW, state=cycle.LoopState()))
    real = podspec.placement_record(writer.pods["ml/real"])
    assert real is not None and real.get("sig")
    for index in range(3):
        squatter = pod(f"squat-{index}", 8, annotations=forged(["ml/fr"]), gated=False)
        squatter["metadata"]["namespace"] = "elsewhere"
        cache.put_pod(squatter)
    copied = pod("copied", 8, annotations={podspec.PLACEMENT_ANNOTATION: json.dumps(real)},
                 gated=False)  # fmt: skip
    cache.put_pod(copied)

    built = snapshot.build(snapshot.gather(cache), NOW)
    (fr,) = built.snapshot.pools
    assert fr.gpus_free == 8 - 1, "only the real placement holds GPUs"
    assert built.spent[("ml", "monthly")].money == pytest.approx(PRICE)  # the real 1 GPU-hour
    untrusted = {w.pod.name for w in built.warnings if w.reason == "UntrustedRecord"}
    assert untrusted == {"squat-0", "squat-1", "squat-2", "copied"}


def test_rewriting_a_record_or_deleting_its_pool_keeps_the_charge() -> None:
    cache = cache_with(56.0, {"money": 1000})
    writer = fakes.RecordingWriter()
    cache.put_pod(writer.add(pod("train", 2, annotations={}, gated=True)))
    state = cycle.LoopState()
    asyncio.run(cycle.run_cycle(cache, writer, NOW, state=state))
    charged = state.ledger.account(("ml", "monthly"))
    assert charged is not None and charged.spent.money == pytest.approx(2 * PRICE)

    # The tenant rewrites its record to escape the budget, then the pool is deleted.
    placed = copy.deepcopy(writer.pods["ml/train"])
    record = json.loads(placed["metadata"]["annotations"][podspec.PLACEMENT_ANNOTATION])
    record["policies"], record["budgets"] = [], []
    placed["metadata"]["annotations"][podspec.PLACEMENT_ANNOTATION] = json.dumps(record)
    cache.put_pod(placed)
    cache.drop_pool("fr")
    later = NOW + datetime.timedelta(minutes=1)
    asyncio.run(cycle.run_cycle(cache, writer, later, status.StatusRecorder(writer), state=state))
    assert state.ledger.account(("ml", "monthly")) == charged
    written = writer.last_status("budgets", "monthly")
    assert written["spent"]["money"] == pytest.approx(2 * PRICE)
