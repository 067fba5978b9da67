"""The chart's RBAC with ``kueue.enabled``: what the AdmissionCheck needs, as the API server says.

Why this module exists: the chart value ``kueue.enabled`` grants the operator's ServiceAccount
read access to Kueue's kinds, patch on two status subresources and patch on Workloads (to park
one deferred for long: ``charts/greenplace/templates/rbac.yaml``, docs/kueue.md).
``tests/unit/test_chart.py`` reads the rendered rules; here the API server's own authorizer
answers: the rendered ClusterRole, Role and their bindings are applied, Kueue's CRDs installed
(the real Kueue is started), and ``kubectl auth can-i --as`` the ServiceAccount says yes to each
call the check makes and no to every write it must not make.
The same ServiceAccount with the value off may not read a Workload.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from devcluster import cluster
from devcluster import kueue as kueue_
from tests.charts import helm_template
from tests.integration.conftest import Kube, wait_for

ADMISSION_POLICIES = False  # only the authorizer is looked at
RELEASE_NAMESPACE = "greenplace-system"  # what tests.charts renders the chart into
KUEUE = "kueue.x-k8s.io"

WL, AC, RF, CQ, LQ = (
    f"{plural}.{KUEUE}"
    for plural in (
        "workloads",
        "admissionchecks",
        "resourceflavors",
        "clusterqueues",
        "localqueues",
    )
)
# (verb, resource, subresource): what the check does, cluster-wide.
MUST = [
    ("get", WL, ""), ("list", WL, ""), ("watch", WL, ""), ("patch", WL, "status"),
    ("patch", WL, ""),
    ("get", AC, ""), ("list", AC, ""), ("watch", AC, ""), ("patch", AC, "status"),
    ("list", RF, ""), ("watch", RF, ""), ("list", CQ, ""), ("watch", CQ, ""),
]  # fmt: skip
# What it must never do: no spec of Kueue's, no Workload's lifecycle, no quota of its own.
MUST_NOT = [
    ("update", WL, ""), ("delete", WL, ""), ("create", WL, ""),
    ("update", WL, "status"), ("patch", WL, "finalizers"),
    ("patch", AC, ""), ("create", AC, ""), ("delete", AC, ""),
    ("create", CQ, ""), ("patch", CQ, ""), ("patch", CQ, "status"),
    ("create", RF, ""), ("patch", RF, ""), ("delete", RF, ""),
    ("create", LQ, ""), ("patch", LQ, ""),
]  # fmt: skip


@pytest.fixture(scope="module")
def kueue(kube: Kube) -> Iterator[None]:
    """Kueue's CRDs (from its real manager's start) or the Kueue your cluster runs."""
    if isinstance(kube.cluster, cluster.LocalCluster):
        kueue_.start(kube.cluster)
    else:
        assert kube.kubectl("get", "crd", f"workloads.{KUEUE}").returncode == 0, (
            "install Kueue in the cluster GREENPLACE_KUBECONFIG names (docs/kueue.md)"
        )
    yield


def apply_chart_rbac(kube: Kube, *sets: str) -> str:
    """The chart's RBAC objects as ``helm template`` renders them with ``sets``, applied; the
    user name of the ServiceAccount they bind."""
    rendered = helm_template(*sets)
    assert rendered.returncode == 0, rendered.stderr
    kinds = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] in kinds]
    assert {d["kind"] for d in documents} == kinds
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NAMESPACE}}
    kube.apply_ok(yaml.safe_dump_all([namespace, *documents]))
    (binding,) = [d for d in documents if d["kind"] == "ClusterRoleBinding"]
    (subject,) = binding["subjects"]
    assert subject["kind"] == "ServiceAccount"
    return f"system:serviceaccount:{subject['namespace']}:{subject['name']}"


def can_i(
    kube: Kube, who: str, verb: str, resource: str, subresource: str = "", *where: str
) -> bool:
    """The API server's answer for ``who`` (the operator's ServiceAccount); ``resource`` as
    kubectl names it (``workloads.kueue.x-k8s.io``, ``events``)."""
    extra = [f"--subresource={subresource}"] if subresource else []
    result = kube.kubectl(
        "auth", "can-i", verb, resource,
        *extra, *where, f"--as={who}",
    )  # fmt: skip
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_kueue_enabled_grants_what_the_check_needs_and_nothing_more(
    kube: Kube, kueue: None
) -> None:
    who = apply_chart_rbac(kube, "kueue.enabled=true")
    # The authorizer learns of the new rules from its informer, a moment after the apply.
    wait_for(lambda: can_i(kube, who, "list", WL), what="the Kueue rules to apply")
    refused = [call for call in MUST if not can_i(kube, who, *call)]
    assert not refused, f"the check needs these and the chart does not grant them: {refused}"
    # Namespaced Workloads: granted in any namespace (the ClusterRole is cluster-wide).
    assert can_i(kube, who, "patch", WL, "status", "-n", "team-a")
    granted = [call for call in MUST_NOT if can_i(kube, who, *call)]
    assert not granted, f"the chart grants writes the check never makes: {granted}"
    # Its Events say why (on the Workload and its Job); it reads no Secret but the record key
    # of its own namespace, and never creates or deletes pods.
    assert can_i(kube, who, "create", "events", "", "-n", "team-a")
    for verb, resource, where in (
        ("get", "secrets", ("-n", "team-a")), ("list", "secrets", ("--all-namespaces",)),
        ("create", "pods", ("-n", "team-a")), ("delete", "pods", ("-n", "team-a")),
        ("patch", "jobs.batch", ("-n", "team-a")), ("delete", "jobs.batch", ("-n", "team-a")),
    ):  # fmt: skip
        assert not can_i(kube, who, verb, resource, "", *where), (verb, resource, where)


def test_kueue_disabled_grants_nothing_of_kueues(kube: Kube, kueue: None) -> None:
    who = apply_chart_rbac(kube)  # the default: kueue.enabled=false
    # The rest of the operator's rights are there (on an empty role this test would pass).
    wait_for(lambda: can_i(kube, who, "patch", "pods", "", "-n", "team-a"), what="the role")
    # The rules of a previous apply with the value on are gone once the authorizer sees it.
    wait_for(lambda: not can_i(kube, who, "list", WL), what="the Kueue rules to go")
    assert not [call for call in MUST if can_i(kube, who, *call)]
