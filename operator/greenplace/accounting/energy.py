"""The energy, carbon and cost model, as pure functions with units in their names.

Why this module exists: every figure greenplace reports (per workload, per request, per budget)
comes from the same few formulas, written once here and documented in docs/energy.md:

- measured GPU energy: DCGM's total-energy counter (mJ) or mean power (W) x time, or Kepler;
- modelled GPU power when nothing is measured: ``idle + (TDP - idle) x utilisation``, which is
  ``TDP x u + idle x (1 - u)``;
- facility energy = GPU energy x PUE;
- carbon = facility energy x grid intensity at the time the energy was used, plus embodied
  emissions per GPU-hour (the SCI's E x I + M);
- cost = GPU-hours x price per GPU-hour.

Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import datetime
import itertools

from greenplace.domain import series

__all__ = [
    "MJ_PER_WH",
    "carbon_gco2e",
    "cost",
    "energy_weighted_intensity",
    "facility_wh",
    "modelled_power_w",
    "wh_from_mean_power",
    "wh_from_millijoules",
]

MJ_PER_WH = 3.6e6  # 1 Wh = 3600 J = 3.6e6 mJ


def modelled_power_w(tdp_w: float, idle_w: float, utilisation: float) -> float:
    """GPU power drawn at ``utilisation`` (0..1), linear between idle and TDP."""
    if not 0.0 <= utilisation <= 1.0:
        raise ValueError(f"utilisation {utilisation} outside [0, 1]; pass a fraction, not %")
    if idle_w < 0 or tdp_w < idle_w:
        raise ValueError(
            f"power model needs 0 <= idle_w <= tdp_w, got idle {idle_w} W, TDP {tdp_w} W; "
            "fix the GpuPool's gpu power fields"
        )
    return tdp_w * utilisation + idle_w * (1.0 - utilisation)


def wh_from_millijoules(millijoules: float) -> float:
    """DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counts mJ."""
    return millijoules / MJ_PER_WH


def wh_from_mean_power(mean_power_w: float, seconds: float) -> float:
    return mean_power_w * seconds / 3600.0


def facility_wh(gpu_wh: float, pue: float) -> float:
    """Energy drawn by the data centre for ``gpu_wh`` at the GPUs (cooling, losses)."""
    if pue < 1.0:
        raise ValueError(f"PUE {pue} < 1 is impossible; fix the GpuPool's pue")
    return gpu_wh * pue


def carbon_gco2e(
    facility_wh: float,
    gco2_per_kwh: float,
    gpu_hours: float = 0.0,
    embodied_gco2e_per_gpu_hour: float = 0.0,
) -> float:
    """Operational (E x I) plus embodied (M) emissions in gCO2e."""
    return facility_wh / 1000.0 * gco2_per_kwh + gpu_hours * embodied_gco2e_per_gpu_hour


def cost(gpu_hours: float, price_per_gpu_hour: float) -> float:
    return gpu_hours * price_per_gpu_hour


def energy_weighted_intensity(
    power_w: series.TimeSeries,
    gco2_per_kwh: series.TimeSeries,
    start: datetime.datetime,
    end: datetime.datetime,
) -> float | None:
    """Grid intensity over ``[start, end)`` weighted by the power drawn at each instant.

    This is "intensity at the time the energy was used": a job that ran mostly at night is
    charged the night's intensity. None when the intensity series does not cover the whole
    window, or when no energy was used; no power series point means no power drawn.
    """
    if not gco2_per_kwh.times or start < gco2_per_kwh.start or end > gco2_per_kwh.end:
        return None
    cuts = sorted(
        {start, end}
        | {t for t in power_w.times if start < t < end}
        | {t for t in gco2_per_kwh.times if start < t < end}
    )
    energy = weighted = 0.0
    for left, right in itertools.pairwise(cuts):
        power = power_w.at(left)
        if power is None or power == 0.0:
            continue
        intensity = gco2_per_kwh.at(left)
        if intensity is None:  # pragma: no cover - coverage checked above
            return None
        seconds = (right - left).total_seconds()
        energy += power * seconds
        weighted += power * seconds * intensity
    return None if energy == 0.0 else weighted / energy
