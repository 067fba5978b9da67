"""Run a real Kueue against the local control plane, out of cluster.

Why this module exists: greenplace plugs into Kueue (its AdmissionCheck in one cluster, its
MultiKueue dispatcher across clusters), so the tests and ``make run`` need Kueue's real manager,
built from its Go module like the control plane (``devcluster.build``, component ``kueue``).
It runs as a process on loopback rather than a pod, which changes three things and nothing else:

* its CRDs, from the same module version, are applied server-side (they exceed client-side
  apply's annotation limit), with their conversion webhook reached by URL;
* its webhooks are reached by URL on 127.0.0.1 with a serving certificate issued here, because
  Kueue's own certificate rotation assumes an in-cluster Service (so it is switched off);
* its configuration is ``devcluster/kueue.yaml`` with free ports filled in. Only the batch/Job
  integration is on: pods stay greenplace's to gate.

Against your own cluster (``GREENPLACE_KUBECONFIG``) install Kueue yourself (docs/kueue.md).
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import pathlib
import socket
import ssl
import string
import subprocess
import urllib.request
from collections.abc import Mapping
from typing import Any

import yaml

from devcluster import build, cluster
from greenplace import pki

__all__ = ["CONFIG_TEMPLATE", "NAMESPACE", "Kueue", "start"]

CONFIG_TEMPLATE = pathlib.Path(__file__).resolve().parent / "kueue.yaml"
NAMESPACE = "kueue-system"
METRICS_CERT_DIR = pathlib.Path("/etc/kueue/metrics/certs")
# The webhooks Kueue serves with only the batch/Job integration on: its own kinds' and Job's.
_SERVED_WEBHOOK_PATHS = ("-kueue-x-k8s-io-", "-batch-v1-job")
# The CRDs Kueue's kustomization gives a conversion webhook (v1beta1 <-> v1beta2).
_CONVERTED_CRDS = frozenset(
    {"localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters"}
)


@dataclasses.dataclass(frozen=True)
class Kueue:
    """A running Kueue manager: where its endpoints are and where it logs."""

    webhook_port: int
    health_port: int
    metrics_port: int
    log: pathlib.Path

    def ready(self) -> bool:
        """Kueue's manager answers its readiness probe."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/readyz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def start(local: cluster.LocalCluster, multikueue: Mapping[str, str] | None = None) -> Kueue:
    """Install Kueue's CRDs and webhooks into ``local`` and start its manager; wait until ready.

    ``multikueue``: the configuration's ``multiKueue`` settings (``dispatcherName``, ``origin``)
    for a MultiKueue manager (``devcluster.multi``). The manager is one of ``local``'s
    processes: ``local.stop()`` stops it too.
    """
    binaries = build.ensure_built(extra=("kueue",))
    assets = binaries["kueue-assets"]
    workdir = local.workdir / "kueue"
    webhook_port, health_port, metrics_port = cluster.free_ports(3)
    ca_bundle, cert_dir = _serving_certificate(workdir)
    _metrics_certificate(workdir)
    url = f"https://127.0.0.1:{webhook_port}"
    kubectl = [str(binaries["kubectl"]), f"--kubeconfig={local.kubeconfig}"]
    manifests = workdir / "manifests.yaml"
    documents = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *(_crd(path, url, ca_bundle) for path in sorted(assets.glob("config/**/bases/*.yaml"))),
        *_webhooks(assets / "config/components/webhook/manifests.yaml", url, ca_bundle),
    ]
    manifests.write_text(yaml.safe_dump_all(documents))
    _run([*kubectl, "apply", "--server-side", "--force-conflicts", "-f", str(manifests)])
    _run([*kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"])
    config = workdir / "config.yaml"
    config.write_text(
        string.Template(CONFIG_TEMPLATE.read_text()).substitute(
            health_port=health_port,
            metrics_port=metrics_port,
            webhook_port=webhook_port,
            cert_dir=cert_dir,
        )
        + (yaml.safe_dump({"multiKueue": dict(multikueue)}) if multikueue else "")
    )
    process = local.processes.start("kueue", [
        str(binaries["kueue"]), f"--config={config}", f"--kubeconfig={local.kubeconfig}",
        # Its on-demand visibility API is an aggregated API server, which needs an APIService
        # and a Service in front of it; nothing here reads it.
        "--feature-gates=VisibilityOnDemand=false",
    ])  # fmt: skip
    running = Kueue(webhook_port, health_port, metrics_port, process.log)
    local.processes.wait_healthy("kueue", running.ready)
    local.processes.wait_healthy("kueue webhooks", lambda: _serves_tls(webhook_port))
    # The API server learns of new webhook configurations through an informer, a moment after
    # they are created: until it calls Kueue's, a Job would be created unsuspended.
    calling = "the API server calling Kueue's webhooks"
    local.processes.wait_healthy(calling, lambda: _suspends(kubectl))
    cluster.record_pid(local.workdir, "kueue", process.popen.pid)
    return running


def _serving_certificate(workdir: pathlib.Path) -> tuple[str, pathlib.Path]:
    """A CA and a loopback serving certificate named as controller-runtime expects."""
    pkidir = workdir / "pki"
    authority = pki.new_authority(pkidir, "kueue-webhook-ca")
    serving = authority.issue(
        pkidir, "serving", common_name="kueue-webhook", hosts=("127.0.0.1", "localhost")
    )
    cert_dir = workdir / "serving-certs"
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "tls.crt").write_bytes(serving.cert.read_bytes())
    (cert_dir / "tls.key").write_bytes(serving.key.read_bytes())
    bundle = base64.b64encode(authority.files.cert.read_bytes()).decode()
    return bundle, cert_dir


def _metrics_certificate(workdir: pathlib.Path) -> None:
    """Make sure ``METRICS_CERT_DIR`` holds a certificate and its key (written once, locked)."""
    try:
        METRICS_CERT_DIR.mkdir(parents=True, exist_ok=True)
        with (METRICS_CERT_DIR.parent / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (METRICS_CERT_DIR / "tls.crt").is_file() and (
                METRICS_CERT_DIR / "tls.key"
            ).is_file():
                return
            pkidir = workdir / "metrics-pki"
            serving = pki.new_authority(pkidir, "kueue-metrics-ca").issue(
                pkidir, "metrics", common_name="kueue-metrics", hosts=("127.0.0.1", "localhost")
            )
            for source, name in ((serving.key, "tls.key"), (serving.cert, "tls.crt")):
                partial = METRICS_CERT_DIR / f".{name}.partial"
                partial.write_bytes(source.read_bytes())
                partial.replace(METRICS_CERT_DIR / name)
    except PermissionError as error:
        raise cluster.ClusterError(
            f"Kueue v0.17 out of cluster reads its metrics certificate from {METRICS_CERT_DIR} "
            f"({error.strerror}); make it yours once: sudo mkdir -p {METRICS_CERT_DIR} && "
            f"sudo chown -R $USER {METRICS_CERT_DIR.parent}"
        ) from error


def _crd(path: pathlib.Path, url: str, ca_bundle: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    if crd["spec"]["names"]["plural"] in _CONVERTED_CRDS:
        crd["spec"]["conversion"] = {
            "strategy": "Webhook",
            "webhook": {
                "clientConfig": {"url": f"{url}/convert", "caBundle": ca_bundle},
                "conversionReviewVersions": ["v1"],
            },
        }
    return crd


def _webhooks(path: pathlib.Path, url: str, ca_bundle: str) -> list[dict[str, Any]]:
    """Kueue's webhook configurations, reduced to what it serves, pointed at ``url``."""
    configurations = []
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        served = []
        for webhook in document["webhooks"]:
            hook_path = webhook["clientConfig"]["service"]["path"]
            if any(fragment in hook_path for fragment in _SERVED_WEBHOOK_PATHS):
                webhook["clientConfig"] = {"url": f"{url}{hook_path}", "caBundle": ca_bundle}
                served.append(webhook)
        document["metadata"]["name"] = f"kueue-{document['metadata']['name']}"
        document["webhooks"] = served
        configurations.append(document)
    return configurations


def _serves_tls(port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw),
        ):
            return True
    except OSError:
        return False


def _suspends(kubectl: list[str]) -> bool:
    """Whether Kueue's Job webhook suspends a queued Job now (a server-side dry run)."""
    probe = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "kueue-webhook-probe", "namespace": "default",
                     "labels": {"kueue.x-k8s.io/queue-name": "probe"}},
        "spec": {"suspend": False, "template": {"spec": {"restartPolicy": "Never",
                 "containers": [{"name": "probe", "image": "registry.k8s.io/pause:3.10"}]}}},
    }  # fmt: skip
    result = subprocess.run(
        [*kubectl, "create", "--dry-run=server", "-o", "json", "-f", "-"],
        input=yaml.safe_dump(probe), capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.returncode == 0 and yaml.safe_load(result.stdout)["spec"].get("suspend") is True


def _run(command: list[str]) -> None:
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise cluster.ClusterError(
            f"{' '.join(command[2:])} failed: {result.stderr.strip() or result.stdout.strip()}"
        )
