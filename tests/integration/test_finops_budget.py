"""A Budget charged at the pool's price is corrected to the bill, on the real API server.

The example fleet's ovh-gra-h100 (2.99 EUR per GPU-hour in its spec) is given a billing rule
and the operator an export built for the current month from the example fleet's export
(tests/data/focus/example-fleet.csv: paris-h100's December rows, renamed and moved to this
month). A pod of 2 GPUs expected for 3 h, placed there under a Budget, is charged 6 x 2.99 =
17.94 EUR; the bill's effective price is (180.00 + 312.00) / ((10 + 24) x 8) per GPU-hour, so
the Budget's status shows 6 x 492 / 272 = 10.85 EUR spent and a correction of -7.09. The
operator restarted without the export keeps the correction, and corrects a new placement at
the price it kept: no charge counted twice.
"""

from __future__ import annotations

import datetime
import json
import pathlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, run_operator, wait_for, wait_for_cycles

pytestmark = pytest.mark.cluster

POOL = "ovh-gra-h100"
SOURCE = pathlib.Path(__file__).resolve().parents[1] / "data" / "focus" / "example-fleet.csv"
RULE = {"match": {"tags": {"greenplace.dev/pool": POOL}}, "gpusPerConsumedHour": 8}
DURATION = "greenplace.dev/expected-duration-hours"
SECNUMCLOUD = {"requiredCertifications": [{"name": "SecNumCloud"}]}  # ovh-gra-h100 alone
PRICE = Decimal("492.00") / 272  # December's two rows of paris-h100, by hand
CENT = Decimal("0.01")


def _this_month(now: datetime.datetime) -> tuple[str, str]:
    start = datetime.datetime(now.year, now.month, 1, tzinfo=datetime.UTC)
    end = (start + datetime.timedelta(days=32)).replace(day=1)
    return start.strftime("%Y-%m-"), end.strftime("%Y-%m-%dT00:00:00Z")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """paris-h100's December rows as ovh-gra-h100's, in the current month."""
    header, *rows = SOURCE.read_text().splitlines()
    month, next_month = _this_month(datetime.datetime.now(datetime.UTC))
    december = [r for r in rows if "paris-h100" in r and ",2027-01-01T00:00:00Z,2026-12-01" in r]
    assert len(december) == 2
    moved = [
        r.replace("paris-h100", POOL)
        .replace("2027-01-01T00:00:00Z", next_month)
        .replace("2026-12-", month)
        for r in december
    ]
    path = tmp_path_factory.mktemp("focus") / "export.csv"
    path.write_text("\n".join([header, *moved]) + "\n")
    return path


@pytest.fixture(scope="module")
def ruled(kube: Kube) -> Iterator[None]:
    body = json.dumps({"spec": {"billing": RULE}})
    assert kube.kubectl("patch", "gpupool", POOL, "--type=merge", "-p", body).returncode == 0
    yield
    off = json.dumps({"spec": {"billing": None}})
    assert kube.kubectl("patch", "gpupool", POOL, "--type=merge", "-p", off).returncode == 0


def _cents(value: Any) -> Decimal:
    return Decimal(repr(float(value))).quantize(CENT)


def _status(kube: Kube, ns: str) -> dict[str, Any]:
    return dict(kube.custom("budget", "monthly", ns).get("status") or {})


def test_a_budget_is_corrected_to_the_bill_and_stays_so_across_a_restart(
    kube: Kube, export: pathlib.Path, ruled: None
) -> None:
    ns = kube.namespace()
    kube.apply_ok(k8s.budget(ns, "monthly", money=1000.0))
    kube.apply_ok(k8s.policy(ns, "certified", sovereignty=SECNUMCLOUD, budget="monthly"))
    with run_operator(kube, focus_exports=(export,)):
        kube.apply_ok(k8s.gpu_pod(ns, "train", 2, annotations={DURATION: "3"}))
        status = wait_for(
            lambda: (found := _status(kube, ns)).get("billed") and found,
            60,
            "the Budget's reconciled charges",
        )
    assert status["charges"] == [
        {"pool": POOL, "month": status["charges"][0]["month"], "gpuHours": 6.0,
         "money": pytest.approx(17.94)}
    ]  # fmt: skip
    (row,) = status["billed"]
    assert (row["pool"], row["currency"], row["gpuHours"]) == (POOL, "EUR", 6.0)
    assert row["periodStart"] == status["charges"][0]["month"]
    assert row["charged"] == pytest.approx(17.94)
    assert _cents(row["billed"]) == (6 * PRICE).quantize(CENT) == Decimal("10.85")
    assert _cents(row["correction"]) == (6 * PRICE - Decimal("17.94")).quantize(CENT)
    assert _cents(status["spent"]["money"]) == Decimal("10.85")
    assert _cents(status["correction"]) == Decimal("-7.09")
    reconciled = k8s.condition({"status": status}, "Reconciled")
    assert reconciled is not None and reconciled["status"] == "True"
    assert reconciled["message"].startswith(f"corrected to the bill: {POOL} ")

    # Restarted without the export: the correction is kept, a new placement (1 GPU, 2 h)
    # corrected at the kept price, nothing charged twice.
    with run_operator(kube) as operator:
        wait_for_cycles(operator.metrics)
        assert _cents(_status(kube, ns)["spent"]["money"]) == Decimal("10.85")
        kube.apply_ok(k8s.gpu_pod(ns, "more", 1, annotations={DURATION: "2"}))
        after = wait_for(
            lambda: (found := _status(kube, ns))["charges"][0]["gpuHours"] == 8.0 and found,
            60,
            "the second placement charged",
        )
    assert after["charges"][0]["money"] == pytest.approx(17.94 + 5.98)
    assert _cents(after["spent"]["money"]) == (8 * PRICE).quantize(CENT) == Decimal("14.47")
    assert after["billed"][0]["fingerprint"] == row["fingerprint"]
