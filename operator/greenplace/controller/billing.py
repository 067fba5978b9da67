"""Each GpuPool's effective price per GPU-hour, from the FOCUS exports the operator reads.

Why this module exists: the pools' prices in their specs are list prices; the bill says what a
GPU-hour cost (``accounting.focus``). The BillingExports say where the exports are (a mounted
volume or an object store; ``controller.exports`` reads each on its interval);
``greenplace operate --focus-export FILE`` is a shorthand for one more, built in, of files. The
contents that count, merged (a charge two exports both hold counts once), price each claiming
pool's ``status.billing`` at the newest billing period they hold for it; the ``Billed``
condition says which period, or why there is none (the pool claims no charge, or an export is
refused: its one-line reason, never a crash of the placement loop). Every period a pool is
priced in is kept too (``Priced.periods``): the Budgets' charges of that pool and month are
corrected at it (``budgets.Ledger.bill``).

The pools are priced again only when the contents that count, or a pool's spec generation,
changed: the placement cycle runs every few seconds. Reading and pricing happen in a worker
thread (``StatusRecorder.record``), off the event loop.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from decimal import Decimal

from greenplace.accounting import billed, focus
from greenplace.api import models
from greenplace.controller import cache as cache_
from greenplace.controller import exports as exports_

__all__ = ["SHORTHAND", "BillingPrices", "Priced", "shorthand"]

# The name of the BillingExport ``--focus-export`` builds: no Kubernetes name starts with "-",
# so no BillingExport object can take its place.
SHORTHAND = "--focus-export"

# Status figures: a millionth of the currency is below any invoice's precision.
_DIGITS = 6


@dataclasses.dataclass(frozen=True)
class Priced:
    """What the exports say of one pool: its status, or why it has none."""

    status: models.PoolBillingStatus | None
    reason: str  # Reconciled, NotClaimed, ExportRefused
    message: str
    periods: tuple[billed.Price, ...] = ()  # every period priced, oldest first


def shorthand(paths: Sequence[str]) -> cache_.CachedBillingExport:
    """The BillingExport ``greenplace operate --focus-export`` stands for: these files, listed
    every 10 s (the shortest interval: a stat per file) and read when they change."""
    return cache_.CachedBillingExport(
        SHORTHAND,
        0,
        models.BillingExportSpec(
            file=models.BillingFiles(paths=list(paths)), interval=models.INTERVAL_RANGE[0]
        ),
    )


class BillingPrices:
    """Prices the pools' GPU-hours from the BillingExports' contents, again when they or the
    pools change."""

    def __init__(
        self,
        exports: exports_.BillingExports,
        builtin: Sequence[cache_.CachedBillingExport] = (),
    ) -> None:
        self.exports = exports
        self.builtin = tuple(builtin)
        self._key: object = None
        self._priced: dict[str, Priced] = {}
        self._read_any = False  # once an export was given, a pool's price is kept up to date

    def prices(
        self,
        pools: Sequence[cache_.CachedPool],
        sources: Sequence[cache_.CachedBillingExport],
        now: datetime.datetime,
    ) -> dict[str, Priced] | None:
        """Per pool name, what the exports say of it; None while no export was ever given
        (the pools' status.billing is then left alone). Blocking: call it in a thread."""
        given = (*self.builtin, *sources)
        self.exports.refresh(given, now)
        if not given and not self._read_any:
            return None
        self._read_any = True
        counting = self.exports.counting()
        refused = self.exports.refused()
        key = (tuple((c.name, c.objects) for c in counting), refused,
               tuple(sorted((p.name, p.generation) for p in pools)))  # fmt: skip
        if key != self._key:
            self._priced = _price(counting, refused, pools)
            self._key = key
        return self._priced


def _named(name: str) -> str:
    return name if name == SHORTHAND else f"BillingExport {name}"


def _figure(amount: Decimal) -> float:
    return round(float(amount), _DIGITS)


def _price(
    counting: Sequence[exports_.Counted],
    refused: Sequence[tuple[str, str]],
    pools: Sequence[cache_.CachedPool],
) -> dict[str, Priced]:
    claiming = [p for p in pools if p.spec.billing is not None]
    # A pool no counted export prices: the first refused export is the likeliest reason.
    unpriced = (
        Priced(None, "ExportRefused", f"{_named(refused[0][0])}: {refused[0][1]}")
        if refused
        else Priced(None, "NotClaimed", "spec.billing.match claims no charge of the exports")
    )
    if not counting:
        return dict.fromkeys((p.name for p in claiming), unpriced)
    try:
        export = focus.merge([c.export for c in counting])
        result = focus.reconcile(export, focus.claims_of((p.name, p.spec) for p in claiming))
    except focus.FocusError as error:
        return {p.name: Priced(None, "ExportRefused", str(error)) for p in claiming}
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
            out[pool.name] = unpriced
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
