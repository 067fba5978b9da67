"""What each Budget has spent this period: a ledger the operator owns, charged at placement.

Why this module exists: the planner needs a Budget's money, kgCO2e and kWh already spent in the
current period, and the Budget's status needs the same figures with a forecast. greenplace has
no billing feed, so spending is an *estimate* from what it decided: every pod it places under a
policy whose ``budgetRef`` names the budget is charged, once, what the planner projected for it
(``charge``, with the same functions as the walk: ``engine.objective.rate`` and ``estimate``):

- cost   = GPUs x expected hours x the pool's price per GPU-hour (on-demand: the operator's
  snapshot builds no workload as spot, so the planner projected the on-demand price too);
- kWh    = GPUs x expected hours x the pool's GPU TDP / 1000 x PUE (full power: an upper bound);
- kgCO2e = (kWh x the grid gCO2e/kWh at placement + GPUs x expected hours x the pool's embodied
  gCO2e per GPU-hour) / 1000; an unknown intensity counts the planner's pessimistic 1,000.

The charge is kept in state the operator owns, never recomputed from what tenants can write:
the ``Ledger`` adds it when the placement patch succeeds and the status of the Budget carries
the running totals (``status.spent``) with the time of the last placement included
(``status.chargedThrough``). Deleting a pod, editing its annotations or deleting its GpuPool
changes nothing already charged. After a restart or a change of leader, the ledger starts from
the Budget's status and adds the charges of placements newer than ``chargedThrough`` from
their *signed* records (``records``): a crash between a placement and the status write loses
only charges of pods deleted in that window.

Alerts (``alerts``): a Budget's ``alertThresholds`` are fractions of its limits. Once the spend
of any limit reaches one in a period, the Budget gets the ``ThresholdReached`` condition and one
Warning Event per threshold. Which thresholds were announced is kept where a restarted operator
reads it back, the Budget's ``status.alertedThresholds`` (valid for ``status.periodStart``), so
neither a new cycle nor a restart announces a threshold twice, and a new period starts afresh.

Corrected to the bill (``accounting.billed``): each charge also adds its GPU-hours and money to
the Budget's usage of that pool and UTC month (``status.charges``). Once the operator's FOCUS
exports price that pool's billing period (``Ledger.bill``, from ``controller.billing``), the
usage is repriced at the effective price per GPU-hour: ``status.billed`` shows each reconciled
pool and period, ``status.correction`` their sum, and ``status.spent.money`` (what the planner
sees too) includes it. A correction is recomputed from the usage and the price, never added up:
a period priced again replaces it. The prices used are kept in ``status.billed`` too, so a
restarted operator corrects the same way before (or without) reading the exports again.
Invoices arrive after the month they bill, so the period before the current one is kept too
(``Ledger.closed``, ``status.previousPeriod``) and repriced the same way; the planner sees
the current period only.

Expected hours come from the pod annotation ``greenplace.dev/expected-duration-hours``, read by
``api.convert.timing`` as the planner reads it (at most a year), else 1 h. Actual run time is not
measured: the EnergyReport gives measured figures.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import math
from collections.abc import Iterable, Mapping
from typing import Any

from greenplace.accounting import billed as billed_
from greenplace.accounting import budget as burn
from greenplace.api import convert, models, timestamps
from greenplace.controller import cache as cache_
from greenplace.domain import model
from greenplace.engine import objective

__all__ = [
    "Account",
    "Alerts",
    "Billing",
    "Ledger",
    "Spend",
    "alerts",
    "charge",
    "domain_budgets",
    "reconciled_condition",
    "status",
]


@dataclasses.dataclass(frozen=True)
class Spend:
    money: float = 0.0
    kg_co2e: float = 0.0
    kwh: float = 0.0
    gpu_hours: float = 0.0  # what ``money`` prices: the bill reprices it

    def __add__(self, other: Spend) -> Spend:
        return Spend(
            self.money + other.money,
            self.kg_co2e + other.kg_co2e,
            self.kwh + other.kwh,
            self.gpu_hours + other.gpu_hours,
        )


@dataclasses.dataclass
class Account:
    """One Budget's spending in its current period."""

    period_start: datetime.datetime
    spent: Spend  # at the pools' prices
    charged_through: datetime.datetime | None  # newest placement included
    currency: str = "EUR"
    usage: dict[billed_.UsageKey, billed_.Usage] = dataclasses.field(default_factory=dict)
    # The prices of reconciled periods, by (pool, period start): from the exports, or from
    # the status the previous operator wrote.
    prices: dict[tuple[str, datetime.datetime], billed_.Price] = dataclasses.field(
        default_factory=dict
    )

    def add(self, spend: Spend, at: datetime.datetime, pool: str | None) -> None:
        self.spent = self.spent + spend
        if pool is not None:
            key = (pool, billed_.month_of(at))
            self.usage[key] = self.usage.get(key, billed_.Usage()) + billed_.Usage(
                spend.gpu_hours, spend.money
            )
        if self.charged_through is None or at > self.charged_through:
            self.charged_through = at

    def billing(self) -> Billing:
        """The spend corrected to the bill where a period is reconciled."""
        done, waiting = billed_.corrections(self.usage, self.prices.values(), self.currency)
        correction = float(sum((c.amount for c in done), start=decimal.Decimal(0)))
        corrected = dataclasses.replace(self.spent, money=max(0.0, self.spent.money + correction))
        return Billing(corrected, tuple(done), tuple(waiting), correction)


@dataclasses.dataclass(frozen=True)
class Billing:
    """A Budget's spend with its corrections (``Account.billing``)."""

    spent: Spend  # money corrected where reconciled
    corrections: tuple[billed_.Correction, ...]
    waiting: tuple[billed_.UsageKey, ...]  # usage no reconciled period covers yet
    correction: float  # the sum of the corrections' amounts


class Ledger:
    """The operator's record of what each Budget was charged (see the module docstring).

    Owned by the placement loop; ``forget`` it when leadership changes hands, so the next
    leader's view starts from the status the previous one wrote.
    """

    def __init__(self) -> None:
        self._accounts: dict[tuple[str, str], Account] = {}
        # Each Budget's period before the current one, for bills that arrive after it ended.
        self._closed: dict[tuple[str, str], Account] = {}
        self._prices: dict[tuple[str, datetime.datetime], billed_.Price] = {}

    def forget(self) -> None:
        self._accounts.clear()
        self._closed.clear()
        self._prices.clear()

    def bill(self, prices: Iterable[billed_.Price]) -> None:
        """Reprice every account's usage at ``prices`` (the exports' reconciled periods): each
        replaces the price of its pool and period; a period the exports no longer hold keeps
        the price it was corrected at."""
        given = {(p.pool, p.start): p for p in prices}
        self._prices.update(given)
        for account in (*self._accounts.values(), *self._closed.values()):
            account.prices.update(given)

    def spent(
        self,
        budgets: tuple[cache_.CachedBudget, ...],
        statuses: Mapping[tuple[str, str], Mapping[str, Any]],
        pods: tuple[cache_.CachedPod, ...],
        now: datetime.datetime,
    ) -> dict[tuple[str, str], Spend]:
        """Spend per budget (namespace, name) in its current period, corrected to the bill
        where reconciled."""
        live = {(b.namespace, b.name) for b in budgets}
        for key in [k for k in self._accounts if k not in live]:
            del self._accounts[key]
        for key in [k for k in self._closed if k not in live]:
            del self._closed[key]
        for budget in budgets:
            key = (budget.namespace, budget.name)
            start, end = convert.period_bounds(budget.spec.period, now)
            account = self._accounts.get(key)
            if account is None or account.period_start != start:
                status = statuses.get(key) or {}
                previous = convert.period_bounds(
                    budget.spec.period, start - datetime.timedelta(microseconds=1)
                )
                closed = (
                    account
                    if account is not None and account.period_start == previous[0]
                    else _closed(key, previous, status, pods, currency=budget.spec.currency)
                )
                if closed is None:
                    self._closed.pop(key, None)
                else:
                    self._closed[key] = closed
                    closed.prices.update(self._prices)
                account = self._accounts[key] = _opened(
                    key, start, end, status, pods, currency=budget.spec.currency
                )
                account.prices.update(self._prices)
            account.currency = budget.spec.currency
            if key in self._closed:
                self._closed[key].currency = budget.spec.currency
        return {key: account.billing().spent for key, account in self._accounts.items()}

    def charge(
        self,
        budget_keys: Iterable[str],
        spend: Spend,
        at: datetime.datetime,
        pool: str | None = None,
    ) -> None:
        """Add ``spend`` (of a placement in ``pool``) to each budget ``namespace/name`` of
        ``budget_keys`` we keep."""
        for text in budget_keys:
            namespace, _, name = text.partition("/")
            account = self._accounts.get((namespace, name))
            if account is None or at < account.period_start:
                continue
            account.add(spend, at, pool)

    def account(self, key: tuple[str, str]) -> Account | None:
        """The account of budget ``key`` (namespace, name), once ``spent`` has opened it."""
        return self._accounts.get(key)

    def closed(self, key: tuple[str, str]) -> Account | None:
        """The account of budget ``key``'s period before the current one, if it had one."""
        return self._closed.get(key)


def _closed(
    key: tuple[str, str],
    bounds: tuple[datetime.datetime, datetime.datetime],
    status: Mapping[str, Any],
    pods: tuple[cache_.CachedPod, ...],
    *,
    currency: str,
) -> Account | None:
    """The account of budget ``key``'s ended period ``bounds`` after a restart: from the
    status when it is still of that period (the rollover not written yet), else from the
    ``previousPeriod`` written for it; None when neither is."""
    start, end = bounds
    if timestamps.parse_rfc3339(status.get("periodStart")) == start:
        return _opened(key, start, end, status, pods, currency=currency)
    kept = _mapping(status.get("previousPeriod"))
    if timestamps.parse_rfc3339(kept.get("periodStart")) != start:
        return None
    # Its money as written includes the correction written with it, as in _opened.
    return _opened(
        key,
        start,
        end,
        {**kept, "spent": {"money": kept.get("money")}, "chargedThrough": None},
        (),
        currency=currency,
    )


def _opened(
    key: tuple[str, str],
    start: datetime.datetime,
    end: datetime.datetime,
    status: Mapping[str, Any],
    pods: tuple[cache_.CachedPod, ...],
    *,
    currency: str,
) -> Account:
    """The account of budget ``key`` from its status (when it is of this period), plus the
    signed records of placements newer than the status."""
    account = Account(start, Spend(), None, currency)
    if timestamps.parse_rfc3339(status.get("periodStart")) == start:
        amounts = _mapping(status.get("spent"))
        # spent.money includes the correction written with it: the account keeps the money
        # charged at the pools' prices, and corrects it again.
        correction = status.get("correction")
        if (
            isinstance(correction, bool)
            or not isinstance(correction, int | float)
            or not math.isfinite(correction)
        ):
            correction = 0.0
        money = _amount(amounts, "money") - correction
        account.spent = Spend(
            max(0.0, money) if math.isfinite(money) else 0.0,
            _amount(amounts, "kgCO2e"),
            _amount(amounts, "kWh"),
        )
        account.charged_through = timestamps.parse_rfc3339(status.get("chargedThrough"))
        account.usage = _usage(status.get("charges"))
        account.prices = _prices(status.get("billed"))
    through = account.charged_through
    name = f"{key[0]}/{key[1]}"
    for pod in pods:
        record = pod.record  # signed by greenplace, else None
        if record is None or name not in (record.get("budgets") or []):
            continue
        at = timestamps.parse_rfc3339(record.get("at"))
        if at is None or not start <= at < end or (through is not None and at <= through):
            continue
        charged = _mapping(record.get("charge"))
        spend = Spend(
            _amount(charged, "money"),
            _amount(charged, "kgCO2e"),
            _amount(charged, "kWh"),
            _amount(charged, "gpuHours"),
        )
        pool = record.get("pool")
        account.add(spend, at, pool if isinstance(pool, str) else None)
    return account


def _usage(rows: Any) -> dict[billed_.UsageKey, billed_.Usage]:
    """``status.charges`` as written (rows that do not parse are dropped)."""
    usage: dict[billed_.UsageKey, billed_.Usage] = {}
    for given in rows if isinstance(rows, list) else ():
        row = _mapping(given)
        month, pool = timestamps.parse_rfc3339(row.get("month")), row.get("pool")
        if month is None or not isinstance(pool, str):
            continue
        key = (pool, billed_.month_of(month))
        usage[key] = usage.get(key, billed_.Usage()) + billed_.Usage(
            _amount(row, "gpuHours"), _amount(row, "money")
        )
    return usage


def _prices(rows: Any) -> dict[tuple[str, datetime.datetime], billed_.Price]:
    """The prices ``status.billed`` was corrected at (rows that do not parse are dropped)."""
    prices = {}
    for given in rows if isinstance(rows, list) else ():
        row = _mapping(given)
        start = timestamps.parse_rfc3339(row.get("periodStart"))
        end = timestamps.parse_rfc3339(row.get("periodEnd"))
        pool, currency = row.get("pool"), row.get("currency")
        fingerprint = row.get("fingerprint")
        if (
            start is None
            or end is None
            or not isinstance(pool, str)
            or not isinstance(currency, str)
            or not isinstance(fingerprint, str)
            or "effectivePerGpuHour" not in row
        ):
            continue
        per_gpu_hour = billed_.to_decimal(_amount(row, "effectivePerGpuHour"))
        prices[(pool, start)] = billed_.Price(pool, start, end, currency, per_gpu_hour, fingerprint)
    return prices


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _amount(values: Mapping[str, Any], unit: str) -> float:
    value = values.get(unit)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if math.isfinite(value) and value >= 0 else 0.0


def charge(pod: cache_.CachedPod, pool: model.Pool, effective_gco2_per_kwh: float | None) -> Spend:
    """What ``pod``, placed in ``pool`` when the effective intensity (grid x PUE) was
    ``effective_gco2_per_kwh`` (None: unknown), is charged: the planner's estimate of its
    expected run there."""
    # The planner projects on-demand prices in the operator: ``controller.snapshot`` builds
    # every workload with ``spot`` False (no pod says it accepts preemption).
    rate = objective.rate(pool, spot=False, carbon_price_per_tco2e=0.0)
    grid = (
        None
        if effective_gco2_per_kwh is None or pool.pue <= 0
        else effective_gco2_per_kwh / pool.pue
    )
    gpu_hours = pod.gpus * convert.timing(pod.annotations).duration_hours
    estimate = objective.estimate(rate, gpu_hours, grid)
    return Spend(estimate.cost, estimate.kgco2e, estimate.kwh, gpu_hours)


def domain_budgets(
    budgets: tuple[cache_.CachedBudget, ...],
    spent: Mapping[tuple[str, str], Spend],
    now: datetime.datetime,
) -> tuple[model.Budget, ...]:
    return tuple(
        convert.budget_to_domain(
            b.namespace,
            b.name,
            b.spec,
            money_spent=spent[(b.namespace, b.name)].money,
            kgco2e_spent=spent[(b.namespace, b.name)].kg_co2e,
            kwh_spent=spent[(b.namespace, b.name)].kwh,
            period_end=convert.period_bounds(b.spec.period, now)[1],
        )
        for b in sorted(budgets, key=lambda b: (b.namespace, b.name))
    )


def _burns(
    spec: models.BudgetSpec, spent: Spend, now: datetime.datetime
) -> dict[str, tuple[float | None, burn.BudgetFigures]]:
    """Per unit (``BudgetAmounts`` field): its limit (None: none set) and its linear burn this
    period (against a limit of 1 when none is set: only the forecast then means anything)."""
    start, end = convert.period_bounds(spec.period, now)
    limits = spec.limits
    return {
        unit: (cap, burn.burn(value, cap or 1.0, start, end, now))
        for unit, value, cap in (
            ("money", spent.money, limits.money),
            ("kg_co2e", spent.kg_co2e, limits.kg_co2e),
            ("kwh", spent.kwh, limits.kwh),
        )
    }


def figures(
    spec: models.BudgetSpec, spent: Spend, now: datetime.datetime
) -> dict[str, burn.BudgetFigures]:
    """The figures of each limit set, unrounded, keyed by its unit (the Budget's currency,
    kgCO2e or kWh): what the ``greenplace_budget_*`` gauges publish."""
    units = {"money": spec.currency, "kg_co2e": "kgCO2e", "kwh": "kWh"}
    return {units[u]: f for u, (cap, f) in _burns(spec, spent, now).items() if cap is not None}


def status(
    cached: cache_.CachedBudget,
    spent: Spend,
    now: datetime.datetime,
    charged_through: datetime.datetime | None = None,
    account: Account | None = None,
    *,
    closed: Account | None = None,
) -> tuple[models.BudgetStatus, list[str]]:
    """The status of a Budget (its conditions aside), and the limits reached (for the Exceeded
    condition). Every unit is set, a limit the spec does not have as None: the body is a merge
    patch, so a limit removed from the spec loses its ``remaining`` figure. With the
    ``account`` that ``spent`` comes from, its usage and corrections are set too; with the
    ``closed`` account of the period before, ``previousPeriod``."""
    start, end = convert.period_bounds(cached.spec.period, now)
    amounts = {"money": spent.money, "kg_co2e": spent.kg_co2e, "kwh": spent.kwh}
    forecast: dict[str, float] = {}
    remaining: dict[str, float | None] = {}
    reached = []
    for unit, (cap, burned) in _burns(cached.spec, spent, now).items():
        value = amounts[unit]
        # Three significant figures: the linear forecast drifts every second while spending
        # is flat; unrounded, it would rewrite the status every cycle.
        forecast[unit] = float(f"{burned.forecast_at_end:.3g}")
        remaining[unit] = None if cap is None else round(burned.remaining, 6)
        if cap is not None and value >= cap - 1e-9:
            wire = models.BudgetAmounts.model_fields[unit].alias or unit
            reached.append(f"{wire} {value:.2f} of {cap:g}")
    body = models.BudgetStatus(
        observed_generation=cached.generation,
        period_start=start,
        period_end=end,
        spent=models.BudgetAmounts(**{unit: round(v, 6) for unit, v in amounts.items()}),
        forecast_at_period_end=models.BudgetAmounts(**forecast),
        remaining=models.BudgetAmounts(**remaining),
        charged_through=charged_through,
        **({} if account is None else _billing_fields(account)),
        # Always set: the body is a merge patch, and null removes a period no longer kept.
        previous_period=None if closed is None else _previous(closed, start),
    )
    return body, reached


# Prices are kept to nine decimals: a restarted operator corrects at the price it wrote, within
# a cent up to 10 million GPU-hours.
_PRICE_DIGITS = 9


def _previous(closed: Account, end: datetime.datetime) -> models.BudgetPreviousPeriod:
    fields = _billing_fields(closed)
    money = round(closed.billing().spent.money, 6)
    return models.BudgetPreviousPeriod(
        period_start=closed.period_start, period_end=end, money=money, **fields
    )


def _billing_fields(account: Account) -> dict[str, Any]:
    billing = account.billing()
    return {
        "charges": [
            models.BudgetCharge(
                pool=pool, month=month, gpu_hours=round(used.gpu_hours, 6),
                money=round(used.money, 6),
            )
            for (pool, month), used in sorted(account.usage.items())
        ],
        "billed": [
            models.BudgetBilled(
                pool=c.price.pool,
                period_start=c.price.start,
                period_end=c.price.end,
                currency=c.price.currency,
                gpu_hours=round(float(c.gpu_hours), 6),
                charged=round(float(c.charged), 6),
                effective_per_gpu_hour=round(float(c.price.per_gpu_hour), _PRICE_DIGITS),
                billed=round(float(c.billed), 6),
                correction=round(float(c.amount), 6),
                fingerprint=c.price.fingerprint,
            )
            for c in billing.corrections
        ],
        "correction": round(billing.correction, 6),
    }  # fmt: skip


def reconciled_condition(account: Account | None) -> tuple[bool, str, str]:
    """The ``Reconciled`` condition of a Budget: whether every charge of this period with
    GPU-hours is repriced at its billing period's effective price."""
    if account is None or not any(u.gpu_hours > 0 for u in account.usage.values()):
        return (False, "NoCharges", "no placement charged this period yet")
    billing = account.billing()
    done = ", ".join(
        f"{c.price.pool} {c.price.start:%Y-%m-%d}/{c.price.end:%Y-%m-%d} "
        f"({c.amount:+.2f} {c.price.currency})"
        for c in billing.corrections
    )
    if billing.waiting:
        pending = ", ".join(f"{pool} {month:%Y-%m}" for pool, month in billing.waiting)
        return (
            False,
            "AwaitingBill",
            f"charged at the pools' prices, no reconciled bill in {account.currency} yet for "
            f"{pending}" + (f"; reconciled: {done}" if done else ""),
        )
    return (True, "Reconciled", f"corrected to the bill: {done}")


@dataclasses.dataclass(frozen=True)
class Alerts:
    """Where a Budget stands against its ``alertThresholds`` this period."""

    ratio: float  # the highest spent / limit over the limits set
    crossed: tuple[float, ...]  # thresholds announced this period, ascending (status field)
    new: tuple[float, ...]  # of those, the ones not announced before: one Event each
    condition: tuple[bool, str, str]  # ThresholdReached: status, reason, message
    messages: dict[float, str]  # the Event message of each new threshold


def alerts(
    spec: models.BudgetSpec,
    spent: Spend,
    statuses: Iterable[Mapping[str, Any]],
    now: datetime.datetime,
) -> Alerts:
    """Which of ``spec.alertThresholds`` ``spent`` reaches, and which of them none of the
    Budget's ``statuses`` (as read and as last written, wire names) announced this period."""
    start, _ = convert.period_bounds(spec.period, now)
    thresholds = sorted(set(spec.alert_thresholds))
    announced = set()
    for status in statuses:
        recorded = status.get("alertedThresholds")
        if timestamps.parse_rfc3339(status.get("periodStart")) == start and isinstance(
            recorded, list
        ):
            announced |= {t for t in thresholds if t in recorded}
    limits = spec.limits
    caps = {"money": limits.money, "kgCO2e": limits.kg_co2e, "kWh": limits.kwh}
    values = {"money": spent.money, "kgCO2e": spent.kg_co2e, "kWh": spent.kwh}
    units = {"money": spec.currency, "kgCO2e": "kgCO2e", "kWh": "kWh"}
    set_caps = [(w, c) for w, c in caps.items() if c is not None and c > 0]
    if not set_caps:  # the API server refuses it (CEL), pydantic alone does not
        condition = (False, "NoLimits", "spec.limits sets no limit")
        return Alerts(0.0, tuple(sorted(announced)), (), condition, {})
    # The limit furthest spent decides (a threshold is a fraction of every limit).
    wire, cap = max(set_caps, key=lambda item: values[item[0]] / item[1])
    value = values[wire]

    def text(threshold: float) -> str:
        return (
            f"{threshold * 100:g}% of {cap:.10g} {units[wire]} spent this {spec.period} "
            f"({value:.2f})"
        )

    # Announced stays announced this period, even when a raised limit lowers the ratio.
    reached = [t for t in thresholds if value >= t * cap - 1e-9]
    crossed = tuple(sorted({*reached, *announced}))
    new = tuple(t for t in reached if t not in announced)
    if reached:
        condition = (True, "AlertThreshold", text(reached[-1]))
    elif thresholds:
        condition = (
            False,
            "BelowThresholds",
            f"{value / cap:.0%} of {cap:.10g} {units[wire]} spent this {spec.period}, below "
            f"{thresholds[0] * 100:g}%",
        )
    else:
        condition = (False, "NoThresholds", "spec.alertThresholds is empty")
    return Alerts(value / cap, crossed, new, condition, {t: text(t) for t in new})
