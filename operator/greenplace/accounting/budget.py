"""Budget figures for a period: spent, forecast at the period's end (linear burn), remaining.

Why this module exists: a ``Budget`` status and its alerts need the same three numbers whether
the budget counts money, kgCO2e or kWh. Pure: the caller passes the amounts and the instants.
"""

from __future__ import annotations

import dataclasses
import datetime

__all__ = ["BudgetFigures", "burn"]


@dataclasses.dataclass(frozen=True, slots=True)
class BudgetFigures:
    """One budget at one instant, in the budget's own unit (currency, kgCO2e or kWh)."""

    limit: float
    spent: float
    forecast_at_end: float
    remaining: float
    burn_per_hour: float
    fraction_spent: float
    # When the linear burn reaches the limit; None if it does not within the period.
    exhausted_at: datetime.datetime | None


def burn(
    spent: float,
    limit: float,
    period_start: datetime.datetime,
    period_end: datetime.datetime,
    now: datetime.datetime,
) -> BudgetFigures:
    """Figures at ``now`` for ``spent`` so far out of ``limit`` over ``[start, end)``."""
    if period_end <= period_start:
        raise ValueError(f"budget period [{period_start}, {period_end}) is empty; fix its bounds")
    if limit <= 0:
        raise ValueError(f"budget limit {limit} must be > 0")
    elapsed_h = (min(max(now, period_start), period_end) - period_start).total_seconds() / 3600
    length_h = (period_end - period_start).total_seconds() / 3600
    rate = spent / elapsed_h if elapsed_h > 0 else 0.0
    forecast = spent + rate * (length_h - elapsed_h)
    exhausted_at: datetime.datetime | None = None
    if spent >= limit:
        exhausted_at = min(max(now, period_start), period_end)
    elif rate > 0 and forecast >= limit:
        exhausted_at = period_start + datetime.timedelta(hours=limit / rate)
    return BudgetFigures(
        limit=limit,
        spent=spent,
        forecast_at_end=forecast,
        remaining=limit - spent,
        burn_per_hour=rate,
        fraction_spent=spent / limit,
        exhausted_at=exhausted_at,
    )
