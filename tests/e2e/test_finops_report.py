"""Open ``greenplace finops reconcile -o html`` in headless Chromium and read what it renders.

Why this test exists: the page is what a FinOps team mails around; only a browser says what it
shows. The example fleet's export is reconciled twice, once as ``-o html`` (loaded from disk,
no network: the page is self-contained) and once as ``-o json`` (exact amounts); the text of
every rendered cell (``innerText``, as laid out) is compared with the JSON's amounts rounded to
the cent, and every table is checked to be laid out with a size.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

from greenplace.cli import main as cli
from tests import chromium
from tests.chromium import Session

DATA = pathlib.Path(__file__).resolve().parents[1] / "data" / "focus"
ARGS = ["finops", "reconcile", "--file", str(DATA / "example-fleet.csv"),
        "--pools", str(DATA / "pools.yaml")]  # fmt: skip
CELLS = """
JSON.stringify(Array.from(document.querySelectorAll('table')).map(t => {
  const r = t.getBoundingClientRect();
  return {id: t.id, width: r.width, height: r.height,
          rows: Array.from(t.querySelectorAll('tbody tr')).map(
            tr => Array.from(tr.children).map(td => td.innerText))};
}))
"""


def _run(*extra: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([*ARGS, *extra]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    path = tmp_path_factory.mktemp("finops") / "reconcile.html"
    path.write_text(_run("-o", "html"))
    with chromium.open_page(path, tmp_path_factory.mktemp("chromium-profile")) as session:
        session.wait_loaded()
        yield session


def _cents(exact: str) -> str:
    return f"{Decimal(exact).quantize(Decimal('0.01'), ROUND_HALF_EVEN):,}"


def test_every_cell_shows_the_exact_figures_rounded(page: Session) -> None:
    document: dict[str, Any] = json.loads(_run("-o", "json"))
    tables = {t["id"]: t for t in json.loads(page.evaluate(CELLS))}
    assert set(tables) == {"pools", "accounts"}
    for table in tables.values():
        assert table["width"] > 300 and table["height"] > 50, table["id"]
    pools = [
        [p["pool"], f"{p['start'][:10]}/{p['end'][:10]}", _cents(p["list"]),
         _cents(p["effective"]), _cents(p["billed"])]
        for period in document["periods"]
        for p in ({**q, "start": period["start"], "end": period["end"]}
                  for q in period["pools"])
    ]  # fmt: skip
    shown = [[r[0], r[1], r[3], r[4], r[5]] for r in tables["pools"]["rows"]]
    assert shown == pools
    prices = [r[7] for r in tables["pools"]["rows"]]
    expected = [
        f"{Decimal(p['effectivePerGpuHour']).quantize(Decimal('0.0001'), ROUND_HALF_EVEN)} EUR"
        for period in document["periods"]
        for p in period["pools"]
    ]
    assert prices == expected
    accounts = [
        [a["account"], f"{_cents(a['total']['billed'])} EUR"]
        for period in document["periods"]
        for a in period["accounts"]
    ]
    assert [[r[1], r[2]] for r in tables["accounts"]["rows"]] == accounts
