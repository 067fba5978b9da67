"""FOCUS billing exports reconciled with the pools (issue 18): totals to the cent, effective
prices by hand, and every bad input of the issue refused or reported, never double-counted.

The export is tests/data/focus/example-fleet.csv (FOCUS 1.2 columns, written for the example
fleet: its README says what each row stands for), its pools tests/data/focus/pools.yaml. The
Parquet cases write the same rows with Parquet's own types (decimal128 amounts, timestamps, a
map of tags), as a provider's Parquet export carries them. The export's totals are summed here
with the standard csv module and Decimal, independently of the module under test.
"""

from __future__ import annotations

import csv
import datetime
import html.parser
import json
import pathlib
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from greenplace.accounting import focus
from greenplace.cli import finops
from greenplace.cli import main as cli
from greenplace.controller import billing
from greenplace.controller import cache as cache_
from tests import fakes

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "focus"
EXPORT = DATA / "example-fleet.csv"
POOLS = DATA / "pools.yaml"
NOV = "2026-11-01/2026-12-01"
DEC = "2026-12-01/2027-01-01"
NOW = datetime.datetime(2027, 1, 5, tzinfo=datetime.UTC)
# When --focus-export's files are listed again (billing.shorthand).
INTERVAL = datetime.timedelta(seconds=10)


def _rows(path: pathlib.Path = EXPORT) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as text:
        return list(csv.DictReader(text))


def _write(path: pathlib.Path, rows: Sequence[dict[str, str]], columns: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as text:
        writer = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: row.get(c, "") for c in columns} for row in rows)


def _reconcile(*paths: pathlib.Path, reconciled: Any = None) -> focus.Reconciliation:
    pools = finops._pools_file(POOLS)
    return focus.reconcile(focus.read_export(list(paths)), focus.claims_of(pools), reconciled)


def _pool(result: focus.Reconciliation, name: str, period: str) -> focus.PoolPeriod:
    (found,) = [p for p in result.pools if p.pool == name and str(p.period) == period]
    return found


def _account(result: focus.Reconciliation, account: str, period: str) -> focus.AccountPeriod:
    (found,) = [a for a in result.accounts if a.account == account and str(a.period) == period]
    return found


def _parquet(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """``source``'s rows as a provider's Parquet: decimal amounts, UTC timestamps, map tags."""
    money = pa.decimal128(20, 10)
    types: dict[str, pa.DataType] = {
        "BilledCost": money, "EffectiveCost": money, "ListCost": money,
        "ConsumedQuantity": money,
        "BillingPeriodStart": pa.timestamp("s", tz="UTC"),
        "BillingPeriodEnd": pa.timestamp("s", tz="UTC"),
        "ChargePeriodStart": pa.timestamp("s", tz="UTC"),
        "ChargePeriodEnd": pa.timestamp("s", tz="UTC"),
        "Tags": pa.map_(pa.string(), pa.string()),
    }  # fmt: skip
    rows = _rows(source)

    def value(column: str, text: str) -> Any:
        if text == "":
            return None
        kind = types.get(column)
        if kind == money:
            return Decimal(text)
        if column == "Tags":
            return list(json.loads(text).items())
        if kind is not None:
            return datetime.datetime.fromisoformat(text)
        return text

    columns = list(rows[0])
    table = pa.table(
        {
            c: pa.array([value(c, r[c]) for r in rows], type=types.get(c, pa.string()))
            for c in columns
        }
    )
    pq.write_table(table, target)
    return target


# ---------------------------------------------------------------- totals to the cent


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_totals_equal_the_exports_to_the_cent_per_period_and_account(
    form: str, tmp_path: pathlib.Path
) -> None:
    path = EXPORT if form == "csv" else _parquet(EXPORT, tmp_path / "fleet.parquet")
    result = _reconcile(path)
    expected: dict[tuple[str, str], list[Decimal]] = {}
    for row in _rows():
        key = (f"{row['BillingPeriodStart'][:10]}/{row['BillingPeriodEnd'][:10]}",
               row["BillingAccountId"])  # fmt: skip
        sums = expected.setdefault(key, [Decimal(0)] * 3)
        for i, column in enumerate(("BilledCost", "EffectiveCost", "ListCost")):
            sums[i] += Decimal(row[column])
    assert {(str(a.period), a.account) for a in result.accounts} == set(expected)
    for account in result.accounts:
        billed, effective, listed = expected[(str(account.period), account.account)]
        # The parts (pools, kept apart, remainder) add up to the export, every amount exactly.
        parts = sum(account.parts.values(), focus.Costs())
        assert (parts.billed, parts.effective, parts.listed) == (billed, effective, listed)
        assert account.total == parts
        assert finops.cents(parts.billed) == finops.cents(billed)
    # The sums the export's invoices carry, by hand from the rows.
    assert _account(result, "acct-100", NOV).total.billed == Decimal("1971.2156789")
    assert _account(result, "acct-200", NOV).total.billed == Decimal("216.00") + Decimal("43.20")


def test_the_parts_kept_apart_and_the_remainder_are_shown() -> None:
    parts = _account(_reconcile(EXPORT), "acct-100", NOV).parts
    assert parts["commitment_purchases"].billed == Decimal("1000.00")  # amortised in usage
    assert parts["unused_commitments"] == focus.Costs(Decimal(0), Decimal("78.00"), Decimal(0))
    assert parts["credits"].billed == Decimal("-50.00")
    assert parts["taxes"].billed == Decimal("325.14")
    assert parts["support"].billed == Decimal("100.00")
    assert parts["adjustments"].billed == Decimal("4.99")
    assert parts["unclaimed"].billed == Decimal("12.34")  # the web tier's CPU instance
    # The pools' part: every usage row of the two pools' rules, the correction included.
    assert parts["pool"].billed == (
        Decimal("432.00") + Decimal("0.00") + Decimal("40.00") + Decimal("68.40")
        + Decimal("38.00") + Decimal("12.3456789") - Decimal("12.00")
    )  # fmt: skip


# ---------------------------------------------------------------- effective prices by hand


def test_each_pools_effective_price_by_hand_on_two_rows() -> None:
    result = _reconcile(EXPORT)
    # frankfurt-l40s, November: i-fra-1 spot 10 h (68.40) and i-fra-2 on demand 5 h (38.00),
    # 4 GPUs per instance-hour.
    frankfurt = _pool(result, "frankfurt-l40s", NOV)
    assert frankfurt.gpu_hours == (10 + 5) * 4
    assert frankfurt.effective_per_gpu_hour == (Decimal("68.40") + Decimal("38.00")) / 60
    assert frankfurt.per_gpu_hour(frankfurt.costs.listed) == (Decimal("76.00") + 38) / 60
    # paris-h100, December: i-paris-1 on demand 10 h (180.00) and i-paris-2 on the commitment
    # 24 h (billed 0.00, amortised 312.00), 8 GPUs per instance-hour.
    paris = _pool(result, "paris-h100", DEC)
    assert paris.gpu_hours == (10 + 24) * 8
    assert paris.effective_per_gpu_hour == (Decimal("180.00") + Decimal("312.00")) / 272
    assert paris.costs.billed == Decimal("180.00") + Decimal("0.00")


def test_a_pools_period_with_commitments_storage_egress_and_a_correction() -> None:
    """paris-h100 in November over both accounts: 24 h on demand, 48 h on the commitment,
    12 h in acct-200; its disks and egress cost but count no GPU-hour; the unused commitment
    hours are kept apart though tagged for the pool; October's correction lowers it."""
    paris = _pool(_reconcile(EXPORT), "paris-h100", NOV)
    assert paris.gpu_hours == (24 + 48 + 12) * 8
    effective = (
        Decimal("432.00") + Decimal("624.00") + Decimal("40.00") + Decimal("12.3456789")
        - Decimal("12.00") + Decimal("216.00")
    )  # fmt: skip
    assert paris.costs.effective == effective
    assert paris.effective_per_gpu_hour == effective / 672
    assert paris.charges == 6


# ---------------------------------------------------------------- bad input


def test_a_missing_required_column_is_named_with_the_file(tmp_path: pathlib.Path) -> None:
    rows = _rows()
    columns = [c for c in rows[0] if c != "EffectiveCost"]
    _write(bad := tmp_path / "bad.csv", rows, columns)
    with pytest.raises(focus.FocusError, match=rf"^{bad}: no EffectiveCost column"):
        focus.read_export([bad])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("BilledCost", "12,5 EUR", r"row 3: BilledCost '12,5 EUR' is not a number"),
        ("EffectiveCost", "NaN", r"row 3: EffectiveCost 'NaN' is not a number"),
        ("ListCost", "", r"row 3: ListCost is empty"),
        ("ChargePeriodStart", "yesterday", r"row 3: ChargePeriodStart 'yesterday' is not a date"),
        ("ChargeCategory", "Refund", r"row 3: ChargeCategory 'Refund' is not one of FOCUS's"),
        ("BillingCurrency", "euro", r"row 3: BillingCurrency 'euro' is not an ISO 4217 code"),
        ("Tags", "{team: ml", r"row 3: Tags is not a JSON object"),
        ("ChargePeriodEnd", "2026-10-01T00:00:00Z", r"row 3: a period that ends before"),
    ],
)
def test_a_malformed_row_is_refused_naming_file_row_and_column(
    column: str, value: str, message: str, tmp_path: pathlib.Path
) -> None:
    rows = _rows()
    rows[2][column] = value
    _write(bad := tmp_path / "bad.csv", rows, list(rows[0]))
    with pytest.raises(focus.FocusError, match=rf"^{bad}: {message}"):
        focus.read_export([bad])


def test_a_row_with_too_few_fields_is_refused(tmp_path: pathlib.Path) -> None:
    (bad := tmp_path / "bad.csv").write_text(EXPORT.read_text() + "1.00,acct-100\n")
    with pytest.raises(focus.FocusError, match=rf"^{bad}: malformed: .*columns"):
        focus.read_export([bad])


def test_two_currencies_are_refused(tmp_path: pathlib.Path) -> None:
    rows = _rows()
    rows[5]["BillingCurrency"] = "USD"
    _write(bad := tmp_path / "two.csv", rows, list(rows[0]))
    with pytest.raises(focus.FocusError, match=r"two billing currencies, EUR .* and USD .*row 6"):
        _reconcile(bad)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("header only", r"{f}: no charges; fix: give a FOCUS export"),
        ("empty file", r"{f}: empty; fix: give a FOCUS export with its header row"),
        ("a column twice", r"{f}: a column appears twice in the header"),
        ("CSV named .parquet", r"{f}: not a readable Parquet file: "),
        ("Parquet without EffectiveCost", r"{f}: no EffectiveCost column \(FOCUS 1.0 to 1.2"),
    ],
)
def test_a_file_that_is_no_focus_export_is_refused_naming_it(
    case: str, message: str, tmp_path: pathlib.Path
) -> None:
    header = EXPORT.read_text().splitlines()[0]
    bad = tmp_path / ("bad.parquet" if "arquet" in case else "bad.csv")
    if case == "header only":
        bad.write_text(header + "\n")
    elif case == "empty file":
        bad.write_text("")
    elif case == "a column twice":
        bad.write_text(header + ",Tags\n")
    elif case == "CSV named .parquet":
        bad.write_text(EXPORT.read_text())
    else:
        table = pq.read_table(_parquet(EXPORT, tmp_path / "whole.parquet"))
        pq.write_table(table.drop_columns(["EffectiveCost"]), bad)
    with pytest.raises(focus.FocusError, match="^" + message.format(f=re.escape(str(bad)))):
        _reconcile(bad)


def test_two_currencies_across_a_csv_and_a_parquet_file_name_both(tmp_path: pathlib.Path) -> None:
    rows = _rows()
    for row in rows:
        row["BillingCurrency"] = "USD"
    _write(usd := tmp_path / "usd.csv", rows, list(rows[0]))
    eur = _parquet(EXPORT, tmp_path / "eur.parquet")
    with pytest.raises(focus.FocusError, match=rf"two billing currencies, EUR \({eur}: row 1\) "
                       rf"and USD \({usd}: row 1\)"):  # fmt: skip
        _reconcile(eur, usd)


def test_a_charge_no_pool_claims_is_the_reported_remainder() -> None:
    # Without pools, every pool charge of the export is the remainder: nothing is lost.
    alone = focus.reconcile(focus.read_export([EXPORT]), [])
    claimed = _reconcile(EXPORT)
    none = focus.Costs(Decimal(0), Decimal(0), Decimal(0))
    for before, after in zip(claimed.accounts, alone.accounts, strict=True):
        assert before.total == after.total
        assert "pool" not in after.parts
        was = before.parts.get("unclaimed", none).billed + before.parts.get("pool", none).billed
        assert after.parts["unclaimed"].billed == was
    assert alone.pools == ()


def test_duplicated_rows_count_once(tmp_path: pathlib.Path) -> None:
    once = _reconcile(EXPORT)
    rows = _rows()
    _write(repeated := tmp_path / "repeated.csv", [*rows, rows[0], rows[5]], list(rows[0]))
    for result, duplicates in ((_reconcile(EXPORT, EXPORT), len(rows)), (_reconcile(repeated), 2)):
        assert result.duplicates == duplicates
        assert result.accounts == once.accounts
        assert result.pools == once.pools


def test_a_charge_two_pools_claim_is_refused() -> None:
    pools = finops._pools_file(POOLS)
    claims = focus.claims_of(pools)
    greedy = focus.claims_of([(name, spec) for name, spec in pools if name == "paris-h100"])[0]
    twin = focus.PoolClaim("paris-twin", "EUR", greedy.match, 8)
    with pytest.raises(focus.FocusError, match=r"row 1: claimed by pools paris-h100 and paris-tw"):
        focus.reconcile(focus.read_export([EXPORT]), [*claims, twin])


def test_a_pool_in_another_currency_is_refused() -> None:
    pools = finops._pools_file(POOLS)
    claims = [
        focus.PoolClaim(c.pool, "USD", c.match, c.gpus_per_consumed_hour)
        if c.pool == "frankfurt-l40s" else c
        for c in focus.claims_of(pools)
    ]  # fmt: skip
    with pytest.raises(focus.FocusError, match=r"pool frankfurt-l40s prices in USD but the exp"):
        focus.reconcile(focus.read_export([EXPORT]), claims)


def test_a_rule_on_a_column_the_export_lacks_is_refused(tmp_path: pathlib.Path) -> None:
    rows = _rows()
    _write(bad := tmp_path / "nosku.csv", rows, [c for c in rows[0] if c != "SkuId"])
    with pytest.raises(focus.FocusError, match=r"pool frankfurt-l40s matches on SkuId but .*no"):
        _reconcile(bad)


def test_a_period_already_reconciled_is_reported_not_applied(tmp_path: pathlib.Path) -> None:
    first = _reconcile(EXPORT)
    november = {p: f for p, f in first.fingerprints.items() if str(p) == NOV}
    again = _reconcile(EXPORT, reconciled=november)
    assert {str(p): changed for p, changed in again.already.items()} == {NOV: False}
    assert {str(a.period) for a in again.accounts} == {DEC}
    assert {str(p.period) for p in again.pools} == {DEC}
    # A November row changed since (a re-issued export): said, still not applied.
    rows = _rows()
    rows[0]["BilledCost"] = "431.00"
    _write(reissued := tmp_path / "reissued.csv", rows, list(rows[0]))
    changed = _reconcile(reissued, reconciled=november)
    assert {str(p): c for p, c in changed.already.items()} == {NOV: True}
    assert {str(a.period) for a in changed.accounts} == {DEC}


# ---------------------------------------------------------------- the command


def test_the_command_prints_json_with_exact_amounts(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["finops", "reconcile", "--file", str(EXPORT), "--pools", str(POOLS),
                     "-o", "json"])  # fmt: skip
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "FinopsReconciliation" and doc["currency"] == "EUR"
    (november,) = [p for p in doc["periods"] if p["start"].startswith("2026-11")]
    (frankfurt,) = [p for p in november["pools"] if p["pool"] == "frankfurt-l40s"]
    assert Decimal(frankfurt["effectivePerGpuHour"]) == Decimal("106.40") / 60
    (acct,) = [a for a in november["accounts"] if a["account"] == "acct-100"]
    assert acct["total"]["billed"] == "1971.2156789"
    assert acct["parts"]["unclaimed"]["billed"] == "12.34"
    assert acct["corrections"] == 1


def test_the_command_gives_back_its_json_as_reconciled(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["finops", "reconcile", "--file", str(EXPORT), "--pools", str(POOLS)]
    assert cli.main([*args, "-o", "json"]) == 0
    (before := tmp_path / "before.json").write_text(capsys.readouterr().out)
    assert cli.main([*args, "--reconciled", str(before), "-o", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["periods"] == []
    assert f"note: period {NOV} was reconciled before: not applied again" in captured.err


def test_the_command_prints_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["finops", "reconcile", "--file", str(EXPORT), "--pools", str(POOLS)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == list(finops.POOL_HEADER)
    assert any(line.split()[:2] == ["paris-h100", DEC] and "1.8088 EUR" in line for line in lines)
    (acct,) = [line.split() for line in lines if line.startswith(NOV) and "acct-100" in line]
    assert acct[2:4] == ["1,971.22", "EUR"]  # 1971.2156789 to the cent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--file", "/nowhere.csv"], "error: /nowhere.csv: no such file"),
        (["--file", str(POOLS)], f"error: {POOLS}: no BilledCost, "),
        (["--reconciled", str(POOLS)], f"error: {POOLS}: not a `greenplace finops reconcile"),
    ],
)
def test_the_command_fails_in_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["finops", "reconcile", "--pools", str(POOLS)]
    if "--file" not in args:
        base += ["--file", str(EXPORT)]
    assert cli.main([*base, *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_a_pools_file_with_an_invalid_rule_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = POOLS.read_text().replace("tags: {greenplace.dev/pool: paris-h100}", "{}")
    (bad := tmp_path / "pools.yaml").write_text(text)
    assert cli.main(["finops", "reconcile", "--file", str(EXPORT), "--pools", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: GpuPool paris-h100: spec.billing.match: ")
    assert "set at least one of resourceIds" in err and err.count("\n") == 1


def test_the_docs_example_is_what_the_command_prints(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/finops.md shows the command's table on the example fleet: it must stay true."""
    doc = (DATA.parents[2] / "docs" / "finops.md").read_text()
    command = f"$ greenplace finops reconcile --file {EXPORT.relative_to(DATA.parents[2])}"
    shown = doc.split(command, 1)[1].split("\n", 1)[1].split("```", 1)[0]
    assert cli.main(["finops", "reconcile", "--file", str(EXPORT), "--pools", str(POOLS)]) == 0
    assert capsys.readouterr().out == shown


# ---------------------------------------------------------------- the operator's prices


def _cached_pools() -> tuple[cache_.CachedPool, ...]:
    return tuple(cache_.CachedPool(name, 1, spec) for name, spec in finops._pools_file(POOLS))


def test_the_operator_prices_each_claiming_pool_from_the_newest_period() -> None:
    priced = fakes.billing_from_files([EXPORT]).prices(_cached_pools(), (), NOW)
    assert set(priced) == {"paris-h100", "frankfurt-l40s"}  # lab-a100 has no spec.billing
    paris = priced["paris-h100"]
    assert paris.reason == "Reconciled" and paris.status is not None
    assert str(paris.status.period_start.date()) == "2026-12-01"  # the newest of the two
    # December's two rows: (180.00 + 312.00) / ((10 + 24) x 8), to a millionth.
    assert paris.status.effective_per_gpu_hour == round((180.00 + 312.00) / 272, 6)
    assert paris.status.list_per_gpu_hour == round((200.00 + 480.00) / 272, 6)
    assert paris.message == "2 charges of 2026-12-01/2027-01-01: 1.8088 EUR per GPU-hour effective"


def test_the_operator_reads_an_export_again_when_it_changes(tmp_path: pathlib.Path) -> None:
    export = tmp_path / "export.csv"
    export.write_text(EXPORT.read_text())
    prices = fakes.billing_from_files([export])
    before = prices.prices(_cached_pools(), (), NOW)["frankfurt-l40s"].status
    rows = _rows()
    december = [
        r for r in rows if r["ResourceId"] != "i-fra-1" or "2026-12" not in r["ChargePeriodStart"]
    ]
    _write(export, december, list(rows[0]))
    after = prices.prices(_cached_pools(), (), NOW + INTERVAL)["frankfurt-l40s"].status
    assert before is not None and after is not None
    assert (str(before.period_start.date()), str(after.period_start.date())) == (
        "2026-12-01",
        "2026-11-01",  # December's only L40S row is gone: November is the newest
    )


@pytest.mark.parametrize("case", ["two currencies", "a file missing"])
def test_a_refused_export_is_a_reason_on_each_pool_not_a_crash(
    case: str, tmp_path: pathlib.Path
) -> None:
    rows = _rows()
    rows[5]["BillingCurrency"] = "USD" if case == "two currencies" else "EUR"
    _write(export := tmp_path / "export.csv", rows, list(rows[0]))
    exports = [export] if case == "two currencies" else [export, tmp_path / "missing.csv"]
    priced = fakes.billing_from_files(exports).prices(_cached_pools(), (), NOW)
    assert set(priced) == {"paris-h100", "frankfurt-l40s"}
    for found in priced.values():
        assert (found.status, found.reason) == (None, "ExportRefused")
        assert found.message.startswith(
            "two billing currencies"
            if case == "two currencies"
            else f"{billing.SHORTHAND}: {exports[-1]}: no such"
        )


# ---------------------------------------------------------------- -o html


class _Cells(html.parser.HTMLParser):
    """The text of each table's cells, per table id and row; every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.tags: list[str] = []
        self._table = ""
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self._table = dict(attrs)["id"] or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self.tables[self._table].append([])
        elif tag in {"td", "th"}:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in {"td", "th"} and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_html_shows_the_tables_of_the_docs_example(capsys: pytest.CaptureFixture[str]) -> None:
    doc = (DATA.parents[2] / "docs" / "finops.md").read_text()
    command = f"$ greenplace finops reconcile --file {EXPORT.relative_to(DATA.parents[2])}"
    shown = doc.split(command, 1)[1].split("\n", 1)[1].split("```", 1)[0]
    pools_text, accounts_text = shown.strip().split("\n\n")
    assert cli.main(["finops", "reconcile", "--file", str(EXPORT), "--pools", str(POOLS),
                     "-o", "html"]) == 0  # fmt: skip
    page = capsys.readouterr().out
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page
    cells = _Cells()
    cells.feed(page)
    for table, text in (("pools", pools_text), ("accounts", accounts_text)):
        # The documented table, its columns split where two spaces or more separate them.
        expected = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
        assert cells.tables[table] == expected, table


def test_html_escapes_what_the_export_says(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _rows()
    for row in rows:
        if row["BillingAccountId"] == "acct-200":
            row["BillingAccountId"] = "<img src=x onerror=alert(1)>"
    _write(export := tmp_path / "export.csv", rows, list(rows[0]))
    assert cli.main(["finops", "reconcile", "--file", str(export), "--pools", str(POOLS),
                     "-o", "html"]) == 0  # fmt: skip
    page = capsys.readouterr().out
    cells = _Cells()
    cells.feed(page)
    assert "img" not in cells.tags  # shown as text, never a tag
    accounts = {row[1] for row in cells.tables["accounts"]}
    assert "<img src=x onerror=alert(1)>" in accounts
