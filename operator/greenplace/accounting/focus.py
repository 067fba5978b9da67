"""FOCUS billing exports reconciled with greenplace's pools: the cost that adds up to the bill.

Why this module exists: greenplace prices a GPU-hour with the list price typed into each GpuPool,
which is not what finance pays (commitments, negotiated discounts, credits, support, taxes).
FOCUS (the FinOps Foundation's open billing format, 1.0 to 1.2 here) is how the bill arrives.
This module reads an export, gives each charge to the pool whose ``spec.billing.match`` claims
it, keeps apart what no pool should absorb (commitment purchases, unused commitments, credits,
taxes, support fees, adjustments) and what no pool claims (the remainder), and gives each pool
its effective price per GPU-hour per billing period. A FinOps team trusts only a figure that
adds up to the invoice, so every amount is a ``decimal.Decimal`` read from the export's text and
the parts of each period and billing account add up to its BilledCost exactly.

Why pyarrow reads the files (not polars or duckdb): it is the reference Parquet implementation
(the providers' Parquet exports are written with Arrow), it streams CSV and Parquet in record
batches (an export is read batch by batch, not loaded whole into a frame), and it reads object
stores with its own filesystems, where duckdb fetches its httpfs extension from the internet at
run time (an air-gapped operator cannot). Its cost is its size (about 170 MB installed, against
about 70 MB for duckdb), hence the ``finops`` extra: only ``read_export`` imports it.

Amounts never go through a float from CSV: every column is read as text and parsed as a
Decimal. A Parquet double is converted through its shortest repr, the decimal the writer meant.

Which charge goes where (``kind_of``): Tax, Credit and Adjustment charges and support fees
(ServiceSubcategory Support, FOCUS 1.1+, or a ServiceName naming Support) are kept apart; a
Purchase of a commitment (CommitmentDiscountId set) is kept apart, since its cost reaches the
pools amortised in the EffectiveCost of the usage it covers; usage of a commitment left Unused
is kept apart; every other Usage or Purchase charge goes to the one pool that claims it, or to
the remainder. A charge claimed by two pools is refused (it would be counted twice). GPU-hours
are the ConsumedQuantity of a pool's usage charges in hours times ``gpus_per_consumed_hour``.

Duplicates: a row equal, column by column, to one already read (the same export given twice,
overlapping exports) is counted once and reported. A period already reconciled (its fingerprint
given back from an earlier run) is reported and not applied again; if its rows changed since,
it says so instead of silently applying the new figures.
"""

# pyarrow is imported inside the readers on purpose: it is the finops extra (170 MB), and the
# reconcile itself needs none of it.
# ruff: noqa: PLC0415

from __future__ import annotations

import csv
import dataclasses
import datetime
import decimal
import gzip
import hashlib
import json
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from greenplace import errors
from greenplace.api import models

__all__ = [
    "KEPT_APART",
    "REQUIRED_COLUMNS",
    "AccountPeriod",
    "Charge",
    "Costs",
    "Export",
    "FocusError",
    "Format",
    "Kind",
    "Period",
    "PoolClaim",
    "PoolPeriod",
    "Reconciliation",
    "claims_of",
    "fingerprints",
    "kind_of",
    "merge",
    "read_export",
    "reconcile",
]

# FOCUS columns every reconcile needs (mandatory in FOCUS 1.0 to 1.2, ConsumedQuantity and
# ConsumedUnit too where usage is metered, which a GPU-hour needs).
REQUIRED_COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ConsumedQuantity",
    "ConsumedUnit",
    "EffectiveCost",
    "ListCost",
    "ServiceName",
)
# Conditional FOCUS columns: absent from a file, their values are null; a pool rule that
# matches on one of them refuses a file that lacks it (``reconcile``).
_MATCHED_COLUMNS = {
    "resource_ids": "ResourceId",
    "tags": "Tags",
    "region_ids": "RegionId",
    "sku_ids": "SkuId",
    "sub_account_ids": "SubAccountId",
}
_CATEGORIES = frozenset({"Usage", "Purchase", "Tax", "Credit", "Adjustment"})
_HOUR_UNITS = frozenset({"hour", "hours", "hr", "hrs", "h"})
_NULLS = ("NULL", "null", "")

Kind = Literal[
    "pool",
    "commitment_purchases",
    "unused_commitments",
    "credits",
    "taxes",
    "support",
    "adjustments",
    "unclaimed",
]
# The parts of a bill kept apart from the pools, in the order they are shown.
KEPT_APART: tuple[Kind, ...] = (
    "commitment_purchases",
    "unused_commitments",
    "credits",
    "taxes",
    "support",
    "adjustments",
)


class FocusError(errors.GreenplaceError):
    """A billing export cannot be reconciled: the message names the file, the row or column
    and the fix."""


@dataclasses.dataclass(frozen=True, order=True)
class Period:
    """A billing period (BillingPeriodStart to BillingPeriodEnd, end excluded)."""

    start: datetime.datetime
    end: datetime.datetime

    def __str__(self) -> str:
        return f"{_day(self.start)}/{_day(self.end)}"


@dataclasses.dataclass(frozen=True)
class Charge:
    """One row of an export, its amounts exact; ``where`` names its file and row."""

    where: str
    identity: str  # a digest of every column: equal rows are duplicates
    billed: Decimal
    effective: Decimal
    listed: Decimal
    currency: str
    account: str
    period: Period
    category: str
    charge_class: str | None
    service_name: str
    service_subcategory: str | None
    commitment_id: str | None
    commitment_status: str | None
    consumed_quantity: Decimal | None
    consumed_unit: str | None
    resource_id: str | None
    region_id: str | None
    sku_id: str | None
    sub_account_id: str | None
    tags: Mapping[str, str]


@dataclasses.dataclass(frozen=True)
class Export:
    """The charges of one or more files, each distinct row once, and how many repeated."""

    charges: tuple[Charge, ...]
    columns: frozenset[str]  # the columns every file read had
    duplicates: int
    files: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Costs:
    """FOCUS's three amounts: BilledCost (the invoice), EffectiveCost (amortised, after
    discounts) and ListCost (public prices)."""

    billed: Decimal = Decimal(0)
    effective: Decimal = Decimal(0)
    listed: Decimal = Decimal(0)

    def __add__(self, other: Costs) -> Costs:
        return Costs(
            self.billed + other.billed,
            self.effective + other.effective,
            self.listed + other.listed,
        )

    @classmethod
    def of(cls, charge: Charge) -> Costs:
        return cls(charge.billed, charge.effective, charge.listed)


@dataclasses.dataclass(frozen=True)
class PoolClaim:
    """A GpuPool's billing rule, as ``reconcile`` applies it."""

    pool: str
    currency: str
    match: models.BillingMatch
    gpus_per_consumed_hour: int

    def claims(self, charge: Charge) -> bool:
        rule = self.match
        return (
            (rule.resource_ids is None or charge.resource_id in rule.resource_ids)
            and (rule.region_ids is None or charge.region_id in rule.region_ids)
            and (rule.sku_ids is None or charge.sku_id in rule.sku_ids)
            and (rule.sub_account_ids is None or charge.sub_account_id in rule.sub_account_ids)
            and (rule.tags is None or all(charge.tags.get(k) == v for k, v in rule.tags.items()))
        )

    def gpu_hours(self, charge: Charge) -> Decimal:
        if (
            charge.category != "Usage"
            or charge.consumed_quantity is None
            or (charge.consumed_unit or "").strip().lower() not in _HOUR_UNITS
        ):
            return Decimal(0)
        return charge.consumed_quantity * self.gpus_per_consumed_hour


def claims_of(pools: Iterable[tuple[str, models.GpuPoolSpec]]) -> list[PoolClaim]:
    """The billing rules of the pools that have one (``spec.billing``), by pool name."""
    return [
        PoolClaim(
            name, spec.price.currency, spec.billing.match, spec.billing.gpus_per_consumed_hour
        )
        for name, spec in sorted(pools, key=lambda named: named[0])
        if spec.billing is not None
    ]


@dataclasses.dataclass(frozen=True)
class PoolPeriod:
    """A pool's charges in one billing period, and its prices per GPU-hour."""

    pool: str
    period: Period
    gpu_hours: Decimal
    costs: Costs
    charges: int

    def per_gpu_hour(self, amount: Decimal) -> Decimal | None:
        return None if self.gpu_hours == 0 else amount / self.gpu_hours

    @property
    def effective_per_gpu_hour(self) -> Decimal | None:
        """The effective price: EffectiveCost (commitments amortised, discounts applied) over
        the GPU-hours."""
        return self.per_gpu_hour(self.costs.effective)


@dataclasses.dataclass(frozen=True)
class AccountPeriod:
    """One billing account's bill for one period, split into its parts; the parts add up to
    ``total`` exactly (``total`` is summed from the rows, independently of the split)."""

    period: Period
    account: str
    total: Costs
    parts: Mapping[Kind, Costs]
    charges: int
    corrections: int  # ChargeClass Correction rows among them


@dataclasses.dataclass(frozen=True)
class Reconciliation:
    currency: str
    pools: tuple[PoolPeriod, ...]
    accounts: tuple[AccountPeriod, ...]
    fingerprints: Mapping[Period, str]  # of the periods applied here: give back next time
    already: Mapping[Period, bool]  # periods reconciled before -> whether their rows changed
    duplicates: int


# ---------------------------------------------------------------- classifying


def kind_of(charge: Charge) -> Kind:
    """Which part of the bill a charge is, before any pool is asked (the module docstring)."""
    if charge.category == "Tax":
        return "taxes"
    if charge.category == "Credit":
        return "credits"
    if charge.service_subcategory == "Support" or "support" in charge.service_name.lower():
        return "support"
    if charge.category == "Adjustment":
        return "adjustments"
    if charge.category == "Purchase" and charge.commitment_id is not None:
        return "commitment_purchases"
    if charge.commitment_status == "Unused":
        return "unused_commitments"
    return "pool"


def _fingerprint(charges: Iterable[Charge]) -> str:
    digest = hashlib.sha256()
    for identity in sorted(c.identity for c in charges):
        digest.update(identity.encode())
    return digest.hexdigest()


def fingerprints(export: Export) -> dict[Period, str]:
    """Each billing period of ``export``, oldest first, with the fingerprint of its rows (the
    one ``reconcile`` gives: a re-issued period changes it)."""
    by_period: dict[Period, list[Charge]] = {}
    for charge in export.charges:
        by_period.setdefault(charge.period, []).append(charge)
    return {period: _fingerprint(rows) for period, rows in sorted(by_period.items())}


def reconcile(
    export: Export,
    claims: Sequence[PoolClaim],
    reconciled: Mapping[Period, str] | None = None,
) -> Reconciliation:
    """Split ``export`` per billing period and account into the pools' parts, the parts kept
    apart and the remainder; price each pool's GPU-hour. ``reconciled`` maps the periods
    applied before to their fingerprints: those are reported, not applied again."""
    if not export.charges:
        raise FocusError(f"{', '.join(export.files)}: no charges; fix: give a FOCUS export")
    currency = _one_currency(export)
    for claim in claims:
        if claim.currency != currency:
            raise FocusError(
                f"pool {claim.pool} prices in {claim.currency} but the export bills in "
                f"{currency}; fix: reconcile an export in {claim.currency}, or set the pool's "
                f"spec.price.currency to {currency}"
            )
        for field, column in _MATCHED_COLUMNS.items():
            if getattr(claim.match, field) is not None and column not in export.columns:
                raise FocusError(
                    f"pool {claim.pool} matches on {column} but {', '.join(export.files)} has "
                    f"no {column} column; fix: export {column}, or match on another column"
                )
    by_period: dict[Period, list[Charge]] = {}
    for charge in export.charges:
        by_period.setdefault(charge.period, []).append(charge)
    before = reconciled or {}
    already = {
        period: _fingerprint(rows) != before[period]
        for period, rows in by_period.items()
        if period in before
    }
    pools: list[PoolPeriod] = []
    accounts: list[AccountPeriod] = []
    for period, rows in sorted(by_period.items()):
        if period in already:
            continue
        owned = [(charge, _owner(charge, claims)) for charge in rows]
        pools.extend(_pools_of(period, owned, claims))
        accounts.extend(_accounts_of(period, owned))
    return Reconciliation(
        currency=currency,
        pools=tuple(pools),
        accounts=tuple(accounts),
        fingerprints={
            period: _fingerprint(rows)
            for period, rows in sorted(by_period.items())
            if period not in already
        },
        already=already,
        duplicates=export.duplicates,
    )


def _one_currency(export: Export) -> str:
    first = export.charges[0]
    for charge in export.charges:
        if charge.currency != first.currency:
            raise FocusError(
                f"two billing currencies, {first.currency} ({first.where}) and "
                f"{charge.currency} ({charge.where}); amounts in two currencies do not add up: "
                "fix: reconcile each currency's export on its own"
            )
    return first.currency


def _owner(charge: Charge, claims: Sequence[PoolClaim]) -> PoolClaim | None:
    """The one pool that claims ``charge`` (None: the remainder); two refuse the export."""
    if kind_of(charge) != "pool":
        return None
    owners = [claim for claim in claims if claim.claims(charge)]
    if len(owners) > 1:
        names = " and ".join(claim.pool for claim in owners)
        raise FocusError(
            f"{charge.where}: claimed by pools {names}, which would count it twice; fix: "
            "narrow their spec.billing.match so that one pool claims each charge"
        )
    return owners[0] if owners else None


Owned = Sequence[tuple[Charge, PoolClaim | None]]


def _pools_of(period: Period, owned: Owned, claims: Sequence[PoolClaim]) -> Iterator[PoolPeriod]:
    for claim in claims:
        mine = [charge for charge, owner in owned if owner is claim]
        if not mine:
            continue
        yield PoolPeriod(
            pool=claim.pool,
            period=period,
            gpu_hours=sum((claim.gpu_hours(c) for c in mine), Decimal(0)),
            costs=sum((Costs.of(c) for c in mine), Costs()),
            charges=len(mine),
        )


def _accounts_of(period: Period, owned: Owned) -> Iterator[AccountPeriod]:
    by_account: dict[str, list[tuple[Charge, PoolClaim | None]]] = {}
    for charge, owner in owned:
        by_account.setdefault(charge.account, []).append((charge, owner))
    for account, pairs in sorted(by_account.items()):
        parts: dict[Kind, Costs] = {}
        for charge, owner in pairs:
            kind = kind_of(charge)
            if kind == "pool" and owner is None:
                kind = "unclaimed"
            parts[kind] = parts.get(kind, Costs()) + Costs.of(charge)
        charges = [charge for charge, _ in pairs]
        yield AccountPeriod(
            period=period,
            account=account,
            total=Costs(
                sum((c.billed for c in charges), Decimal(0)),
                sum((c.effective for c in charges), Decimal(0)),
                sum((c.listed for c in charges), Decimal(0)),
            ),
            parts=parts,
            charges=len(charges),
            corrections=sum(1 for c in charges if c.charge_class == "Correction"),
        )


# ---------------------------------------------------------------- reading


# How a file is read: by its name (``.parquet`` is Parquet, anything else CSV), or as told.
Format = Literal["Auto", "CSV", "Parquet"]


def read_export(paths: Sequence[pathlib.Path], fmt: Format = "Auto") -> Export:
    """The charges of FOCUS files (``.csv``, ``.csv.gz``, ``.parquet``), each distinct row
    once. Raises ``FocusError`` naming the file and the column or row at fault."""
    seen: set[str] = set()
    charges: list[Charge] = []
    columns: frozenset[str] | None = None
    duplicates = 0
    for path in paths:
        names, records = _records(path, fmt)
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise FocusError(
                f"{path}: no {', '.join(missing)} column (FOCUS 1.0 to 1.2 require it); fix: "
                "export FOCUS with every required column"
            )
        columns = frozenset(names) if columns is None else columns & frozenset(names)
        for number, record in enumerate(records, start=1):
            charge = _charge(record, f"{path}: row {number}")
            if charge.identity in seen:
                duplicates += 1
                continue
            seen.add(charge.identity)
            charges.append(charge)
    return Export(tuple(charges), columns or frozenset(), duplicates, tuple(map(str, paths)))


def merge(exports: Sequence[Export]) -> Export:
    """Several exports as one, each distinct charge once (two exports that overlap, or the
    same file given twice, count nothing twice)."""
    seen: set[str] = set()
    charges: list[Charge] = []
    duplicates = sum(e.duplicates for e in exports)
    for export in exports:
        for charge in export.charges:
            if charge.identity in seen:
                duplicates += 1
                continue
            seen.add(charge.identity)
            charges.append(charge)
    columns = frozenset.intersection(*(e.columns for e in exports)) if exports else frozenset()
    files = tuple(f for e in exports for f in e.files)
    return Export(tuple(charges), columns, duplicates, files)


def _records(path: pathlib.Path, fmt: Format) -> tuple[list[str], Iterator[dict[str, Any]]]:
    """The column names and the rows of ``path``, streamed in record batches (a CSV's rows
    are only parsed once its header has the required columns)."""
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    except ImportError as error:  # the finops extra is not installed
        raise FocusError(
            "reading FOCUS exports needs pyarrow; fix: pip install 'greenplace[finops]'"
        ) from error
    if not path.is_file():
        raise FocusError(f"{path}: no such file")
    if fmt == "Parquet" or (fmt == "Auto" and path.name.endswith(".parquet")):
        try:
            parquet = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as error:
            raise FocusError(f"{path}: not a readable Parquet file: {_first_line(error)}") from None
        return list(parquet.schema_arrow.names), _rows(path, parquet.iter_batches)
    names = _csv_header(path)
    options = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),  # every amount read as text: exact
        null_values=list(_NULLS),
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )
    return names, _rows(path, lambda: pacsv.open_csv(path, convert_options=options))


def _rows(path: pathlib.Path, batches: Callable[[], Iterable[Any]]) -> Iterator[dict[str, Any]]:
    import pyarrow as pa

    try:
        for batch in batches():
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
        raise FocusError(f"{path}: malformed: {_first_line(error)}; fix: re-export it") from None


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


def _csv_header(path: pathlib.Path) -> list[str]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as text:
            header = next(csv.reader(text), None)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise FocusError(f"{path}: not a readable CSV file: {_first_line(error)}") from None
    if not header:
        raise FocusError(f"{path}: empty; fix: give a FOCUS export with its header row")
    if len(set(header)) != len(header):
        raise FocusError(f"{path}: a column appears twice in the header")
    return header


def _identity(record: Mapping[str, Any]) -> str:
    text = json.dumps({k: _text(v) for k, v in record.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _text(value: object) -> object:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return str(value)


def _charge(record: Mapping[str, Any], where: str) -> Charge:
    def text(column: str, required: bool = False) -> str | None:
        value = record.get(column)
        if value is None or (isinstance(value, str) and value.strip() in _NULLS):
            if required:
                raise FocusError(f"{where}: {column} is empty; fix: every charge needs one")
            return None
        return str(value)

    def amount(column: str, required: bool = True) -> Decimal | None:
        raw = record.get(column)
        value = text(column, required)
        if value is None:
            return None
        try:
            number = Decimal(repr(raw) if isinstance(raw, float) else value.strip())
        except decimal.InvalidOperation:
            number = Decimal("NaN")
        if not number.is_finite():
            raise FocusError(f"{where}: {column} {value!r} is not a number")
        return number

    def cost(column: str) -> Decimal:
        number = amount(column)
        assert number is not None  # required
        return number

    category = text("ChargeCategory", required=True) or ""
    if category not in _CATEGORIES:
        raise FocusError(
            f"{where}: ChargeCategory {category!r} is not one of FOCUS's "
            f"({', '.join(sorted(_CATEGORIES))})"
        )
    currency = (text("BillingCurrency", required=True) or "").strip()
    if len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise FocusError(f"{where}: BillingCurrency {currency!r} is not an ISO 4217 code")
    period = Period(
        _instant(record.get("BillingPeriodStart"), "BillingPeriodStart", where),
        _instant(record.get("BillingPeriodEnd"), "BillingPeriodEnd", where),
    )
    charge_start = _instant(record.get("ChargePeriodStart"), "ChargePeriodStart", where)
    charge_end = _instant(record.get("ChargePeriodEnd"), "ChargePeriodEnd", where)
    if not period.start < period.end or not charge_start < charge_end:
        raise FocusError(f"{where}: a period that ends before it starts")
    return Charge(
        where=where,
        identity=_identity(record),
        billed=cost("BilledCost"),
        effective=cost("EffectiveCost"),
        listed=cost("ListCost"),
        currency=currency,
        account=text("BillingAccountId", required=True) or "",
        period=period,
        category=category,
        charge_class=text("ChargeClass"),
        service_name=text("ServiceName") or "",
        service_subcategory=text("ServiceSubcategory"),
        commitment_id=text("CommitmentDiscountId"),
        commitment_status=text("CommitmentDiscountStatus"),
        consumed_quantity=amount("ConsumedQuantity", required=False),
        consumed_unit=text("ConsumedUnit"),
        resource_id=text("ResourceId"),
        region_id=text("RegionId"),
        sku_id=text("SkuId"),
        sub_account_id=text("SubAccountId"),
        tags=_tags(record.get("Tags"), where),
    )


def _instant(value: object, column: str, where: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        at = value
    elif isinstance(value, str) and value.strip() not in _NULLS:
        try:
            at = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            raise FocusError(
                f"{where}: {column} {value!r} is not a date and time (2024-09-01T00:00:00Z)"
            ) from None
    else:
        raise FocusError(f"{where}: {column} is empty; fix: every charge needs one")
    return at.replace(tzinfo=datetime.UTC) if at.tzinfo is None else at.astimezone(datetime.UTC)


def _tags(value: object, where: str) -> Mapping[str, str]:
    """FOCUS Tags: a JSON object in CSV, a map or a struct in Parquet."""
    if value is None or (isinstance(value, str) and value.strip() in _NULLS):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise FocusError(f"{where}: Tags is not a JSON object") from None
    if isinstance(value, list):  # a Parquet map: (key, value) pairs
        value = dict(value)
    if not isinstance(value, dict):
        raise FocusError(f"{where}: Tags is not a JSON object")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _day(at: datetime.datetime) -> str:
    return at.strftime("%Y-%m-%d") if at.time() == datetime.time() else at.isoformat()
