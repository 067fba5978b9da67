"""Open the simulator's HTML report in headless Chromium and check what it renders.

Why this test exists: a report that is a file but draws nothing, or shows other figures than the
run's, is worthless, and only a browser knows. We start Debian's Chromium
(``scripts/ensure-chromium.sh`` installs it) with the DevTools protocol on a loopback port
(``tests.chromium``), load the report from disk, and read the rendered DOM: every chart's lines
and markers measured with ``getBBox`` (non-empty geometry means the browser laid them out) and
its legend; one visible dot per placement inside the plot; every time tick labelled with a day
(or an hour) and drawn where that instant falls on the scenario's window, the same window and
ticks on every chart; every table inside the page, under titles with units, its text as laid out
(``innerText``) compared cell by cell with the JSON record of the same run. A PNG screenshot is
kept next to the report under pytest's tmp dir for a person to look at. No network is used: the
page is self-contained. The test fails, never skips, when Chromium is missing.
"""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
from collections.abc import Iterator

import pytest

from greenplace.cli import main as cli
from tests import chromium
from tests.chromium import Session

REPO = pathlib.Path(__file__).resolve().parents[2]
SCENARIO = REPO / "examples" / "simulate" / "scenario.yaml"
# Every chart as the browser lays it out (CSS pixels): the plotting area, each line, each
# placement marker, the legend and each time tick (its label and the x of its tick mark). The
# parts are found by the ids sim/svg.py gives them (``{chart}-plot``, ``{chart}-series-NAME``,
# ``{chart}-markers``, ``{chart}-legend``, ``{chart}-xaxis``).
MEASURE = """
JSON.stringify(Array.from(document.querySelectorAll('svg.chart')).map(svg => {
  const id = svg.dataset.chart;
  const part = name => svg.querySelector(`[id="${id}-${name}"]`);
  const box = e => { const r = e.getBoundingClientRect();
                     return {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                             width: r.width, height: r.height}; };
  const r = svg.getBoundingClientRect();
  return {
    chart: id, width: r.width, height: r.height,
    plot: box(part('plot').querySelector('path')),
    series: Array.from(svg.querySelectorAll(`g[id^="${id}-series-"] > path`)).map(p => {
      const b = p.getBBox();
      return {name: p.parentNode.id.slice(`${id}-series-`.length), width: b.width,
              height: b.height, points: p.getAttribute('d').split('L').length};
    }),
    markers: part('markers') ? Array.from(part('markers').querySelectorAll('use')).map(box) : [],
    legend: Array.from(part('legend').querySelectorAll('text')).map(t => t.textContent),
    xticks: Array.from(part('xaxis').querySelectorAll(`g[id^="${id}-xtick_"]`)).map(g => {
      const mark = box(g.querySelector('use'));
      return {label: g.querySelector('text').textContent, x: (mark.left + mark.right) / 2};
    }),
  };
}))
"""
# Every table as the browser lays it out: where it is, the heading before it, its cells' text.
TABLES = """
JSON.stringify(Array.from(document.querySelectorAll('table')).map(table => {
  const box = table.getBoundingClientRect();
  return {
    top: box.top + window.scrollY, right: box.right, width: box.width, height: box.height,
    heading: table.previousElementSibling.innerText,
    header: Array.from(table.querySelectorAll('thead th')).map(c => c.innerText),
    rows: Array.from(table.querySelectorAll('tbody tr'))
      .map(row => Array.from(row.cells).map(c => c.innerText)),
  };
}))
"""
CHARTS_BOTTOM = """
Math.max(...Array.from(document.querySelectorAll('svg.chart'))
  .map(svg => svg.getBoundingClientRect().bottom + window.scrollY))
"""
# How wide the page is, and how wide its content: a table wider than the body runs off the page.
PAGE = """
JSON.stringify({body: document.body.getBoundingClientRect().right,
                client: document.documentElement.clientWidth,
                scroll: document.documentElement.scrollWidth})
"""
# The record's totals, in the report's column order, and the titles the report gives them.
COLUMNS = [
    "cost (EUR)", "energy (kWh)", "CO2e (kg)", "GPU-hours", "deadline misses", "never started",
    "held (hours)", "budget overruns", "sovereignty violations", "carbon ceiling breaches",
]  # fmt: skip
FIELDS = (
    "money", "kwh", "kgco2e", "gpu_hours", "deadline_misses", "never_started", "held_hours",
    "budget_overruns", "sovereignty_violations", "ceiling_breaches",
)  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The HTML report of one run, and beside it (``.json``) that run's record."""
    out = tmp_path_factory.mktemp("report")
    html = out / "report.html"
    code = cli.main(
        [
            "simulate",
            str(SCENARIO),
            "--strategies",
            "first-fit,cheapest,lowest-carbon,greenplace",
            "--quiet",
            "--html",
            str(html),
            "--json",
            str(html.with_suffix(".json")),
        ]
    )
    assert code == 0
    return html


@pytest.fixture(scope="module")
def page(report: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    with chromium.open_page(report, tmp_path_factory.mktemp("chromium-profile")) as session:
        yield session


def test_every_chart_draws_its_lines_and_markers(page: Session, report: pathlib.Path) -> None:
    page.wait_loaded()
    charts = {c["chart"]: c for c in json.loads(page.evaluate(MEASURE))}
    assert set(charts) == {"carbon", "cumulative-co2e", "cumulative-money"}
    for chart in charts.values():
        assert chart["width"] > 500 and chart["height"] > 200, chart["chart"]
        assert chart["series"], f"{chart['chart']}: no series drawn"
        for line in chart["series"]:
            assert line["points"] >= 2, (chart["chart"], line)
            assert line["width"] > 100 and line["height"] > 0, (chart["chart"], line)
    assert {s["name"] for s in charts["carbon"]["series"]} == {"DE", "FR", "GB"}
    strategies = {"first-fit", "cheapest", "lowest-carbon", "greenplace"}
    assert {s["name"] for s in charts["cumulative-co2e"]["series"]} == strategies
    assert {s["name"] for s in charts["cumulative-money"]["series"]} == strategies


def test_placement_markers_are_visible_dots_inside_the_plot(
    page: Session, report: pathlib.Path
) -> None:
    page.wait_loaded()
    carbon = next(c for c in json.loads(page.evaluate(MEASURE)) if c["chart"] == "carbon")
    record = json.loads(report.with_suffix(".json").read_text())
    greenplace = next(e for e in record["strategies"] if e["strategy"] == "greenplace")
    started = record["scenario"]["jobs"] - greenplace["total"]["never_started"]
    assert len(carbon["markers"]) == started, "one dot per greenplace placement"
    plot = carbon["plot"]
    for dot in carbon["markers"]:
        assert dot["width"] >= 5 and dot["height"] >= 5, f"a dot too small to see: {dot}"
        centre_x, centre_y = (dot["left"] + dot["right"]) / 2, (dot["top"] + dot["bottom"]) / 2
        assert plot["left"] - 0.5 <= centre_x <= plot["right"] + 0.5, dot
        assert plot["top"] - 0.5 <= centre_y <= plot["bottom"] + 0.5, dot


def _instant(label: str) -> datetime.datetime:
    """A time tick's label as the instant it names (UTC): a day, or a day and an hour."""
    for layout in ("%Y-%m-%d", "%Y-%m-%d %H:%M"):
        try:
            return datetime.datetime.strptime(label, layout).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    raise AssertionError(f"time tick {label!r} is neither a day nor a day and an hour")


def test_time_ticks_sit_on_day_or_hour_boundaries_on_one_axis_for_all_charts(
    page: Session, report: pathlib.Path
) -> None:
    page.wait_loaded()
    charts = json.loads(page.evaluate(MEASURE))
    scenario = json.loads(report.with_suffix(".json").read_text())["scenario"]
    start = datetime.datetime.fromisoformat(scenario["start"]).timestamp()
    end = datetime.datetime.fromisoformat(scenario["end"]).timestamp()
    first = charts[0]
    for chart in charts:
        ticks, plot = chart["xticks"], chart["plot"]
        assert len(ticks) >= 4, f"{chart['chart']}: {len(ticks)} time ticks"
        for tick in ticks:
            when = _instant(tick["label"])
            assert (when.minute, when.second) == (0, 0), (chart["chart"], tick)
            expected = plot["left"] + (when.timestamp() - start) / (end - start) * plot["width"]
            assert abs(tick["x"] - expected) <= 1.5, (
                f"{chart['chart']}: tick {tick['label']} drawn at x={tick['x']:.1f}, "
                f"its instant is at x={expected:.1f} on the scenario's window"
            )
        # The same window on every chart: same plotting area, same ticks in the same places.
        assert abs(plot["left"] - first["plot"]["left"]) <= 0.5, chart["chart"]
        assert abs(plot["right"] - first["plot"]["right"]) <= 0.5, chart["chart"]
        assert [t["label"] for t in ticks] == [t["label"] for t in first["xticks"]], chart["chart"]


def shown(text: str) -> float | None:
    """A number as the report prints it (``1,234.5``, ``12``; ``-`` for none)."""
    return None if text == "-" else float(text.replace(",", ""))


def assert_row(cells: list[str], expected: list[object], where: str) -> None:
    """Rendered cells against the record's values: floats are printed to 0.1, counts exactly."""
    assert len(cells) == len(expected), (where, cells)
    for cell, value in zip(cells, expected, strict=True):
        if value is None or isinstance(value, int | float):
            number = shown(cell)
            if value is None or number is None:
                assert number is value, (where, cell, value)
            else:
                tolerance = 0.05 + 1e-9 if isinstance(value, float) else 0
                assert abs(number - value) <= tolerance, (where, cell, value)
        else:
            assert cell == value, (where, cell, value)


def test_the_tables_show_the_runs_figures_below_the_charts(
    page: Session, report: pathlib.Path
) -> None:
    page.wait_loaded()
    record = json.loads(report.with_suffix(".json").read_text())
    strategies = [entry["strategy"] for entry in record["strategies"]]
    tables = json.loads(page.evaluate(TABLES))
    assert [t["heading"] for t in tables] == ["Totals"] + [f"{s} per namespace" for s in strategies]
    charts_bottom = page.evaluate(CHARTS_BOTTOM)
    for table in tables:
        assert table["width"] > 300 and table["height"] > 40, table["heading"]
        assert table["top"] >= charts_bottom, f"{table['heading']} overlaps the charts"

    page_box = json.loads(page.evaluate(PAGE))
    assert page_box["scroll"] <= page_box["client"], f"the page scrolls sideways: {page_box}"
    for table in tables:
        assert table["right"] <= page_box["body"] + 0.5, f"{table['heading']} runs off the page"

    totals, *per_namespace = tables
    assert totals["header"] == ["strategy", *COLUMNS, "CO2e saved (%)", "cost saved (%)",
                                "CO2e above oracle (%)", "replay time (s)"]  # fmt: skip
    assert [row[0] for row in totals["rows"]] == strategies
    for row, entry in zip(totals["rows"], record["strategies"], strict=True):
        saved = entry["savings_vs_baseline_pct"] or {}
        expected = [entry["strategy"], *(entry["total"][f] for f in FIELDS),
                    saved.get("kgco2e"), saved.get("money"),
                    (entry["gap_to_oracle_pct"] or {}).get("kgco2e"), entry["wall_s"]]  # fmt: skip
        assert_row(row, expected, f"Totals, {entry['strategy']}")
    assert any(shown(row[1]) for row in totals["rows"]), "every strategy spent nothing"
    for table, entry in zip(per_namespace, record["strategies"], strict=True):
        assert table["header"] == ["namespace", *COLUMNS]
        by_namespace = entry["by_namespace"]
        assert [row[0] for row in table["rows"]] == list(by_namespace)
        for row, (namespace, total) in zip(table["rows"], by_namespace.items(), strict=True):
            assert_row(row, [namespace, *(total[f] for f in FIELDS)], table["heading"])


def test_every_chart_has_a_legend_naming_its_lines(page: Session, report: pathlib.Path) -> None:
    page.wait_loaded()
    for chart in json.loads(page.evaluate(MEASURE)):
        assert chart["legend"] == [s["name"] for s in chart["series"]], chart["chart"]
    shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    report.with_suffix(".png").write_bytes(base64.b64decode(shot["data"]))  # for a person
