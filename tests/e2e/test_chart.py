"""The Helm chart, end to end: rendered by the real helm, applied by the real kubectl.

Why this module exists: users meet greenplace through ``helm install``. These tests prove the
chart on the real local control plane: ``helm lint`` passes and the values schema refuses
unknown keys; the chart's webhook is the operator's own; the operator, run out-of-cluster *as
the chart's ServiceAccount* (a token from ``kubectl create token``) with the chart's generated
certificate, places pods, so the RBAC is sufficient; ``kubectl auth can-i`` proves it is no
broader; and the ValidatingAdmissionPolicies keep sovereignty fail-closed inside the API server
with the operator stopped and its webhook configuration deleted.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pathlib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devcluster import build, cluster
from greenplace.api import crdgen
from greenplace.audit import store
from greenplace.cli import main as cli
from greenplace.controller import podspec, webhook
from tests import kubeobjects as k8s
from tests.integration import conftest as integration

pytestmark = pytest.mark.cluster
# The chart installs its own admission policies (naming its ServiceAccount).
ADMISSION_POLICIES = False

# The control plane with greenplace's CRDs and the example fleet, shared with the integration
# tests (one per test module).
kube = integration.kube

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "greenplace"
RELEASE = "gp"
NAMESPACE = "greenplace-system"
FULLNAME = f"{RELEASE}-greenplace"
OPERATOR = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"
FR_DE_POOLS = ["gcp-europe-west9-a100", "ovh-gra-h100", "stackit-eu01-h100"]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = str(build.ensure_built(log=False)["helm"])
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


def render(
    *sets: str, tests: bool = False, kubeconfig: pathlib.Path | None = None
) -> list[dict[str, Any]]:
    """``helm template`` of the chart with ``--set`` values; the objects it yields.

    With ``kubeconfig``, helm's ``lookup`` reads that cluster, as on ``helm upgrade``.
    """
    # This module proves the webhook path (gate.mode=webhook, for API servers before 1.36; a
    # later --set wins); test_chart_gate.py the default, the gate policy, and the upgrade.
    flags = ["--set=gate.mode=webhook"] + [f"--set={s}" for s in sets]
    flags += [] if tests else ["--skip-tests"]
    if kubeconfig:
        flags += ["--dry-run=server", f"--kubeconfig={kubeconfig}"]
    result = helm("template", RELEASE, str(CHART), f"--namespace={NAMESPACE}", *flags)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return found


# -- the chart alone ---------------------------------------------------------------------------


def test_helm_lint_passes() -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_show_readme_prints_the_chart_readme() -> None:
    shown = helm("show", "readme", str(CHART))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == (CHART / "README.md").read_text().strip()
    assert "## Argo CD health" in shown.stdout


def test_values_schema_refuses_unknown_and_invalid_values() -> None:
    for bad in ("imagee.tag=x", "webhook.certManager.enabeld=true", "webhook.timeoutSeconds=99"):
        result = helm("template", RELEASE, str(CHART), f"--set={bad}")
        assert result.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in result.stderr, bad
    result = helm("template", RELEASE, str(CHART), "--set=serviceMonitor.enabled=true")
    assert "serviceMonitor.enabled needs metrics.enabled" in result.stderr


def test_the_chart_webhook_is_the_operators_own() -> None:
    """Same rules, scope, failure policy and path as controller.webhook.configuration()."""
    docs = render("webhook.url=https://127.0.0.1:9443")
    charted = only(docs, "MutatingWebhookConfiguration")["webhooks"]
    ca = base64.b64decode(charted[0]["clientConfig"]["caBundle"])
    assert charted == webhook.configuration("https://127.0.0.1:9443", ca)["webhooks"]

    in_cluster = only(render(), "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
    assert in_cluster["service"] == {
        "name": FULLNAME, "namespace": NAMESPACE, "path": "/gate", "port": 443,
    }  # fmt: skip


def test_the_generated_certificate_is_shared_and_names_the_webhook() -> None:
    docs = render("webhook.url=https://127.0.0.1:9443")
    secret = only(docs, "Secret", f"{FULLNAME}-webhook-tls")
    webhook_ca = only(docs, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]
    assert secret["data"]["ca.crt"] == webhook_ca["caBundle"]
    hosts = secret["metadata"]["annotations"]["greenplace.dev/certificate-hosts"].split(",")
    assert f"dns:{FULLNAME}.{NAMESPACE}.svc" in hosts
    assert "ip:127.0.0.1" in hosts
    pod = only(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert pod["checksum/webhook-tls"], "a new certificate must restart the operator"


def test_operator_pods_meet_pod_security_restricted() -> None:
    docs = render(tests=True)
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2  # the fail-closed webhook survives one loss
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    for pod in (deployment["spec"]["template"]["spec"], only(docs, "Pod")["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
    probes = deployment["spec"]["template"]["spec"]["containers"][0]
    assert probes["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    # Ready = can answer admission: a failing cycle must not make the fail-closed webhook unready.
    assert probes["readinessProbe"]["tcpSocket"] == {"port": "webhook"}
    assert only(docs, "Pod")["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_crds_are_kept_on_uninstall_and_optional() -> None:
    crds = [d for d in render() if d["kind"] == "CustomResourceDefinition"]
    assert {c["metadata"]["name"] for c in crds} == {
        f"{k.plural}.greenplace.dev" for k in crdgen.KINDS
    }
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    kinds = {d["kind"] for d in render("crds.install=false")}
    assert "CustomResourceDefinition" not in kinds


def test_cert_manager_replaces_the_generated_certificate() -> None:
    docs = render("webhook.certManager.enabled=true", "serviceMonitor.enabled=true",
                  "metrics.enabled=true")  # fmt: skip
    kinds = {d["kind"] for d in docs}
    assert {"Issuer", "Certificate", "ServiceMonitor"} <= kinds
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"] == [
        f"{FULLNAME}-ledger-key",
        f"{FULLNAME}-record-key",
    ]
    config = only(docs, "MutatingWebhookConfiguration")
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    injected = config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    assert injected == f"{NAMESPACE}/{FULLNAME}-webhook"


# -- the chart on a real control plane ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Release:
    """The chart applied to the cluster, with the webhook URL the operator must serve."""

    docs: list[dict[str, Any]]
    webhook_port: int


@pytest.fixture(scope="module")
def release(kube: integration.Kube) -> Release:
    """The chart rendered by helm and applied server-side, its webhook pointed out of cluster."""
    (port,) = cluster.free_ports(1)
    docs = render(f"webhook.url=https://127.0.0.1:{port}", f"webhook.port={port}")
    assert kube.kubectl("create", "namespace", NAMESPACE).returncode == 0
    manifest = "\n---\n".join(json.dumps(d) for d in docs)
    # The chart takes the CRDs over from the `kubectl apply -f crds/` of the shared fixture,
    # as a cluster moving to Helm does (docs/install.md, "Upgrading").
    result = kube.kubectl("apply", "--server-side", "--force-conflicts",
                          "--field-manager=helm-e2e", "-f", "-", stdin=manifest)  # fmt: skip
    assert result.returncode == 0, result.stderr
    result = kube.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    assert result.returncode == 0, result.stderr
    return Release(docs, port)


def test_an_upgrade_keeps_the_webhook_certificate_while_its_hosts_stay(
    kube: integration.Kube, release: Release
) -> None:
    url = f"webhook.url=https://127.0.0.1:{release.webhook_port}"
    tls = f"{FULLNAME}-webhook-tls"
    installed = only(release.docs, "Secret", tls)["data"]
    upgraded = only(render(url, kubeconfig=kube.kubeconfig), "Secret", tls)["data"]
    assert upgraded == installed
    webhook_ca = only(render(url, kubeconfig=kube.kubeconfig), "MutatingWebhookConfiguration")
    assert webhook_ca["webhooks"][0]["clientConfig"]["caBundle"] == installed["ca.crt"]
    moved = only(render("webhook.url=https://127.0.0.2:9443", kubeconfig=kube.kubeconfig),
                 "Secret", tls)["data"]  # fmt: skip
    assert moved["tls.crt"] != installed["tls.crt"], "a new host needs a new certificate"
    key = f"{FULLNAME}-record-key"
    signing = only(release.docs, "Secret", key)["data"]["key"]
    assert only(render(url, kubeconfig=kube.kubeconfig), "Secret", key)["data"]["key"] == signing
    assert only(render(url), "Secret", key)["data"]["key"] != signing, "a new install: new key"
    ledger = f"{FULLNAME}-ledger-key"
    ledger_key = only(release.docs, "Secret", ledger)["data"]["private.pem"]
    upgraded_key = only(render(url, kubeconfig=kube.kubeconfig), "Secret", ledger)["data"]
    assert upgraded_key["private.pem"] == ledger_key, "the ledger keeps its signing key"


def set_allowed_pools(kube: integration.Kube, ns: str, name: str, pools: list[str]) -> None:
    """What the operator will write: the pools passing the policy's hard sovereignty rules."""
    patch = json.dumps({"status": {"allowedPools": pools}})
    result = kube.kubectl("patch", "placementpolicy", name, "-n", ns, "--subresource=status",
                          "--type=merge", "-p", patch)  # fmt: skip
    assert result.returncode == 0, result.stderr


def governed_with_policy(kube: integration.Kube, pools: list[str] = FR_DE_POOLS) -> str:
    """A governed namespace whose PlacementPolicy fr-de allows ``pools``."""
    ns = kube.namespace()
    assert kube.apply(k8s.policy(ns, "fr-de", ["FR", "DE"])).returncode == 0
    set_allowed_pools(kube, ns, "fr-de", pools)
    return ns


def service_account_kubeconfig(kube: integration.Kube, path: pathlib.Path) -> pathlib.Path:
    """A kubeconfig holding a token of the chart's ServiceAccount (``kubectl create token``)."""
    token = kube.kubectl("create", "token", FULLNAME, "-n", NAMESPACE, "--duration=1h")
    assert token.returncode == 0, token.stderr
    admin = yaml.safe_load(kube.kubeconfig.read_text())
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": FULLNAME, "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "sa", "context": {"cluster": admin["clusters"][0]["name"],
                                                "user": FULLNAME}}],
        "current-context": "sa",
    }))  # fmt: skip
    return path


def deployment_args(release: Release, overrides: dict[str, str]) -> list[str]:
    """The operator container's arguments from the chart, with ``--flag`` values replaced."""
    container = only(release.docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    for flag, value in overrides.items():
        (index,) = [i for i, a in enumerate(args) if a.split("=", 1)[0] == flag]
        args[index] = f"{flag}={value}"
    return args


@pytest.fixture
def operator_as_service_account(
    kube: integration.Kube, release: Release, tmp_path: pathlib.Path
) -> Iterator[integration.OperatorProcess]:
    """``greenplace`` with the Deployment's own arguments, out of cluster: the chart's
    ServiceAccount token, certificate and webhook port; loopback instead of 0.0.0.0."""
    certs = tmp_path / "webhook"
    certs.mkdir()
    secret = kube.core.read_namespaced_secret(f"{FULLNAME}-webhook-tls", NAMESPACE)
    for key in ("ca.crt", "tls.crt", "tls.key"):  # read as admin, as the kubelet mounts it
        (certs / key).write_bytes(base64.b64decode(secret.data[key]))
    record_key = tmp_path / "record-key"
    signing = kube.core.read_namespaced_secret(f"{FULLNAME}-record-key", NAMESPACE)
    record_key.write_bytes(base64.b64decode(signing.data["key"]))
    ledger_key = tmp_path / "ledger-key.pem"
    ledger = kube.core.read_namespaced_secret(f"{FULLNAME}-ledger-key", NAMESPACE)
    ledger_key.write_bytes(base64.b64decode(ledger.data["private.pem"]))
    health_port, metrics_port = cluster.free_ports(2)
    args = deployment_args(release, {
        "--webhook-listen": "127.0.0.1",
        "--webhook-cert-dir": str(certs),
        "--record-key-file": str(record_key),
        "--ledger-key-file": str(ledger_key),
        "--liveness": f"http://127.0.0.1:{health_port}/healthz",
        # What the kubelet substitutes from the downward API in a cluster.
        "--identity": "chart-operator-0",
        "--lease-namespace": NAMESPACE,
    })  # fmt: skip
    kubeconfig = service_account_kubeconfig(kube, tmp_path / "service-account.kubeconfig")
    running = integration.OperatorProcess(
        kube, tmp_path / "operator.log", release.webhook_port, metrics_port
    )
    with running.log.open("wb") as out:
        running.process = subprocess.Popen(
            [sys.executable, "-m", "greenplace.cli.main", *args, f"--kubeconfig={kubeconfig}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
    process = running.process
    try:
        integration.wait_for(lambda: cluster.port_open(release.webhook_port) or
                             process.poll() is not None, 60, "the operator's webhook")  # fmt: skip
        assert process.poll() is None, running.log.read_text()[-3000:]
        # The endpoint the chart's liveness and readiness probes call.
        integration.wait_for(lambda: healthy(f"http://127.0.0.1:{health_port}/healthz"), 30,
                             "the liveness endpoint")  # fmt: skip
        yield running
    finally:
        running.stop()
    text = running.log.read_text(errors="replace")
    for sign in ("Traceback", "Forbidden", "forbidden", "Not enough permissions"):
        assert sign not in text, text[-4000:]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_operator_places_pods_as_the_charts_service_account(
    kube: integration.Kube, operator_as_service_account: integration.OperatorProcess
) -> None:
    ns = governed_with_policy(kube)
    for name, gpus in {"a": 4, "b": 8}.items():
        result = kube.apply(k8s.gpu_pod(ns, name, gpus))
        assert result.returncode == 0, result.stderr  # the chart's webhook reached the operator
    for name in ("a", "b"):
        pod = integration.wait_for(lambda n=name: kube.bound(ns, n), 30,
                                   f"{ns}/{name} placed and bound")  # fmt: skip
        assert kube.node_pool(pod["spec"]["nodeName"]) in FR_DE_POOLS
        assert podspec.PLACEMENT_ANNOTATION in pod["metadata"]["annotations"]
    status = integration.wait_for(
        lambda: kube.kubectl("get", "placementpolicy", "fr-de", "-n", ns, "-o",
                             "jsonpath={.status.placed}").stdout == "2",
        30, "policy status written through the status subresource",
    )  # fmt: skip
    assert status

    # Both placements in the signed ledger, written with the chart's RBAC and its mounted key.
    def placed_in_ledger() -> set[str]:
        lines = [ln for seg in store.Store(kube.api, NAMESPACE).segments() for ln in seg.lines]
        entries = [json.loads(line)["entry"] for line in lines]
        return {e["name"] for e in entries if e["namespace"] == ns and e["outcome"] == "Placed"}

    integration.wait_for(lambda: placed_in_ledger() == {"a", "b"}, 30, "the ledger records")
    verified = cli.main(["audit", "verify", f"--kubeconfig={kube.kubeconfig}",
                         f"--ledger-namespace={NAMESPACE}"])  # fmt: skip
    assert verified == 0


def can_i(kube: integration.Kube, verb: str, resource: str, *where: str) -> bool:
    result = kube.kubectl("auth", "can-i", verb, resource, f"--as={OPERATOR}", *where)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


ALL = "--all-namespaces"
# What the operator does, and so may do (each used by the placement test above).
NEEDED = [
    ("get", "pods", ALL), ("list", "pods", ALL), ("watch", "pods", ALL), ("patch", "pods", ALL),
    ("list", "nodes"), ("watch", "nodes"), ("create", "events", ALL),
    ("list", "gpupools.greenplace.dev"), ("watch", "gpupools.greenplace.dev"),
    ("list", "placementpolicies.greenplace.dev", ALL),
    ("patch", "gpupools.greenplace.dev", "--subresource=status"),
    ("patch", "placementpolicies.greenplace.dev", ALL, "--subresource=status"),
    ("list", "signalsources.greenplace.dev"), ("watch", "signalsources.greenplace.dev"),
    ("patch", "signalsources.greenplace.dev", "--subresource=status"),
    ("list", "billingexports.greenplace.dev"), ("watch", "billingexports.greenplace.dev"),
    ("patch", "billingexports.greenplace.dev", "--subresource=status"),
    ("list", "budgets.greenplace.dev", ALL), ("watch", "budgets.greenplace.dev", ALL),
    ("patch", "budgets.greenplace.dev", ALL, "--subresource=status"),
    ("list", "energyreports.greenplace.dev", ALL), ("watch", "energyreports.greenplace.dev", ALL),
    ("patch", "energyreports.greenplace.dev", ALL, "--subresource=status"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "leases.coordination.k8s.io", ALL), ("watch", "leases.coordination.k8s.io", ALL),
    ("create", "leases.coordination.k8s.io", "-n", NAMESPACE),
    ("get", "leases.coordination.k8s.io/greenplace-placement", "-n", NAMESPACE),
    ("update", "leases.coordination.k8s.io/greenplace-placement", "-n", NAMESPACE),
    # The placement ledger's segments and public keys (docs/audit.md).
    ("get", "configmaps", "-n", NAMESPACE), ("list", "configmaps", "-n", NAMESPACE),
    ("create", "configmaps", "-n", NAMESPACE), ("update", "configmaps", "-n", NAMESPACE),
    ("delete", "configmaps", "-n", NAMESPACE),
]  # fmt: skip
# What it must not do: read secrets, create/delete/evict/bind pods, write any spec, change
# admission, RBAC or CRDs, touch any Lease but its own (in the release namespace), mint tokens.
REFUSED = [
    ("get", "secrets", ALL), ("list", "secrets", ALL), ("get", "secrets", "-n", NAMESPACE),
    ("watch", "secrets", "-n", NAMESPACE),
    ("create", "pods", ALL), ("delete", "pods", ALL), ("update", "pods", ALL),
    ("deletecollection", "pods", ALL), ("create", "pods", ALL, "--subresource=eviction"),
    ("create", "pods", ALL, "--subresource=binding"),
    ("patch", "pods", ALL, "--subresource=status"), ("create", "pods", ALL, "--subresource=exec"),
    ("patch", "nodes"), ("delete", "nodes"),
    ("create", "gpupools.greenplace.dev"), ("patch", "gpupools.greenplace.dev"),
    ("update", "gpupools.greenplace.dev"), ("delete", "gpupools.greenplace.dev"),
    ("patch", "placementpolicies.greenplace.dev", ALL),
    ("delete", "placementpolicies.greenplace.dev", ALL),
    ("patch", "signalsources.greenplace.dev"), ("create", "signalsources.greenplace.dev"),
    ("patch", "billingexports.greenplace.dev"), ("create", "billingexports.greenplace.dev"),
    ("patch", "budgets.greenplace.dev", ALL), ("delete", "budgets.greenplace.dev", ALL),
    ("update", "energyreports.greenplace.dev", ALL),
    ("update", "budgets.greenplace.dev", ALL, "--subresource=status"),
    ("update", "placementpolicies.greenplace.dev", ALL, "--subresource=status"),
    ("get", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("delete", "validatingadmissionpolicies.admissionregistration.k8s.io"),
    ("delete", "validatingadmissionpolicybindings.admissionregistration.k8s.io"),
    ("create", "leases.coordination.k8s.io", ALL),
    ("create", "leases.coordination.k8s.io", "-n", "kube-system"),
    ("update", "leases.coordination.k8s.io", "-n", NAMESPACE),
    ("update", "leases.coordination.k8s.io/kube-scheduler", "-n", NAMESPACE),
    ("delete", "leases.coordination.k8s.io/greenplace-placement", "-n", NAMESPACE),
    ("update", "leases.coordination.k8s.io/greenplace-placement", "-n", "kube-node-lease"),
    ("get", "configmaps", ALL), ("create", "configmaps", "-n", "kube-system"),
    ("update", "configmaps", "-n", "default"), ("patch", "configmaps", "-n", NAMESPACE),
    ("patch", "events", ALL), ("delete", "events", ALL),
    ("create", "serviceaccounts", ALL, "--subresource=token"),
    ("patch", "namespaces"), ("list", "namespaces"),
    ("create", "deployments.apps", ALL), ("create", "jobs.batch", ALL),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("impersonate", "users"), ("*", "*", ALL),
]  # fmt: skip


def test_the_service_account_can_do_what_the_operator_needs(
    kube: integration.Kube, release: Release
) -> None:
    assert [n for n in NEEDED if not can_i(kube, *n)] == []


def test_the_service_account_is_no_broader(kube: integration.Kube, release: Release) -> None:
    assert [r for r in REFUSED if can_i(kube, *r)] == []

    def rules(user: str) -> set[str]:
        listed = kube.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", NAMESPACE)
        assert listed.returncode == 0, listed.stderr
        return {" ".join(line.split()) for line in listed.stdout.splitlines()[1:]}

    # Beyond what any service account may do (the namespace's `default` one, bound to nothing),
    # exactly the chart's rules.
    extra = rules(OPERATOR) - rules(f"system:serviceaccount:{NAMESPACE}:default")
    assert extra == {
        "pods [] [] [get list watch patch]",
        "nodes [] [] [get list watch]",
        "events [] [] [create]",
        "gpupools.greenplace.dev [] [] [get list watch]",
        "placementpolicies.greenplace.dev [] [] [get list watch]",
        "gpupools.greenplace.dev/status [] [] [patch]",
        "placementpolicies.greenplace.dev/status [] [] [patch]",
        "signalsources.greenplace.dev [] [] [get list watch]",
        "billingexports.greenplace.dev [] [] [get list watch]",
        "budgets.greenplace.dev [] [] [get list watch]",
        "energyreports.greenplace.dev [] [] [get list watch]",
        "signalsources.greenplace.dev/status [] [] [patch]",
        "billingexports.greenplace.dev/status [] [] [patch]",
        "budgets.greenplace.dev/status [] [] [patch]",
        "energyreports.greenplace.dev/status [] [] [patch]",
        "customresourcedefinitions.apiextensions.k8s.io [] [] [list watch]",
        "leases.coordination.k8s.io [] [] [list watch create]",
        "leases.coordination.k8s.io [] [greenplace-placement] [get update]",
        "configmaps [] [] [get list create update delete]",
    }


# -- tenants: Kubernetes' view, edit and admin roles, aggregated (aggregate-roles.yaml) --------

GP = "greenplace.dev"
READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection")
NAMESPACED = ("placementpolicies", "budgets", "energyreports")
CLUSTER_SCOPED = ("gpupools", "signalsources", "billingexports")
# What a tenant may write: its own EnergyReports (edit, admin). Never its governance
# (PlacementPolicies, Budgets), the cluster's facts (GpuPools, SignalSources) or any status.
TENANT_WRITES = {"energyreports"}


def tenant_can(kube: integration.Kube, user: str, verb: str, resource: str, *where: str) -> bool:
    result = kube.kubectl("auth", "can-i", verb, f"{resource}.{GP}", f"--as={user}", *where)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def tenant_rights(kube: integration.Kube, user: str, *where: str) -> set[str]:
    """Every ``verb resource[/status]`` on greenplace's kinds ``user`` may do ``where``; the
    cluster-scoped kinds are asked without the namespace (``can-i -n`` would check a namespaced
    request no API call makes)."""

    def asked(resource: str) -> tuple[str, ...]:
        return () if resource in CLUSTER_SCOPED else where

    resources = [*NAMESPACED, *CLUSTER_SCOPED]
    return {f"{verb} {resource}" for resource in resources for verb in (*READ, *WRITE)
            if tenant_can(kube, user, verb, resource, *asked(resource))} | {
        f"{verb} {resource}/status" for resource in resources for verb in ("update", "patch")
        if tenant_can(kube, user, verb, resource, *asked(resource), "--subresource=status")
    }  # fmt: skip


@pytest.fixture(scope="module")
def tenants(kube: integration.Kube, release: Release) -> str:
    """A namespace where user view-user has ``view``, edit-user ``edit``, admin-user ``admin``
    (RoleBindings, as a platform team hands namespaces out); cluster-viewer has ``view``
    cluster-wide (a ClusterRoleBinding)."""
    ns = kube.namespace(governed=False)
    for role in ("view", "edit", "admin"):
        bound = kube.kubectl("create", "rolebinding", f"tenant-{role}", f"--clusterrole={role}",
                             f"--user={role}-user", "-n", ns)  # fmt: skip
        assert bound.returncode == 0, bound.stderr
    bound = kube.kubectl("create", "clusterrolebinding", "cluster-viewer", "--clusterrole=view",
                         "--user=cluster-viewer")  # fmt: skip
    assert bound.returncode == 0, bound.stderr
    # The controller-manager aggregates the chart's rules into view, edit and admin a moment
    # after the ClusterRoles exist.
    integration.wait_for(
        lambda: all(tenant_can(kube, f"{role}-user", "list", "budgets", "-n", ns)
                    for role in ("view", "edit", "admin"))
        and tenant_can(kube, "edit-user", "create", "energyreports", "-n", ns)
        and tenant_can(kube, "admin-user", "create", "energyreports", "-n", ns),
        30, "the chart's rules aggregated into view, edit and admin",
    )  # fmt: skip
    return ns


def test_tenants_read_their_namespaces_governance_and_write_only_energy_reports(
    kube: integration.Kube, tenants: str
) -> None:
    reads = {f"{verb} {resource}" for resource in NAMESPACED for verb in READ}
    writes = {f"{verb} {resource}" for resource in TENANT_WRITES for verb in WRITE}
    assert tenant_rights(kube, "view-user", "-n", tenants) == reads
    assert tenant_rights(kube, "edit-user", "-n", tenants) == reads | writes
    assert tenant_rights(kube, "admin-user", "-n", tenants) == reads | writes
    # A RoleBinding stops at its namespace: nothing elsewhere, nothing cluster-scoped.
    for role in ("view", "edit", "admin"):
        assert tenant_rights(kube, f"{role}-user", "-n", "default") == set(), role
        assert tenant_rights(kube, f"{role}-user", ALL) == set(), role


def test_view_bound_cluster_wide_reads_pools_and_sources_too(
    kube: integration.Kube, tenants: str
) -> None:
    reads = {f"{verb} {resource}" for resource in (*NAMESPACED, *CLUSTER_SCOPED)
             for verb in READ}  # fmt: skip
    assert tenant_rights(kube, "cluster-viewer", ALL) == reads
    assert tenant_rights(kube, "cluster-viewer", "-n", tenants) == reads
    listed = kube.kubectl("get", "gpupools,signalsources", "--as=cluster-viewer", "-o", "name")
    assert listed.returncode == 0 and "gpupool.greenplace.dev/" in listed.stdout, listed.stderr


def test_a_tenant_with_edit_really_is_refused_a_policy_and_allowed_a_report(
    kube: integration.Kube, tenants: str
) -> None:
    """What can-i says, the API server does: requests as edit-user, by impersonation."""

    def as_tenant(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return kube.kubectl(*args, "--as=edit-user", "-n", tenants, stdin=stdin)

    policy = k8s.manifest(k8s.policy(tenants, "lift-my-rules", ["US"]))
    refused = as_tenant("create", "-f", "-", stdin=policy)
    assert refused.returncode != 0 and "forbidden" in refused.stderr, refused.stderr
    budget = k8s.manifest(k8s.budget(tenants, "no-limit", money=1e9))
    refused = as_tenant("create", "-f", "-", stdin=budget)
    assert refused.returncode != 0 and "forbidden" in refused.stderr, refused.stderr
    report = k8s.manifest(k8s.energy_report(tenants, "mine", window="1h",
                                            prometheus={"url": "https://prometheus.example"},
                                            serving="vLLM"))  # fmt: skip
    created = as_tenant("create", "-f", "-", stdin=report)
    assert created.returncode == 0, created.stderr
    listed = as_tenant("get", "energyreports,placementpolicies,budgets", "-o", "name")
    assert listed.returncode == 0 and "energyreport.greenplace.dev/mine" in listed.stdout, listed
    pools = kube.kubectl("get", "gpupools", "--as=edit-user")  # cluster-scoped: no RoleBinding
    assert pools.returncode != 0 and "forbidden" in pools.stderr, pools.stderr
    patched = as_tenant("patch", "energyreport", "mine", "--subresource=status", "--type=merge",
                        "-p", '{"status": {"rows": []}}')  # fmt: skip
    assert patched.returncode != 0 and "forbidden" in patched.stderr, patched.stderr


# -- fail-closed sovereignty: the ValidatingAdmissionPolicies, operator stopped ----------------


def pod(ns: str, name: str, *, gpus: int = 1, gated: bool = False,
        pools: list[list[str]] | None = None, node: str | None = None,
        labels: dict[str, str] | None = None) -> str:  # fmt: skip
    """A pod; ``pools`` gives one required node-affinity term per list of pool names."""
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    body = k8s.pod(ns, name, limits, gated=gated, labels=labels)
    spec = body["spec"]
    if pools is not None:
        spec["affinity"] = k8s.pool_affinity_terms(pools)
    if node:
        spec["nodeName"] = node
    return k8s.manifest(body)


def create(
    kube: integration.Kube, manifest: str, *as_user: str
) -> subprocess.CompletedProcess[str]:
    return kube.kubectl("create", "-f", "-", *as_user, stdin=manifest)


def wait_enforced(kube: integration.Kube, ns: str, policy: str, pools: list[str], *,
                  probe_pool: str = "gcp-us-central1-h100",
                  labels: dict[str, str] | None = None) -> None:  # fmt: skip
    """Wait until the API server's admission sees ``policy``'s allowed pools: it reads its
    parameters from its own informer, a moment after the status write. A dry-run pod restricted
    to ``probe_pool`` (allowed by every other policy selecting it) is refused naming them."""
    says = f"PlacementPolicy {ns}/{policy} (status.allowedPools: [{', '.join(pools)}])"
    probe = pod(ns, "probe", pools=[[probe_pool]], labels=labels)
    integration.wait_for(
        lambda: says in " ".join(create(kube, probe, "--dry-run=server").stderr.split()),
        30, f"admission to enforce {ns}/{policy}",
    )  # fmt: skip


def governed_without_webhook(kube: integration.Kube, pools: list[str] = FR_DE_POOLS) -> str:
    """``governed_with_policy``, once the admission policies enforce its allowed pools."""
    ns = governed_with_policy(kube, pools)
    wait_enforced(kube, ns, "fr-de", pools)
    return ns


def refused_by_policy(result: subprocess.CompletedProcess[str], policy: str, says: str) -> bool:
    """The API server's ValidatingAdmissionPolicy ``policy`` refused, with ``says`` in the text."""
    assert result.returncode != 0, "admitted, but should have been refused"
    text = " ".join(result.stderr.split())
    assert f"ValidatingAdmissionPolicy '{FULLNAME}-{policy}'" in text, text
    assert says in text, text
    return True


def test_with_the_operator_stopped_its_webhook_fails_closed(
    kube: integration.Kube, release: Release
) -> None:
    ns = governed_with_policy(kube)
    result = create(kube, pod(ns, "no-gate-possible"))
    assert result.returncode != 0
    assert 'failed calling webhook "gate.greenplace.dev"' in result.stderr
    free = kube.namespace(governed=False)
    assert create(kube, pod(free, "elsewhere")).returncode == 0, "ungoverned: unaffected"


@pytest.fixture(scope="module")
def webhook_deleted(kube: integration.Kube, release: Release) -> None:
    """The worst case: the webhook configuration is gone, so nothing gates pods; only the
    policies inside the API server stand between a pod and a non-compliant node."""
    result = kube.kubectl("delete", "mutatingwebhookconfiguration", FULLNAME)
    assert result.returncode == 0, result.stderr
    probe = pod(governed_with_policy(kube), "probe", gpus=0, node="ovh-gra-h100-0")
    integration.wait_for(
        lambda: "pod-guards" in kube.kubectl("create", "--dry-run=server", "-f", "-",
                                             stdin=probe).stderr,
        30, "the admission policies to be enforced",
    )  # fmt: skip


def test_the_admission_policies_type_check_cleanly(
    kube: integration.Kube, release: Release
) -> None:
    def type_checked(name: str) -> dict[str, Any] | None:
        """kube-controller-manager writes the policy's type-checking status after its creation."""
        got = kube.kubectl("get", "validatingadmissionpolicy", name, "-o", "json").stdout
        status: dict[str, Any] = json.loads(got).get("status") or {}
        return status if "typeChecking" in status else None

    for name in (f"{FULLNAME}-pod-guards", f"{FULLNAME}-sovereignty"):
        status = integration.wait_for(lambda n=name: type_checked(n), 30, f"{name} type-checked")
        assert status["typeChecking"].get("expressionWarnings") is None, status
        assert not any(c["status"] == "False" for c in status.get("conditions", [])), status


def test_a_governed_pod_with_node_name_is_refused(
    kube: integration.Kube, webhook_deleted: None
) -> None:
    ns = governed_without_webhook(kube)
    # Even with an affinity to an allowed pool (so only the nodeName rule is broken).
    for gpus in (1, 0):
        manifest = pod(ns, f"shortcut-{gpus}", gpus=gpus, node="ovh-gra-h100-0",
                       pools=[["ovh-gra-h100"]])  # fmt: skip
        assert refused_by_policy(create(kube, manifest), "pod-guards", "spec.nodeName is refused")


def test_a_pod_restricted_to_a_pool_its_policy_does_not_allow_is_refused(
    kube: integration.Kube, webhook_deleted: None
) -> None:
    ns = governed_without_webhook(kube)
    not_allowed = [
        ("us", [["gcp-us-central1-h100"]]),
        ("mixed-values", [["ovh-gra-h100", "gcp-us-central1-h100"]]),
        ("one-term-open", [["ovh-gra-h100"], ["gcp-europe-west2-l4"]]),
        ("no-affinity", None),
    ]
    for name, pools in not_allowed:
        result = create(kube, pod(ns, name, pools=pools))
        says = f"PlacementPolicy {ns}/fr-de (status.allowedPools: [{', '.join(FR_DE_POOLS)}])"
        assert refused_by_policy(result, "sovereignty", says), name

    for name, pools in [("fr", [["ovh-gra-h100"]]),
                        ("fr-or-de", [["ovh-gra-h100", "stackit-eu01-h100"]])]:  # fmt: skip
        assert create(kube, pod(ns, name, pools=pools)).returncode == 0, name
    assert create(kube, pod(ns, "gated", gated=True)).returncode == 0
    assert create(kube, pod(ns, "cpu-only", gpus=0)).returncode == 0


def test_a_pod_in_an_ungoverned_namespace_is_unaffected(
    kube: integration.Kube, webhook_deleted: None
) -> None:
    ns = kube.namespace(governed=False)
    assert create(kube, pod(ns, "anywhere", node="gcp-us-central1-h100-0")).returncode == 0
    assert create(kube, pod(ns, "any-pool", pools=[["gcp-us-central1-h100"]])).returncode == 0


def remove_gate(kube: integration.Kube, ns: str, name: str, pools: list[str] | None,
                *as_user: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    ops: list[dict[str, Any]] = [{"op": "remove", "path": "/spec/schedulingGates"}]
    if pools:
        affinity = json.loads(pod(ns, name, pools=[pools]))["spec"]["affinity"]
        ops.append({"op": "add", "path": "/spec/affinity", "value": affinity})
    return kube.kubectl("patch", "pod", name, "-n", ns, "--type=json", "-p", json.dumps(ops),
                        *as_user)  # fmt: skip


def test_only_the_operator_removes_the_gate_and_only_towards_allowed_pools(
    kube: integration.Kube, webhook_deleted: None
) -> None:
    ns = governed_without_webhook(kube)
    assert create(kube, pod(ns, "waiting", gated=True)).returncode == 0

    result = remove_gate(kube, ns, "waiting", ["ovh-gra-h100"])  # the admin, not greenplace
    assert refused_by_policy(result, "pod-guards", f"only the operator ({OPERATOR})")
    as_operator = f"--as={OPERATOR}"
    result = remove_gate(kube, ns, "waiting", None, as_operator)
    assert refused_by_policy(result, "sovereignty", "must have a required node affinity")
    result = remove_gate(kube, ns, "waiting", ["gcp-us-central1-h100"], as_operator)
    says = f"PlacementPolicy {ns}/fr-de (status.allowedPools: [{', '.join(FR_DE_POOLS)}])"
    assert refused_by_policy(result, "sovereignty", says)

    assert remove_gate(kube, ns, "waiting", ["ovh-gra-h100"], as_operator).returncode == 0
    pod_now = integration.wait_for(lambda: kube.bound(ns, "waiting"), 30, "bound")
    assert kube.node_pool(pod_now["spec"]["nodeName"]) == "ovh-gra-h100"
    label = kube.kubectl("label", "pod", "waiting", "-n", ns, "team=ml")
    assert label.returncode == 0, "updates of a placed pod are not judged again"


def test_every_policy_selecting_a_pod_must_allow_its_pool(
    kube: integration.Kube, webhook_deleted: None
) -> None:
    ns = governed_without_webhook(kube, ["ovh-gra-h100", "stackit-eu01-h100"])
    strict = k8s.policy(ns, "team-a-fr", ["FR"], select={"team": "a"})
    assert kube.apply(strict).returncode == 0
    set_allowed_pools(kube, ns, "team-a-fr", ["ovh-gra-h100"])
    wait_enforced(
        kube,
        ns,
        "team-a-fr",
        ["ovh-gra-h100"],
        probe_pool="stackit-eu01-h100",
        labels={"team": "a"},
    )

    team_a = {"team": "a"}
    result = create(kube, pod(ns, "a-de", pools=[["stackit-eu01-h100"]], labels=team_a))
    assert refused_by_policy(result, "sovereignty", f"PlacementPolicy {ns}/team-a-fr")
    assert create(kube, pod(ns, "a-fr", pools=[["ovh-gra-h100"]], labels=team_a)).returncode == 0
    # team-a-fr does not select this pod, so only fr-de applies to it.
    assert create(kube, pod(ns, "b-de", pools=[["stackit-eu01-h100"]])).returncode == 0


def test_a_governed_namespace_without_a_policy_admits_no_pod(
    kube: integration.Kube, webhook_deleted: None
) -> None:
    """Fail-closed: the policy's parameter is missing, so the API server refuses (even
    CPU pods: parameters are looked up before any expression runs). Create the
    PlacementPolicy before labelling a namespace governed."""
    ns = kube.namespace()
    result = kube.kubectl("create", "-f", "-", stdin=pod(ns, "cpu", gpus=0), wait_for_policy=False)
    assert refused_by_policy(result, "sovereignty", "no params found")
