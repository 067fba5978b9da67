"""A hostile tenant cannot walk around the rules: every path tried, on the real control plane.

The tenant is a user with the built-in ``edit`` role in one governed namespace (impersonated
with ``kubectl --as``), whose PlacementPolicy allows France only. The chart's admission
policies are installed (``devcluster.admission``, as ``make run`` does) and the real operator
runs. Every path the audit of issue 10 found (accelerators other than ``nvidia.com/gpu``, DRA
claims, gangs mixing rules, forged records, hostile values) and the classic ones (nodeName,
gate removal, preset gates, affinity changes, tolerations, controllers, ephemeral containers)
is tried; each is refused, or held with its reason, and at the end no governed pod is bound
outside France. The last test stops the operator and deletes its webhook configuration: the
policies inside the API server alone still refuse what would escape.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from devcluster import admission, cluster
from greenplace.controller import podspec
from tests import kubeobjects as k8s
from tests.integration import conftest as integration
from tests.integration.conftest import Kube, wait_for

pytestmark = pytest.mark.cluster

TENANT = "mallory"
AS_TENANT = f"--as={TENANT}"
FR_POOLS = {"gcp-europe-west9-a100", "ovh-gra-h100"}
OPERATOR_DOWN = "the webhook configuration deleted to take effect"


@pytest.fixture(scope="module")
def secured(kube: Kube) -> Kube:
    """The cluster with the chart's admission policies, naming the operator's identity (every
    integration module has them; installing again is a no-op, and says what this suite needs)."""
    admission.install(kube.kubeconfig, admission.username(kube.kubeconfig))
    return kube


@pytest.fixture(scope="module")
def running(
    secured: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[integration.OperatorProcess]:
    """``greenplace operate`` in its own process (the last test stops it)."""
    port, metrics_port = cluster.free_ports(2)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = integration.OperatorProcess(secured, log, port, metrics_port)
    process.start()
    yield process
    process.stop()
    assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-4000:]


@pytest.fixture(scope="module")
def tenant_ns(secured: Kube, running: integration.OperatorProcess) -> str:
    """A governed namespace where the tenant has ``edit``: France only, and a stricter policy
    for pods labelled data=secret (France, sovereign law)."""
    ns = secured.namespace()
    secured.apply_ok(k8s.policy(ns, "fr-only", ["FR"]))
    secured.apply_ok(k8s.policy(ns, "secret-fr", ["FR"], select={"data": "secret"},
                                sovereignty={"forbidExtraterritorialExposure": True}))  # fmt: skip
    secured.grant_edit(ns, TENANT)
    wait_for(lambda: allowed(secured, ns, "fr-only") == sorted(FR_POOLS), 30, "allowed pools")
    wait_for(lambda: allowed(secured, ns, "secret-fr") == ["ovh-gra-h100"], 30, "allowed pools")
    probe = k8s.pod(ns, "probe", {"nvidia.com/gpu": 1}, gated=True)
    wait_for(lambda: create(secured, probe, "--dry-run=server").returncode == 0, 30,
             "admission to see the namespace's policies")  # fmt: skip
    return ns


def allowed(kube: Kube, ns: str, name: str) -> list[str]:
    got = kube.kubectl("get", "placementpolicy", name, "-n", ns, "-o",
                       "jsonpath={.status.allowedPools}").stdout  # fmt: skip
    return sorted(json.loads(got)) if got else []


def create(kube: Kube, body: Mapping[str, Any], *flags: str) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("create", "-f", "-", *flags, stdin=k8s.manifest(body))


def as_tenant(kube: Kube, manifest: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
    return create(kube, manifest, AS_TENANT)


def refused(result: subprocess.CompletedProcess[str], says: str) -> bool:
    text = " ".join(result.stderr.split())
    assert result.returncode != 0, "admitted, but should have been refused"
    assert says in text, text
    return True


def gated_now(kube: Kube, ns: str, name: str) -> bool:
    return podspec.is_gated(kube.pod(ns, name))


# -- 1. every accelerator is governed -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "limits"),
    [
        ("mig", {"nvidia.com/mig-1g.10gb": 1}),
        ("amd", {"amd.com/gpu": 1}),
        ("intel", {"gpu.intel.com/i915": 1}),
    ],
)
def test_other_accelerators_are_gated_and_held_with_a_reason(
    secured: Kube, tenant_ns: str, name: str, limits: dict[str, int]
) -> None:
    assert as_tenant(secured, k8s.pod(tenant_ns, name, limits)).returncode == 0
    assert gated_now(secured, tenant_ns, name), "gated at creation like nvidia.com/gpu"
    held = wait_for(lambda: (secured.pod(tenant_ns, name)["metadata"].get("annotations") or {})
                    .get(podspec.HOLD_ANNOTATION), 30, "a hold reason")  # fmt: skip
    # No node of the fleet offers it: held, never released to a pool that cannot run it.
    assert "no node of the pool matches the pod's own" in held, held


def test_an_unknown_accelerator_is_refused(secured: Kube, tenant_ns: str) -> None:
    result = as_tenant(secured, k8s.pod(tenant_ns, "fpga", {"example.com/fpga": 1}))
    assert refused(result, "example.com/fpga looks like an accelerator but is not governed")


def test_a_dra_claim_is_gated_and_only_released_towards_allowed_pools(
    secured: Kube, tenant_ns: str
) -> None:
    template = {
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaimTemplate",
        "metadata": {"name": "one-gpu", "namespace": tenant_ns},
        "spec": {"spec": {"devices": {"requests": [
            {"name": "gpu", "exactly": {"deviceClassName": "gpu.nvidia.com"}}]}}},
    }  # fmt: skip
    assert as_tenant(secured, template).returncode == 0, "edit may create claim templates"
    claim = [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]
    manifest = k8s.pod(tenant_ns, "dra", resourceClaims=claim)
    manifest["spec"]["containers"][0]["resources"] = {"claims": [{"name": "gpu"}]}
    assert as_tenant(secured, manifest).returncode == 0
    released = wait_for(lambda: not gated_now(secured, tenant_ns, "dra")
                        and secured.pod(tenant_ns, "dra"), 30, "the claim pod placed")  # fmt: skip
    terms = released["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]  # fmt: skip
    pools = {v for t in terms for e in t["matchExpressions"]
             if e["key"] == podspec.POOL_LABEL for v in e["values"]}  # fmt: skip
    assert pools and pools <= FR_POOLS, pools


# -- 2. gang members keep their own rules ---------------------------------------------------------


def test_a_gang_is_governed_by_every_members_policy_and_strictest_residency(
    secured: Kube, tenant_ns: str
) -> None:
    # The declared size makes the gang wait for all three: placed together, or not at all
    # (without it, a member created after the others were placed is a gang of its own).
    gang, size = {"greenplace.dev/gang": "mixed"}, {"greenplace.dev/gang-size": "3"}
    members = [
        k8s.pod(tenant_ns, "secret", {"nvidia.com/gpu": 1}, labels={**gang, "data": "secret"},
            annotations=size),
        k8s.pod(tenant_ns, "plain", {"nvidia.com/gpu": 1}, labels=gang, annotations=size),
        k8s.pod(tenant_ns, "resident", {"nvidia.com/gpu": 1},
            labels={**gang, "greenplace.dev/data-residency": "FR"}, annotations=size),
    ]  # fmt: skip
    for manifest in members:
        assert as_tenant(secured, manifest).returncode == 0
    for name in ("secret", "plain", "resident"):
        # secret-fr (sovereign law) allows only ovh-gra-h100: the whole gang goes there.
        pool = wait_for(lambda n=name: secured.placed_pool(tenant_ns, n), 30, f"{name} bound")
        record = secured.pod(tenant_ns, name)["metadata"]["annotations"]
        assert pool == "ovh-gra-h100", (name, record)


# -- 3. nothing a tenant writes is trusted as greenplace's own ------------------------------------


def forged(pool: str, policies: list[str]) -> dict[str, str]:
    record = {"pool": pool, "policies": policies, "at": "2026-01-01T00:00:00+00:00",
              "budgets": [], "charge": {"money": 2990003}}  # fmt: skip
    return {podspec.PLACEMENT_ANNOTATION: json.dumps(record)}


def test_forged_records_are_refused_in_governed_namespaces(secured: Kube, tenant_ns: str) -> None:
    only_operator = "only the operator"
    result = as_tenant(secured, k8s.pod(tenant_ns, "forger", {"nvidia.com/gpu": 1},
                                    annotations=forged("ovh-gra-h100", [])))  # fmt: skip
    assert refused(result, only_operator)
    hold = {podspec.HOLD_ANNOTATION: "Placed: trust me"}
    assert refused(
        as_tenant(secured, k8s.pod(tenant_ns, "holder", annotations=hold)), only_operator
    )

    assert as_tenant(secured, k8s.pod(tenant_ns, "honest", {"nvidia.com/gpu": 1})).returncode == 0
    wait_for(lambda: secured.placed_pool(tenant_ns, "honest"), 30, "honest bound")
    rewrite = forged("ovh-gra-h100", [])  # evade the budget by rewriting its own record
    result = secured.kubectl("annotate", "pod", "honest", "-n", tenant_ns, "--overwrite",
                             *(f"{k}={v}" for k, v in rewrite.items()), AS_TENANT)  # fmt: skip
    assert refused(result, only_operator)


def gpus_free(kube: Kube, pool: str) -> int:
    got = kube.kubectl("get", "gpupool", pool, "-o", "jsonpath={.status.gpusFree}").stdout
    return int(got or -1)


def test_forged_records_elsewhere_zero_no_capacity(secured: Kube, tenant_ns: str) -> None:
    free_ns = secured.namespace(governed=False)
    secured.grant_edit(free_ns, TENANT)
    before = gpus_free(secured, "stackit-eu01-h100")
    for index in range(3):  # never schedulable, claiming the whole German pool
        squatter = k8s.pod(free_ns, f"squat-{index}", {"nvidia.com/gpu": 8},
                       annotations=forged("stackit-eu01-h100", [f"{tenant_ns}/fr-only"]),
                       nodeSelector={"nowhere": "true"})  # fmt: skip
        assert as_tenant(secured, squatter).returncode == 0  # ungoverned: no policy applies
    for index in range(3):
        secured.events(free_ns, f"squat-{index}", "UntrustedRecord")
    assert gpus_free(secured, "stackit-eu01-h100") == before


# -- 4. hostile values are refused at the door ----------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "says"),
    [
        ({"greenplace.dev/expected-duration-hours": "1e308"}, "must be a number of hours"),
        ({"greenplace.dev/expected-duration-hours": "NaN"}, "must be a number of hours"),
        ({"greenplace.dev/expected-duration-hours": "8761"}, "must be a number of hours"),
        ({"greenplace.dev/gang-size": "1k"}, "must be a whole number from 1 to 10000"),
    ],
)
def test_hostile_annotation_values_are_refused(
    secured: Kube, tenant_ns: str, annotations: dict[str, str], says: str
) -> None:
    manifest = k8s.pod(tenant_ns, "hostile", {"nvidia.com/gpu": 1}, annotations=annotations)
    assert refused(as_tenant(secured, manifest), says)


def test_a_hostile_residency_label_is_refused(secured: Kube, tenant_ns: str) -> None:
    labels = {"greenplace.dev/data-residency": "anywhere"}
    manifest = k8s.pod(tenant_ns, "nowhere", {"nvidia.com/gpu": 1}, labels=labels)
    assert refused(as_tenant(secured, manifest), "must be country codes")


def test_a_thousand_gpus_written_1k_are_a_thousand(secured: Kube, tenant_ns: str) -> None:
    assert as_tenant(secured, k8s.pod(tenant_ns, "kilo", {"nvidia.com/gpu": "1k"})).returncode == 0
    held = wait_for(lambda: (secured.pod(tenant_ns, "kilo")["metadata"].get("annotations") or {})
                    .get(podspec.HOLD_ANNOTATION), 30, "a hold reason")  # fmt: skip
    assert "1000 GPUs" in held or "larger than" in held, held


# -- 5. the classic paths -------------------------------------------------------------------------


def test_node_name_and_gate_removal_are_refused(secured: Kube, tenant_ns: str) -> None:
    # Even restricted to an allowed pool, so that only the nodeName rule is broken.
    restricted = k8s.pool_affinity("ovh-gra-h100")
    shortcut = k8s.pod(tenant_ns, "shortcut", {"nvidia.com/gpu": 1}, affinity=restricted,
                   nodeName="ovh-gra-h100-0")  # fmt: skip
    assert refused(as_tenant(secured, shortcut), "spec.nodeName is refused")
    # A pod the planner holds (it asks for more GPUs than any node has), then the tenant tries
    # to release it towards the US.
    assert as_tenant(secured, k8s.pod(tenant_ns, "big", {"nvidia.com/gpu": 64})).returncode == 0
    ops = [{"op": "remove", "path": "/spec/schedulingGates"}]
    result = secured.kubectl("patch", "pod", "big", "-n", tenant_ns, "--type=json",
                             "-p", json.dumps(ops), AS_TENANT)  # fmt: skip
    # Both policies refuse it (only the operator removes the gate; unrestricted towards the
    # US): the API server names whichever it evaluated first.
    text = " ".join(result.stderr.split())
    assert result.returncode != 0, "the tenant released its own pod"
    assert "only the operator" in text or "must have a required node affinity" in text, text


def test_preset_gates_affinity_and_tolerations_cannot_escape(secured: Kube, tenant_ns: str) -> None:
    us = k8s.pool_affinity("gcp-us-central1-h100")
    preset = k8s.pod(tenant_ns, "preset", {"nvidia.com/gpu": 1}, gated=True, affinity=us,
                 tolerations=[{"operator": "Exists"}])  # fmt: skip
    assert as_tenant(secured, preset).returncode == 0
    # Its own affinity admits only the US pool: held for it, never released elsewhere.
    held = wait_for(lambda: (secured.pod(tenant_ns, "preset")["metadata"].get("annotations")
                             or {}).get(podspec.HOLD_ANNOTATION), 30, "a hold reason")  # fmt: skip
    assert "no node of the pool matches the pod's own" in held, held
    assert gated_now(secured, tenant_ns, "preset")


def test_narrowing_a_gated_pod_towards_the_us_cannot_release_it_there(
    secured: Kube, tenant_ns: str
) -> None:
    # Held (it asks for more GPUs than any node has), then the tenant narrows its affinity
    # (Kubernetes allows that while gated) towards the US and adds a toleration.
    assert (
        as_tenant(secured, k8s.pod(tenant_ns, "narrowed", {"nvidia.com/gpu": 64})).returncode == 0
    )
    wait_for(lambda: held_text(secured, tenant_ns, "narrowed"), 30, "a hold reason")
    ops = [
        {"op": "add", "path": "/spec/affinity", "value": k8s.pool_affinity("gcp-us-central1-h100")},
        {"op": "add", "path": "/spec/tolerations/-", "value": {"operator": "Exists"}},
    ]
    result = secured.kubectl("patch", "pod", "narrowed", "-n", tenant_ns, "--type=json",
                             "-p", json.dumps(ops), AS_TENANT)  # fmt: skip
    assert result.returncode == 0, result.stderr  # narrowing is the tenant's right
    # Re-planned with its own constraints: no French node matches them, so it stays gated.
    wait_for(lambda: "no node of the pool matches" in held_text(secured, tenant_ns, "narrowed"),
             30, "the narrowed pod re-planned")  # fmt: skip
    assert gated_now(secured, tenant_ns, "narrowed")


def test_a_controller_creates_pods_that_are_governed(secured: Kube, tenant_ns: str) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "serve", "namespace": tenant_ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "serve"}},
                 "template": {"metadata": {"labels": {"app": "serve"}},
                              "spec": k8s.pod(tenant_ns, "x", {"nvidia.com/gpu": 1})["spec"]}},
    }  # fmt: skip
    assert as_tenant(secured, deployment).returncode == 0

    def serving_pools() -> set[str] | None:
        pods = secured.core.list_namespaced_pod(tenant_ns, label_selector="app=serve").items
        nodes = [p.spec.node_name for p in pods]
        if len(nodes) < 2 or not all(nodes):
            return None
        return {secured.node_pool(n) for n in nodes}

    assert wait_for(serving_pools, 60, "the Deployment's pods bound") <= FR_POOLS


def test_an_ephemeral_container_does_not_move_a_pod(secured: Kube, tenant_ns: str) -> None:
    assert as_tenant(secured, k8s.pod(tenant_ns, "debugged", {"nvidia.com/gpu": 1})).returncode == 0
    pool = wait_for(lambda: secured.placed_pool(tenant_ns, "debugged"), 30, "bound")
    node = secured.pod(tenant_ns, "debugged")["spec"]["nodeName"]
    debug = ("debug", "debugged", "-n", tenant_ns, "--image=busybox", "--target=main")
    result = secured.kubectl(*debug, AS_TENANT)
    assert refused(result, 'cannot patch resource "pods/ephemeralcontainers"')  # edit: no
    result = secured.kubectl(*debug)  # an admin may: the pod stays where it is
    assert result.returncode == 0, result.stderr
    after = secured.pod(tenant_ns, "debugged")
    assert after["spec"].get("ephemeralContainers"), "the debug container was added"
    assert (after["spec"]["nodeName"], pool) == (node, secured.placed_pool(tenant_ns, "debugged"))


def test_no_governed_pod_is_bound_outside_france(secured: Kube, tenant_ns: str) -> None:
    pods = secured.core.list_namespaced_pod(tenant_ns).items
    bound_pools = {p.metadata.name: secured.node_pool(p.spec.node_name)
                   for p in pods if p.spec.node_name}  # fmt: skip
    assert bound_pools, "some pods were placed"
    assert set(bound_pools.values()) <= FR_POOLS, bound_pools


def held_text(kube: Kube, ns: str, name: str) -> str:
    return str((kube.pod(ns, name)["metadata"].get("annotations") or {}).get(
        podspec.HOLD_ANNOTATION, ""))  # fmt: skip


def test_a_deleted_policy_leaves_no_stale_reason(secured: Kube, tenant_ns: str) -> None:
    ns = secured.namespace()
    secured.apply_ok(k8s.policy(ns, "only", ["FR"]))
    big = k8s.pod(ns, "big", {"nvidia.com/gpu": 64})
    wait_for(lambda: create(secured, big).returncode == 0, 30, "admission to see the policy")
    wait_for(lambda: held_text(secured, ns, "big").startswith("PodTooLargeForNode")
             or held_text(secured, ns, "big"), 30, "a first hold reason")  # fmt: skip
    assert secured.kubectl("delete", "placementpolicy", "only", "-n", ns).returncode == 0
    # Creations are refused now (fail-closed), but the operator can still say why it waits.
    reason = wait_for(lambda: held_text(secured, ns, "big").startswith("NoPolicy")
                      and held_text(secured, ns, "big"), 30, "the NoPolicy reason")  # fmt: skip
    assert "no PlacementPolicy" in reason or "NoPolicy" in reason
    late = k8s.pod(ns, "late", {"nvidia.com/gpu": 1})
    result = secured.kubectl("create", "-f", "-", stdin=k8s.manifest(late), wait_for_policy=False)
    assert refused(result, "no params found")


# -- 6. with the operator stopped, the policies alone hold ----------------------------------------


def test_with_the_operator_down_the_policies_alone_refuse_escapes(
    secured: Kube, tenant_ns: str, running: integration.OperatorProcess
) -> None:
    running.stop()
    result = secured.kubectl("delete", "mutatingwebhookconfiguration", "greenplace.dev")
    assert result.returncode == 0, result.stderr
    # Once the API server stops calling the dead webhook, a gated pod is admitted again.
    gated = k8s.pod(tenant_ns, "probe-down", {"nvidia.com/gpu": 1}, gated=True)
    wait_for(lambda: create(secured, gated, "--dry-run=server", AS_TENANT).returncode == 0,
             30, OPERATOR_DOWN)  # fmt: skip
    escapes = {
        "down-gpu": k8s.pod(tenant_ns, "down-gpu", {"nvidia.com/gpu": 1}),
        "down-mig": k8s.pod(tenant_ns, "down-mig", {"nvidia.com/mig-1g.10gb": 1}),
        "down-amd": k8s.pod(tenant_ns, "down-amd", {"amd.com/gpu": 1}),
        "down-dra": k8s.pod(tenant_ns, "down-dra",
                        resourceClaims=[{"name": "g", "resourceClaimTemplateName": "one-gpu"}]),
        "down-fpga": k8s.pod(tenant_ns, "down-fpga", {"example.com/fpga": 1}),
    }  # fmt: skip
    for name, manifest in escapes.items():
        result = as_tenant(secured, manifest)
        assert result.returncode != 0, f"{name} admitted with the operator down"
        assert "ValidatingAdmissionPolicy" in result.stderr, result.stderr
