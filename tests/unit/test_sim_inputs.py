"""Reading simulator inputs (CR YAML, CSV/JSONL traces) and the CLI end to end on tiny files."""

from __future__ import annotations

import datetime
import json
import pathlib
import textwrap

import pytest

from greenplace.api import convert
from greenplace.cli import main as cli
from greenplace.sim import loading, synthetic
from greenplace.sim import scenario as sc

FLEET = """
apiVersion: greenplace.dev/v1alpha1
kind: GpuPool
metadata: {name: fr}
spec:
  nodeSelector: {greenplace.dev/pool: fr}
  location: {provider: ovhcloud, region: gra, country: FR, gridZone: FR}
  gpu: {model: H100, tdpWatts: 500, idleWatts: 50}
  price: {currency: EUR, onDemandPerGpuHour: 3.0}
  carbonIntensity: {fallbackGramsPerKwh: 60}
status: {gpusTotal: 4}
---
apiVersion: greenplace.dev/v1alpha1
kind: GpuPool
metadata: {name: de}
spec:
  nodeSelector: {greenplace.dev/pool: de}
  location: {provider: stackit, region: eu01, country: DE, gridZone: DE}
  gpu: {model: H100, tdpWatts: 500}
  price: {currency: EUR, onDemandPerGpuHour: 2.0}
  pue: 1.2
"""
RULES = """
apiVersion: greenplace.dev/v1alpha1
kind: PlacementPolicy
metadata: {namespace: ml, name: eu}
spec:
  sovereignty: {allowedCountries: [FR, DE]}
  carbon: {maxGramsPerKwh: 300}
---
apiVersion: greenplace.dev/v1alpha1
kind: Budget
metadata: {namespace: ml, name: daily}
spec: {period: Day, limits: {money: 20}}
"""
CSV = """name,namespace,arrival,gpus,duration_hours,deferrable_hours,model,labels
train,ml,2020-03-02T00:00:00Z,4,2,4,llama,team=a;kind=training
serve,ml,2020-03-02T01:00:00,2,1,,mistral,
"""


@pytest.fixture
def files(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "fleet.yaml").write_text(FLEET)
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "jobs.csv").write_text(CSV)
    (tmp_path / "scenario.yaml").write_text(
        textwrap.dedent(
            """
            fleet: fleet.yaml
            policies: rules.yaml
            workload: jobs.csv
            capacity: {de: 4}
            carbon: {FR: 100, DE: 400}
            end: "2020-03-02T06:00:00Z"
            """
        )
    )
    return tmp_path


def test_cr_yaml_becomes_domain_values(files: pathlib.Path) -> None:
    scenario = loading.load(loading.Inputs.from_file(files / "scenario.yaml"))
    fr, de = scenario.pools
    assert (fr.name, fr.pool.gpus_total, fr.pool.gpu_watts, fr.fallback_gco2_per_kwh) == (
        "fr",
        4,
        500,
        60,
    )
    assert (de.pool.gpus_total, de.pool.pue, de.fallback_gco2_per_kwh) == (4, 1.2, None)
    (policy,) = scenario.policies
    assert (policy.key, policy.allowed_countries, policy.max_gco2_per_kwh) == (
        "ml/eu",
        frozenset({"FR", "DE"}),
        300,
    )
    assert scenario.budgets == (sc.Budget("ml", "daily", sc.Period.DAY, money_limit=20.0),)
    train, serve = scenario.jobs
    t0 = datetime.datetime(2020, 3, 2, tzinfo=datetime.UTC)
    assert scenario.deadline(train) == t0 + datetime.timedelta(hours=6)
    assert dict(train.annotations) == {
        convert.DURATION_ANNOTATION: "2.0",
        convert.MAX_DELAY_ANNOTATION: "4h",
    }
    assert dict(train.labels) == {"team": "a", "kind": "training"}
    assert serve.arrival.tzinfo is datetime.UTC
    assert scenario.latest_start(serve) == serve.arrival  # no window, no policy deferral


def test_jsonl_reads_like_csv(files: pathlib.Path) -> None:
    rows = [
        {"name": "a", "namespace": "ml", "arrival": "2020-03-02T00:00:00Z", "gpus": 1,
         "duration_hours": 1.5, "deadline": "2020-03-02T05:00:00Z", "labels": {"k": "v"}},
    ]  # fmt: skip
    path = files / "jobs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (job,) = loading.read_jobs(path)
    assert job.workload().deadline == datetime.datetime(2020, 3, 2, 5, tzinfo=datetime.UTC)
    assert job.annotations[convert.DEADLINE_ANNOTATION] == "2020-03-02T05:00:00Z"
    assert dict(job.labels) == {"k": "v"}


def test_a_bad_row_names_the_file_and_line(files: pathlib.Path) -> None:
    path = files / "bad.csv"
    path.write_text(CSV.replace("train,ml,2020-03-02T00:00:00Z,4", "train,ml,yesterday,4"))
    with pytest.raises(ValueError, match=r"bad\.csv:2: cannot read job"):
        loading.read_jobs(path)


def test_a_residency_label_the_api_refuses_names_the_file_and_line(files: pathlib.Path) -> None:
    path = files / "bad.csv"
    path.write_text(CSV.replace("team=a;kind=training", "greenplace.dev/data-residency=fr"))
    with pytest.raises(ValueError, match=r"bad\.csv:2: cannot read job") as error:
        loading.read_jobs(path)
    assert "greenplace.dev/data-residency='fr': 'fr' is neither" in str(error.value)
    path.write_text(CSV.replace("team=a;kind=training", "greenplace.dev/data-residency=FR_EU"))
    assert loading.read_jobs(path)[0].labels["greenplace.dev/data-residency"] == "FR_EU"


def test_cli_writes_table_json_and_html(
    files: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, out_html = files / "out.json", files / "out.html"
    code = cli.main(
        ["simulate", str(files / "scenario.yaml"), "--json", str(out_json),
         "--html", str(out_html)]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "first-fit" in captured.out and "oracle" in captured.out
    assert "% of simulated time" in captured.err
    record = json.loads(out_json.read_text())
    by_name = {e["strategy"]: e for e in record["strategies"]}
    assert set(by_name) == {"first-fit", "cheapest", "lowest-carbon", "greenplace", "oracle"}
    assert record["sovereignty_violations_by_policy_respecting_strategies"] == 0
    # first-fit: train in fr 00-02 (4 kWh x 100 g), serve in de 01-02 (1.2 kWh x 400 g).
    assert by_name["first-fit"]["total"]["kgco2e"] == pytest.approx(0.88)
    assert by_name["oracle"]["gap_to_oracle_pct"]["kgco2e"] == 0
    page = out_html.read_text()
    assert page.count('<svg class="chart"') == 3 and "<script" not in page


def test_cli_refuses_missing_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate"]) == 2
    assert "give a scenario file" in capsys.readouterr().err


def test_synthetic_workload_is_reproducible() -> None:
    start = datetime.datetime(2020, 3, 2, tzinfo=datetime.UTC)
    end = start + datetime.timedelta(days=2)
    first = synthetic.generate(7, start, end, 30)
    assert first == synthetic.generate(7, start, end, 30)
    assert len(first) == 60
    assert {r.namespace for r in first} == {"ml-training", "health-research", "inference"}
    assert all(r.deferrable_hours == 0 for r in first if r.namespace == "inference")


def test_example_workload_matches_its_generator() -> None:
    """examples/simulate/workload.csv is what make_workload.py writes (seed 2020)."""
    example = pathlib.Path(__file__).resolve().parents[2] / "examples" / "simulate"
    start = datetime.datetime(2020, 3, 2, tzinfo=datetime.UTC)
    rows = synthetic.generate(2020, start, start + datetime.timedelta(days=7), 30)
    written = (example / "workload.csv").read_text().splitlines()
    assert len(written) == len(rows) + 1
    assert written[1].split(",")[0] == rows[0].name
