"""Build the control plane's binaries from Go modules, once, into a stable cache.

Why this module exists: kind needs a Docker engine and dl.k8s.io is out of reach, so the real
kube-apiserver, kube-scheduler, kube-controller-manager, kubectl, etcd and kwok (and helm, which
renders the chart in the e2e tests, Kueue, which greenplace plugs into, and MinIO, the object
store of the billing export tests) are compiled from the
Go modules in ``devcluster/go/``. Each
component is built into ``$GREENPLACE_CACHE/bin/<component>-<hash>/`` where the hash covers the
module's go.mod, go.sum, sources and build flags, so a second run finds the binaries and returns
in milliseconds, and a change to a module rebuilds only that component. Nothing built is
committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Collection, Iterator

__all__ = ["COMPONENTS", "Binaries", "cache_root", "ensure_built"]

GO_DIR = pathlib.Path(__file__).resolve().parent / "go"
KUBERNETES_VERSION = "v1.37.2"
# What `kubectl version` and the kubelet report (the staging modules carry no version).
KUBERNETES_LDFLAGS = (
    "-s -w"
    f" -X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}"
    " -X k8s.io/component-base/version.gitMajor=1"
    " -X k8s.io/component-base/version.gitMinor=37"
)


@dataclasses.dataclass(frozen=True)
class Component:
    """One Go module and the binaries it yields."""

    name: str
    module_dir: str
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    ldflags: str = "-s -w"
    # Built only when asked for (``ensure_built(extra=...)``, ``python -m devcluster build``):
    # a control plane starts without it, so a test that does not need it never waits for it.
    on_demand: bool = False
    # Files of a dependency module copied into ``<target>/assets/`` (its CRDs, its webhook
    # manifests): the module path and the paths inside it. Pinned by go.sum like the binaries.
    assets: tuple[str, tuple[str, ...]] | None = None


KUEUE_VERSION = "v0.17.0"

COMPONENTS: tuple[Component, ...] = (
    Component(
        name="kubernetes",
        module_dir="k8s",
        packages=("./cmd/...",),
        binaries=("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl"),
        ldflags=KUBERNETES_LDFLAGS,
    ),
    Component(name="etcd", module_dir="etcd", packages=("./cmd/etcd",), binaries=("etcd",)),
    Component(
        name="kwok",
        module_dir="kwok",
        packages=("sigs.k8s.io/kwok/cmd/kwok", "./cmd/kwok-stages"),
        binaries=("kwok", "kwok-stages"),
    ),
    Component(
        name="helm",
        module_dir="helm",
        packages=("helm.sh/helm/v3/cmd/helm",),
        binaries=("helm",),
        # As helm's Makefile does: its version, and the Kubernetes version `helm template` and
        # `helm lint` assume (otherwise v1.20, older than the chart's kubeVersion floor).
        ldflags=(
            "-s -w -X helm.sh/helm/v3/internal/version.version=v3.22.0"
            " -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1"
            " -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37"
            " -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1"
            " -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
        ),
    ),
    # One real node (devcluster.realnode, tests/e2e/test_incluster.py): the kubelet and
    # kube-proxy of the same Kubernetes release, the pod sandbox's pause binary (no registry can
    # be reached to pull registry.k8s.io/pause) and a small CRI client that removes pods on stop.
    Component(
        name="realnode",
        module_dir="node",
        packages=("./cmd/...",),
        binaries=("kubelet", "kube-proxy", "pause", "realnode-cri"),
        ldflags=KUBERNETES_LDFLAGS,
    ),
    # Kueue's manager, run out of cluster by devcluster.kueue; its CRDs and webhook manifests
    # come from the same module version.
    Component(
        name="kueue",
        module_dir="kueue",
        packages=("sigs.k8s.io/kueue/cmd/kueue",),
        binaries=("kueue",),
        ldflags=f"-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion={KUEUE_VERSION}",
        on_demand=True,
        assets=(
            "sigs.k8s.io/kueue",
            ("config/components/crd/bases", "config/components/webhook/manifests.yaml"),
        ),
    ),
    # MinIO, the S3-compatible object store the BillingExport tests read exports from
    # (tests/integration/objectstore.py starts it on 127.0.0.1 only).
    Component(
        name="minio",
        module_dir="minio",
        packages=("github.com/minio/minio",),
        binaries=("minio",),
        on_demand=True,
    ),
)


@dataclasses.dataclass(frozen=True)
class Binaries:
    """Absolute paths of every built binary, by name."""

    paths: dict[str, pathlib.Path]

    def __getitem__(self, name: str) -> pathlib.Path:
        return self.paths[name]


def cache_root() -> pathlib.Path:
    """``$GREENPLACE_CACHE`` or ``~/.cache/greenplace``: stable across clones and runs."""
    default = pathlib.Path.home() / ".cache" / "greenplace"
    return pathlib.Path(os.environ.get("GREENPLACE_CACHE", default)).expanduser()


def ensure_built(log: bool = True, *, extra: Collection[str] = ()) -> Binaries:
    """Return every binary, building the components whose cache entry is missing.

    On-demand components are included only when named in ``extra`` (``"all"`` names them all).
    A component's assets directory is in the result as ``<name>-assets``.
    """
    unknown = set(extra) - {c.name for c in COMPONENTS} - {"all"}
    if unknown:
        raise ValueError(f"unknown devcluster components: {sorted(unknown)}")
    paths: dict[str, pathlib.Path] = {}
    for component in COMPONENTS:
        if component.on_demand and component.name not in extra and "all" not in extra:
            continue
        target = cache_root() / "bin" / f"{component.name}-{_fingerprint(component)}"
        if not all((target / b).is_file() for b in component.binaries):
            with _lock(target):  # two processes may start at once (make test, a bench)
                if not all((target / b).is_file() for b in component.binaries):
                    _build(component, target, log)
        paths.update({b: target / b for b in component.binaries})
        if component.assets is not None:
            paths[f"{component.name}-assets"] = target / "assets"
    return Binaries(paths)


@contextlib.contextmanager
def _lock(target: pathlib.Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``target`` while it is built."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{target.name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fingerprint(component: Component) -> str:
    digest = hashlib.sha256(component.ldflags.encode())
    module = GO_DIR / component.module_dir
    for path in sorted(module.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name in ("go.mod", "go.sum")):
            digest.update(str(path.relative_to(module)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _build(component: Component, target: pathlib.Path, log: bool) -> None:
    if shutil.which("go") is None:
        raise SystemExit(
            "devcluster: `go` is not on PATH; install Go 1.26+ to build the control plane"
        )
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly", "GOTOOLCHAIN": "local"}
    command = [
        "go", "build", "-trimpath", "-ldflags", component.ldflags, "-o", f"{staging}/",
        *component.packages,
    ]  # fmt: skip
    started = time.monotonic()
    if log:
        print(f"devcluster: building {component.name} into {target} (first time only) ...",
              file=sys.stderr, flush=True)  # fmt: skip
    subprocess.run(command, cwd=GO_DIR / component.module_dir, env=env, check=True)
    if component.assets is not None:
        _copy_assets(component.assets, component.module_dir, env, staging / "assets")
    missing = [b for b in component.binaries if not (staging / b).is_file()]
    if missing:
        raise SystemExit(f"devcluster: build of {component.name} did not produce {missing}")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)  # atomic: a half-built directory never looks complete
    if log:
        print(f"devcluster: built {component.name} in {time.monotonic() - started:.0f}s",
              file=sys.stderr, flush=True)  # fmt: skip


def _copy_assets(
    assets: tuple[str, tuple[str, ...]], module_dir: str, env: dict[str, str], into: pathlib.Path
) -> None:
    """Copy files of the dependency module ``assets[0]`` (as go.sum pins it) into ``into``."""
    module, paths = assets
    source = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", module],
        cwd=GO_DIR / module_dir, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    for relative in paths:
        origin, copy = pathlib.Path(source) / relative, into / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, copy)
        else:
            shutil.copy2(origin, copy)
        for path in [copy, *copy.rglob("*")]:  # the module cache is read-only
            path.chmod(0o755 if path.is_dir() else 0o644)
