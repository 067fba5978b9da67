"""The read commands on the real control plane, with kubectl's manners.

Why this module exists: ``tests/unit/test_cli_manners.py`` proves the flags and formats on a fake
API server; this runs every read command (placements, pools, budgets, reports, why) against the
real API server and the real operator, with ``-n``, ``-A``, ``-o json`` (parsed) and ``-o yaml``
(parsed), and the error cases through the installed entry point as a user runs it: an API
server that does not answer, a kubeconfig that does not exist, a pod that does not exist (the
server's own 404). Each must exit non-zero with one line on stderr.
"""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from greenplace.cli import main as cli
from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, RunningOperator, wait_for

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def spaces(kube: Kube, operator: RunningOperator) -> Iterator[tuple[str, str]]:
    """Two governed namespaces: ``fr`` with a placed pod, a Budget and an EnergyReport, and
    ``ch`` whose pod no pool can take (held)."""
    fr, ch = kube.namespace(), kube.namespace()
    kube.apply_ok(k8s.manifest(
        k8s.budget(fr, "monthly", money=90000),
        k8s.policy(fr, "fr-only", ["FR"], budget="monthly"),
        k8s.energy_report(fr, "serving", window="1h", serving="vLLM"),
        k8s.policy(ch, "swiss-only", ["CH"]),
    ))  # fmt: skip
    kube.apply_ok(k8s.gpu_pod(fr, "trainer", 1))
    kube.apply_ok(k8s.gpu_pod(ch, "patient", 1))
    wait_for(lambda: kube.placed_pool(fr, "trainer"), 60, "trainer placed")
    wait_for(lambda: kube.held_reason(ch, "patient"), 60, "patient held")
    yield fr, ch


def run(capsys: pytest.CaptureFixture[str], kube: Kube, *argv: str) -> str:
    code = cli.main([*argv, f"--kubeconfig={kube.kubeconfig}"])
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, ""), (argv, captured.err)
    return captured.out


def data(capsys: pytest.CaptureFixture[str], kube: Kube, *argv: str) -> list[dict[str, Any]]:
    """The items of ``argv`` as JSON and as YAML, which must be the same.

    The running operator writes status (free GPUs, signal ages) between two reads, so the YAML
    is read between two JSON reads: when those two agree, nothing changed meanwhile and the YAML
    must equal them; when they differ, the three reads are taken again.
    """
    for _ in range(10):
        before = json.loads(run(capsys, kube, *argv, "-o", "json"))
        text = run(capsys, kube, *argv, "-o", "yaml")
        after = json.loads(run(capsys, kube, *argv, "-o", "json"))
        if before == after:
            break
    else:
        pytest.fail(f"{argv}: the output changed between every pair of reads")
    assert text.startswith("items:"), text[:200]  # YAML, not JSON (which YAML would also read)
    assert yaml.safe_load(text) == before
    items: list[dict[str, Any]] = before["items"]
    return items


def test_placements(
    kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fr, ch = spaces
    (header, row) = run(capsys, kube, "placements", "-n", fr).splitlines()
    assert header.split()[5] == "gCO2e/kWh(xPUE)"
    pool = kube.placed_pool(fr, "trainer")
    assert row.split()[:4] == [f"{fr}/trainer", "1", "Placed", pool], row
    every = run(capsys, kube, "placements", "-A")
    assert f"{fr}/trainer " in every and f"{ch}/patient " in every
    assert max(len(line) for line in every.splitlines()) < 200
    (item,) = data(capsys, kube, "placements", "-n", fr)
    assert (item["kind"], item["name"], item["decision"], item["pool"]) == (
        "Pod", "trainer", "Placed", pool)  # fmt: skip
    assert item["policies"] == [f"{fr}/fr-only"] and item["gco2ePerKwhWithPue"] > 0
    held = {(i["namespace"], i["decision"]) for i in data(capsys, kube, "placements", "-A")}
    assert {(fr, "Placed"), (ch, "Held")} <= held
    wide = run(capsys, kube, "placements", "-n", ch, "-o", "wide")
    assert kube.held_reason(ch, "patient").split(" held: ", 1)[1] in wide  # type: ignore[union-attr]


def test_pools(kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    fr, _ = spaces
    for flags in (["-n", fr], ["-A"]):  # cluster-scoped: the same pools either way
        lines = run(capsys, kube, "pools", *flags).splitlines()
        assert lines[0].split()[:5] == ["POOL", "COUNTRY", "GPU", "FREE/TOTAL", "GRID-gCO2e/kWh"]
        assert any(line.startswith("ovh-gra-h100 ") for line in lines), lines
    pools = {p["name"]: p for p in data(capsys, kube, "pools", "-A")}
    ovh = pools["ovh-gra-h100"]
    assert ovh["country"] == "FR" and ovh["gpusTotal"] == 16
    grid = wait_for(
        lambda: data(capsys, kube, "pools")[0]["gridGco2ePerKwh"], 30, "a plan's grid intensity"
    )
    assert grid > 0


def test_budgets(kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    fr, ch = spaces
    (header, row) = run(capsys, kube, "budgets", "-n", fr).splitlines()
    assert header.split()[2] == "MONEY(SPENT/LIMIT)"
    assert row.startswith(f"{fr}/monthly ") and "/90,000 EUR" in row, row
    assert f"{fr}/monthly " in run(capsys, kube, "budgets", "-A")
    (item,) = data(capsys, kube, "budgets", "-n", fr)
    assert (item["name"], item["currency"], item["limits"]) == ("monthly", "EUR", {"money": 90000})
    assert any(i["namespace"] == fr for i in data(capsys, kube, "budgets", "-A"))
    code = cli.main(["budgets", "-n", ch, f"--kubeconfig={kube.kubeconfig}"])
    assert (code, capsys.readouterr().err) == (0, f"No resources found in {ch} namespace.\n")


def test_reports(kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    fr, _ = spaces
    (header, row) = run(capsys, kube, "reports", "-n", fr).splitlines()
    assert header.split()[:3] == ["REPORT", "MODEL", "POOL"] and row.startswith(f"{fr}/serving ")
    assert f"{fr}/serving " in run(capsys, kube, "reports", "-A")
    (item,) = data(capsys, kube, "reports", "-n", fr)
    assert (item["kind"], item["name"]) == ("EnergyReportRow", "serving")
    assert any(i["namespace"] == fr for i in data(capsys, kube, "reports", "-A"))


def test_why(kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    fr, ch = spaces
    pool = kube.placed_pool(fr, "trainer")
    (line,) = run(capsys, kube, "why", "-n", fr, "trainer").splitlines()
    assert line.startswith(f"{fr}/trainer placed in {pool} (FR, "), line
    assert line.count(f"{fr}/trainer") == 1 and line.count("placed in") == 1, line
    assert run(capsys, kube, "why", f"{fr}/trainer") == run(capsys, kube, "why", "-n", fr,
                                                            "pod/trainer")  # fmt: skip
    (line,) = run(capsys, kube, "why", "-n", ch, "patient").splitlines()
    assert line.startswith(f"{ch}/patient waits (gated, NoCompliantPool): no pool satisfies ")
    (item,) = data(capsys, kube, "why", "-n", fr, "trainer")
    assert (item["state"], item["pool"], item["record"]["pool"]) == ("Placed", pool, pool)
    code = cli.main(["why", "-A", "trainer", f"--kubeconfig={kube.kubeconfig}"])
    assert code == 1 and capsys.readouterr().err.count("\n") == 1


def greenplace(*argv: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: a new process, its exit code and its stderr."""
    return subprocess.run(
        [sys.executable, "-m", "greenplace.cli.main", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_errors_are_one_line_with_a_non_zero_exit(
    kube: Kube, spaces: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    fr, _ = spaces
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    config = yaml.safe_load(kube.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://127.0.0.1:{closed}"
    down = tmp_path / "down.kubeconfig"
    down.write_text(yaml.safe_dump(config))
    cases = [
        (["placements", "-A", f"--kubeconfig={down}"],
         f"error: cannot reach the API server at https://127.0.0.1:{closed}: "),
        (["pools", f"--kubeconfig={down}"], "error: cannot reach the API server at "),
        (["why", "-n", fr, "trainer", f"--kubeconfig={down}"], "error: cannot reach the API "),
        (["budgets", f"--kubeconfig={tmp_path / 'missing'}"],
         f"error: kubeconfig {tmp_path / 'missing'}: no such file"),
        (["why", "-n", fr, "ghost", f"--kubeconfig={kube.kubeconfig}"],
         'Error from server (NotFound): pods "ghost" not found'),
    ]  # fmt: skip
    for argv, start in cases:
        done = greenplace(*argv)
        assert (done.returncode, done.stdout) == (1, ""), (argv, done.stdout, done.stderr)
        (line,) = done.stderr.splitlines()
        assert line.startswith(start), (argv, line)
