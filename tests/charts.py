"""The chart rendered with helm, as the chart's unit tests and other tests read it.

Why this module exists: several test modules look at what the chart renders (the operator's
Deployment, its flags); one module renders it, so no test module imports another.
"""

from __future__ import annotations

import pathlib
import subprocess
from typing import Any

import yaml

from devcluster import build

CHART = pathlib.Path(__file__).resolve().parents[1] / "charts" / "greenplace"


def helm_template(*sets: str) -> subprocess.CompletedProcess[str]:
    binary = str(build.ensure_built(log=False)["helm"])
    flags = [f"--set={s}" for s in sets]
    return subprocess.run(
        [binary, "template", "gp", str(CHART), "--namespace=greenplace-system", "--skip-tests",
         *flags],
        capture_output=True, text=True, check=False,
    )  # fmt: skip


def operator_pod(*sets: str) -> dict[str, Any]:
    """The pod template of the operator's Deployment rendered with ``sets``."""
    result = helm_template(*sets)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec
