"""What the benchmarks on the real control plane share: kubectl, and a fleet of kwok GPU pools.

Why this module exists: ``bench_burst`` and ``bench_kueue`` both start the local control plane,
talk to it with kubectl and lay out France and Germany pools of 8-GPU kwok nodes with rising
carbon and price; one module holds that, so the two fleets stay alike.
"""

from __future__ import annotations

import pathlib
import subprocess
import tempfile

from devcluster import build, fleet, operator

__all__ = ["GPUS_PER_NODE", "Kubectl", "gpu_pools", "start_operator"]

GPUS_PER_NODE = 8


class Kubectl:
    """The devcluster's kubectl on one kubeconfig; a failure ends the benchmark, saying why."""

    def __init__(self, kubeconfig: str) -> None:
        self.base = [str(build.ensure_built(log=False)["kubectl"]), f"--kubeconfig={kubeconfig}"]

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [*self.base, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args[:3])} failed: {result.stderr[-2000:]}")
        return result.stdout


def start_operator(kubeconfig: str, *flags: str) -> operator.RunningOperator:
    """``devcluster.operator.start`` with its log in a fresh temporary directory."""
    log = pathlib.Path(tempfile.mkdtemp(prefix="greenplace-bench-")) / "operator.log"
    return operator.start(kubeconfig, log, *flags)


def gpu_pools(prefix: str, pools: int, nodes_per_pool: int) -> list[fleet.FleetPool]:
    """``pools`` H100 pools alternating FR and DE, the i-th at 50 + 30 i gCO2/kWh and 2 + i/10
    EUR per GPU hour, each of ``nodes_per_pool`` nodes of ``GPUS_PER_NODE`` GPUs."""
    out = []
    for i in range(pools):
        country = "FR" if i % 2 == 0 else "DE"
        name = f"{prefix}-{country.lower()}-{i}"
        spec = {
            "nodeSelector": {"greenplace.dev/pool": name},
            "location": {"provider": "bench", "region": f"r{i}", "country": country,
                         "gridZone": country},
            "gpu": {"model": "H100", "tdpWatts": 700, "idleWatts": 80},
            "price": {"currency": "EUR", "onDemandPerGpuHour": 2.0 + i / 10},
            "pue": 1.2,
            "carbonIntensity": {"fallbackGramsPerKwh": 50 + 30 * i},
        }  # fmt: skip
        out.append(fleet.FleetPool(name, nodes_per_pool, GPUS_PER_NODE, spec))
    return out
