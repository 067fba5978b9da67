"""The snapshot file format and the ``greenplace explain`` command."""

from __future__ import annotations

import json
import pathlib

import pytest
from hypothesis import given, settings

from greenplace.cli import main as cli
from greenplace.domain import model
from greenplace.engine import snapshot_file
from tests import builders as b
from tests import strategies as props


def fleet() -> model.Snapshot:
    pools = [
        b.pool("aws-paris", jurisdiction=b.CLOUD_ACT, gco2=20),
        b.pool("ovh-gra", certs=[b.cert("SecNumCloud", level="3.2")], gco2=56),
        b.pool("stackit", country="DE", gco2=313),
    ]
    policies = [
        b.policy("sov", no_foreign_law=True, certs={"SecNumCloud": "3"}),
        b.policy("green", namespace="web", ceiling=100),
    ]
    workloads = [b.workload("train", gpus=4, hours=2), b.workload("serve", namespace="web")]
    return b.snapshot(pools, policies, workloads, forecasts={"FR": b.forecast(56, 40, 30)})


def write(tmp_path: pathlib.Path, snapshot: model.Snapshot) -> pathlib.Path:
    path = tmp_path / "snapshot.yaml"
    path.write_text(snapshot_file.dumps(snapshot, b.T0))
    return path


@settings(max_examples=40, deadline=None)
@given(props.snapshots())
def test_files_round_trip(snapshot: model.Snapshot) -> None:
    assert snapshot_file.loads(snapshot_file.dumps(snapshot, b.T0)) == (snapshot, b.T0)


def test_json_is_read_too() -> None:
    text = json.dumps(
        {
            "now": "2026-01-01T00:00:00+00:00",
            "pools": [{"name": "a", "gpusTotal": 8, "gpusFree": 8, "pricePerGpuHour": 2}],
        }
    )
    snapshot, now = snapshot_file.loads(text)
    assert now == b.T0
    assert snapshot.pools[0].jurisdiction is None  # unknown, so sovereignty rules fail closed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pools: [{name: a}]", "pools[0].gpusTotal: required"),
        (
            "pools: [{name: a, gpusTotal: eight, gpusFree: 1, pricePerGpuHour: 1}]",
            "pools[0].gpusTotal: expected an integer, got 'eight'",
        ),
        (
            "workloads: [{namespace: ml, name: w, gpus: 1, created: '2026-01-01T00:00:00'}]",
            "workloads[0].created: '2026-01-01T00:00:00' has no time zone",
        ),
        (
            "budgets: [{namespace: ml, name: b, action: Panic}]",
            "budgets[0].action: expected one of Defer, Reject, Downgrade, got 'Panic'",
        ),
        ("pools: {a: 1}", "pools: expected a list"),
        ("[1, 2]", "the file: expected a mapping"),
        ("forecasts: {FR: {times: ['2026-01-01T00:00:00Z'], values: []}}", "forecasts.FR: 1 times"),
    ],
)
def test_errors_name_the_field(text: str, message: str) -> None:
    with pytest.raises(snapshot_file.SnapshotFileError, match=None) as error:
        snapshot_file.loads(text)
    assert message in str(error.value)


def test_explain_the_whole_plan(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain", str(write(tmp_path, fleet()))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("plan at 2026-01-01T00:00:00+00:00: 2 placed")
    lines = {line.split()[1]: line.split() for line in out.splitlines()[1:]}
    assert lines["ml/train"][2:] == ["ovh-gra", "LowestCarbon"]
    assert lines["web/serve"][2:] == ["aws-paris", "LowestCarbon"]


def test_explain_one_decision_lists_every_pool(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["explain", str(write(tmp_path, fleet())), "-w", "ml/train"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Placed: ml/train placed in ovh-gra")
    assert "pools not chosen: 1 CertificationMissing, 1 ExtraterritorialExposure" in out
    assert "aws-paris: ExtraterritorialExposure: excluded by PlacementPolicy ml/sov" in out
    assert "stackit: CertificationMissing" in out
    assert "projected: cost 16.00" in out


def test_why_not_a_pool(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(write(tmp_path, fleet()))
    assert cli.main(["explain", path, "-w", "ml/train", "--why-not", "aws-paris"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ml/train not in aws-paris: ExtraterritorialExposure")
    assert "provider exposed to US-CLOUD-Act" in out
    assert cli.main(["explain", path, "-w", "ml/train", "--why-not", "ovh-gra"]) == 0
    assert capsys.readouterr().out.startswith("ovh-gra was chosen")


def test_json_output(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(write(tmp_path, fleet()))
    args = ["explain", path, "-w", "ml/train", "--why-not", "stackit", "--json"]
    assert cli.main(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["pool"] == "ovh-gra"
    assert document["whyNot"]["reason"] == "CertificationMissing"
    assert document["rejectedByReason"] == {
        "CertificationMissing": 1,
        "ExtraterritorialExposure": 1,
    }


def test_what_if_at_another_time(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write(tmp_path, fleet()))
    assert cli.main(["explain", path, "-w", "ml/train", "--at", "2030-01-01T00:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert "CertificationNotValid" in out  # the SecNumCloud certificate has expired by then


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["-w", "ml/ghost"], 1, "no workload ml/ghost (known: ml/train, web/serve)"),
        (["--why-not", "x"], 2, "--why-not needs --workload"),
        (["--at", "2026-01-01"], 2, "has no time zone"),
    ],
)
def test_usage_errors(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    message: str,
) -> None:
    assert cli.main(["explain", str(write(tmp_path, fleet())), *args]) == code
    assert message in capsys.readouterr().err


def test_missing_file_and_missing_now(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["explain", str(tmp_path / "nope.yaml")]) == 2
    assert "No such file" in capsys.readouterr().err
    path = tmp_path / "no-now.yaml"
    path.write_text(snapshot_file.dumps(fleet()))
    assert cli.main(["explain", str(path)]) == 2
    assert "has no `now`; pass --at" in capsys.readouterr().err
