"""The gate policy gates exactly the pods the webhook gates: one table, both paths.

Why this module exists: on Kubernetes 1.36+ the API server adds the placement gate itself
(``gatepolicy``), and the webhook's code (``webhook.decide``) is kept for older servers. Two
implementations of one rule drift, so every row of this table (GPU in app containers, in init
containers, in sidecars, bound, already gated, no GPU, zero GPUs, huge counts, MIG, AMD and
Intel, a DRA claim, an unreadable count, an ungoverned namespace) is created on the real API
server with only the policy installed (the operator's ``gatepolicy.policy()``, then the chart's
template as helm renders it), no webhook configuration at all, and what the server made of
``spec.schedulingGates`` is compared with what the webhook's function answers for the same pod.
The chart's admission policies are left out here (``ADMISSION_POLICIES``): they refuse bound or
ungated GPU pods in governed namespaces, which would hide the gate's own rule;
test_gate_policy_failclosed.py runs the policy with them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from devcluster import admission
from greenplace.controller import gatepolicy, kueue, podspec, resources, webhook
from tests.integration import conftest as integration
from tests.integration.conftest import Kube

ADMISSION_POLICIES = False
ACCELERATORS = resources.Accelerators()  # the chart's defaults, which the policy renders
OTHER_GATE = {"name": "example.com/other"}
REFUSED = "refused"


def container(name: str = "main", **limits: str) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": "registry.k8s.io/pause:3.10"}
    if limits:
        body["resources"] = {"limits": dict(limits)}
    return body


def gpu(n: str = "1") -> dict[str, str]:
    return {"nvidia.com/gpu": n}


# name -> pod spec; each is created in a governed namespace unless its name says otherwise.
ROWS: dict[str, dict[str, Any]] = {
    "one-gpu": {"containers": [container(**gpu())]},
    "gpu-in-second-container": {"containers": [container(), container("b", **gpu("2"))]},
    "gpu-in-init-container": {
        "initContainers": [container("init", **gpu())],
        "containers": [container()],
    },
    "gpu-in-sidecar": {
        "initContainers": [{**container("side", **gpu()), "restartPolicy": "Always"}],
        "containers": [container()],
    },
    "sidecar-without-gpu": {
        "initContainers": [{**container("side", cpu="10m"), "restartPolicy": "Always"}],
        "containers": [container()],
    },
    "no-gpu": {"containers": [container(cpu="100m", memory="16Mi")]},
    "zero-gpus": {
        "containers": [container(**gpu("0"))],
        "initContainers": [container("init", **gpu("0"))],
    },
    "other-extended-resource": {"containers": [container(**{"example.com/widget": "1"})]},
    "huge-count": {"containers": [container(**gpu("100000"))]},
    "huge-count-suffix": {"containers": [container(**gpu("1k"))]},
    "huge-count-exponent": {"containers": [container(**gpu("1e6"))]},
    "mig-slice": {"containers": [container(**{"nvidia.com/mig-1g.10gb": "1"})]},
    "amd": {"containers": [container(**{"amd.com/gpu": "1"})]},
    "intel-i915": {"containers": [container(**{"gpu.intel.com/i915": "1"})]},
    "intel-xe": {"containers": [container(**{"gpu.intel.com/xe": "1"})]},
    "requests-and-limits": {
        "containers": [{**container(), "resources": {"requests": gpu("2"), "limits": gpu("2")}}]
    },
    "fractional-gpu": {"containers": [container(**gpu("500m"))]},
    "dra-claim": {
        "resourceClaims": [{"name": "gpu", "resourceClaimName": "absent"}],
        "containers": [{**container(), "resources": {"claims": [{"name": "gpu"}]}}],
    },
    "bound": {"nodeName": "nowhere", "containers": [container(**gpu())]},
    "already-gated": {
        "schedulingGates": [OTHER_GATE, {"name": podspec.GATE}],
        "containers": [container(**gpu())],
    },
    "other-gate-only": {"schedulingGates": [OTHER_GATE], "containers": [container(**gpu())]},
    "ungoverned-namespace": {"containers": [container(**gpu())]},
}
# A tenant-written Kueue record: the webhook without --kueue trusts none, so gates the pod.
RECORD = {kueue.RECORD_ANNOTATION: json.dumps({"pool": "ovh-gra-h100"})}
ANNOTATED = {
    "forged-kueue-record": (
        {"annotations": RECORD},
        {"containers": [container(**gpu())], "nodeSelector": {podspec.POOL_LABEL: "ovh-gra-h100"}},
    )
}


def _gate_manifest(source: str, kube: Kube) -> list[dict[str, Any]]:
    """The policy and binding the operator installs out of cluster, or the chart's."""
    if source == "operator":
        return [gatepolicy.policy(ACCELERATORS), gatepolicy.binding()]
    docs = admission.render(admission.username(kube.kubeconfig), gate=True)
    return [d for d in docs if str(d["kind"]).startswith("MutatingAdmissionPolicy")]


@pytest.fixture(scope="module", params=["operator", "chart"])
def gate(kube: Kube, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """One gate policy alone (the operator's, then the chart's; no webhook configuration); a
    governed and an ungoverned namespace."""
    manifest = _gate_manifest(request.param, kube)
    assert [d["kind"] for d in manifest] == [
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
    ]
    text = "\n---\n".join(json.dumps(d) for d in manifest)
    result = kube.kubectl("apply", "--server-side", "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    registration = client.AdmissionregistrationV1Api(kube.api)
    assert registration.list_mutating_webhook_configuration().items == []
    assert len(registration.list_mutating_admission_policy().items) == 1, "this one alone"
    governed, ungoverned = kube.namespace(), kube.namespace(governed=False)
    # The API server sees a new policy through its own informer: wait until it gates.
    integration.wait_for(lambda: _probe_gated(kube, governed), 30, "the policy to gate a pod")
    yield governed, ungoverned
    result = kube.kubectl("delete", "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    # ... and until it no longer does, so the next source is judged alone.
    integration.wait_for(lambda: not _probe_gated(kube, governed), 30, "the policy to be gone")


def _probe_gated(kube: Kube, namespace: str) -> bool:
    name = f"probe-{uuid.uuid4().hex[:6]}"
    created = kube.core.create_namespaced_pod(
        namespace, {"metadata": {"name": name}, "spec": {"containers": [container(**gpu())]}}
    )
    return bool(created.spec.scheduling_gates)


def through_api_server(
    kube: Kube, namespace: str, name: str, metadata: dict[str, Any], spec: dict[str, Any]
) -> Any:
    """The pod's schedulingGates as the API server stored them, or REFUSED."""
    body = {"metadata": {"name": name, **metadata}, "spec": spec}
    try:
        kube.core.create_namespaced_pod(namespace, body)
    except client.ApiException as error:
        assert error.status in (400, 403, 422), error.body
        return REFUSED
    return kube.pod(namespace, name)["spec"].get("schedulingGates")


def through_webhook(
    namespace: str, governed: bool, metadata: dict[str, Any], spec: dict[str, Any]
) -> Any:
    """The schedulingGates the webhook's code leaves on the pod, or REFUSED; an ungoverned
    namespace is never sent to it (its configuration's namespaceSelector)."""
    unchanged = spec.get("schedulingGates")
    if not governed:
        return unchanged
    pod = {"metadata": {"namespace": namespace, **metadata}, "spec": spec}
    decision = webhook.decide(pod, ACCELERATORS)
    if decision.refused is not None:
        return REFUSED
    return unchanged if decision.gates is None else decision.gates


ALL_ROWS = {**{name: ({}, spec) for name, spec in ROWS.items()}, **ANNOTATED}


@pytest.mark.parametrize("row", list(ALL_ROWS))
def test_the_policy_gates_as_the_webhook_does(kube: Kube, gate: tuple[str, str], row: str) -> None:
    governed_ns, ungoverned_ns = gate
    governed = row != "ungoverned-namespace"
    namespace = governed_ns if governed else ungoverned_ns
    metadata, spec = ALL_ROWS[row]
    by_server = through_api_server(kube, namespace, row, metadata, spec)
    by_webhook = through_webhook(namespace, governed, metadata, spec)
    assert by_server == by_webhook, (row, by_server, by_webhook)


def test_the_table_covers_both_outcomes(kube: Kube, gate: tuple[str, str]) -> None:
    """The table is not trivially equal: the webhook gates some rows, leaves others, refuses one."""

    def gates(row: str) -> Any:
        metadata, spec = ALL_ROWS[row]
        return through_webhook("x", row != "ungoverned-namespace", metadata, spec)

    refused = {n for n in ALL_ROWS if gates(n) == REFUSED}
    gated = {
        n for n in set(ALL_ROWS) - refused if gates(n) != ALL_ROWS[n][1].get("schedulingGates")
    }
    assert {
        "one-gpu",
        "gpu-in-init-container",
        "gpu-in-sidecar",
        "dra-claim",
        "mig-slice",
        "other-gate-only",
        "forged-kueue-record",
    } <= gated
    assert not {"bound", "already-gated", "no-gpu", "zero-gpus", "ungoverned-namespace"} & gated
    assert refused == {"fractional-gpu"}


def test_the_binding_selects_the_webhooks_namespaces() -> None:
    hook = webhook.configuration("https://127.0.0.1:1", b"ca")["webhooks"][0]
    selector = gatepolicy.binding()["spec"]["matchResources"]["namespaceSelector"]
    assert selector == hook["namespaceSelector"]
    assert (
        gatepolicy.policy(ACCELERATORS)["spec"]["matchConstraints"]["namespaceSelector"]
        == (hook["namespaceSelector"])
    )
