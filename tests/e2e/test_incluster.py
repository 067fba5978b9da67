"""The Helm chart's Deployment, run for real: a kubelet runs the operator's image, and that
operator places a governed GPU pod onto a kwok pool node.

Why this module exists: every other test runs the operator as a process on this machine, and kwok
nodes run nothing, so the chart's Deployment never ran. Here the image built from the
repository's Dockerfile without Docker (``scripts/build-image.sh``) runs on one real node
(``devcluster.realnode``: containerd, a kubelet, kube-proxy) joined to the local control plane,
installed by ``helm install`` with the chart's defaults but for the image and what the
credentials test needs (below): no nodeSelector, and the default gate (``gate.mode=policy``,
the MutatingAdmissionPolicy).

The cluster is the one a user moving to Helm has: greenplace's CRDs applied with ``kubectl apply
--server-side -f crds/`` and the example fleet (its GpuPools and their fake GPU nodes, run by
kwok) exist before the install; the CRDs are adopted with the loop docs/install.md prints
("Moving from kubectl apply -f crds/"), run verbatim. So the chart's default affinity
(``avoidNodeLabels``) is what keeps the operator off the fake GPU nodes, where it would never run
while ``rollout status`` says success.

That proves what the out-of-cluster tests cannot: the image starts as the chart runs it
(non-root, read-only root filesystem, no capabilities, RuntimeDefault seccomp) on the real node
and not on a GPU node, the in-cluster login with the projected service-account token, the
chart's RBAC for the live operator (leader election included), and the API server gating the
GPU pod with the chart's MutatingAdmissionPolicy, which names the chart's ServiceAccount (the
ValidatingAdmissionPolicies refuse the gate's removal by anyone else, so the pod binds only
because the in-cluster operator placed it). The last test upgrades the release to
``gate.mode=webhook`` and places a second pod through the webhook served in the cluster (the API
server calling the operator's pod through the chart's Service, failurePolicy Fail) and the
mounted webhook certificate.
It also proves ``signalCredentials.secrets`` on a real kubelet: a Secret created before the
install is mounted under the chart's restricted security context (read-only, mode 0440, readable
through the pod's fsGroup) and the operator reads its token there (the Electricity Maps fetch then
fails on the network, not on credentials, and the static fallback answers); a Secret not listed
in the value is reported as not mounted at its expected path under the credentials directory;
and a ref to another namespace is refused naming greenplace-system, so the chart's
``$POD_NAMESPACE`` reaches the operator's ``--namespace``. The Electricity Maps URL is a closed
port on the pod's loopback over http, which the default egress rules refuse (SourceNotAllowed,
before any credential is read): the install allows it with ``signals.allowHosts`` (127.0.0.1
exactly, and a 127.0.0.0/29 range) and ``signals.allowInsecureHttp``, so the chart values reach
the operator too. A URL inside the range but not listed exactly (127.0.0.3) may be reached but
gets no credentials: that source is SourceNotAllowed, naming the value to set.

The module skips only when the machine cannot run a real node at all (not root, no overlayfs,
no memory cgroup, missing capabilities); missing Debian packages are installed with
``scripts/ensure-realnode.sh``. Cold: about 3 minutes more than the control plane (debootstrap,
the image, the kubelet build); warm: about 2 minutes (4 tests, the upgrade included).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import stat
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster import build, cluster, fleet, realnode
from greenplace.api import crdgen, models
from greenplace.controller import podspec
from tests import kubeobjects as k8s
from tests.integration import conftest as integration

# The first test's setup builds the image when its cache is cold: about 6 minutes on a busy
# 2-core machine, before the cluster, the install and the 180 s rollout wait (pyproject's 600 s
# per test would cut a cold run short, in the middle of the teardown).
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1200)]
# The chart installs its own admission policies (naming its ServiceAccount).
ADMISSION_POLICIES = False

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "greenplace"
# The release docs/install.md's adoption loop names (its full name is the release name).
RELEASE = "greenplace"
NAMESPACE = "greenplace-system"
FULLNAME = RELEASE
LEASE = "greenplace-placement"
# What a 4-GPU pod under an FR/DE policy gets on the example fleet: the lowest-carbon compliant
# pool with room (examples/fleet.yaml).
FR_DE_POOLS = ["gcp-europe-west9-a100", "ovh-gra-h100", "stackit-eu01-h100"]
EXPECTED_POOL = "gcp-europe-west9-a100"
SECOND_POOL = "ovh-gra-h100"  # the next, once the first pod fills EXPECTED_POOL's 4 GPUs
# The Secret the chart mounts (signalCredentials.secrets), created before the install, and
# where the kubelet mounts it in the operator's container.
CREDENTIALS = "emaps"
CREDENTIALS_DIR = "/etc/greenplace/credentials"
CLOSED_URL = "http://127.0.0.1:9"  # nothing listens there inside the operator's pod
RANGE_URL = "http://127.0.0.3:9"  # reachable through the 127.0.0.0/29 entry; no credentials
# The egress the credentials test needs (signals.allowHosts, signals.allowInsecureHttp).
ALLOW_HOSTS = "{127.0.0.1,127.0.0.0/29}"
RUN_AS = 65532  # the chart's runAsUser, runAsGroup and fsGroup


@dataclasses.dataclass(frozen=True)
class InCluster:
    kube: integration.Kube
    node: realnode.RealNode
    image: str

    def operator_pods(self) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=greenplace"
        listed = self.kube.core.list_namespaced_pod(NAMESPACE, label_selector=selector)
        pods: list[dict[str, Any]] = self.kube.api.sanitize_for_serialization(listed)["items"]
        return pods

    def diagnostics(self) -> str:
        """What to read when the operator does not come up: pods, events, logs."""
        parts = [self.kube.kubectl("get", "pods", "-A", "-o", "wide").stdout,
                 self.kube.kubectl("get", "events", "-n", NAMESPACE).stdout]  # fmt: skip
        for pod in self.operator_pods():
            name = pod["metadata"]["name"]
            log = self.node.container_log(NAMESPACE, name, "operator")
            parts.append(f"--- {name} log\n{log[-3000:]}")
        kubelet = self.node.workdir / "logs" / "kubelet.log"
        if kubelet.exists():
            errors = [line for line in kubelet.read_text(errors="replace").splitlines()
                      if line.startswith(("E", "F"))]  # fmt: skip
            parts.append("--- kubelet errors\n" + "\n".join(errors[-30:]))
        return "\n".join(parts)


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = str(build.ensure_built(log=False)["helm"])
    return subprocess.run([binary, *args], capture_output=True, text=True, check=False)


def require_real_node() -> None:
    """Skip where a real node cannot run; install its Debian packages where they are missing."""
    checked = realnode.preflight()
    if checked.unsupported:
        pytest.skip("this machine cannot run a real node: " + "; ".join(checked.unsupported))
    if checked.missing:
        script = ROOT / "scripts" / "ensure-realnode.sh"
        result = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                                check=False)  # fmt: skip
        assert result.returncode == 0, f"{script} failed:\n{result.stdout}{result.stderr}"
        assert not realnode.preflight().missing, realnode.preflight().missing


def build_image() -> tuple[str, pathlib.Path]:
    """The operator image from the Dockerfile (cached by content): its reference and archive."""
    result = subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh")],
                            capture_output=True, text=True, check=False,
                            timeout=1800)  # fmt: skip
    assert result.returncode == 0, f"scripts/build-image.sh failed:\n{result.stderr[-4000:]}"
    reference, archive = result.stdout.strip().splitlines()[-1].split()
    return reference, pathlib.Path(archive)


def adoption_loop() -> str:
    """The shell loop docs/install.md gives for moving CRDs applied by kubectl to Helm."""
    text = (ROOT / "docs" / "install.md").read_text()
    after = text.split("**Moving from `kubectl apply -f crds/` (or `make run`) to Helm**", 1)[1]
    block = after.split("```sh\n", 1)[1].split("```", 1)[0]
    return "\n".join(line.strip() for line in block.splitlines())


def adopt_crds(kube: integration.Kube) -> None:
    """Run the documented loop verbatim, with the built kubectl first on PATH."""
    kubectl = build.ensure_built(log=False)["kubectl"]
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig),
           "PATH": f"{kubectl.parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", adoption_loop()], env=env,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    crds = {p.stem for p in (ROOT / "crds").glob("*.yaml")}
    # Every kind greenplace defines: the files `make crds` writes, one per kind.
    assert crds == {f"{kind.plural}.{models.GROUP}" for kind in crdgen.KINDS}, crds
    assert all(crd in ran.stdout for crd in crds), ran.stdout


def install(kube: integration.Kube, reference: str, *overrides: str) -> None:
    """``helm install`` (or, with ``--set`` overrides, ``helm upgrade``) with the chart's
    defaults but for the image and what the credentials test needs."""
    repository, tag = reference.rsplit(":", 1)
    verb = ["upgrade", "--reuse-values"] if overrides else ["install"]
    result = helm(
        *verb, RELEASE, str(CHART), f"--namespace={NAMESPACE}", f"--kubeconfig={kube.kubeconfig}",
        f"--set=image.repository={repository}", f"--set=image.tag={tag}",
        "--set=image.pullPolicy=Never",  # only the image loaded into the node's containerd
        f"--set=signalCredentials.secrets={{{CREDENTIALS}}}",
        f"--set=signals.allowHosts={ALLOW_HOSTS}", "--set=signals.allowInsecureHttp=true",
        *overrides,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def incluster() -> Iterator[InCluster]:
    """The chart installed by helm on a control plane with one real node, over the example
    fleet and CRDs applied before (as ``make run`` leaves a cluster)."""
    require_real_node()
    reference, archive = build_image()
    control_plane = cluster.LocalCluster(service_account_tokens=True)
    with control_plane, realnode.RealNode(control_plane) as node:
        node.load_image(archive)
        kube = integration.Kube(control_plane.kubeconfig, control_plane)
        running = InCluster(kube, node, reference)
        # The cluster before Helm: CRDs, GpuPools and their fake GPU nodes (which run nothing).
        applied = kube.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        assert applied.returncode == 0, applied.stderr
        established = kube.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                                   "crd", "--all")  # fmt: skip
        assert established.returncode == 0, established.stderr
        fleet.apply_fleet(kube.api, fleet.load_fleet(ROOT / "examples" / "fleet.yaml"))
        adopt_crds(kube)
        # The SignalSource credentials exist before the install, as docs/install.md says.
        assert kube.kubectl("create", "namespace", NAMESPACE).returncode == 0
        secret = kube.kubectl("create", "secret", "generic", CREDENTIALS, "-n", NAMESPACE,
                              "--from-literal=token=in-cluster-token")  # fmt: skip
        assert secret.returncode == 0, secret.stderr
        install(kube, reference)
        available = kube.kubectl("wait", "--for=condition=Available", "--timeout=180s",
                                 "-n", NAMESPACE, f"deployment/{FULLNAME}")  # fmt: skip
        assert available.returncode == 0, available.stderr + running.diagnostics()
        yield running


def test_the_charts_deployment_runs_the_image_on_the_real_node(incluster: InCluster) -> None:
    kube = incluster.kube
    deployment = json.loads(kube.kubectl("get", "deployment", FULLNAME, "-n", NAMESPACE,
                                         "-o", "json").stdout)  # fmt: skip
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 1
    assert deployment["status"].get("availableReplicas") == replicas, incluster.diagnostics()

    pods = incluster.operator_pods()
    assert len(pods) == replicas, incluster.diagnostics()
    # The fake GPU nodes were there first, schedulable; no nodeSelector was given: the chart's
    # own affinity (avoidNodeLabels) kept every replica on the one node that runs containers.
    fake = [n.metadata.name for n in kube.core.list_node().items
            if (n.metadata.annotations or {}).get(fleet.KWOK_ANNOTATION) == "fake"]  # fmt: skip
    assert len(fake) >= 5, fake
    for pod in pods:
        assert "nodeSelector" not in pod["spec"], pod["spec"].get("nodeSelector")
        assert pod["spec"]["nodeName"] == realnode.NODE_NAME, incluster.diagnostics()
        assert pod["status"]["phase"] == "Running"
        (status,) = pod["status"]["containerStatuses"]
        assert status["ready"] is True
        assert status["image"].endswith(incluster.image.split("/", 1)[1])
        assert status["restartCount"] == 0, incluster.diagnostics()
        # The kubelet ran it as the chart says, with the service-account token projected.
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"] for v in pod["spec"]["volumes"]}
        assert any(v.startswith("kube-api-access-") for v in volumes), volumes
    assert incluster.image in incluster.node.images()

    # One replica leads (the Lease), and no replica met a refusal or an error.
    # Ready does not wait for the election: the Lease may be taken a moment later.
    holder = integration.wait_for(
        lambda: kube.kubectl("get", "lease", LEASE, "-n", NAMESPACE, "-o",
                             "jsonpath={.spec.holderIdentity}").stdout,
        30, "a replica to hold the Lease",
    )  # fmt: skip
    assert holder in {p["metadata"]["name"] for p in pods}, incluster.diagnostics()
    for pod in pods:
        log = incluster.node.container_log(NAMESPACE, pod["metadata"]["name"], "operator")
        assert log, f"no log for {pod['metadata']['name']}"
        for sign in ("Traceback", "Forbidden", "HTTP 403", '"severity": "error"'):
            assert sign not in log, log[-4000:]


def test_the_in_cluster_operator_places_a_governed_gpu_pod_on_a_kwok_pool(
    incluster: InCluster,
) -> None:
    kube = incluster.kube
    # As docs/install.md says: the PlacementPolicy first, then the namespace label.
    ns = kube.namespace(governed=False)
    assert kube.apply(k8s.policy(ns, "fr-de", ["FR", "DE"])).returncode == 0

    def allowed_pools() -> list[str]:
        out = kube.kubectl("get", "placementpolicy", "fr-de", "-n", ns, "-o",
                           "jsonpath={.status.allowedPools}").stdout  # fmt: skip
        return sorted(json.loads(out or "[]"))

    integration.wait_for(lambda: allowed_pools() == FR_DE_POOLS, 60,
                         "the in-cluster operator to write the policy's allowed pools")  # fmt: skip
    # With ServiceAccount admission on, a pod needs its namespace's default ServiceAccount.
    integration.wait_for(
        lambda: kube.kubectl("get", "serviceaccount", "default", "-n", ns).returncode == 0,
        30, "the namespace's default ServiceAccount",
    )  # fmt: skip
    assert kube.kubectl("label", "namespace", ns, "greenplace.dev/governed=true").returncode == 0

    # The chart's default gate: the API server's MutatingAdmissionPolicy, no webhook at all.
    gates = kube.kubectl("get", "mutatingadmissionpolicy,mutatingwebhookconfiguration", "-o",
                         "jsonpath={range .items[*]}{.kind}/{.metadata.name} {end}")  # fmt: skip
    assert gates.stdout.split() == [f"MutatingAdmissionPolicy/{FULLNAME}-gate"], gates.stdout
    assert_placed(incluster, ns, "train")


def assert_placed(incluster: InCluster, ns: str, name: str, pool: str = EXPECTED_POOL) -> None:
    """``name`` (4 GPUs, in ``ns`` under policy fr-de) is placed and bound onto ``pool`` (a
    kwok node) by a replica of the chart's Deployment."""
    kube = incluster.kube
    created = kube.apply(k8s.gpu_pod(ns, name, 4))
    assert created.returncode == 0, created.stderr + incluster.diagnostics()
    pod = integration.wait_for(lambda: kube.bound(ns, name), 60,
                               f"{ns}/{name} placed and bound")  # fmt: skip
    node = kube.core.read_node(pod["spec"]["nodeName"])
    assert node.metadata.annotations.get(fleet.KWOK_ANNOTATION) == "fake"
    assert kube.node_pool(node.metadata.name) == pool
    placement = json.loads(pod["metadata"]["annotations"][podspec.PLACEMENT_ANNOTATION])
    assert placement["pool"] == pool
    assert placement["policies"] == [f"{ns}/fr-de"]
    # Placed by a replica of the Deployment (its pod name is its identity), not anyone else.
    placed = kube.events(ns, name, "Placed")
    replicas = {p["metadata"]["name"] for p in incluster.operator_pods()}
    assert placed[0].reporting_instance in replicas, (placed[0], replicas)


def test_the_kubelet_mounts_the_signal_credentials_the_operator_reads(
    incluster: InCluster,
) -> None:
    kube = incluster.kube

    def emaps(name: str, namespace: str = NAMESPACE, url: str = CLOSED_URL) -> dict[str, Any]:
        return {
            "name": "emaps", "kind": "ElectricityMaps", "timeout": "2s",
            "electricityMaps": {"url": url},
            "credentialsSecretRef": {"name": name, "namespace": namespace},
        }  # fmt: skip

    def static(zone: str) -> dict[str, Any]:
        return k8s.static_source({zone: 300})

    # One SignalSource (and zone) per ref, so each reading says what became of that ref alone.
    cases = {
        "creds-mounted": (emaps(CREDENTIALS), "FR"),
        "creds-not-mounted": (emaps("not-mounted"), "DE"),
        "creds-elsewhere": (emaps(CREDENTIALS, "team-a"), "NL"),
        "creds-range": (emaps(CREDENTIALS, url=RANGE_URL), "BE"),
    }
    for name, (source, zone) in cases.items():
        result = kube.apply(k8s.signal_source(name, [source, static(zone)], [zone]))
        assert result.returncode == 0, result.stderr

    def answered(name: str, zone: str) -> dict[str, Any] | None:
        got = k8s.reading(kube.custom("signalsource", name), zone)
        return got if "emaps: " in got.get("message", "") else None

    # The token file was read through the real mount: the fetch failed on the network only.
    got = integration.wait_for(lambda: answered("creds-mounted", "FR"), 60,
                               "the mounted Secret's reading")  # fmt: skip
    message = got["message"]
    assert "emaps: Credentials" not in message, message + "\n" + incluster.diagnostics()
    assert "emaps: Unreachable" in got["message"], got["message"]
    assert f"cannot reach {CLOSED_URL}/" in got["message"], got["message"]
    assert "Connection refused" in got["message"], got["message"]
    assert (got["value"], got["source"], got["reason"]) == (300, "static", "Fallback")
    found = k8s.condition(kube.custom("signalsource", "creds-mounted"), "Degraded")
    assert found is not None and found["reason"] == "Fallback", found

    # A Secret not listed in signalCredentials.secrets: nothing mounted where it is expected.
    got = integration.wait_for(lambda: answered("creds-not-mounted", "DE"), 60,
                               "the unmounted Secret's reading")  # fmt: skip
    message, where = got["message"], f"{CREDENTIALS_DIR}/not-mounted"
    assert "emaps: Credentials" in message, message
    assert f"Secret {NAMESPACE}/not-mounted (key token)" in message, message
    assert f"expected at {where}/token, but {where} is not mounted" in message, message
    assert (got["value"], got["source"], got["reason"]) == (300, "static", "Fallback")

    # Another namespace: refused, naming the namespace the pod runs in ($POD_NAMESPACE).
    got = integration.wait_for(lambda: answered("creds-elsewhere", "NL"), 60,
                               "the other namespace's reading")  # fmt: skip
    assert "emaps: Credentials" in got["message"], got["message"]
    assert f"Secrets must be in the operator's own namespace {NAMESPACE}" in got["message"]
    assert "Secret team-a/emaps (key token)" in got["message"], got["message"]
    assert (got["value"], got["source"], got["reason"]) == (300, "static", "Fallback")

    # A host reached through a range, not listed exactly: the token is not sent there.
    got = integration.wait_for(lambda: answered("creds-range", "BE"), 60,
                               "the range host's reading")  # fmt: skip
    assert "emaps: SourceNotAllowed" in got["message"], got["message"]
    assert "127.0.0.3 is not listed" in got["message"], got["message"]
    assert "--allow-signal-hosts=127.0.0.3 (chart value signals.allowHosts" in got["message"]
    assert (got["value"], got["source"], got["reason"]) == (300, "static", "Fallback")

    for name in cases:
        assert kube.kubectl("delete", "signalsource", name).returncode == 0

    # What the kubelet made of it: owned by root, readable by the pod's fsGroup only (the
    # operator's user is not the owner, so the group is how it reads the token).
    for pod in incluster.operator_pods():
        volumes = {v["secret"]["secretName"]: v for v in pod["spec"]["volumes"] if "secret" in v}
        volume = volumes[CREDENTIALS]
        assert volume["secret"]["defaultMode"] == 0o440, volume
        pod_dir = incluster.node.workdir / "kubelet" / "root" / "pods" / pod["metadata"]["uid"]
        token = (pod_dir / "volumes" / "kubernetes.io~secret" / volume["name"] / "token").stat()
        assert (stat.S_IMODE(token.st_mode), token.st_uid, token.st_gid) == (0o440, 0, RUN_AS)


def test_the_webhook_mode_serves_admission_from_the_operators_pod(incluster: InCluster) -> None:
    """``helm upgrade --set gate.mode=webhook`` (docs/install.md, "Back"): the API server calls
    the webhook through the chart's Service with the mounted certificate; it fails closed, so
    the second pod exists only because an operator pod answered."""
    kube = incluster.kube
    install(kube, incluster.image, "--set=gate.mode=webhook")
    rolled = kube.kubectl("rollout", "status", f"deployment/{FULLNAME}", "-n", NAMESPACE,
                          "--timeout=180s")  # fmt: skip
    assert rolled.returncode == 0, rolled.stderr + incluster.diagnostics()
    for pod in incluster.operator_pods():
        assert pod["spec"]["nodeName"] == realnode.NODE_NAME, incluster.diagnostics()
    webhooks = json.loads(kube.kubectl("get", "mutatingwebhookconfiguration", FULLNAME, "-o",
                                       "json").stdout)["webhooks"]  # fmt: skip
    assert webhooks[0]["clientConfig"]["service"]["name"] == FULLNAME
    assert webhooks[0]["failurePolicy"] == "Fail"
    assert "url" not in webhooks[0]["clientConfig"]
    policies = kube.kubectl("get", "mutatingadmissionpolicy", "-o", "name")
    assert policies.stdout.strip() == "", policies.stdout
    (ns,) = [n.metadata.name for n in kube.core.list_namespace().items
             if (n.metadata.labels or {}).get("greenplace.dev/governed") == "true"]  # fmt: skip

    # Rolled out is not yet reachable: the API server learns of the new webhook configuration
    # from its informer, and kube-proxy routes the Service to the new pods, a moment later (CI
    # saw "dial tcp <service IP>:443: connection refused" right after the rollout). Until then a
    # governed GPU pod is refused, as it must be (failurePolicy Fail).
    def gated_by_the_webhook() -> bool:
        probe = k8s.manifest(k8s.gpu_pod(ns, "webhook-probe", 4))
        tried = kube.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=probe)
        return tried.returncode == 0 and podspec.is_gated(json.loads(tried.stdout))

    integration.wait_for(gated_by_the_webhook, 60, "the API server to call the chart's webhook")
    # The first pod filled the lowest-carbon pool (one node, 4 GPUs): the next FR one.
    assert_placed(incluster, ns, "train-through-webhook", SECOND_POOL)
