"""Read a simulation's inputs from the files users already have, and build one ``Scenario``.

Why this module exists: a what-if is only believed when it runs on the team's own objects. So the
fleet is ``GpuPool`` YAML and the rules are ``PlacementPolicy`` and ``Budget`` YAML, exactly as
applied with kubectl (multi-document files; ``kubectl get gpupools -o yaml`` lists work too), read
through the API's pydantic models and ``greenplace.api.convert``, the same path the operator takes.
The workload is a CSV or JSONL trace; signals are trace files (``signals.tracefile``) or constants.

Pool capacity is what the operator observes, not spec: ``status.gpusTotal`` of the GpuPool, or
``nodes x gpusPerNode`` in the ``pools:`` list format of ``examples/fleet.yaml``, or a
``capacity:`` entry of the scenario file (which wins).

Workload trace columns (CSV header or JSONL keys): ``name``, ``namespace``, ``arrival`` (ISO 8601,
UTC if no zone), ``gpus``, ``duration_hours``, then ``deadline`` (ISO 8601, latest end) and/or
``deferrable_hours`` (how long the start may wait); optional ``model``, ``labels`` and
``annotations`` (``k=v;k2=v2`` in CSV, an object in JSONL). Each job declares its time the way a
pod does: the columns become the annotations ``greenplace.dev/expected-duration-hours``,
``deadline`` and ``max-delay`` (or are given as such), read back by the operator's
``convert.timing``; a job declaring no window waits as long as its policies'
``spec.deferral.maxDelay`` lets it, and not at all without one. A data-residency label is
checked as the admission policy checks it (``domain.countries.residency_problem``).

The scenario file (YAML) names the other files, relative to itself:
``fleet``, ``policies``, ``workload``, ``carbon`` (grid zone -> trace file or gCO2e/kWh),
``prices`` (pool -> trace file or price per GPU-hour), ``start``, ``end``, ``capacity``, ``oracle``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import os
import pathlib
import string
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from greenplace.api import convert, models
from greenplace.domain import countries, model
from greenplace.signals import tracefile
from greenplace.sim import scenario as sc
from greenplace.sim import signal

__all__ = ["Inputs", "load", "read_fleet", "read_jobs", "read_rules", "read_signal"]


@dataclasses.dataclass(frozen=True, slots=True)
class Inputs:
    """Where each input comes from; ``load`` turns it into a scenario."""

    fleet: pathlib.Path
    policies: pathlib.Path
    workload: pathlib.Path
    carbon: Mapping[str, str | float]
    prices: Mapping[str, str | float] = dataclasses.field(default_factory=dict)
    capacity: Mapping[str, int] = dataclasses.field(default_factory=dict)
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None
    base_dir: pathlib.Path = pathlib.Path()
    oracle: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_file(cls, path: pathlib.Path) -> Inputs:
        raw = yaml.safe_load(path.read_text()) or {}
        base = path.parent
        missing = [key for key in ("fleet", "policies", "workload") if key not in raw]
        if missing:
            raise ValueError(f"{path}: missing {', '.join(missing)} (paths relative to the file)")
        return cls(
            fleet=base / raw["fleet"],
            policies=base / raw["policies"],
            workload=base / raw["workload"],
            carbon=raw.get("carbon") or {},
            prices=raw.get("prices") or {},
            capacity=raw.get("capacity") or {},
            start=_instant(raw["start"]) if raw.get("start") else None,
            end=_instant(raw["end"]) if raw.get("end") else None,
            base_dir=base,
            oracle=raw.get("oracle") or {},
        )


def load(inputs: Inputs) -> sc.Scenario:
    pools = read_fleet(inputs.fleet, inputs.capacity)
    policies, budgets = read_rules(inputs.policies)
    jobs = read_jobs(inputs.workload)
    carbon = {zone: read_signal(v, inputs.base_dir) for zone, v in inputs.carbon.items()}
    prices = {pool: read_signal(v, inputs.base_dir) for pool, v in inputs.prices.items()}
    start = inputs.start or _floor_day(min(j.arrival for j in jobs))
    everything = sc.Scenario(
        pools=pools,
        policies=policies,
        jobs=jobs,
        carbon=carbon,
        prices=prices,
        start=start,
        end=inputs.end or start + datetime.timedelta(days=1),
        budgets=budgets,
    )
    end = inputs.end or _ceil_day(max(everything.deadline(j) for j in jobs))
    return dataclasses.replace(
        everything, jobs=tuple(j for j in jobs if start <= j.arrival < end), end=end
    )


def read_signal(value: str | float, base_dir: pathlib.Path) -> signal.Signal:
    """A constant (a number) or a trace file (a path, relative to ``base_dir``, in which
    ``${GREENPLACE_SHARED_DATA}`` names the workspace's reference data)."""
    if isinstance(value, int | float):
        return signal.constant(float(value))
    try:
        return signal.constant(float(value))
    except ValueError:
        shared = {tracefile.SHARED_DATA_ENV: str(tracefile.reference_data_dir())}
        path = base_dir / string.Template(value).safe_substitute(shared)
    if not path.is_file() and f"${{{tracefile.SHARED_DATA_ENV}}}" in value:
        raise ValueError(_no_shared_data(value, path))
    return signal.from_series(tracefile.load_csv(path), str(path))


def _no_shared_data(value: str, path: pathlib.Path) -> str:
    """Why a trace under ``${GREENPLACE_SHARED_DATA}`` is missing, and how to point at it."""
    name = tracefile.SHARED_DATA_ENV
    where = (
        f"{name}={os.environ[name]}"
        if os.environ.get(name)
        else f"{name} is unset, so it is {tracefile.reference_data_dir()}"
    )
    return (
        f"{value}: no file {path} ({where}); set {name} to the folder that holds the "
        "reference data (carbon-intensity/*.csv)"
    )


def _documents(path: pathlib.Path) -> Iterator[dict[str, Any]]:
    """Every object of a multi-document YAML file, lists (``kind: List``) flattened."""
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        if document.get("kind") == "List" or "items" in document:
            yield from document.get("items", [])
        else:
            yield document


def read_fleet(
    path: pathlib.Path, capacity: Mapping[str, int] | None = None
) -> tuple[sc.SimPool, ...]:
    capacity = capacity or {}
    found: list[sc.SimPool] = []
    for document in _documents(path):
        if "pools" in document:  # examples/fleet.yaml: name, nodes, gpusPerNode, spec
            for entry in document["pools"]:
                per_node = int(entry["gpusPerNode"])
                gpus = int(entry["nodes"]) * per_node
                found.append(
                    _pool(
                        path, entry["name"], entry["spec"], gpus, capacity, gpus_per_node=per_node
                    )
                )
        elif document.get("kind") == "GpuPool":
            name = document["metadata"]["name"]
            observed = (document.get("status") or {}).get("gpusTotal")
            found.append(_pool(path, name, document["spec"], observed, capacity))
    if not found:
        raise ValueError(f"{path}: no GpuPool found (kind: GpuPool documents or a pools: list)")
    return tuple(found)


def _pool(
    path: pathlib.Path,
    name: str,
    raw_spec: Mapping[str, Any],
    observed_gpus: int | None,
    capacity: Mapping[str, int],
    *,
    gpus_per_node: int | None = None,
) -> sc.SimPool:
    spec = models.GpuPoolSpec.model_validate(raw_spec)
    gpus = capacity.get(name, observed_gpus)
    if gpus is None:
        raise ValueError(
            f"{path}: GpuPool {name} has no capacity: set status.gpusTotal (as kubectl get -o "
            "yaml shows it) or capacity: {" + name + ": N} in the scenario file"
        )
    pool = convert.pool_to_domain(
        name, spec, gpus_total=int(gpus), gpus_free=int(gpus), gpus_per_node=gpus_per_node
    )
    fallback = spec.carbon_intensity.fallback_grams_per_kwh if spec.carbon_intensity else None
    return sc.SimPool(pool=pool, idle_watts=spec.gpu.idle_watts, fallback_gco2_per_kwh=fallback)


def read_rules(path: pathlib.Path) -> tuple[tuple[model.Policy, ...], tuple[sc.Budget, ...]]:
    """PlacementPolicy (via the API models) and Budget objects of a multi-document file."""
    policies: list[model.Policy] = []
    budgets: list[sc.Budget] = []
    for document in _documents(path):
        meta = document.get("metadata") or {}
        namespace, name = meta.get("namespace", "default"), meta.get("name", "")
        if document.get("kind") == "PlacementPolicy":
            spec = models.PlacementPolicySpec.model_validate(document.get("spec") or {})
            policies.append(convert.policy_to_domain(namespace, name, spec))
        elif document.get("kind") == "Budget":
            budgets.append(_budget(namespace, name, document.get("spec") or {}))
    return tuple(policies), tuple(budgets)


def _budget(namespace: str, name: str, spec: Mapping[str, Any]) -> sc.Budget:
    """A ``Budget`` object, validated by the same model as the API server's schema."""
    parsed = models.BudgetSpec.model_validate(spec)
    return sc.Budget(
        namespace=namespace,
        name=name,
        period=sc.Period(parsed.period),
        money_limit=parsed.limits.money,
        kgco2e_limit=parsed.limits.kg_co2e,
        kwh_limit=parsed.limits.kwh,
        currency=parsed.currency,
        action=model.BudgetAction(parsed.action),
    )


def read_jobs(path: pathlib.Path) -> tuple[sc.Job, ...]:
    if path.suffix in (".jsonl", ".ndjson"):
        rows = [
            (line_no, json.loads(line))
            for line_no, line in enumerate(path.read_text().splitlines(), start=1)
            if line.strip()
        ]
    else:
        with path.open(newline="") as handle:
            rows = list(enumerate(csv.DictReader(handle), start=2))
    jobs = []
    for line_no, row in rows:
        try:
            jobs.append(_job(row))
        except (KeyError, ValueError) as error:
            raise ValueError(f"{path}:{line_no}: cannot read job {row!r}: {error!r}") from error
    if not jobs:
        raise ValueError(f"{path}: no jobs")
    return tuple(jobs)


def _job(row: Mapping[str, Any]) -> sc.Job:
    """One row as a job declaring its time in a pod's annotations: ``duration_hours``,
    ``deadline`` and ``deferrable_hours`` become ``greenplace.dev/expected-duration-hours``,
    ``deadline`` and ``max-delay``, beside any the ``annotations`` column gives (a value in both
    is refused: which one is meant?)."""
    arrival = _instant(row["arrival"])
    declared = _pairs(row.get("annotations"))
    columns = sc.time_annotations(
        datetime.timedelta(hours=float(row["duration_hours"])),
        deadline=_instant(row["deadline"]) if row.get("deadline") else None,
        max_delay=(
            datetime.timedelta(hours=float(row["deferrable_hours"]))
            if row.get("deferrable_hours") not in (None, "")
            else None
        ),
    )
    both = sorted(set(declared) & set(columns))
    if both:
        raise ValueError(f"{', '.join(both)} given both as a column and in annotations")
    labels = _pairs(row.get("labels"))
    residency = labels.get(model.DATA_RESIDENCY_LABEL)
    wrong = None if residency is None else countries.residency_problem(str(residency))
    if wrong is not None:
        raise ValueError(wrong)
    return sc.Job(
        namespace=str(row["namespace"]),
        name=str(row["name"]),
        arrival=arrival,
        gpus=int(row["gpus"]),
        annotations={**columns, **declared},
        model_name=str(row.get("model") or ""),
        labels=labels,
    )


def _pairs(value: str | Mapping[str, Any] | None) -> dict[str, str]:
    """``k=v;k2=v2`` (CSV) or an object (JSONL) as a string map; empty when absent."""
    if not value:
        return {}
    if isinstance(value, str):
        return dict(part.split("=", 1) for part in value.split(";") if part)
    return {str(k): str(v) for k, v in value.items()}


def _instant(value: str | datetime.datetime) -> datetime.datetime:
    when = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value)
    return when if when.tzinfo is not None else when.replace(tzinfo=datetime.UTC)


def _floor_day(when: datetime.datetime) -> datetime.datetime:
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _ceil_day(when: datetime.datetime) -> datetime.datetime:
    floor = _floor_day(when)
    return floor if floor == when else floor + datetime.timedelta(days=1)
