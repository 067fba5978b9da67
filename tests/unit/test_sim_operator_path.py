"""The simulator reads a job's time and a policy's deferral the way the operator does.

Why this test exists: the README's savings come from the simulator, so a field the operator
reads must mean the same there. The same annotations and the same PlacementPolicy YAML go once
through the simulator's loading (a trace row, ``sim.loading``) and once through the operator's
cache and ``controller.snapshot.build``; the planner's workloads and policies must be equal, and
the window they give (a job held by a ceiling that yields, started at its latest start) must be
the same instant in a replay and in the operator's plan.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
from typing import Any

import pytest
import yaml

from greenplace.api import convert
from greenplace.controller import cache as cache_
from greenplace.controller import records, snapshot
from greenplace.domain import model, series
from greenplace.engine import planner
from greenplace.sim import loading, replay, signal, strategies
from greenplace.sim import scenario as sc
from tests import fakes

T0 = datetime.datetime(2020, 3, 2, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
# Always above the ceiling below: the job waits until its window closes, then runs.
GCO2 = 300.0


def policy_document(deferral: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "sovereignty": {"allowedCountries": ["FR"]},
        "carbon": {"maxGramsPerKwh": 100},
    }
    if deferral:
        spec["deferral"] = deferral
    return {
        "apiVersion": "greenplace.dev/v1alpha1",
        "kind": "PlacementPolicy",
        "metadata": {"namespace": "ml", "name": "eu", "generation": 1},
        "spec": spec,
    }


def simulated(
    tmp_path: pathlib.Path, annotations: dict[str, str], deferral: dict[str, Any]
) -> sc.Scenario:
    pool = {"kind": "GpuPool", "metadata": {"name": "fr"}, "status": {"gpusTotal": 8}}
    pool["spec"] = fakes.pool_spec("fr", "FR", gco2=GCO2)
    (tmp_path / "fleet.yaml").write_text(yaml.safe_dump(pool))
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(policy_document(deferral)))
    row = {"name": "train", "namespace": "ml", "arrival": T0.isoformat(), "gpus": 1}
    row |= {"duration_hours": 2, "annotations": annotations}
    (tmp_path / "jobs.jsonl").write_text(json.dumps(row) + "\n")
    return loading.load(
        loading.Inputs(
            fleet=tmp_path / "fleet.yaml",
            policies=tmp_path / "rules.yaml",
            workload=tmp_path / "jobs.jsonl",
            carbon={"FR": GCO2},
            start=T0,
            end=T0 + 24 * HOUR,
        )
    )


def operator_snapshot(
    annotations: dict[str, str], deferral: dict[str, Any], now: datetime.datetime
) -> model.Snapshot:
    cache = cache_.Cache(signer=records.Signer(b"p" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR", gco2=GCO2))
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 8}))
    cache.put_policy(policy_document(deferral))
    body = fakes.pod(
        "train",
        fakes.gpus(1),
        annotations={convert.DURATION_ANNOTATION: "2", **annotations},
    )
    body["metadata"]["creationTimestamp"] = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    cache.put_pod(body)
    return snapshot.build(snapshot.gather(cache), now).snapshot


def at(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("annotations", "deferral", "latest"),
    [
        ({convert.DEADLINE_ANNOTATION: at(T0 + 6 * HOUR)}, {}, T0 + 4 * HOUR),
        ({convert.MAX_DELAY_ANNOTATION: "3h"}, {}, T0 + 3 * HOUR),
        ({}, {"maxDelay": "5h30m"}, T0 + 5.5 * HOUR),
        ({convert.MAX_DELAY_ANNOTATION: "1h"}, {"maxDelay": "5h"}, T0 + HOUR),  # the pod's wins
        (  # the tighter of deadline and delay
            {convert.DEADLINE_ANNOTATION: at(T0 + 4 * HOUR), convert.MAX_DELAY_ANNOTATION: "3h"},
            {},
            T0 + 2 * HOUR,
        ),
    ],
    ids=["pod-deadline", "pod-max-delay", "policy-max-delay", "pod-over-policy", "tighter"],
)
def test_one_window_in_the_simulator_and_the_operator(
    tmp_path: pathlib.Path,
    annotations: dict[str, str],
    deferral: dict[str, Any],
    latest: datetime.datetime,
) -> None:
    scenario = simulated(tmp_path, annotations, deferral)
    live = operator_snapshot(annotations, deferral, T0)
    (job,) = scenario.jobs
    (workload,) = live.workloads
    # One pod: the operator lists its GPUs, the simulator's "one pod needs all" says the same.
    assert job.workload() == dataclasses.replace(workload, gpus_per_pod=())
    assert scenario.policies == live.policies
    assert scenario.latest_start(job) == latest
    # The operator holds it under the ceiling until its latest start, then waives the ceiling.
    (held,) = planner.plan(live, T0).decisions
    assert (held.outcome, held.not_before) == (model.Outcome.HELD, latest)
    (placed,) = planner.plan(operator_snapshot(annotations, deferral, latest), latest).decisions
    assert placed.reason is model.Reason.CEILING_WAIVED_AT_DEADLINE
    # The replay starts it at the same instant, and counts no miss.
    (run,) = replay.replay(scenario, strategies.by_name("greenplace")).runs
    assert run.start == latest
    assert scenario.deadline(job) == latest + 2 * HOUR


def test_a_value_the_operator_would_replace_is_refused_by_the_simulator(
    tmp_path: pathlib.Path,
) -> None:
    with pytest.raises(ValueError, match=r"jobs\.jsonl:1: .*greenplace\.dev/max-delay='169h'"):
        simulated(tmp_path, {convert.MAX_DELAY_ANNOTATION: "169h"}, {})


def test_a_window_given_twice_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "jobs.csv"
    path.write_text(
        "name,namespace,arrival,gpus,duration_hours,deferrable_hours,annotations\n"
        "a,ml,2020-03-02T00:00:00Z,1,1,4,greenplace.dev/max-delay=2h\n"
    )
    with pytest.raises(ValueError, match="max-delay given both as a column and in annotations"):
        loading.read_jobs(path)


def test_room_freed_in_a_cleaner_pool_reaches_a_deferred_job_at_once() -> None:
    """The operator's cycle plans every gated pod, deferred ones included, whenever capacity
    changes; so must the replay. fr (always 50 g) is full until 02:00; de is at 400 g until
    05:00, then 100 g: at 01:00 the job is deferred to de at 05:00, but at 02:00 fr frees up and
    the job runs there at once, not at 05:00."""
    grid = series.TimeSeries((T0 - HOUR, T0 + 4 * HOUR, T0 + 24 * HOUR), (400.0, 100.0, 100.0))

    def pool(name: str, country: str) -> sc.SimPool:
        location = model.Location(provider="p", region="r", country=country, grid_zone=country)
        return sc.SimPool(
            model.Pool(
                name=name, location=location, gpu_model="H100", gpus_total=4, gpus_free=4,
                price_per_gpu_hour=2.0, currency="EUR", gpu_watts=700.0,
            )
        )  # fmt: skip

    blocker = sc.Job("ml", "blocker", T0 - HOUR, 4, sc.time_annotations(2 * HOUR))
    waiting = sc.Job("ml", "train", T0, 4, sc.time_annotations(HOUR, max_delay=10 * HOUR))
    scenario = sc.Scenario(
        pools=(pool("fr", "FR"), pool("de", "DE")),
        policies=(model.Policy(namespace="ml", name="eu"),),
        jobs=(blocker, waiting),
        carbon={"FR": signal.constant(50.0), "DE": signal.from_series(grid, "test")},
        start=T0 - HOUR,
        end=T0 + 24 * HOUR,
    )
    runs = {
        r.job.name: (r.pool, r.start)
        for r in replay.replay(scenario, strategies.by_name("greenplace")).runs
    }
    assert runs == {"blocker": ("fr", T0 - HOUR), "train": ("fr", T0 + HOUR)}
