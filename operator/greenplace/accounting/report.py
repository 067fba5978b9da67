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

Cost on two bases, per pool (``PoolCost``): at the pool's price (``spec.price``), and billed,
at the effective price per GPU-hour of the reconciled billing period that covers the whole
window (``accounting.billed.Price``, from the operator's FOCUS exports). Each row's cost on
the billed basis is ``gpu_hours x effective price``, per request and per 1k tokens too. Per
pool, the GPU-hours measured (every GPU's, idle ones included) priced give the pool's total,
rounded to the cent; it is split in cents between the rows and the idle GPU-hours no model
used by the largest remainder (``split``: each part within a cent of its exact amount), so
allocated + idle = total exactly, in cents, summed as ``Decimal``.

A namespaced measurement (``serving.measure(..., namespace=)``) gives a namespaced report: only
that namespace's pods' shares, and ``unattributed_gpu_wh`` limited to its own pods that served
nothing (see ``attribution``).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from greenplace.accounting import attribution, billed, energy, grading, serving
from greenplace.domain import model

__all__ = ["EnergyReport", "PoolCost", "PoolFacts", "ReportRow", "build", "cents", "split"]

_CENT = Decimal("0.01")


def cents(amount: Decimal) -> Decimal:
    """``amount`` rounded to the cent, half to even (as the reconcile's tables)."""
    return amount.quantize(_CENT, rounding=ROUND_HALF_EVEN)


def split(parts: Sequence[Decimal]) -> tuple[Decimal, list[Decimal]]:
    """The total of ``parts`` in cents, and the parts in cents adding up to it exactly: each
    rounded down, the cents left given to the largest remainders (the first on a tie)."""
    total = cents(sum(parts, start=Decimal(0)))
    floors = [p.quantize(_CENT, rounding=ROUND_FLOOR) for p in parts]
    left = int((total - sum(floors, start=Decimal(0))) / _CENT)
    order = sorted(range(len(parts)), key=lambda i: (floors[i] - parts[i], i))
    for index in order[:left]:
        floors[index] += _CENT
    return total, floors


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
    # On the billed basis (None: no reconciled period covers the window): gpu_hours x the
    # effective price, in cents; per request and per 1k tokens from the exact amount.
    billed_cost: Decimal | None = None
    billed_cost_per_request: float | None = None
    billed_cost_per_1k_tokens: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PoolCost:
    """One pool's GPU-hours over the window priced, allocated to the rows or idle, in cents:
    ``allocated + idle == total`` on each basis."""

    pool: str
    currency: str
    gpu_hours: float  # measured: the rows' and the idle ones
    idle_gpu_hours: float
    per_gpu_hour: Decimal  # the pool's price
    total: Decimal
    allocated: Decimal
    idle: Decimal
    # The billed basis: the reconciled period covering the window (None: none does).
    billed: billed.Price | None = None
    billed_total: Decimal | None = None
    billed_allocated: Decimal | None = None
    billed_idle: Decimal | None = None


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
    costs: tuple[PoolCost, ...] = ()


def build(
    measurement: serving.Measurement,
    pools: Iterable[PoolFacts],
    gco2_per_kwh_by_zone: Mapping[str, float | None],
    *,
    intensity_sources: Mapping[str, str] | None = None,
    energy_scale: grading.Scale = grading.DEFAULT_ENERGY_SCALE,
    carbon_scale: grading.Scale = grading.DEFAULT_CARBON_SCALE,
    mig_slices_total: int = 7,
    prices: Iterable[billed.Price] = (),
) -> EnergyReport:
    """Attribute the measured energy and compute every row; pools unknown here are noted.
    ``prices``: the reconciled periods of the pools, for the billed basis."""
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
    start = measurement.window_end - measurement.window
    rows, costs = _costed(
        rows,
        attributed.unattributed_gpu_hours,
        facts=facts,
        prices=list(prices),
        window=(start, measurement.window_end),
        notes=notes,
    )
    return EnergyReport(
        window_start=start,
        window_end=measurement.window_end,
        energy_source=measurement.energy_source,
        rows=tuple(rows),
        unattributed_gpu_wh=dict(attributed.unattributed_gpu_wh),
        energy_scale=energy_scale,
        carbon_scale=carbon_scale,
        intensity_sources=dict(intensity_sources or {}),
        notes=tuple(notes),
        costs=costs,
    )


def _covering(
    prices: Sequence[billed.Price],
    pool: PoolFacts,
    window: tuple[datetime.datetime, datetime.datetime],
) -> billed.Price | None:
    """The reconciled period of ``pool``, in its currency, that holds the whole window."""
    start, end = window
    return next(
        (
            p
            for p in prices
            if p.pool == pool.name
            and p.currency == pool.currency
            and p.start <= start
            and end <= p.end
        ),
        None,
    )


def _costed(
    rows: Sequence[ReportRow],
    idle_hours: Mapping[str, float],
    *,
    facts: Mapping[str, PoolFacts],
    prices: Sequence[billed.Price],
    window: tuple[datetime.datetime, datetime.datetime],
    notes: list[str],
) -> tuple[list[ReportRow], tuple[PoolCost, ...]]:
    """The rows with their billed basis, and each pool's cost allocated and idle."""
    out: list[ReportRow] = []
    costs: list[PoolCost] = []
    for name in sorted({*(r.pool for r in rows), *(p for p in idle_hours if p in facts)}):
        pool, mine = facts[name], [r for r in rows if r.pool == name]
        idle = idle_hours.get(name, 0.0)
        hours = [billed.to_decimal(r.gpu_hours) for r in mine] + [billed.to_decimal(idle)]
        measured = sum(hours, start=Decimal(0))
        listed = billed.to_decimal(pool.price_per_gpu_hour)
        total, parts = split([h * listed for h in hours])
        cost = PoolCost(
            name, pool.currency, float(measured), idle, listed, total, total - parts[-1], parts[-1]
        )
        price = _covering(prices, pool, window)
        if price is None:
            out.extend(mine)
            if any(p.pool == name for p in prices):
                notes.append(
                    f"pool {name}: no reconciled billing period covers the window "
                    f"{window[0]:%Y-%m-%dT%H:%MZ}/{window[1]:%Y-%m-%dT%H:%MZ}: billed basis "
                    "left empty"
                )
            costs.append(cost)
            continue
        exact = [h * price.per_gpu_hour for h in hours]
        billed_total, parts = split(exact)
        for row, amount, part in zip(mine, exact, parts, strict=False):
            out.append(
                dataclasses.replace(
                    row,
                    billed_cost=part,
                    billed_cost_per_request=_per(amount, row.requests),
                    billed_cost_per_1k_tokens=_per(amount, row.tokens / 1000),
                )
            )
        costs.append(
            dataclasses.replace(
                cost,
                billed=price,
                billed_total=billed_total,
                billed_allocated=billed_total - parts[-1],
                billed_idle=parts[-1],
            )
        )
    return out, tuple(costs)


def _per(amount: Decimal, count: float) -> float | None:
    return None if count <= 0 else float(amount / billed.to_decimal(count))


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
