"""Kueue and the pod gate with the gate policy: the same proofs as test_kueue_governed.py, the
operator gating with the MutatingAdmissionPolicy (``--gate=policy --kueue``).

Why this module exists: CEL cannot verify the HMAC signature of a Kueue placement record, so
with the policy and ``--kueue`` the policy skips pods carrying a record and the webhook is kept
for those pods only (``gatepolicy``, webhook ``matchConditions``). Every test of
test_kueue_governed.py runs here again on that split: the pod of a Job admitted through
greenplace's check is not gated and is bound in the chosen pool; a forged, altered, copied or
forbidden-pool record is gated with the webhook's warning; with the operator down, the
sovereignty policy judges the pinned pool of a pod the policy left ungated (one carrying a
record), while any other GPU pod is still gated by the API server (test_kueue_governed's own
last test assumes no gate at all, so it is replaced here). The first test checks the split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from devcluster import kueue as kueue_
from greenplace.controller import gatepolicy, kueue, podspec, webhook
from tests import kubeobjects as k8s
from tests.integration import conftest as integration
from tests.integration.conftest import Kube, wait_for


def test_the_policy_gates_and_the_webhook_sees_only_record_pods(
    kube: Kube, running: integration.OperatorProcess
) -> None:
    api = client.AdmissionregistrationV1Api(kube.api)
    policy = api.read_mutating_admission_policy(gatepolicy.NAME)
    names = [c.name for c in policy.spec.match_conditions]
    assert "no-kueue-record" in names
    (hook,) = api.read_mutating_webhook_configuration(webhook.CONFIGURATION_NAME).webhooks
    assert [(c.name, c.expression) for c in hook.match_conditions] == [
        (webhook.RECORDS_ONLY["name"], webhook.RECORDS_ONLY["expression"])
    ]


# The same fixtures and tests (pytest collects them here too); only `running` differs.
from tests.integration.test_kueue_governed import (  # noqa: E402
    AS_TENANT,
    US_POOL,
    admitted,
    checking_operator,
    kueue_running,
    pytestmark,
    tenant_ns,
    test_a_forged_record_is_gated_with_a_warning,
    test_a_valid_record_copied_to_another_namespace_is_gated,
    test_a_valid_record_with_a_forbidden_pool_stays_gated_and_held,
    test_an_altered_record_is_gated,
    test_the_pods_of_an_admitted_job_are_not_gated_and_bound_in_the_chosen_pool,
)

__all__ = [
    "admitted",
    "kueue_running",
    "pytestmark",
    "tenant_ns",
    "test_a_forged_record_is_gated_with_a_warning",
    "test_a_valid_record_copied_to_another_namespace_is_gated",
    "test_a_valid_record_with_a_forbidden_pool_stays_gated_and_held",
    "test_an_altered_record_is_gated",
    "test_the_pods_of_an_admitted_job_are_not_gated_and_bound_in_the_chosen_pool",
]


@pytest.fixture(scope="module")
def running(
    kube: Kube, kueue_running: kueue_.Kueue | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[integration.OperatorProcess]:
    """test_kueue_governed's operator, gating with the policy."""
    with checking_operator(kube, tmp_path_factory, "--gate=policy") as process:
        yield process
    log = process.log
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-4000:]


def test_with_the_operator_down_the_api_server_still_gates_and_judges_record_pods(
    kube: Kube, tenant_ns: str, running: integration.OperatorProcess
) -> None:
    running.stop()
    result = kube.kubectl("delete", "mutatingwebhookconfiguration", webhook.CONFIGURATION_NAME)
    assert result.returncode == 0, result.stderr

    def tenant_creates(body: dict[str, Any]) -> dict[str, Any] | None:
        got = kube.kubectl("create", "-f", "-", "-o", "json", AS_TENANT, stdin=k8s.manifest(body))
        return json.loads(got.stdout) if got.returncode == 0 else None

    def record_pod(name: str, pool: str) -> dict[str, Any]:
        record = {kueue.RECORD_ANNOTATION: json.dumps({"pool": pool})}
        return k8s.gpu_pod(
            tenant_ns, name, nodeSelector={podspec.POOL_LABEL: pool}, annotations=record
        )

    # Once the API server stops calling the deleted webhook, a record pod is admitted ungated.
    wait_for(lambda: tenant_creates(record_pod("down-fr", "ovh-gra-h100")), 30,
             "the webhook configuration deleted to take effect")  # fmt: skip
    assert not podspec.is_gated(kube.pod(tenant_ns, "down-fr"))
    assert tenant_creates(record_pod("down-us", US_POOL)) is None, "refused: not an allowed pool"
    plain = tenant_creates(k8s.gpu_pod(tenant_ns, "down-plain",
                                       nodeSelector={podspec.POOL_LABEL: US_POOL}))  # fmt: skip
    assert plain is not None and podspec.is_gated(plain), "no record: gated by the API server"
