"""BillingExports read FOCUS exports from a real object store (MinIO) on their interval.

On the real API server, with the operator of the other finops tests: this month's export of
the example fleet's ovh-gra-h100 (``test_finops_bill._this_month``: paris-h100's December rows
of tests/data/focus/example-fleet.csv, moved and renamed) is uploaded to MinIO, a Secret holds
the access key, and a BillingExport names the bucket's folder (interval 10s, the minimum).
Then: the pool's status.billing carries the effective price by hand and the Budget of a pod
placed there is corrected; the object replaced (the commitment's share 400.00, not 312.00) is
read again at the next interval (its fingerprint and the price change) and the Budget repriced,
never charged twice; a wrong secret key is believed at once: Ready False AccessDenied naming
the fix, the pool's price gone, its Billed condition naming the BillingExport, the Budget's
correction kept at the price it was corrected at (not counted again). The API server refuses
two sources, none, and an interval out of range, each with the rule's message.
"""

from __future__ import annotations

import base64
import datetime
import json
import pathlib
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests import hostile
from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, RunningOperator, run_operator, wait_for
from tests.integration.objectstore import ObjectStore, running_minio
from tests.integration.signals import test_finops_bill as bill

pytestmark = pytest.mark.cluster

POOL = bill.POOL
NAMESPACE = "default"  # the operator's (run_operator's lease namespace): where its Secrets are
SECRET = "gp-bills"
KEY = "bills/focus/this-month.csv"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with running_minio(tmp_path_factory.mktemp("minio")) as running:
        yield running


@pytest.fixture(scope="module")
def operator(kube: Kube) -> Iterator[RunningOperator]:
    with run_operator(kube) as running:
        yield running


def _secret(kube: Kube, access_key: str, secret_key: str) -> None:
    data = {"accessKeyId": access_key, "secretAccessKey": secret_key}
    kube.apply_ok({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": NAMESPACE},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    })  # fmt: skip


def _export(spec: dict[str, Any], name: str = "bills") -> dict[str, Any]:
    return {
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "BillingExport",
        "metadata": {"name": name}, "spec": spec,
    }  # fmt: skip


def _s3(store: ObjectStore) -> dict[str, Any]:
    return {"endpoint": store.endpoint, "bucket": "bills", "prefix": "focus",
            "credentialsSecretRef": {"name": SECRET}}  # fmt: skip


def _state(kube: Kube, ns: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The BillingExport's status, the pool's and the Budget's."""
    return (
        kube.custom("billingexport", "bills").get("status") or {},
        kube.custom("gpupool", POOL).get("status") or {},
        bill._budget(kube, ns),
    )


def _ready(status: dict[str, Any]) -> dict[str, Any]:
    return k8s.condition({"status": status}, "Ready") or {}


def test_an_export_in_an_object_store_prices_the_pool_and_corrects_a_budget(
    kube: Kube, store: ObjectStore, operator: RunningOperator, tmp_path: pathlib.Path
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    export = bill._this_month(tmp_path, now).read_bytes()
    store.put(KEY, export)
    _secret(kube, store.access_key, store.secret_key)
    patch = json.dumps({"spec": {"billing": bill.RULE}})
    assert kube.kubectl("patch", "gpupool", POOL, "--type=merge", "-p", patch).returncode == 0
    ns = kube.namespace()
    kube.apply_ok(k8s.budget(ns, "monthly", money=1000.0))
    kube.apply_ok(k8s.policy(ns, "certified", sovereignty=bill.SECNUMCLOUD, budget="monthly"))
    try:
        kube.apply_ok(_export({"interval": "10s", "s3": _s3(store)}))
        kube.apply_ok(k8s.gpu_pod(ns, "train", 2, annotations={bill.DURATION: "3"}))
        read, pool, budget = wait_for(
            lambda: (found := _state(kube, ns))[2].get("billed") and found,
            90,
            "the Budget corrected from the object store's export",
        )
        assert _ready(read)["status"] == "True" and _ready(read)["reason"] == "Read"
        assert [o["name"] for o in read["objects"]] == [f"s3://{KEY}"]
        assert read["objects"][0]["size"] == len(export) and read["rows"] == 2
        (period,) = read["periods"]
        assert pool["billing"]["effectivePerGpuHour"] == round(float(bill.PRICE), 6)
        first = bill._check_budget_corrected(budget)
        assert first["fingerprint"] == period["fingerprint"]  # one fingerprint, both places

        # Replaced: read again at the next interval, repriced, the Budget corrected once.
        store.put(KEY, export.replace(b",312.00,", b",400.00,"))
        reissued = Decimal("580.00") / 272

        def reissued_read() -> Any:
            found = _state(kube, ns)
            price = (found[1].get("billing") or {}).get("effectivePerGpuHour")
            digests = [p["fingerprint"] for p in found[0].get("periods") or ()]
            changed = digests and digests != [period["fingerprint"]]
            return price == round(float(reissued), 6) and changed and found

        read, pool, budget = wait_for(reissued_read, 60, "the replaced object read again")
        budget = wait_for(
            lambda: (
                (b := bill._budget(kube, ns))["billed"][0]["fingerprint"]
                == read["periods"][0]["fingerprint"]
                and b
            ),
            30,
            "the Budget repriced at the re-issued period",
        )
        (row,) = budget["billed"]  # one row for the pool and month: nothing counted twice
        assert bill._cents(budget["spent"]["money"]) == (6 * reissued).quantize(bill.CENT)
        assert len(budget["charges"]) == 1 and budget["charges"][0]["gpuHours"] == 6.0

        # A wrong secret key: believed at once, the price gone, the Budget's correction kept.
        _secret(kube, store.access_key, "not-the-secret")
        read, pool, budget = wait_for(
            lambda: (
                _ready((found := _state(kube, ns))[0]).get("reason") == "AccessDenied" and found
            ),
            60,
            "Ready False AccessDenied",
        )
        ready = _ready(read)
        assert ready["status"] == "False"
        assert "SIGNATURE_DOES_NOT_MATCH" in ready["message"]
        assert "fix: give the access key of spec.s3.credentialsSecretRef" in ready["message"]
        assert "objects" not in read and "rows" not in read
        pool = wait_for(
            lambda: "billing" not in (p := _state(kube, ns)[1]) and p, 30, "the price gone"
        )
        billed = k8s.condition({"status": pool}, "Billed") or {}
        assert (billed.get("status"), billed.get("reason")) == ("False", "ExportRefused")
        assert billed["message"].startswith("BillingExport bills: ")
        assert bill._budget(kube, ns)["billed"] == budget["billed"] == [row]
    finally:
        kube.kubectl("delete", "billingexport", "bills", "--ignore-not-found")
        patch = json.dumps({"spec": {"billing": None}})
        kube.kubectl("patch", "gpupool", POOL, "--type=merge", "-p", patch)


@pytest.mark.parametrize(
    ("spec", "message"), hostile.BAD_BILLING_EXPORTS.values(), ids=hostile.BAD_BILLING_EXPORTS
)
def test_the_api_server_refuses_a_bad_billing_export(
    kube: Kube, spec: dict[str, Any], message: str
) -> None:
    refused = kube.apply(_export(spec, "refused"))
    assert refused.returncode != 0
    assert message in refused.stderr, refused.stderr
