"""Each GpuPool's effective price per GPU-hour, from the FOCUS exports the operator is given.

Why this module exists: the pools' prices in their specs are list prices; the bill says what a
GPU-hour cost (``accounting.focus``). The operator is given exports on a mounted volume
(``greenplace operate --focus-export FILE``) and records, on each claiming pool's
``status.billing``, the prices of the newest billing period the exports hold for it; the
``Billed`` condition says which period, or why there is none (the pool claims no charge, or
the export is refused: its one-line reason, never a crash of the placement loop). Every period
a pool is priced in is kept too (``Priced.periods``): the Budgets' charges of that pool and
month are corrected at it (``budgets.Ledger.bill``).

The exports are read again only when a file's size or modification time, or a pool's spec
generation, changed: an export is a large file, the placement cycle runs every few seconds.
Reading happens in a worker thread (``StatusRecorder.record``), off the event loop.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence
from decimal import Decimal

from greenplace.accounting import billed, focus
from greenplace.api import models
from greenplace.controller import cache as cache_

__all__ = ["BillingPrices", "Priced"]

# Status figures: a millionth of the currency is below any invoice's precision.
_DIGITS = 6


@dataclasses.dataclass(frozen=True)
class Priced:
    """What the exports say of one pool: its status, or why it has none."""

    status: models.PoolBillingStatus | None
    reason: str  # Reconciled, NotClaimed, ExportRefused
    message: str
    periods: tuple[billed.Price, ...] = ()  # every period priced, oldest first


class BillingPrices:
    """Prices the pools' GPU-hours from ``exports``, re-read when they or the pools change."""

    def __init__(self, exports: Sequence[pathlib.Path]) -> None:
        self.exports = tuple(exports)
        self._key: object = None
        self._priced: dict[str, Priced] = {}

    def prices(self, pools: Sequence[cache_.CachedPool]) -> dict[str, Priced]:
        """Per pool name, what the exports say of it (blocking: call it in a thread)."""
        key = (tuple(_stat(path) for path in self.exports),
               tuple(sorted((p.name, p.generation) for p in pools)))  # fmt: skip
        if key != self._key:
            self._priced = _price(self.exports, pools)
            self._key = key
        return self._priced


def _stat(path: pathlib.Path) -> tuple[str, int, int] | None:
    try:
        found = path.stat()
    except OSError:
        return None
    return str(path), found.st_size, found.st_mtime_ns


def _figure(amount: Decimal) -> float:
    return round(float(amount), _DIGITS)


def _price(
    exports: Sequence[pathlib.Path], pools: Sequence[cache_.CachedPool]
) -> dict[str, Priced]:
    claiming = [p for p in pools if p.spec.billing is not None]
    try:
        export = focus.read_export(exports)
        result = focus.reconcile(export, focus.claims_of((p.name, p.spec) for p in claiming))
    except focus.FocusError as refused:
        return {p.name: Priced(None, "ExportRefused", str(refused)) for p in claiming}
    newest: dict[str, focus.PoolPeriod] = {}
    periods: dict[str, list[billed.Price]] = {}
    for priced in result.pools:  # in period order: the last one of a pool is its newest
        newest[priced.pool] = priced
        effective = priced.effective_per_gpu_hour
        if effective is not None:
            periods.setdefault(priced.pool, []).append(
                billed.Price(
                    priced.pool,
                    priced.period.start,
                    priced.period.end,
                    result.currency,
                    effective,
                    result.fingerprints[priced.period],
                )
            )
    out: dict[str, Priced] = {}
    for pool in claiming:
        found = newest.get(pool.name)
        if found is None:
            out[pool.name] = Priced(
                None, "NotClaimed", "spec.billing.match claims no charge of the exports"
            )
            continue
        effective = found.effective_per_gpu_hour
        listed = found.per_gpu_hour(found.costs.listed)
        out[pool.name] = Priced(
            models.PoolBillingStatus(
                period_start=found.period.start,
                period_end=found.period.end,
                currency=result.currency,
                gpu_hours=_figure(found.gpu_hours),
                effective_cost=_figure(found.costs.effective),
                billed_cost=_figure(found.costs.billed),
                effective_per_gpu_hour=None if effective is None else _figure(effective),
                list_per_gpu_hour=None if listed is None else _figure(listed),
            ),
            "Reconciled",
            f"{found.charges} charges of {found.period}: "
            + (
                "no GPU-hour metered"
                if effective is None
                else f"{effective:.4f} {result.currency} per GPU-hour effective"
            ),
            tuple(periods.get(pool.name, ())),
        )
    return out
