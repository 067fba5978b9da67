"""Install the chart's admission policies on a cluster whose operator runs outside it.

Why this module exists: in a cluster the Helm chart installs the ValidatingAdmissionPolicies
that keep sovereignty inside the API server (no ``nodeName`` shortcut, only the operator
removes the gate or writes its records, accelerators outside the governed set refused, pods
released only towards allowed pools). ``make run`` and the tenant tests run the operator out of
cluster, and must run with the same safety on: this renders exactly the chart's policies with
the real helm (``helm template --show-only``) and applies them with the real kubectl, naming
the identity the out-of-cluster operator uses.

The chart's gate policy (``templates/gate-policy.yaml``, the MutatingAdmissionPolicy that adds
the placement gate inside the API server) is rendered the same way when asked (``gate=True``):
the out-of-cluster operator installs its own (``greenplace operate --gate``), but a test that
runs no operator at all, or checks the chart's template on the real API server, uses this one.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import yaml

from devcluster import build

__all__ = ["GATE_TEMPLATE", "POLICY_TEMPLATE", "install", "render", "username"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "greenplace"
POLICY_TEMPLATE = "templates/admission-policy.yaml"
GATE_TEMPLATE = "templates/gate-policy.yaml"


def render(
    operator_username: str, release: str = "greenplace", gate: bool = False, kueue: bool = False
) -> list[dict[str, object]]:
    """The chart's admission policies and bindings, the gate reserved to ``operator_username``;
    with ``gate``, the chart's gate policy too (as rendered with ``kueue.enabled=kueue``)."""
    helm = str(build.ensure_built(log=False)["helm"])
    templates = [POLICY_TEMPLATE, *([GATE_TEMPLATE] if gate else [])]
    result = subprocess.run(
        [helm, "template", release, str(CHART), *(f"--show-only={t}" for t in templates),
         f"--set=admissionPolicy.operatorUsername={operator_username}",
         f"--set=kueue.enabled={str(kueue).lower()}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"helm template of {templates} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def install(
    kubeconfig: pathlib.Path, operator_username: str, gate: bool = False, kueue: bool = False
) -> list[str]:
    """Apply the policies (with ``gate``, the gate policy too) to the cluster of
    ``kubeconfig``; return their names."""
    docs = render(operator_username, gate=gate, kueue=kueue)
    kubectl = str(build.ensure_built(log=False)["kubectl"])
    manifest = "\n---\n".join(json.dumps(d) for d in docs)
    result = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", "apply", "--server-side",
         "--field-manager=greenplace-devcluster", "-f", "-"],
        input=manifest, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"applying the admission policies failed:\n{result.stderr}")
    return [f"{d['kind']}/{d['metadata']['name']}" for d in docs]  # type: ignore[index]


def username(kubeconfig: pathlib.Path) -> str:
    """Who the API server takes the user of ``kubeconfig`` for (``kubectl auth whoami``)."""
    kubectl = str(build.ensure_built(log=False)["kubectl"])
    result = subprocess.run(
        [kubectl, f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"kubectl auth whoami failed:\n{result.stderr}")
    name: str = json.loads(result.stdout)["status"]["userInfo"]["username"]
    return name
