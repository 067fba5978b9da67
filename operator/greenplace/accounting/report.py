"""Per model and pool: requests, Wh, gCO2e and cost per request and per 1k tokens, and grades.

Why this module exists: this is the value the controller publishes as an ``EnergyReport``
resource and as metrics. It is computed here, purely, from an attributed measurement, the pools'
facts (PUE, price, embodied emissions, grid zone) and the grid intensity of each zone over the
window, so the same numbers come out in the operator, the simulator and the tests.

Per row (model m on pool p, over the window):

- ``gpu_wh``: GPU energy attributed to m on p; ``facility_wh = gpu_wh x PUE``;
- ``gco2e = facility_wh / 1000 x intensity(zone of p) + gpu_hours x embodied per GPU-hour``;
- ``cost = gpu_hours x price per GPU-hour``;
- per request: each divided by the requests served; per 1k tokens: by (prompt + generated)/1000;
- ``energy_grade`` from GPU Wh/request, ``carbon_grade`` from gCO2e/request (``grading``).

A figure that cannot be computed (no requests, no intensity for the zone) is None, never 0.

A namespaced measurement (``serving.measure(..., namespace=)``) gives a namespaced report: only
that namespace's pods' shares, and ``unattributed_gpu_wh`` limited to its own pods that served
nothing (see ``attribution``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from collections.abc import Iterable, Mapping

from greenplace.accounting import attribution, energy, grading, serving
from greenplace.domain import model

__all__ = ["EnergyReport", "PoolFacts", "ReportRow", "build"]


@dataclasses.dataclass(frozen=True, slots=True)
class PoolFacts:
    """What the report needs to know about a pool (from its GpuPool)."""

    name: str
    grid_zone: str
    pue: float
    price_per_gpu_hour: float
    currency: str
    embodied_gco2e_per_gpu_hour: float = 0.0

    @classmethod
    def from_pool(cls, pool: model.Pool) -> PoolFacts:
        """The facts of a planner ``Pool`` (price as the signals last set it)."""
        return cls(
            name=pool.name,
            grid_zone=pool.location.grid_zone,
            pue=pool.pue,
            price_per_gpu_hour=pool.price_per_gpu_hour,
            currency=pool.currency,
            embodied_gco2e_per_gpu_hour=pool.embodied_gco2_per_gpu_hour,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class ReportRow:
    model: str
    pool: str
    grid_zone: str
    requests: float
    tokens: float
    gpu_wh: float
    facility_wh: float
    gpu_hours: float
    gco2e: float | None
    cost: float
    currency: str
    gco2_per_kwh: float | None
    gpu_wh_per_request: float | None
    facility_wh_per_request: float | None
    gco2e_per_request: float | None
    cost_per_request: float | None
    facility_wh_per_1k_tokens: float | None
    gco2e_per_1k_tokens: float | None
    cost_per_1k_tokens: float | None
    energy_grade: grading.Grade | None
    carbon_grade: grading.Grade | None
    attribution: tuple[attribution.Method, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class EnergyReport:
    """One window's figures, with the inputs used, ready to publish."""

    window_start: datetime.datetime
    window_end: datetime.datetime
    energy_source: serving.EnergySource
    rows: tuple[ReportRow, ...]
    unattributed_gpu_wh: Mapping[str, float]
    energy_scale: grading.Scale
    carbon_scale: grading.Scale
    intensity_sources: Mapping[str, str]
    notes: tuple[str, ...]


def build(
    measurement: serving.Measurement,
    pools: Iterable[PoolFacts],
    gco2_per_kwh_by_zone: Mapping[str, float | None],
    *,
    intensity_sources: Mapping[str, str] | None = None,
    energy_scale: grading.Scale = grading.DEFAULT_ENERGY_SCALE,
    carbon_scale: grading.Scale = grading.DEFAULT_CARBON_SCALE,
    mig_slices_total: int = 7,
) -> EnergyReport:
    """Attribute the measured energy and compute every row; pools unknown here are noted."""
    facts = {p.name: p for p in pools}
    attributed = attribution.attribute(
        measurement.rows,
        (*measurement.usages, *measurement.foreign),
        mig_slices_total,
        namespace=measurement.namespace,
    )
    served: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for usage in measurement.usages:
        served[(usage.pool, usage.model)][0] += usage.requests
        served[(usage.pool, usage.model)][1] += usage.tokens
    rows, notes = [], []
    for share in attributed.shares:
        pool = facts.get(share.pool)
        if pool is None:
            notes.append(
                f"pool {share.pool!r} has metrics but no GpuPool: {share.model} not reported; "
                "check the pool label relabelling"
            )
            continue
        intensity = gco2_per_kwh_by_zone.get(pool.grid_zone)
        if intensity is None:
            notes.append(
                f"no carbon intensity for zone {pool.grid_zone} (pool {pool.name}): gCO2e "
                "and carbon grade left empty"
            )
        requests, tokens = served[(share.pool, share.model)]
        rows.append(_row(share, pool, intensity, (requests, tokens), (energy_scale, carbon_scale)))
    if measurement.energy_source is serving.EnergySource.NONE:
        notes.append("no GPU energy series found (DCGM, Kepler or utilisation): nothing to report")
    return EnergyReport(
        window_start=measurement.window_end - measurement.window,
        window_end=measurement.window_end,
        energy_source=measurement.energy_source,
        rows=tuple(rows),
        unattributed_gpu_wh=dict(attributed.unattributed_gpu_wh),
        energy_scale=energy_scale,
        carbon_scale=carbon_scale,
        intensity_sources=dict(intensity_sources or {}),
        notes=tuple(notes),
    )


def _row(
    share: attribution.Share,
    pool: PoolFacts,
    intensity: float | None,
    served: tuple[float, float],
    scales: tuple[grading.Scale, grading.Scale],
) -> ReportRow:
    requests, tokens = served
    energy_scale, carbon_scale = scales
    facility = energy.facility_wh(share.gpu_wh, pool.pue)
    gco2e = (
        None
        if intensity is None
        else energy.carbon_gco2e(
            facility, intensity, share.gpu_hours, pool.embodied_gco2e_per_gpu_hour
        )
    )
    money = energy.cost(share.gpu_hours, pool.price_per_gpu_hour)

    def per(total: float | None, count: float, scale: float = 1.0) -> float | None:
        return None if total is None or count <= 0 else total / count * scale

    gpu_wh_per_request = per(share.gpu_wh, requests)
    gco2e_per_request = per(gco2e, requests)
    return ReportRow(
        model=share.model,
        pool=pool.name,
        grid_zone=pool.grid_zone,
        requests=requests,
        tokens=tokens,
        gpu_wh=share.gpu_wh,
        facility_wh=facility,
        gpu_hours=share.gpu_hours,
        gco2e=gco2e,
        cost=money,
        currency=pool.currency,
        gco2_per_kwh=intensity,
        gpu_wh_per_request=gpu_wh_per_request,
        facility_wh_per_request=per(facility, requests),
        gco2e_per_request=gco2e_per_request,
        cost_per_request=per(money, requests),
        facility_wh_per_1k_tokens=per(facility, tokens, 1000.0),
        gco2e_per_1k_tokens=per(gco2e, tokens, 1000.0),
        cost_per_1k_tokens=per(money, tokens, 1000.0),
        energy_grade=(
            None if gpu_wh_per_request is None else grading.grade(gpu_wh_per_request, energy_scale)
        ),
        carbon_grade=(
            None if gco2e_per_request is None else grading.grade(gco2e_per_request, carbon_scale)
        ),
        attribution=tuple(sorted(share.methods)),
    )
