"""The read-outs of ``greenplace pools|budgets|reports|why`` from status and annotations."""

from __future__ import annotations

import json
from typing import Any

from greenplace.cli import main, placements, views
from greenplace.controller import podspec


def test_pool_rows_show_free_gpus_and_the_carbon_source() -> None:
    pool = {
        "metadata": {"name": "ovh"},
        "spec": {"location": {"country": "FR"}, "gpu": {"model": "H100"}},
        "status": {"gpusFree": 4, "gpusTotal": 16, "carbonGramsPerKwh": 56.0,
                   "carbonSource": "SignalSource eu/grid"},
    }  # fmt: skip
    bare = {"metadata": {"name": "new"}, "spec": {}}
    assert views.pool_rows([pool, bare]) == [
        ("new", "?", "?", "?/?", "-", "-"),
        ("ovh", "FR", "H100", "4/16", "56", "SignalSource eu/grid"),
    ]


def test_budget_rows_show_each_limit_and_exceeded() -> None:
    budget = {
        "metadata": {"name": "monthly", "namespace": "ml"},
        "spec": {"period": "Month", "limits": {"money": 100}},
        "status": {"spent": {"money": 40}, "forecastAtPeriodEnd": {"money": 120},
                   "conditions": [{"type": "Exceeded", "status": "False"}]},
    }  # fmt: skip
    assert views.budget_rows([budget]) == [
        ("ml/monthly", "Month", "40/100 (forecast 120)", "False")
    ]


def test_report_rows_one_per_model_and_pool() -> None:
    report = {
        "metadata": {"name": "serving", "namespace": "inference"},
        "status": {"rows": [{"model": "llama", "pool": "fr", "gpuWhPerRequest": 0.03356,
                             "gCO2ePerRequest": 0.00433, "costPerRequest": 0.0002315,
                             "currency": "EUR", "energyGrade": "B", "carbonGrade": "B"}]},
    }  # fmt: skip
    assert views.report_rows([report]) == [
        ("inference/serving", "llama", "fr", "0.03356", "0.00433", "0.0002315 EUR", "B/B")
    ]


def pod(**metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ml", **metadata}, "spec": {}}


def test_why_tells_held_placed_ungoverned_and_garbage_apart() -> None:
    held = pod(annotations={podspec.HOLD_ANNOTATION: "NoPolicy: no policy"})
    held["spec"]["schedulingGates"] = [{"name": podspec.GATE}]
    assert views.why(held) == "ml/p waits (gated): NoPolicy: no policy"
    placed = pod(annotations={podspec.PLACEMENT_ANNOTATION: json.dumps(
        {"pool": "ovh", "message": "lowest carbon"})})  # fmt: skip
    assert views.why(placed) == "ml/p placed in ovh (node not bound yet): lowest carbon"
    assert "not governed" in views.why(pod())
    garbage = pod(annotations={podspec.PLACEMENT_ANNOTATION: "{oops"})
    assert "unreadable placement record" in views.why(garbage)


def test_every_subcommand_is_reachable_from_the_cli() -> None:
    parser = main.build_parser()
    expected = {
        ("pools",): views._pools,
        ("budgets",): views._budgets,
        ("reports",): views._reports,
        ("why", "ml/p"): views._why,
        ("placements",): placements.run,
    }
    for argv, func in expected.items():  # each subcommand runs its own function
        assert parser.parse_args(list(argv)).func is func, argv
    assert placements.table(("A", "B"), [("x", "long message")]) == "A  B\nx  long message"
