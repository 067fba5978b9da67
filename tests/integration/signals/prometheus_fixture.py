"""A real Prometheus server on 127.0.0.1 holding synthetic GPU, serving and signal history.

Why this module exists: the accounting's PromQL is only proven against the real query engine
(``increase`` extrapolation, ``avg_over_time``, label matching). History is written as
OpenMetrics, loaded with ``promtool tsdb create-blocks-from openmetrics`` and served by
Debian's ``prometheus`` (installed by ``scripts/ensure-prometheus.sh``).

The scenario (``WINDOW`` = the hour before ``END``; counters grow linearly, so ``increase`` is
exact and every expected figure can be computed by hand in the tests):

namespace team-a (``NAMESPACE``, the hand-computed figures):
pool fr-a100 (zone FR), node fr-n1
  gpu 0: pod llama-fr-0 alone, 300 W                       -> WholeGpu
  gpu 1: pods llama-fr-1 + mistral-fr-0 time-sliced, 250 W -> TokenShare
pool de-h100 (zone DE), node de-n1
  gpu 0: MIG, llama-de-0 on 3g.40gb, mistral-de-0 on 2g.20gb, 700 W -> MigSlice
namespace team-b (``OTHER_NAMESPACE``, another tenant that team-a's reports must not see):
  fr-a100, node fr-n2, gpu 0: a pod also named llama-fr-0, also serving llama-8b, 400 W alone
  de-h100, node de-n1, gpu 0: qwen-b-0 serving qwen-32b on 1g.10gb of team-a's MIG GPU
  -> de-h100 gpu 0 keeps 1/7 free (100 Wh unattributed, shown only to a Cluster report).
Every pod-level series carries ``namespace`` (dcgm-exporter's Kubernetes mapping, the
Kubernetes SD relabelling of serving pods).

Carbon intensity series ``greenplace_grid_carbon_intensity{zone}``: FR 50, DE 500 (whole
history), GB 200 ending ``STALE_BY`` before ``END``. Prices ``greenplace_gpu_price{pool}``.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

END = datetime.datetime(2026, 1, 5, 12, 0, tzinfo=datetime.UTC)
WINDOW = datetime.timedelta(hours=1)
HISTORY = datetime.timedelta(hours=2)
STEP_S = 15
STALE_BY = datetime.timedelta(minutes=3)


@dataclasses.dataclass(frozen=True)
class Pod:
    pool: str
    node: str
    gpu: str
    name: str
    model: str
    watts: float  # whole-GPU power the DCGM series of this pod reports
    requests_per_s: float
    prompt_tokens_per_s: float
    generation_tokens_per_s: float
    mig_profile: str = ""
    namespace: str = "team-a"


NAMESPACE = "team-a"
OTHER_NAMESPACE = "team-b"
PODS = (
    Pod("fr-a100", "fr-n1", "0", "llama-fr-0", "llama-8b", 300.0, 2.0, 200.0, 300.0),
    Pod("fr-a100", "fr-n1", "1", "llama-fr-1", "llama-8b", 250.0, 1.0, 100.0, 100.0),
    Pod("fr-a100", "fr-n1", "1", "mistral-fr-0", "mistral-7b", 250.0, 1.0, 150.0, 450.0),
    Pod("de-h100", "de-n1", "0", "llama-de-0", "llama-8b", 700.0, 1.5, 150.0, 300.0, "3g.40gb"),
    Pod("de-h100", "de-n1", "0", "mistral-de-0", "mistral-7b", 700.0, 0.5, 50.0, 150.0, "2g.20gb"),
    Pod("fr-a100", "fr-n2", "0", "llama-fr-0", "llama-8b", 400.0, 3.0, 300.0, 300.0,
        namespace=OTHER_NAMESPACE),
    Pod("de-h100", "de-n1", "0", "qwen-b-0", "qwen-32b", 700.0, 0.25, 25.0, 50.0, "1g.10gb",
        namespace=OTHER_NAMESPACE),
)  # fmt: skip
INTENSITY = {"FR": 50.0, "DE": 500.0}
# The fixture's pools: grid zone and PUE.
POOLS = {"fr-a100": ("FR", 1.2), "de-h100": ("DE", 1.3)}
# What accounting must find, computed by hand from the history above, per (model, pool) of
# NAMESPACE: gpu Wh/request, gCO2e/request, EUR/request, energy grade, carbon grade.
EXPECTED = {
    ("llama-8b", "fr-a100"): (362.5 / 10800, 46.75 / 10800, 2.5 / 10800, "B", "B"),
    ("mistral-7b", "fr-a100"): (187.5 / 3600, 26.25 / 3600, 1.5 / 3600, "B", "B"),
    ("llama-8b", "de-h100"): (300 / 5400, (195 + 60 / 7) / 5400, (9 / 7) / 5400, "B", "D"),
    ("mistral-7b", "de-h100"): (200 / 1800, (130 + 40 / 7) / 1800, (6 / 7) / 1800, "C", "D"),
}
STALE_INTENSITY = {"GB": 200.0}
PRICES = {"fr-a100": 2.0, "de-h100": 3.0}


def openmetrics() -> str:
    """The whole history as one OpenMetrics text (families grouped, timestamps in seconds)."""
    start = END - HISTORY
    steps = int(HISTORY.total_seconds()) // STEP_S + 1
    stamps = [start.timestamp() + i * STEP_S for i in range(steps)]
    lines: list[str] = []

    def family(name: str, kind: str, samples: list[tuple[str, str, list[tuple[float, float]]]]):
        lines.append(f"# TYPE {name} {kind}")
        for sample_name, labels, points in samples:
            lines.extend(f"{sample_name}{{{labels}}} {v:.6f} {t:.0f}" for t, v in points)

    def dcgm_labels(p: Pod) -> str:
        mig = f',GPU_I_PROFILE="{p.mig_profile}"' if p.mig_profile else ""
        return (
            f'gpu="{p.gpu}",Hostname="{p.node}",pool="{p.pool}",namespace="{p.namespace}",'
            f'pod="{p.name}"{mig}'
        )

    def serving_labels(p: Pod) -> str:
        return f'pool="{p.pool}",namespace="{p.namespace}",pod="{p.name}",model_name="{p.model}"'

    def linear(rate: float, base: float) -> list[tuple[float, float]]:
        return [(t, base + rate * (t - stamps[0])) for t in stamps]

    family(
        "DCGM_FI_DEV_POWER_USAGE",
        "gauge",
        [("DCGM_FI_DEV_POWER_USAGE", dcgm_labels(p), [(t, p.watts) for t in stamps]) for p in PODS],
    )
    family(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "gauge",
        [
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", dcgm_labels(p), linear(p.watts * 1000, 5e9))
            for p in PODS
        ],
    )
    for metric, rate_of in (
        ("vllm:request_success", lambda p: p.requests_per_s),
        ("vllm:prompt_tokens", lambda p: p.prompt_tokens_per_s),
        ("vllm:generation_tokens", lambda p: p.generation_tokens_per_s),
    ):
        family(
            metric,
            "counter",
            [(f"{metric}_total", serving_labels(p), linear(rate_of(p), 1000.0)) for p in PODS],
        )
    stale_end = (END - STALE_BY).timestamp()
    family(
        "greenplace_grid_carbon_intensity",
        "gauge",
        [
            ("greenplace_grid_carbon_intensity", f'zone="{z}"', [(t, v) for t in stamps])
            for z, v in INTENSITY.items()
        ]
        + [
            (
                "greenplace_grid_carbon_intensity",
                f'zone="{z}"',
                [(t, v) for t in stamps if t <= stale_end],
            )
            for z, v in STALE_INTENSITY.items()
        ],
    )
    family(
        "greenplace_gpu_price",
        "gauge",
        [
            ("greenplace_gpu_price", f'pool="{p}"', [(t, v) for t in stamps])
            for p, v in PRICES.items()
        ],
    )
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def binaries() -> tuple[str, str]:
    """Paths of prometheus and promtool, or a failure that says how to install them."""
    found = shutil.which("prometheus"), shutil.which("promtool")
    if None in found:
        raise RuntimeError(
            "prometheus/promtool not on PATH: the signals integration tests need Debian's "
            "prometheus package; run scripts/ensure-prometheus.sh "
            "(apt-get update && apt-get install -y prometheus)"
        )
    return found[0] or "", found[1] or ""


def build_tsdb(directory: pathlib.Path) -> pathlib.Path:
    """Write the history and load it into a TSDB under ``directory``; return the TSDB path."""
    _, promtool = binaries()
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "history.om"
    source.write_text(openmetrics())
    tsdb = directory / "tsdb"
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"promtool could not load {source}: exit {done.returncode}\n"
            f"{done.stdout}\n{done.stderr}"
        )
    return tsdb


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """One ``prometheus`` process over a TSDB directory, on a free 127.0.0.1 port."""

    def __init__(
        self,
        tsdb: pathlib.Path,
        workdir: pathlib.Path,
        rule_files: tuple[pathlib.Path, ...] = (),
        scrape: tuple[str, ...] = (),
    ) -> None:
        self.tsdb = tsdb
        self.workdir = workdir
        self.rule_files = rule_files  # evaluated every second
        self.scrape = scrape  # host:port targets serving /metrics, scraped every second
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"prometheus-{self.port}.log"

    def start(self, ready_within_s: float = 60.0) -> None:
        prometheus, _ = binaries()
        config = self.workdir / "prometheus.yml"
        rules = "".join(f"\n  - {path}" for path in self.rule_files)
        targets = ", ".join(f'"{target}"' for target in self.scrape)
        config.write_text(
            "global:\n  scrape_interval: 15s\n  evaluation_interval: 1s\n"
            + (f"rule_files:{rules}\n" if rules else "")
            + (
                "scrape_configs:\n  - job_name: greenplace\n    scrape_interval: 1s\n"
                f"    static_configs:\n      - targets: [{targets}]\n"
                if targets
                else ""
            )
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.tsdb}",
                    "--storage.tsdb.retention.time=100y",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_within_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self.process.returncode} before ready; log "
                    f"{self.log}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"prometheus on {self.url} not ready within {ready_within_s} s; log {self.log}:\n"
            f"{self.log.read_text()[-3000:]}"
        )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
