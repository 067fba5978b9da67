"""Start and stop a real local control plane: etcd, API server, scheduler, controllers, kwok.

Why this module exists: greenplace is proven against the real Kubernetes API, and kind cannot run
here. ``LocalCluster`` runs the binaries built by ``devcluster.build`` on loopback ports, the way
envtest and kwokctl do, with admission webhooks and ValidatingAdmissionPolicy left on. It writes
a kubeconfig with an admin (``system:masters``) client certificate, waits until every component is
healthy, and stops everything (no orphan processes; the work directory is removed unless kept).

``ExistingCluster`` is the same interface over a cluster you already have (for example kind):
only kwok is started, against your kubeconfig, to run the fake GPU nodes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Self

from devcluster import build
from greenplace import pki

__all__ = [
    "ClusterError",
    "ExistingCluster",
    "LocalCluster",
    "free_ports",
    "port_open",
    "record_pid",
    "stop_recorded",
    "terminate",
]

READY_TIMEOUT_S = 120.0
STATE_FILE = "state.json"


class ClusterError(RuntimeError):
    """A component did not start or become healthy; the message names it and its log file."""


@dataclasses.dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: pathlib.Path
    argv: list[str]


class _Processes:
    """Processes started in their own session so a stop also ends their children."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.running: list[_Process] = []

    def start(self, name: str, argv: list[str]) -> _Process:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        process = _Process(name, popen, log, argv)
        self.running.append(process)
        return process

    def restart(self, name: str, down_s: float = 0.0) -> None:
        """Stop the process called ``name``, wait ``down_s``, start it with the same argv."""
        (process,) = [p for p in self.running if p.name == name]
        terminate(process.popen.pid, 10.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=5)
        self.running.remove(process)
        time.sleep(down_s)
        self.start(name, process.argv)

    def stop_all(self, grace_s: float = 10.0) -> None:
        for process in reversed(self.running):
            terminate(process.popen.pid, grace_s)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=1)
        self.running.clear()

    def wait_healthy(self, what: str, probe: Callable[[], bool]) -> None:
        """Poll ``probe`` until it holds; fail early, with the log, if a process exits."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive()
            if probe():
                return
            time.sleep(0.2)
        raise ClusterError(
            f"{what} not healthy after {READY_TIMEOUT_S:.0f}s; logs in {self.workdir / 'logs'}"
        )

    def pids(self) -> dict[str, int]:
        return {p.name: p.popen.pid for p in self.running}

    def check_alive(self) -> None:
        for process in self.running:
            if process.popen.poll() is not None:
                tail = process.log.read_text(errors="replace")[-2000:]
                raise ClusterError(
                    f"{process.name} exited with code {process.popen.returncode}; "
                    f"log {process.log}:\n{tail}"
                )


class _Cluster:
    """What both kinds of cluster share: a work directory, processes, a kubeconfig, stop()."""

    def __init__(self, workdir: pathlib.Path | None, keep: bool, prefix: str) -> None:
        self.workdir = workdir or pathlib.Path(tempfile.mkdtemp(prefix=prefix))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.processes = _Processes(self.workdir)
        self.kubeconfig = self.workdir / "kubeconfig"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        binaries = build.ensure_built()
        try:
            self._start(binaries)
        except BaseException:
            self.stop()
            raise
        for name, pid in self.processes.pids().items():
            record_pid(self.workdir, name, pid)

    def stop(self) -> None:
        """Stop every process this object started; remove the work directory unless kept."""
        self.processes.stop_all()
        (self.workdir / STATE_FILE).unlink(missing_ok=True)
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _start(self, binaries: build.Binaries) -> None:
        raise NotImplementedError


class LocalCluster(_Cluster):
    """A control plane on loopback; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        workdir: pathlib.Path | None = None,
        *,
        keep: bool = False,
        service_account_tokens: bool = False,
    ) -> None:
        """``service_account_tokens``: keep the ServiceAccount admission plugin on, as in any
        real cluster, so pods on a real node get their token (``devcluster.realnode``). Off by
        default: kwok pods need none, and a pod would be refused until its namespace's
        ServiceAccount exists."""
        super().__init__(workdir, keep, "greenplace-cluster-")
        self.service_account_tokens = service_account_tokens
        self.server = ""
        self._tls: ssl.SSLContext | None = None  # the admin client's TLS, once started

    def _start(self, binaries: build.Binaries) -> None:
        pkidir = self.workdir / "pki"
        ca = pki.new_authority(pkidir, "greenplace-dev-ca")
        serving = ca.issue(
            pkidir, "apiserver", common_name="kube-apiserver",
            hosts=("127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
                   "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"),
        )  # fmt: skip
        admin = ca.issue(
            pkidir, "admin", common_name="greenplace-admin", organization="system:masters",
            client=True,
        )  # fmt: skip
        sa_key = pki.write_service_account_key(pkidir / "service-account.key")
        etcd_port, peer_port, api_port, sched_port, kcm_port, kwok_port = free_ports(6)
        self.server = f"https://127.0.0.1:{api_port}"
        _write_kubeconfig(self.kubeconfig, self.server, ca.files, admin)

        self.processes.start("etcd", [
            str(binaries["etcd"]), "--name=greenplace-dev",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=greenplace-dev=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync=true", "--quota-backend-bytes=4294967296",
        ])  # fmt: skip
        self._wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health", None))

        self.processes.start("kube-apiserver", [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--secure-port={api_port}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={pkidir}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.files.cert}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            "--authorization-mode=RBAC",
            # Pods need no service-account token on kwok nodes; webhooks and
            # ValidatingAdmissionPolicy stay enabled (the default plugin set).
            *([] if self.service_account_tokens else
              ["--disable-admission-plugins=ServiceAccount"]),
            "--endpoint-reconciler-type=none",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_key}",
            f"--service-account-signing-key-file={sa_key}",
            "--max-requests-inflight=1000", "--max-mutating-requests-inflight=500",
        ])  # fmt: skip
        tls = self._tls = _client_tls(ca.files, admin)
        self._wait("kube-apiserver", lambda: _http_ok(f"{self.server}/readyz", tls))

        common = [
            f"--kubeconfig={self.kubeconfig}", "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]  # fmt: skip
        self.processes.start("kube-controller-manager", [
            str(binaries["kube-controller-manager"]), *common, f"--secure-port={kcm_port}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            f"--root-ca-file={ca.files.cert}",
            f"--service-account-private-key-file={sa_key}",
            "--kube-api-qps=200", "--kube-api-burst=400",
        ])  # fmt: skip
        scheduler_config = self.workdir / "scheduler.yaml"
        scheduler_config.write_text(
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n"
            f"clientConnection:\n  kubeconfig: {self.kubeconfig}\n  qps: 500\n  burst: 1000\n"
            "leaderElection:\n  leaderElect: false\n"
        )
        self.processes.start("kube-scheduler", [
            str(binaries["kube-scheduler"]), f"--config={scheduler_config}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}",
        ])  # fmt: skip
        start_kwok(self.processes, binaries, self.kubeconfig, kwok_port)
        self._wait(
            "kube-controller-manager",
            lambda: _http_ok(f"https://127.0.0.1:{kcm_port}/healthz", _insecure()),
        )
        self._wait(
            "kube-scheduler",
            lambda: _http_ok(f"https://127.0.0.1:{sched_port}/healthz", _insecure()),
        )
        self._wait("kwok", lambda: _http_ok(f"http://127.0.0.1:{kwok_port}/healthz", None))
        self._wait("default namespace", lambda: _has_default_namespace(self.server, tls))

    def _wait(self, what: str, probe: Callable[[], bool]) -> None:
        self.processes.wait_healthy(what, probe)

    def restart_apiserver(self, down_s: float = 0.0) -> None:
        """Restart kube-apiserver (same flags, same etcd); return when it is ready again.

        Its watch cache starts empty, so a client resuming a watch from an older
        resourceVersion gets ``410 Gone`` and must list again: the fault tests use this.
        """
        tls = self._tls
        assert tls is not None, "start the cluster first"
        self.processes.restart("kube-apiserver", down_s)
        self._wait("kube-apiserver", lambda: _http_ok(f"{self.server}/readyz", tls))
        record_pid(self.workdir, "kube-apiserver", self.processes.pids()["kube-apiserver"])


class ExistingCluster(_Cluster):
    """A cluster reached through a kubeconfig you provide; greenplace only adds kwok nodes."""

    def __init__(
        self, kubeconfig: pathlib.Path, workdir: pathlib.Path | None = None, *, keep: bool = False
    ) -> None:
        super().__init__(workdir, keep, "greenplace-existing-")
        self.kubeconfig = kubeconfig.resolve()

    def _start(self, binaries: build.Binaries) -> None:
        (port,) = free_ports(1)
        start_kwok(self.processes, binaries, self.kubeconfig, port)
        self.processes.wait_healthy(
            "kwok", lambda: _http_ok(f"http://127.0.0.1:{port}/healthz", None)
        )


def start_kwok(
    processes: _Processes, binaries: build.Binaries, kubeconfig: pathlib.Path, port: int
) -> None:
    """Run kwok for nodes annotated ``kwok.x-k8s.io/node=fake`` (the fleet loader's nodes)."""
    stages = processes.workdir / "kwok-stages.yaml"
    stages.write_bytes(subprocess.run([str(binaries["kwok-stages"])], check=True,
                                      capture_output=True).stdout)  # fmt: skip
    processes.start("kwok", [
        str(binaries["kwok"]), f"--kubeconfig={kubeconfig}", f"--config={stages}",
        "--node-lease-duration-seconds=40",
        "--manage-all-nodes=false",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--cidr=10.244.0.0/16", "--node-ip=10.0.0.2",
        f"--server-address=127.0.0.1:{port}",
    ])  # fmt: skip


def record_pid(workdir: pathlib.Path, name: str, pid: int) -> None:
    """Remember a process started for a kept cluster, so ``stop_recorded`` can end it later."""
    state_file = workdir / STATE_FILE
    state = json.loads(state_file.read_text()) if state_file.exists() else {"pids": {}}
    state["pids"][name] = pid
    state_file.write_text(json.dumps(state))


def stop_recorded(workdir: pathlib.Path) -> list[str]:
    """Stop the processes a kept cluster recorded in its state file; return their names."""
    state_file = workdir / STATE_FILE
    if not state_file.exists():
        return []
    pids: dict[str, int] = json.loads(state_file.read_text()).get("pids", {})
    for pid in reversed(list(pids.values())):
        terminate(pid, 10.0)
    state_file.unlink()
    return list(pids)


def terminate(pid: int, grace_s: float) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # our child: reap it if it has exited
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free now, chosen below the kernel's ephemeral range.

    Ports the kernel hands out (bind to 0) come from the ephemeral range, where any outgoing
    connection may take one before our server binds it; below that range only listeners live.
    """
    low, _ = _ephemeral_range()
    if low < 11_000:  # an unusual kernel setting: fall back on ports the kernel picks
        low = 65_536
    candidates = random.sample(range(10_000, low), k=min(low - 10_000, 64 * count))
    found: list[int] = []
    for port in candidates:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise ClusterError(f"no {count} free loopback ports below {low}")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def _client_tls(ca: pki.CertFiles, client: pki.CertFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.cert))
    context.load_cert_chain(str(client.cert), str(client.key))
    return context


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _http_ok(url: str, tls: ssl.SSLContext | None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=tls) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _has_default_namespace(server: str, tls: ssl.SSLContext) -> bool:
    return _http_ok(f"{server}/api/v1/namespaces/default", tls)


def _write_kubeconfig(
    path: pathlib.Path, server: str, ca: pki.CertFiles, user: pki.CertFiles
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "greenplace-dev",
                      "cluster": {"server": server, "certificate-authority": str(ca.cert)}}],
        "users": [{"name": "greenplace-admin",
                   "user": {"client-certificate": str(user.cert), "client-key": str(user.key)}}],
        "contexts": [{"name": "greenplace-dev",
                      "context": {"cluster": "greenplace-dev", "user": "greenplace-admin"}}],
        "current-context": "greenplace-dev",
    }  # fmt: skip
    path.write_text(json.dumps(config, indent=2))


def existing_kubeconfig() -> pathlib.Path | None:
    """The kubeconfig ``GREENPLACE_KUBECONFIG`` names, None when unset; a one-line error
    (SystemExit) when it names no file, before anything is stopped or started."""
    existing = os.environ.get("GREENPLACE_KUBECONFIG")
    if not existing:
        return None
    path = pathlib.Path(existing).expanduser()
    if not path.is_file():
        raise SystemExit(
            f"GREENPLACE_KUBECONFIG={existing}: no such file; point it at your cluster's "
            "kubeconfig, or unset it to use the local control plane"
        )
    return path


@contextlib.contextmanager
def cluster_from_env() -> Iterator[LocalCluster | ExistingCluster]:
    """``GREENPLACE_KUBECONFIG`` selects an existing cluster; otherwise start a local one."""
    existing = existing_kubeconfig()
    cluster: LocalCluster | ExistingCluster = (
        ExistingCluster(existing) if existing else LocalCluster()
    )
    with cluster:
        yield cluster
