"""A Budget under Defer always defers to a time: the end of its period, which the API requires.

A deferral without a time would leave a pod waiting with no known end (issue 11 item 9). The
API cannot express such a Budget: ``spec.period`` is required (the model and the CRD refuse a
Budget without it, naming the field), and the operator converts every Budget with its current
period's end. So every Budget deferral the operator makes names its time on the pod, and the
loop wakes for it.
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib

import pydantic
import pytest
import yaml

from greenplace.api import convert, crdgen, models
from greenplace.controller import cache as cache_
from greenplace.controller import cycle, podspec, records
from greenplace.domain import model
from tests import fakes

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"


def test_a_budget_without_a_period_is_refused_naming_the_field() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        models.BudgetSpec.model_validate({"limits": {"money": 10}, "action": "Defer"})
    assert [(e["loc"], e["type"]) for e in refused.value.errors()] == [(("period",), "missing")]
    kind = next(k for k in crdgen.KINDS if k.kind == "Budget")
    crd = yaml.safe_load((CRDS / f"{kind.crd_name}.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "period" in spec["required"]  # the API server: "spec.period: Required value"


@pytest.mark.parametrize(
    ("period", "end"),
    [
        ("Day", datetime.datetime(2026, 3, 11, tzinfo=datetime.UTC)),
        ("Week", datetime.datetime(2026, 3, 16, tzinfo=datetime.UTC)),
        ("Month", datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)),
        ("Quarter", datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)),
    ],
)
def test_a_deferral_names_the_end_of_the_budgets_period(
    period: str, end: datetime.datetime
) -> None:
    writer = fakes.RecordingWriter()
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR"))
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 8}))
    cache.put_policy(fakes.policy("p", budgetRef={"name": "b"}))
    cache.put_budget({
        "metadata": {"namespace": "ml", "name": "b", "generation": 1},
        "spec": {"period": period, "limits": {"money": 0.01}, "action": "Defer"},
    })  # fmt: skip
    cache.put_pod(writer.add(fakes.pod("w", fakes.gpus(1))))
    report = asyncio.run(cycle.run_cycle(cache, writer, NOW))
    assert report.plan is not None
    (decision,) = report.plan.decisions
    assert (decision.outcome, decision.reason) == (
        model.Outcome.DEFERRED,
        model.Reason.BUDGET_EXCEEDED,
    )
    assert decision.not_before == end == convert.period_bounds(period, NOW)[1]
    held = writer.pods["ml/w"]["metadata"]["annotations"][podspec.HOLD_ANNOTATION]
    assert f"deferred until {end:%Y-%m-%dT%H:%M}" in held, held
    day = datetime.timedelta(days=1).total_seconds()
    assert report.seconds_until_next_wake(200 * day, NOW) == (end - NOW).total_seconds()
