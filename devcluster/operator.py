"""Start ``greenplace operate --out-of-cluster`` as its own process, the way ``make run`` does.

Why this module exists: the demos (``make run``, ``make run-multi``) and the benchmarks on the
real control plane all run the operator beside the clusters they start; one launcher gives them
the same flags, endpoints on loopback and the same wait (its webhook port serves, or it exited:
the caller ends with its log). The tests have their own restartable ``OperatorProcess``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys
import time

from devcluster import cluster

__all__ = ["RunningOperator", "start"]

START_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class RunningOperator:
    process: subprocess.Popen[bytes]
    log: pathlib.Path
    metrics_url: str
    liveness_url: str


def start(kubeconfig: pathlib.Path | str, log: pathlib.Path, *flags: str) -> RunningOperator:
    """The operator on ``kubeconfig`` with ``flags``, logging to ``log`` (appended), serving
    /metrics and its liveness endpoint on loopback; returns once its webhook port serves."""
    port, metrics_port, health_port = cluster.free_ports(3)
    liveness = f"http://127.0.0.1:{health_port}/healthz"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "greenplace.cli.main", "operate", f"--kubeconfig={kubeconfig}",
             "--out-of-cluster", f"--webhook-port={port}", f"--metrics-port={metrics_port}",
             f"--liveness={liveness}", *flags],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while not cluster.port_open(port):
        if process.poll() is not None:
            raise SystemExit(f"the operator exited; see {log}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.terminate()
            raise SystemExit(f"the operator did not serve within {START_TIMEOUT_S:.0f}s; see {log}")
        time.sleep(0.3)
    return RunningOperator(process, log, f"http://127.0.0.1:{metrics_port}/metrics", liveness)
