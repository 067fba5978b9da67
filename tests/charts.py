"""The chart rendered with helm, as the chart's unit tests and other tests read it.

Why this module exists: several test modules look at what the chart renders (the operator's
Deployment, its flags); one module renders it, so no test module imports another.
"""

from __future__ import annotations

import pathlib
import subprocess
import tempfile
from collections.abc import Mapping
from typing import Any

import yaml

from devcluster import build

CHART = pathlib.Path(__file__).resolve().parents[1] / "charts" / "greenplace"


def helm_template(
    *sets: str, values: Mapping[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """``helm template`` with ``--set`` each of ``sets`` and, given, a values file of ``values``
    (for values --set cannot spell, such as a list of objects holding PEM keys)."""
    binary = str(build.ensure_built(log=False)["helm"])
    flags = [f"--set={s}" for s in sets]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        if values is not None:
            yaml.safe_dump(dict(values), file)
            file.flush()
            flags.append(f"--values={file.name}")
        return subprocess.run(
            [binary, "template", "gp", str(CHART), "--namespace=greenplace-system",
             "--skip-tests", *flags],
            capture_output=True, text=True, check=False,
        )  # fmt: skip


def operator_pod(*sets: str, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The pod template of the operator's Deployment rendered with ``sets`` and ``values``."""
    result = helm_template(*sets, values=values)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec
