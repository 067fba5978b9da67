"""Verified certifications on the real control plane (issue 17 item 4).

The real ``greenplace operate --trusted-issuers FILE`` (its own process) and six Luxembourg
pools, each with a certification SecNumCloud 3.2 whose credential (a W3C VC as a JWT, real
Ed25519 keys made here) is:

pool            credential                                          effective gCO2e/kWh
vc-valid        valid, signed by the trusted issuer (a Secret)      400  (the dirtiest)
vc-expired      signed by the trusted issuer, exp yesterday         20
vc-forged       its claims changed after signing                    20
vc-other        vc-valid's own credential (another subject)         20
vc-untrusted    valid, signed by an issuer not trusted              20
vc-declared     none: declared only                                 20

A policy requiring a verified SecNumCloud 3.2 in LU: the pod goes to vc-valid although it is the
dirtiest (carbon first would pick any other); each other pool shows why in the GpuPool status
(CertificationsVerified, status.certifications) and in ``greenplace explain --from-cluster
--why-not``; the policy's allowedPools (the admission policy's list) is vc-valid alone; the
ledger records the certification as verified, and the auditor's report shows it. Renewing the
expired credential in its ConfigMap makes that pool count again without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime
import io
import json
import pathlib
from typing import Any

import pytest
from kubernetes import client

from devcluster import fleet
from greenplace.audit import store
from greenplace.cli import main as cli
from tests import kubeobjects as k8s
from tests.credentials import Certifier, forged
from tests.integration.conftest import Kube, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster

TRUSTED = Certifier.ed25519("did:web:certifier.example", kid="2026-1")
STRANGER = Certifier.ed25519("did:web:stranger.example")
NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
CM = "pool-credentials"
SECRET = "vc-valid-credential"


def issued(issuer: Certifier, pool: str, *, until: datetime.datetime = NOW + 365 * DAY) -> str:
    return issuer.issue(pool, level="3.2", valid_from=NOW - 30 * DAY, valid_until=until)


VALID = issued(TRUSTED, "vc-valid")
TOKENS = {
    "vc-expired": issued(TRUSTED, "vc-expired", until=NOW - DAY),
    "vc-forged": forged(issued(TRUSTED, "vc-forged"), exp=int((NOW + 3650 * DAY).timestamp())),
    "vc-untrusted": issued(STRANGER, "vc-untrusted"),
}
# Each pool's credential reference (None: declared without one).
REFS: dict[str, dict[str, Any] | None] = {
    "vc-valid": {"secretKeyRef": {"name": SECRET, "key": "token"}},
    "vc-expired": {"configMapKeyRef": {"name": CM, "key": "vc-expired"}},
    "vc-forged": {"configMapKeyRef": {"name": CM, "key": "vc-forged"}},
    "vc-other": {"secretKeyRef": {"name": SECRET, "key": "token"}},  # vc-valid's credential
    "vc-untrusted": {"configMapKeyRef": {"name": CM, "key": "vc-untrusted"}},
    "vc-declared": None,
}
PROBLEMS = {
    "vc-expired": "expired",
    "vc-forged": "bad signature",
    "vc-other": "other subject",
    "vc-untrusted": "untrusted issuer",
}


def pool(name: str) -> fleet.FleetPool:
    ref = REFS[name]
    certification = {"name": "SecNumCloud", "level": "3.2",
                     "expires": str((NOW + 730 * DAY).date())}  # fmt: skip
    spec = {
        "nodeSelector": {"greenplace.dev/pool": name},
        "location": {"provider": "p", "region": "lu", "country": "LU", "gridZone": "LU"},
        "gpu": {"model": "H100", "tdpWatts": 700},
        "price": {"currency": "EUR", "onDemandPerGpuHour": 2.0},
        "carbonIntensity": {"fallbackGramsPerKwh": 400 if name == "vc-valid" else 20},
        "certifications": [certification | ({"credential": ref} if ref else {})],
    }
    return fleet.FleetPool(name, nodes=1, gpus_per_node=8, spec=spec)


def condition(kube: Kube, name: str) -> dict[str, Any] | None:
    return k8s.condition(kube.custom("GpuPool", name), "CertificationsVerified")


def explain(kube: Kube, home: str, workload: str, pool: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["explain", "--from-cluster", f"--kubeconfig={kube.kubeconfig}",
                         f"--operator-namespace={home}", "-w", workload, "--why-not", pool,
                         "-o", "json"])  # fmt: skip
    assert code == 0, out.getvalue()
    found: dict[str, Any] = json.loads(out.getvalue())["whyNot"]
    return found


def assert_pool_status(kube: Kube) -> None:
    """Each pool shows its credential's verification (condition and status.certifications)."""
    ok = wait_for(lambda: (c := condition(kube, "vc-valid")) and c, 60, "vc-valid verified")
    assert (ok["status"], ok["reason"]) == ("True", "CredentialsVerified"), ok
    assert ok["message"] == f"verified: SecNumCloud ({TRUSTED.id})"
    (verified,) = kube.custom("GpuPool", "vc-valid")["status"]["certifications"]
    assert verified["verified"] is True and verified["issuer"] == TRUSTED.id
    for name, problem in PROBLEMS.items():
        found = wait_for(lambda n=name: condition(kube, n), 60, f"{name} condition")
        assert (found["status"], found["reason"]) == ("False", "CertificationUnverified"), found
        assert found["message"].startswith(f"SecNumCloud: credential {problem} ("), found
        (entry,) = kube.custom("GpuPool", name)["status"]["certifications"]
        assert (entry["verified"], entry["problem"]) == (False, problem)
    assert condition(kube, "vc-declared") is None  # no credential, nothing to verify
    assert "vc-valid" in condition(kube, "vc-other")["message"]  # type: ignore[index]


def assert_recorded_verified(kube: Kube, home: str, ns: str, tmp_path: pathlib.Path) -> None:
    """The ledger records the certification the placement relied on as verified."""

    def placement() -> dict[str, Any] | None:
        lines = [ln for s in store.Store(kube.api, home).segments() for ln in s.lines]
        entries = [json.loads(line)["entry"] for line in lines]
        return next((e for e in entries if e.get("outcome") == "Placed"), None)

    entry = wait_for(placement, 60, "the ledger's placement record")
    (certified,) = entry["pool"]["certifications"]
    assert (entry["pool"]["name"], certified["verified"]) == ("vc-valid", True)
    # ... and the auditor's report says so.
    report = tmp_path / "report.csv"
    window = [f"--from={NOW - DAY:%Y-%m-%dT%H:%M:%SZ}", f"--to={NOW + DAY:%Y-%m-%dT%H:%M:%SZ}"]
    where = [f"--kubeconfig={kube.kubeconfig}", f"--ledger-namespace={home}", "-n", ns]
    code = cli.main(["audit", "report", *where, *window, f"--csv={report}"])
    assert code == 0
    (row,) = csv.DictReader(io.StringIO(report.read_text()))
    assert row["certifications valid over the run"].startswith(
        "SecNumCloud 3.2, verified credential (until "
    ), row


def test_only_the_pool_whose_credential_verifies_counts(
    kube: Kube, operator_process: OperatorProcess, tmp_path: pathlib.Path
) -> None:
    home = kube.namespace(governed=False)  # the operator's: credentials, Lease, ledger
    core = client.CoreV1Api(kube.api)
    data = {"token": base64.b64encode(VALID.encode()).decode()}  # read back through the API
    core.create_namespaced_secret(home, {"metadata": {"name": SECRET}, "data": data})
    core.create_namespaced_config_map(home, {"metadata": {"name": CM}, "data": TOKENS})
    trust = tmp_path / "issuers.yaml"
    trust.write_text(json.dumps([TRUSTED.trust()]))
    fleet.apply_fleet(kube.api, [pool(name) for name in REFS])
    operator_process.start(f"--lease-namespace={home}", f"--trusted-issuers={trust}")

    ns = kube.namespace()
    requirement = {"name": "SecNumCloud", "minLevel": "3.2", "verified": True}
    kube.apply_ok(k8s.policy(ns, "lu-verified", ["LU"],
                             sovereignty={"requiredCertifications": [requirement]}))  # fmt: skip
    kube.apply_ok(k8s.gpu_pod(ns, "first", 1))
    bound = wait_for(lambda: kube.bound(ns, "first"), 60, "first bound")
    assert kube.node_pool(bound["spec"]["nodeName"]) == "vc-valid"

    assert_pool_status(kube)

    # Only vc-valid may run the namespace's pods: the admission policy's list says the same.
    wait_for(
        lambda: kube.custom("PlacementPolicy", "lu-verified", ns)["status"].get("allowedPools")
        == ["vc-valid"], 60, "allowedPools",
    )  # fmt: skip

    # A pod vc-valid has no room for waits; explain says why each other pool does not count.
    kube.apply_ok(k8s.gpu_pod(ns, "second", 8))
    wait_for(lambda: kube.held_reason(ns, "second"), 60, "second held")
    for name, problem in PROBLEMS.items():
        why = explain(kube, home, f"{ns}/second", name)
        assert why["reason"] == "CertificationUnverified", why
        assert f"certification SecNumCloud unverified: credential {problem} (" in why["message"]
    declared = explain(kube, home, f"{ns}/second", "vc-declared")
    assert declared["reason"] == "CertificationUnverified"
    assert "declared without a credential" in declared["message"]

    assert_recorded_verified(kube, home, ns, tmp_path)

    # Renewed in its ConfigMap: vc-expired counts again, without a restart, and takes the pod.
    renewed = {**TOKENS, "vc-expired": issued(TRUSTED, "vc-expired")}
    core.patch_namespaced_config_map(CM, home, {"data": renewed})
    wait_for(lambda: (c := condition(kube, "vc-expired")) and c["status"] == "True", 90,
             "vc-expired verified after renewal")  # fmt: skip
    second = wait_for(lambda: kube.bound(ns, "second"), 90, "second bound")
    assert kube.node_pool(second["spec"]["nodeName"]) == "vc-expired"
