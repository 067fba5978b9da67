"""One real node beside the local control plane: containerd, a kubelet and kube-proxy.

Why this module exists: kwok nodes have no kubelet, so nothing the Helm chart deploys ever runs on
them; the operator's image, its in-cluster login, its service-account RBAC and the API server's
call to the webhook *through the Service* are only proven when a real kubelet runs the
Deployment's pods. ``RealNode`` joins one real node, ``greenplace-realnode``, to a running
``LocalCluster``:

- containerd (Debian's package) with runc, a bridge CNI network on a private /24 (Debian's
  ``containernetworking-plugins``), a pause image made here from a static binary (no registry
  can be reached), and ``restrict_oom_score_adj`` (this machine's root lacks CAP_SYS_RESOURCE, so
  runc cannot set the kubelet's negative OOM scores);
- the kubelet and kube-proxy of the control plane's release, built from Go modules by
  ``devcluster.build`` (component ``realnode``), the kubelet accepting cgroup v1 hosts;
- what a cluster's add-ons would do, reduced to what in-cluster clients need: a DNAT from the
  ``kubernetes`` Service's ClusterIP to the API server on 127.0.0.1 (the local control plane
  runs without an endpoint reconciler, and only listens on loopback), and dnsmasq answering
  ``kubernetes.default.svc[.cluster.local]`` (kopf's in-cluster login uses that DNS name). The
  API server reaches webhook Services through kube-proxy's rules, as in a real cluster.

Images are loaded with ``load_image`` (an OCI archive, e.g. from ``scripts/build-image.sh``).
``stop`` removes every pod through the CRI, stops the processes, deletes the bridge, the
iptables rules the kubelet, kube-proxy and this module added, the kubelet's cgroups and mounts.
The kernel settings the kubelet changes at start (kernel.panic_on_oops among them) are given
back as soon as the node is Ready. Only one real node runs on a machine at a time (iptables
chains and the kubelet's cgroups are machine-wide): a lock in /run/greenplace-realnode enforces
it, and the state recorded there lets the next start remove what a killed run left (its
processes, pods, mounts, rules, bridge).

The pods' service-account token needs the API server's ServiceAccount admission plugin, which
``LocalCluster`` turns off by default (kwok pods need no token): start the control plane with
``LocalCluster(service_account_tokens=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import ipaddress
import json
import os
import pathlib
import platform
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, Self

from kubernetes import client, config

from devcluster import build, cluster

__all__ = [
    "NODE_LABEL",
    "NODE_NAME",
    "Preflight",
    "RealNode",
    "RealNodeError",
    "preflight",
]

NODE_NAME = "greenplace-realnode"
NODE_LABEL = "greenplace.dev/real-node"  # value "true": select the real node with it
BRIDGE = "gp-realnode"
CHAIN = "GREENPLACE-REALNODE"
CLUSTER_DOMAIN = "cluster.local"
READY_TIMEOUT_S = 120.0
LOCK_WAIT_S = 600.0
# Machine-wide, whatever $GREENPLACE_CACHE says, and on tmpfs: a reboot forgets a node it ended.
RUN_DIR = pathlib.Path("/run/greenplace-realnode")
# Set by the kubelet at start (container_manager_linux.go), restored by stop().
KUBELET_SYSCTLS = (
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
)  # fmt: skip
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
# Created whatever the flags say (the kubelet's device-plugin socket and log links, containerd's
# shim sockets); removed on stop when a real node created them and they hold nothing else.
MACHINE_DIRS = tuple(
    pathlib.Path(p) for p in ("/var/lib/kubelet", "/var/log/containers", "/run/containerd")
)
CNI_PLUGINS = ("bridge", "host-local", "loopback")
TOOLS = {  # command: Debian package (installed by scripts/ensure-realnode.sh)
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "ip": "iproute2",
    "dnsmasq": "dnsmasq-base",
}


class RealNodeError(RuntimeError):
    """The real node could not start; the message names the step and the log to read."""


@dataclasses.dataclass(frozen=True)
class Preflight:
    """What stands between this machine and a real node.

    ``unsupported``: the machine cannot run one (no root, no overlayfs, no memory cgroup, missing
    capabilities); ``missing``: host tools to install (``scripts/ensure-realnode.sh``).
    """

    unsupported: tuple[str, ...]
    missing: tuple[str, ...]


def preflight() -> Preflight:
    unsupported: list[str] = []
    if platform.system() != "Linux":
        unsupported.append(f"a real node needs Linux, not {platform.system()}")
        return Preflight(tuple(unsupported), ())
    if os.geteuid() != 0:
        unsupported.append("a real node needs root (containerd, the kubelet, iptables)")
    if "overlay" not in pathlib.Path("/proc/filesystems").read_text():
        unsupported.append("the kernel has no overlay filesystem (containerd's snapshotter)")
    if not _has_memory_cgroup():
        unsupported.append("no memory cgroup controller (cgroup v1 or v2) is available")
    effective = _effective_capabilities()
    for bit, name in ((21, "CAP_SYS_ADMIN"), (12, "CAP_NET_ADMIN")):
        if not effective >> bit & 1:
            unsupported.append(f"this process lacks {name}")
    missing = [f"{tool} (Debian package {package})" for tool, package in TOOLS.items()
               if shutil.which(tool) is None]  # fmt: skip
    if _cni_bin_dir() is None:
        missing.append("CNI plugins bridge, host-local, loopback (containernetworking-plugins)")
    return Preflight(tuple(unsupported), tuple(missing))


@dataclasses.dataclass(frozen=True)
class _Network:
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)


class RealNode:
    """A real node joined to ``control_plane``; a context manager, or start()/stop()."""

    def __init__(
        self,
        control_plane: cluster.LocalCluster,
        workdir: pathlib.Path | None = None,
        *,
        keep: bool = False,
    ) -> None:
        self.control_plane = control_plane
        self.workdir = workdir or pathlib.Path(tempfile.mkdtemp(prefix="greenplace-realnode-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep = keep
        self.processes = cluster._Processes(self.workdir)
        self.socket = self.workdir / "containerd" / "containerd.sock"
        self.pod_logs = self.workdir / "pod-logs"
        self.network: _Network | None = None
        self._binaries: build.Binaries | None = None
        self._lock: io.TextIOWrapper | None = None
        self._sysctls: dict[str, str] = {}
        self._created_dirs: list[pathlib.Path] = []

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        checked = preflight()
        if checked.unsupported or checked.missing:
            raise RealNodeError(
                "cannot start a real node: "
                + "; ".join(checked.unsupported + tuple(f"missing {m}" for m in checked.missing))
                + (" (run scripts/ensure-realnode.sh)" if checked.missing else "")
            )
        self._lock = _acquire_lock(RUN_DIR / "lock", LOCK_WAIT_S)
        try:
            _reap_stale()
            _refuse_foreign_kubelet()
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._binaries = build.ensure_built()
        api = self.control_plane.kubeconfig
        core = client.CoreV1Api(config.new_client_from_config(str(api)))
        service_ip = str(core.read_namespaced_service("kubernetes", "default").spec.cluster_ip)
        api_port = urllib.parse.urlsplit(self.control_plane.server).port
        if api_port is None:
            raise RealNodeError(f"no port in the API server URL {self.control_plane.server}")
        self._created_dirs = [path for path in MACHINE_DIRS if not path.exists()]
        self.network = network = _Network(_free_subnet())
        self._create_bridge(network)
        self._add_service_dnat(network, service_ip, api_port)
        self._start_containerd(network)
        self.load_image(self._pause_archive(), what="pause image")
        self._start_dns(network, service_ip)
        self._start_kubelet(network)
        self._wait("node Ready", lambda: _node_ready(core))
        # The kubelet sets these once, at start (kernel.panic_on_oops=1 and kernel.panic=10 among
        # them): give this shared machine its own values back at once.
        _restore_sysctls(self._sysctls)
        self._start_kube_proxy(network)

    def _create_bridge(self, network: _Network) -> None:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{network.gateway}/{network.subnet.prefixlen}", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # Pods reach the API server, which listens on 127.0.0.1, through a DNAT to loopback.
        _run("sysctl", "-q", "-w", f"net.ipv4.conf.{BRIDGE}.route_localnet=1")

    def _add_service_dnat(self, network: _Network, service_ip: str, api_port: int) -> None:
        """``kubernetes.default`` (ClusterIP:443) -> the API server on 127.0.0.1, for pods."""
        _run("iptables", "-w", "-t", "nat", "-N", CHAIN)
        _run("iptables", "-w", "-t", "nat", "-A", CHAIN, "-i", BRIDGE, "-d", f"{service_ip}/32",
             "-p", "tcp", "--dport", "443", "-j", "DNAT",
             "--to-destination", f"127.0.0.1:{api_port}")  # fmt: skip
        _run("iptables", "-w", "-t", "nat", "-I", "PREROUTING", "1", "-j", CHAIN)

    def _start_containerd(self, network: _Network) -> None:
        base = self.workdir / "containerd"
        base.mkdir(parents=True, exist_ok=True)
        cni_conf = self.workdir / "cni" / "net.d"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-greenplace.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0",
            "name": "greenplace-realnode",
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(network.subnet), "gateway": network.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(self.workdir / "cni" / "ipam"),
                },
            }],
        }, indent=2))  # fmt: skip
        conf = base / "config.toml"
        assert self._binaries is not None
        sandbox = pause_reference(self._binaries["pause"].read_bytes())
        conf.write_text(
            _containerd_config(base, cni_conf, _cni_bin_dir() or CNI_BIN_DIRS[0], sandbox)
        )
        self._spawn("containerd", ["containerd", f"--config={conf}"])
        self._wait("containerd (CRI)", lambda: self._cri("ready"))

    def _pause_archive(self) -> pathlib.Path:
        assert self._binaries is not None
        archive = self.workdir / "pause.oci.tar"
        archive.write_bytes(
            oci_archive(self._binaries["pause"].read_bytes(), "pause", PAUSE_IMAGE_REPO)
        )
        return archive

    def load_image(self, archive: pathlib.Path, what: str = "image") -> None:
        """Import an OCI (or docker) archive into the CRI's image store (namespace k8s.io)."""
        result = subprocess.run(
            ["ctr", f"--address={self.socket}", "--namespace=k8s.io", "images", "import",
             str(archive)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RealNodeError(f"importing the {what} {archive} failed: {result.stderr}")

    def images(self) -> list[str]:
        result = _run("ctr", f"--address={self.socket}", "--namespace=k8s.io", "images", "ls",
                      "-q")  # fmt: skip
        return result.stdout.split()

    def _start_dns(self, network: _Network, service_ip: str) -> None:
        names = ",".join(f"kubernetes.default.svc{suffix}" for suffix in (f".{CLUSTER_DOMAIN}", ""))
        self._spawn("dnsmasq", [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
            "--no-hosts", "--no-poll", "--bind-interfaces", f"--listen-address={network.gateway}",
            "--port=53", "--user=root", "--log-facility=-",
            f"--pid-file={self.workdir}/dnsmasq.pid",  # also names the workdir in its argv
            f"--local=/{CLUSTER_DOMAIN}/", "--local=/svc/",
            f"--host-record={names},{service_ip}",
        ])  # fmt: skip

    def _start_kubelet(self, network: _Network) -> None:
        assert self._binaries is not None
        health_port, port = cluster.free_ports(2)
        root = self.workdir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        kubelet_config = root / "config.json"
        kubelet_config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # This machine's cgroups are v1 (hybrid); the kubelet refuses them unless told.
            "failCgroupV1": False,
            "failSwapOn": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            "address": "127.0.0.1", "port": port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": health_port,
            "podLogsDir": str(self.pod_logs),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True}},
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [network.gateway], "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": "/etc/resolv.conf",
            # Never evict or garbage-collect images on a shared development machine's disk.
            "evictionHard": {}, "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
        }, indent=2))  # fmt: skip
        self._sysctls = {name: _read_sysctl(name) for name in KUBELET_SYSCTLS}
        self._spawn("kubelet", [
            str(self._binaries["kubelet"]), f"--config={kubelet_config}",
            f"--kubeconfig={self.control_plane.kubeconfig}",
            f"--root-dir={root}/root", f"--cert-dir={root}/pki",
            f"--hostname-override={NODE_NAME}", f"--node-ip={network.gateway}",
            f"--node-labels={NODE_LABEL}=true", "--v=2",
        ])  # fmt: skip
        self._wait("kubelet", lambda: _http_ok(f"http://127.0.0.1:{health_port}/healthz"))

    def _start_kube_proxy(self, network: _Network) -> None:
        assert self._binaries is not None
        metrics_port, health_port = cluster.free_ports(2)
        proxy_config = self.workdir / "kube-proxy.json"
        proxy_config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.control_plane.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": str(network.subnet),
            "bindAddress": "127.0.0.1",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            "healthzBindAddress": f"127.0.0.1:{health_port}",
            "conntrack": {"maxPerCore": 0},  # leave the machine's conntrack table size alone
            "iptables": {"localhostNodePorts": False},  # no machine-wide route_localnet
            "nodePortAddresses": [f"{network.gateway}/32"],
        }, indent=2))  # fmt: skip
        self._spawn("kube-proxy", [
            str(self._binaries["kube-proxy"]), f"--config={proxy_config}", "--v=2",
        ])  # fmt: skip
        self._wait("kube-proxy", lambda: _http_ok(f"http://127.0.0.1:{health_port}/healthz"))

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.processes.start(name, argv)
        self._record()  # before anything else can fail: a crash from here on is reaped later

    def _wait(self, what: str, probe: Callable[[], bool]) -> None:
        try:
            self.processes.wait_healthy(what, probe)
        except cluster.ClusterError as error:
            raise RealNodeError(f"{error} (real node work directory {self.workdir})") from error

    def _cri(self, command: str) -> bool:
        assert self._binaries is not None
        result = subprocess.run(
            [str(self._binaries["realnode-cri"]), f"-endpoint=unix://{self.socket}",
             "-timeout=30s", command],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return result.returncode == 0

    # -- reading -----------------------------------------------------------------------------

    def container_log(self, namespace: str, pod: str, container: str) -> str:
        """A container's log as the kubelet wrote it (the API server cannot reach the kubelet:
        the node's name does not resolve), every restart concatenated."""
        found = sorted(self.pod_logs.glob(f"{namespace}_{pod}_*/{container}/*.log"))
        return "".join(path.read_text(errors="replace") for path in found)

    # -- stop --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Undo everything start() did, each step even if an earlier one failed."""
        if self._lock is None:  # never started (or already stopped): machine state is not ours
            if not self.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
            return
        graceful: list[tuple[str, Callable[[], None]]] = [
            ("kube-proxy", lambda: self._stop_process("kube-proxy")),
            ("kube-proxy rules", self._kube_proxy_cleanup),
            ("kubelet", lambda: self._stop_process("kubelet")),
            ("pods", self._remove_pods),
            ("containerd", lambda: self._stop_process("containerd")),
            ("dnsmasq", lambda: self._stop_process("dnsmasq")),
        ]
        failures = _attempt(graceful)
        failures += _teardown(self._state(), keep_workdir=self.keep)
        _state_file().unlink(missing_ok=True)
        self._lock.close()
        self._lock = None
        if failures:
            raise RealNodeError("real node cleanup incomplete: " + "; ".join(failures))

    def _state(self) -> dict[str, Any]:
        """What stop() (or the next start(), after a crash) needs to undo this node."""
        return {
            "workdir": str(self.workdir),
            "socket": str(self.socket),
            "pod_logs": str(self.pod_logs),
            "pids": [p.popen.pid for p in self.processes.running],
            "sysctls": self._sysctls,
            "created_dirs": [str(d) for d in self._created_dirs],
        }

    def _record(self) -> None:
        _state_file().write_text(json.dumps(self._state()))

    def _stop_process(self, name: str) -> None:
        for process in [p for p in self.processes.running if p.name == name]:
            cluster.terminate(process.popen.pid, 15.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=5)
            self.processes.running.remove(process)

    def _kube_proxy_cleanup(self) -> None:
        if self._binaries is not None:
            subprocess.run([str(self._binaries["kube-proxy"]), "--cleanup"], capture_output=True,
                           check=False, timeout=60)  # fmt: skip

    def _remove_pods(self) -> None:
        running = any(p.name == "containerd" for p in self.processes.running)
        if running and not self._cri("remove-all"):
            raise RealNodeError("the CRI did not remove every pod sandbox")


def _state_file() -> pathlib.Path:
    return RUN_DIR / "state.json"


def _attempt(steps: list[tuple[str, Callable[[], None]]]) -> list[str]:
    failures = []
    for name, step in steps:
        try:
            step()
        except Exception as error:  # every step is tried; the failures are reported together
            failures.append(f"{name}: {error}")
    return failures


def _teardown(state: dict[str, Any], *, keep_workdir: bool = False) -> list[str]:
    """Remove what a real node leaves on the machine, whether it stopped cleanly or crashed."""
    workdir = pathlib.Path(state["workdir"])
    steps: list[tuple[str, Callable[[], None]]] = [
        ("processes", lambda: _terminate_all(state.get("pids", []), state["workdir"])),
        ("pod processes", _kill_pod_processes),
        ("shims", lambda: _kill_shims(state["socket"])),
        ("shim sockets", _remove_dead_shim_sockets),
        ("iptables", _remove_iptables),
        ("bridge", _remove_bridge),
        ("mounts", lambda: _unmount_under(workdir)),
        ("cgroups", _remove_kubepods_cgroups),
        ("sysctls", lambda: _restore_sysctls(state.get("sysctls", {}))),
        ("log links", lambda: _remove_log_links(pathlib.Path(state["pod_logs"]))),
        ("directories", lambda: _remove_dirs(state.get("created_dirs", []))),
    ]
    failures = _attempt(steps)
    if not keep_workdir and not _mounts_under(workdir):
        shutil.rmtree(workdir, ignore_errors=True)
    return failures


def _reap_stale() -> None:
    """A run that was killed (SIGKILL, a lost session) left its node behind: remove it."""
    path = _state_file()
    if path.exists():
        with contextlib.suppress(ValueError, KeyError):
            _teardown(json.loads(path.read_text()))
        path.unlink(missing_ok=True)
    _remove_iptables_chain()
    _remove_bridge()


def _terminate_all(pids: list[int], workdir: str) -> None:
    """The recorded processes, if they are still ours (a pid may have been reused since)."""
    for pid in reversed(pids):
        with contextlib.suppress(OSError):
            if workdir.encode() in pathlib.Path(f"/proc/{pid}/cmdline").read_bytes():
                cluster.terminate(pid, 5.0)


def _refuse_foreign_kubelet() -> None:
    """Never share the machine with another kubelet: stop() empties the kubepods cgroups."""
    for procs in pathlib.Path("/sys/fs/cgroup").glob("*/kubepods/**/cgroup.procs"):
        with contextlib.suppress(OSError):
            if procs.read_text().strip():
                raise RealNodeError(
                    f"processes run in {procs.parent}: another kubelet seems to run on this "
                    "machine, and a real node would take over its cgroups and iptables chains"
                )


def _kill_pod_processes() -> None:
    """Every process in the kubelet's pod cgroups (orphans of a killed shim included)."""
    for _ in range(3):
        pids: set[int] = set()
        for procs in pathlib.Path("/sys/fs/cgroup").glob("*/kubepods/**/cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(pid) for pid in procs.read_text().split())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def _kill_shims(socket_path: str) -> None:
    """Shims outlive containerd; any still serving this node's containerd are ended."""
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if argv[0].endswith(b"containerd-shim-runc-v2") and socket_path.encode() in argv:
                os.kill(int(proc.name), signal.SIGKILL)


def _remove_dead_shim_sockets() -> None:
    """A killed shim leaves its socket in /run/containerd/s; remove those nothing listens on."""
    directory = pathlib.Path("/run/containerd/s")
    if not directory.is_dir():
        return
    lines = pathlib.Path("/proc/net/unix").read_text().splitlines()[1:]
    bound = {line.split()[-1] for line in lines if len(line.split()) >= 8}
    for path in directory.iterdir():
        if path.is_socket() and str(path) not in bound:
            path.unlink(missing_ok=True)


def _restore_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        if value and _read_sysctl(name) != value:
            pathlib.Path("/proc/sys", name).write_text(value)


def _remove_log_links(pod_logs: pathlib.Path) -> None:
    """The kubelet's /var/log/containers symlinks into this node's pod logs."""
    links = pathlib.Path("/var/log/containers")
    if links.is_dir():
        for link in links.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(str(pod_logs)):
                link.unlink()


def _remove_dirs(paths: list[str]) -> None:
    """Machine directories a real node created: sockets, links and empty directories go; a
    directory that something else has since put a file in stays."""
    for top in paths:
        for directory, _, files in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            for name in files:
                path = pathlib.Path(directory, name)
                if path.is_symlink() or path.is_socket():
                    path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                os.rmdir(directory)


PAUSE_IMAGE_REPO = "localhost/greenplace/pause"


def oci_archive(binary: bytes, name: str, repository: str) -> bytes:
    """A one-layer OCI image archive holding ``/<name>`` (mode 0755) as its entrypoint, run as
    65535; tagged ``<repository>:<content hash>``. Deterministic: same binary, same bytes."""
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w", format=tarfile.PAX_FORMAT) as layer_tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(binary), 0o755, 0
        layer_tar.addfile(info, io.BytesIO(binary))
    layer = layer_buffer.getvalue()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    image_config = _json_bytes({
        "architecture": arch, "os": "linux",
        "config": {"Entrypoint": [f"/{name}"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
    })  # fmt: skip
    manifest = _json_bytes({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": _digest(image_config), "size": len(image_config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer), "size": len(layer)}],
    })  # fmt: skip
    reference = f"{repository}:{_digest(binary)[7:19]}"
    index = _json_bytes({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": _digest(manifest), "size": len(manifest),
            "annotations": {"io.containerd.image.name": reference,
                            "org.opencontainers.image.ref.name": reference},
        }],
    })  # fmt: skip
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        files = {"oci-layout": _json_bytes({"imageLayoutVersion": "1.0.0"}), "index.json": index}
        for blob in (layer, image_config, manifest):
            files[f"blobs/sha256/{_digest(blob)[7:]}"] = blob
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def pause_reference(binary: bytes) -> str:
    return f"{PAUSE_IMAGE_REPO}:{_digest(binary)[7:19]}"


def _containerd_config(
    base: pathlib.Path, cni_conf: pathlib.Path, cni_bin: str, sandbox: str
) -> str:
    root, state, sock, opt, runc = (base / n for n in ("root", "state", "containerd.sock", "opt",
                                                      "runc"))  # fmt: skip
    return f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  # Root without CAP_SYS_RESOURCE cannot lower oom_score_adj: clamp to containerd's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RealNodeError(f"`{' '.join(argv)}` failed ({result.returncode}): {result.stderr}")
    return result


def _acquire_lock(path: pathlib.Path, wait_s: float) -> io.TextIOWrapper:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise RealNodeError(
                    f"another real node held {path} for {wait_s:.0f}s; one runs at a time"
                ) from None
            time.sleep(1)


def _free_subnet() -> ipaddress.IPv4Network:
    """The first 10.88.N.0/24 that no address or route of this machine overlaps."""
    used: list[ipaddress.IPv4Network] = []
    routes = json.loads(_run("ip", "-4", "-j", "route", "show", "table", "all").stdout or "[]")
    for route in routes:
        with contextlib.suppress(ValueError, KeyError):  # "default", broadcast, local...
            used.append(ipaddress.IPv4Network(route["dst"], strict=False))
    for link in json.loads(_run("ip", "-4", "-j", "addr").stdout or "[]"):
        for addr in link.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for n in range(256):
        candidate = ipaddress.IPv4Network(f"10.88.{n}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise RealNodeError("no free 10.88.N.0/24 subnet for the real node's pods")


def _remove_bridge() -> None:
    if pathlib.Path("/sys/class/net", BRIDGE).exists():
        _run("ip", "link", "delete", BRIDGE)


def _remove_iptables_chain() -> None:
    while _run("iptables", "-w", "-t", "nat", "-D", "PREROUTING", "-j", CHAIN,
               check=False).returncode == 0:  # fmt: skip
        pass
    _run("iptables", "-w", "-t", "nat", "-F", CHAIN, check=False)
    _run("iptables", "-w", "-t", "nat", "-X", CHAIN, check=False)


def _remove_iptables() -> None:
    """Our DNAT chain, and the kubelet's chains (kube-proxy --cleanup removes kube-proxy's)."""
    _remove_iptables_chain()
    for table, parent in (("filter", "INPUT"), ("filter", "OUTPUT")):
        while _run("iptables", "-w", "-t", table, "-D", parent, "-j", "KUBE-FIREWALL",
                   check=False).returncode == 0:  # fmt: skip
            pass
    for table, chain in (("filter", "KUBE-FIREWALL"), ("mangle", "KUBE-IPTABLES-HINT"),
                         ("mangle", "KUBE-KUBELET-CANARY"), ("nat", "KUBE-KUBELET-CANARY"),
                         ("filter", "KUBE-KUBELET-CANARY")):  # fmt: skip
        _run("iptables", "-w", "-t", table, "-F", chain, check=False)
        _run("iptables", "-w", "-t", table, "-X", chain, check=False)


def _mounts_under(root: pathlib.Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    mounts = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            mounts.append(point)
    return mounts


def _unmount_under(root: pathlib.Path) -> None:
    """The kubelet's volume tmpfs and containerd's mounts outlive them: unmount, deepest first."""
    for point in sorted(_mounts_under(root), key=len, reverse=True):
        _run("umount", "--lazy", point, check=False)
    remaining = _mounts_under(root)
    if remaining:
        raise RealNodeError(f"still mounted: {remaining[:5]}")


def _remove_kubepods_cgroups() -> None:
    for controller in pathlib.Path("/sys/fs/cgroup").iterdir():
        top = controller / "kubepods"
        if controller.name == "kubepods":
            top = controller
        if not top.is_dir():
            continue
        for directory in sorted((p for p in top.rglob("*") if p.is_dir()),
                                key=lambda p: len(p.parts), reverse=True):  # fmt: skip
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def _read_sysctl(name: str) -> str:
    try:
        return pathlib.Path("/proc/sys", name).read_text().strip()
    except OSError:
        return ""


def _has_memory_cgroup() -> bool:
    unified = pathlib.Path("/sys/fs/cgroup/cgroup.controllers")
    if unified.exists():
        return "memory" in unified.read_text().split()
    return pathlib.Path("/sys/fs/cgroup/memory").is_dir()


def _effective_capabilities() -> int:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _cni_bin_dir() -> str | None:
    for directory in CNI_BIN_DIRS:
        if all(pathlib.Path(directory, plugin).is_file() for plugin in CNI_PLUGINS):
            return directory
    return None


def _node_ready(core: Any) -> bool:
    try:
        node = core.read_node(NODE_NAME)
    except client.ApiException:
        return False
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
