"""The operator prices a GpuPool's GPU-hour from a FOCUS export, on the real API server.

The example fleet's ovh-gra-h100 pool is given a billing rule (its tag) and the operator a FOCUS
export on disk (tests/data/focus/example-fleet.csv, the pool renamed): the pool's status.billing
shows the newest period's effective price, by hand from its two December rows; a re-issued
export changes it; a refused export is the pool's Billed reason while the operator keeps
running; the API server refuses an empty rule with the CEL rule's message.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from greenplace.cli import main as cli
from tests import kubeobjects as k8s
from tests.integration.conftest import (
    Kube,
    RunningOperator,
    run_operator,
    wait_for,
    wait_for_cycles,
)

pytestmark = pytest.mark.cluster

POOL = "ovh-gra-h100"
SOURCE = pathlib.Path(__file__).resolve().parents[1] / "data" / "focus" / "example-fleet.csv"
RULE = {"match": {"tags": {"greenplace.dev/pool": POOL}}, "gpusPerConsumedHour": 8}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("focus") / "export.csv"
    path.write_text(SOURCE.read_text().replace("paris-h100", POOL))
    return path


@pytest.fixture(scope="module")
def operator(kube: Kube, export: pathlib.Path) -> Iterator[RunningOperator]:
    with run_operator(kube, focus_exports=(export,)) as running:
        yield running


def _patch(kube: Kube, billing: Any) -> Any:
    body = json.dumps({"spec": {"billing": billing}})
    return kube.kubectl("patch", "gpupool", POOL, "--type=merge", "-p", body)


def _billing(kube: Kube) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    body = kube.custom("gpupool", POOL)
    return (body.get("status") or {}).get("billing"), k8s.condition(body, "Billed")


def test_the_pools_status_carries_its_effective_price(
    kube: Kube,
    operator: RunningOperator,
    export: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _patch(kube, RULE).returncode == 0
    try:
        # December: 180.00 on demand for 10 h and 312.00 amortised for 24 h, 8 GPUs an hour.
        december = round((180.00 + 312.00) / ((10 + 24) * 8), 6)
        billed, condition = wait_for(
            lambda: (
                (found := _billing(kube))[0]
                and found[0].get("effectivePerGpuHour") == december
                and found
            ),
            60,
            "status.billing with December's effective price",
        )
        assert billed["periodStart"] == "2026-12-01T00:00:00Z" and billed["currency"] == "EUR"
        assert billed["gpuHours"] == 272 and billed["billedCost"] == 180.0
        assert condition["status"] == "True" and condition["reason"] == "Reconciled"
        # The command reads the same rules from the cluster when no --pools file is given.
        code = cli.main(["finops", "reconcile", "--file", str(export),
                         f"--kubeconfig={kube.kubeconfig}", "-o", "json"])  # fmt: skip
        assert code == 0
        (december_doc,) = [
            p for p in json.loads(capsys.readouterr().out)["periods"]
            if p["start"].startswith("2026-12")
        ]  # fmt: skip
        assert [p["pool"] for p in december_doc["pools"]] == [POOL]
        assert round(float(december_doc["pools"][0]["effectivePerGpuHour"]), 6) == december
        # A re-issued export: the commitment's December share is 400.00, not 312.00.
        export.write_text(export.read_text().replace(",312.00,", ",400.00,"))
        reissued = round((180.00 + 400.00) / 272, 6)
        wait_for(
            lambda: (_billing(kube)[0] or {}).get("effectivePerGpuHour") == reissued,
            60,
            "the re-issued export's price",
        )
        # An export in two currencies: no price, the reason says why; the operator runs on.
        rows = export.read_text().splitlines()
        rows[6] = rows[6].replace(",EUR,", ",USD,")
        export.write_text("\n".join(rows) + "\n")
        _, refused = wait_for(
            lambda: (
                (found := _billing(kube))[0] is None
                and (found[1] or {}).get("reason") == "ExportRefused"
                and found
            ),
            60,
            "the Billed condition to say the export is refused",
        )
        assert refused["status"] == "False"
        assert refused["message"].startswith("two billing currencies, EUR")
        wait_for_cycles(operator.metrics)  # the placement loop goes on
    finally:
        assert _patch(kube, None).returncode == 0


def test_the_api_server_refuses_an_empty_rule(kube: Kube) -> None:
    refused = _patch(kube, {"match": {}})
    assert refused.returncode != 0
    assert "set at least one of resourceIds, tags, regionIds, skuIds, subAccountIds" in (
        refused.stderr
    )
