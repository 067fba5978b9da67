"""A Budget's charges corrected to the bill: the pool's price at placement, the effective price
once the billing period is reconciled.

Why this module exists: the operator charges a Budget at placement what the planner projected,
GPU-hours x the pool's ``spec.price`` (``controller.budgets``). The bill says what those
GPU-hours cost (``accounting.focus``: a pool's EffectiveCost over its GPU-hours per billing
period). So the ledger keeps, per Budget, the GPU-hours and the money it charged per pool and
billing month (``Usage``, keyed by the UTC month of the placement), and once a period of that
pool is priced (``Price``), the correction of each usage is

    correction = GPU-hours x effective price per GPU-hour - money charged at the pool's price

computed afresh from the usage and the price, never added to a running total: a period
reconciled twice gives the same correction, a re-issued export (another fingerprint, another
price) replaces it. Pure and exact: amounts become ``Decimal`` through their shortest decimal
form (the value the float means) before they are multiplied or summed.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping
from decimal import Decimal

__all__ = ["Correction", "Price", "Usage", "UsageKey", "corrections", "month_of", "to_decimal"]

# (pool, start of the UTC month of the placements).
UsageKey = tuple[str, datetime.datetime]


@dataclasses.dataclass(frozen=True)
class Usage:
    """What a Budget was charged in one pool and month, at the pool's price."""

    gpu_hours: float = 0.0
    money: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.gpu_hours + other.gpu_hours, self.money + other.money)


@dataclasses.dataclass(frozen=True)
class Price:
    """A pool's effective price per GPU-hour in one reconciled billing period."""

    pool: str
    start: datetime.datetime
    end: datetime.datetime  # excluded
    currency: str
    per_gpu_hour: Decimal
    fingerprint: str  # of the period's rows (``focus.Reconciliation.fingerprints``)

    def covers(self, key: UsageKey) -> bool:
        return key[0] == self.pool and self.start <= key[1] < self.end


@dataclasses.dataclass(frozen=True)
class Correction:
    """One usage repriced at its billing period's effective price."""

    price: Price
    gpu_hours: Decimal
    charged: Decimal  # at the pool's price, when placed
    billed: Decimal  # gpu_hours x price.per_gpu_hour

    @property
    def amount(self) -> Decimal:
        """What the Budget's money spent moves by: billed - charged."""
        return self.billed - self.charged


def to_decimal(value: float) -> Decimal:
    """``value`` exactly as written (``repr``: its shortest decimal form), not its binary
    expansion."""
    return Decimal(repr(float(value)))


def month_of(at: datetime.datetime) -> datetime.datetime:
    """The start of the UTC month of ``at``: the billing month a placement is charged to."""
    utc = at.astimezone(datetime.UTC)
    return datetime.datetime(utc.year, utc.month, 1, tzinfo=datetime.UTC)


def corrections(
    usage: Mapping[UsageKey, Usage], prices: Iterable[Price], currency: str
) -> tuple[list[Correction], list[UsageKey]]:
    """Each usage corrected at the price of the period that covers it (a price in another
    currency than the Budget's ``currency`` corrects nothing), and the usages with GPU-hours
    no price covers yet, both sorted by pool and month."""
    usable = [p for p in prices if p.currency == currency]
    done: list[Correction] = []
    waiting: list[UsageKey] = []
    for key, used in sorted(usage.items()):
        price = next((p for p in usable if p.covers(key)), None)
        if price is None:
            if used.gpu_hours > 0:
                waiting.append(key)
            continue
        hours = to_decimal(used.gpu_hours)
        done.append(Correction(price, hours, to_decimal(used.money), hours * price.per_gpu_hour))
    return done, waiting
