"""Time a workload declares, read the operator's way: pods' annotations, a policy's deferral.

The annotations (``greenplace.dev/expected-duration-hours``, ``deadline``, ``max-delay``) are
read by ``api.convert.timing`` for pods, Kueue pod sets and the simulator alike; a value out of
bounds falls back and is reported, never fatal. These tests build the planner's snapshot from
cached objects (``controller.snapshot.build``) as the operator does, then plan it.
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
import pytest

from greenplace.api import convert, models
from greenplace.cli import placements
from greenplace.controller import cache as cache_
from greenplace.controller import podspec, records, snapshot
from greenplace.domain import model
from greenplace.engine import planner
from tests import fakes

NOW = datetime.datetime.fromisoformat(fakes.NOW_ISO.replace("Z", "+00:00"))
HOUR = datetime.timedelta(hours=1)
DEADLINE = convert.DEADLINE_ANNOTATION
MAX_DELAY = convert.MAX_DELAY_ANNOTATION
DURATION = convert.DURATION_ANNOTATION


def test_each_declaration_is_read() -> None:
    got = convert.timing(
        {DURATION: "2.5", DEADLINE: "2026-12-03T06:00:00+01:00", MAX_DELAY: "1h30m"}
    )
    assert got == convert.Timing(
        2.5,
        datetime.datetime(2026, 12, 3, 5, tzinfo=datetime.UTC),
        datetime.timedelta(minutes=90),
    )
    assert convert.timing({}) == convert.Timing()


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (DURATION, "1e308"),
        (DURATION, "nan"),
        (DURATION, "-1"),
        (DURATION, "x" * 10_000),
        (DEADLINE, "2026-12-03"),  # a date, not an instant
        (DEADLINE, "2026-12-03T06:00:00"),  # no offset: which zone?
        (DEADLINE, "tomorrow"),
        (DEADLINE, "9999-99-99T99:99:99Z"),
        (MAX_DELAY, "169h"),  # beyond the week the planner looks ahead
        (MAX_DELAY, "99999999999999h"),
        (MAX_DELAY, "6"),  # no unit
        (MAX_DELAY, "-1h"),
    ],
)
def test_an_unreadable_declaration_falls_back_and_says_so(annotation: str, value: str) -> None:
    got = convert.timing({annotation: value})
    assert (got.duration_hours, got.deadline, got.max_delay) == (
        convert.DEFAULT_EXPECTED_HOURS,
        None,
        None,
    )
    (problem,) = got.problems
    assert problem.startswith(f"{annotation}=") and len(problem) < 400, problem
    assert "assumed" in problem or "ignored" in problem


def test_a_policys_deferral_window_and_minimum_saving_reach_the_planner() -> None:
    spec = models.PlacementPolicySpec.model_validate(
        {"deferral": {"maxDelay": "6h", "minSaving": 0}}
    )
    policy = convert.policy_to_domain("ml", "p", spec)
    assert (policy.max_delay, policy.deferral_min_saving_fraction) == (6 * HOUR, 0.0)
    default = convert.policy_to_domain("ml", "p", models.PlacementPolicySpec())
    assert default.max_delay is None
    assert default.deferral_min_saving_fraction == model.DEFAULT_MIN_SAVING_FRACTION


@pytest.mark.parametrize(
    ("deferral", "field"),
    [
        ({"maxDelay": "169h"}, "maxDelay"),
        ({"maxDelay": "6"}, "maxDelay"),
        ({"minSaving": 1.5}, "minSaving"),
    ],
)
def test_a_bad_deferral_field_is_refused_by_name(deferral: dict[str, Any], field: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=rf"deferral\.{field}"):
        models.PlacementPolicySpec.model_validate({"deferral": deferral})


def at(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def job_pod(name: str, **annotations: str) -> dict[str, Any]:
    body = fakes.pod(name, fakes.gpus(1), annotations=annotations)
    body["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "train", "controller": True}]
    return body


def fleet(ceiling: float | None = None) -> cache_.Cache:
    """One French pool at 50 gCO2e/kWh with room, and a policy for namespace ml."""
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR", gco2=50))
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 8}))
    spec = {} if ceiling is None else {"carbon": {"maxGramsPerKwh": ceiling}}
    cache.put_policy(fakes.policy("p", **spec))
    return cache


def test_a_gang_waits_no_longer_than_its_most_urgent_member() -> None:
    cache = fleet()
    cache.put_pod(job_pod("train-0", **{DURATION: "3", DEADLINE: at(NOW + 10 * HOUR)}))
    cache.put_pod(job_pod("train-1", **{MAX_DELAY: "2h", DEADLINE: at(NOW + 8 * HOUR)}))
    cache.put_pod(job_pod("train-2", **{MAX_DELAY: "5h"}))
    (workload,) = snapshot.build(snapshot.gather(cache), NOW).snapshot.workloads
    assert workload.duration_hours == 3  # the longest member
    assert workload.deadline == NOW + 8 * HOUR
    assert workload.max_delay == 2 * HOUR


def test_unreadable_declarations_are_warnings_and_the_rest_is_planned() -> None:
    cache = fleet()
    cache.put_pod(job_pod("train-0", **{DEADLINE: "soon", MAX_DELAY: "1e9h"}))
    cache.put_pod(job_pod("train-1", **{MAX_DELAY: "1h"}))
    built = snapshot.build(snapshot.gather(cache), NOW)
    (workload,) = built.snapshot.workloads
    assert (workload.deadline, workload.max_delay) == (None, HOUR)
    warned = sorted((w.pod.name, w.reason, w.message.split("=")[0]) for w in built.warnings)
    assert warned == [
        ("train-0", "InvalidAnnotation", DEADLINE),
        ("train-0", "InvalidAnnotation", MAX_DELAY),
    ]
    (decision,) = planner.plan(built.snapshot, NOW).decisions
    assert decision.outcome is model.Outcome.PLACED


def test_a_ceiling_yields_exactly_at_the_latest_start() -> None:
    """Above its ceiling with a window and no cleaner slot: held, planned again at the latest
    start (deadline minus duration), then placed above the ceiling, saying so."""
    cache = fleet(ceiling=40)  # the only pool is at 50 gCO2e/kWh
    deadline = NOW + 3 * HOUR
    cache.put_pod(
        fakes.pod("w", fakes.gpus(1), annotations={DURATION: "1", DEADLINE: at(deadline)})
    )
    latest = deadline - HOUR
    (held,) = planner.plan(snapshot.build(snapshot.gather(cache), NOW).snapshot, NOW).decisions
    assert (held.outcome, held.reason, held.not_before) == (
        model.Outcome.HELD,
        model.Reason.NO_COMPLIANT_POOL,
        latest,
    )
    assert f"its carbon ceiling yields at its latest start {latest.isoformat()}" in held.message
    just_before = latest - datetime.timedelta(seconds=1)
    (still,) = planner.plan(
        snapshot.build(snapshot.gather(cache), just_before).snapshot, just_before
    ).decisions
    assert still.outcome is model.Outcome.HELD
    (placed,) = planner.plan(
        snapshot.build(snapshot.gather(cache), latest).snapshot, latest
    ).decisions
    assert (placed.outcome, placed.reason, placed.pool) == (
        model.Outcome.PLACED,
        model.Reason.CEILING_WAIVED_AT_DEADLINE,
        "fr",
    )


def test_a_ceiling_that_never_yields_keeps_no_wake_up() -> None:
    cache = fleet()
    cache.put_policy(
        fakes.policy("p", carbon={"maxGramsPerKwh": 40, "ceilingYieldsAtDeadline": False})
    )
    cache.put_pod(fakes.pod("w", fakes.gpus(1), annotations={MAX_DELAY: "2h"}))
    (held,) = planner.plan(snapshot.build(snapshot.gather(cache), NOW).snapshot, NOW).decisions
    assert (held.outcome, held.not_before) == (model.Outcome.HELD, None)
    assert "yields" not in held.message


def test_the_placements_table_tells_a_deferred_pod_from_a_held_one() -> None:
    def gated(name: str, held: str) -> dict[str, Any]:
        return fakes.pod(name, fakes.gpus(1), annotations={podspec.HOLD_ANNOTATION: held})

    deferred = gated(
        "d", "DeferredForCleanerSlot: ml/d deferred until 2026-03-10T14:00:00+00:00: forecast"
    )
    held = gated("h", "NoCompliantPool: ml/h held: no pool satisfies ml/p")
    states = {row[0]: row[2] for row in placements.rows([deferred, held])}
    assert states == {
        "ml/d": "Deferred (DeferredForCleanerSlot)",
        "ml/h": "Held (NoCompliantPool)",
    }
