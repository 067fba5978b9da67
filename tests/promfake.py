"""A fake Prometheus for the accounting's PromQL, its samples, and a status-only writer.

Why this module exists: the EnergyReport tests (tenancy, egress) ask the same questions of the
same shared GPU history; the fake lives here so no test module imports another.
``FakeProm`` answers ``sum by (...) (increase(metric{sel}[w]))`` from labelled samples, honouring
the namespace selector and the ``by`` clause, so a test sees what a real server would return
for the queries actually built; the real server is in tests/integration/signals.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SECRET",
    "SHARED",
    "FakeProm",
    "S",
    "StatusWriter",
    "condition",
    "gpu",
    "history",
    "served",
]


@dataclasses.dataclass(frozen=True)
class S:
    labels: Mapping[str, str]
    value: float


def gpu(ns: str, pod: str, gpu_index: str = "0", mig: str = "", wh: float = 100.0) -> S:
    labels = {"pool": "p", "Hostname": "n1", "gpu": gpu_index, "namespace": ns, "pod": pod}
    if mig:
        labels["GPU_I_PROFILE"] = mig
    return S(labels, wh * 3.6e6)  # mJ over the window


def served(ns: str, pod: str, model: str, value: float) -> S:
    return S({"pool": "p", "namespace": ns, "pod": pod, "model_name": model}, value)


class FakeProm:
    """Answers ``sum by (...) (increase(metric{sel}[w]))`` from samples, like Prometheus."""

    def __init__(self, series: Mapping[str, list[S]]) -> None:
        self.series = series
        self.asked: list[str] = []

    def __call__(self, text: str, at: datetime.datetime) -> list[S]:
        self.asked.append(text)
        by = [b.strip() for b in re.search(r"by \(([^)]*)\)", text).group(1).split(",")]  # type: ignore[union-attr]
        match = re.search(r"\(([A-Za-z_:]+)(\{[^}]*\})?\[", text)
        assert match is not None, text
        metric, selector = match.group(1), match.group(2) or ""
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', selector))
        grouped: dict[tuple[tuple[str, str], ...], float] = {}
        for sample in self.series.get(metric, []):
            if any(sample.labels.get(k) != v for k, v in wanted.items()):
                continue
            key = tuple((k, sample.labels[k]) for k in by if k in sample.labels)
            grouped[key] = grouped.get(key, 0.0) + sample.value
        return [S(dict(key), value) for key, value in grouped.items()]


def history(devices: list[S], serving_samples: list[tuple[S, S]]) -> dict[str, list[S]]:
    """DCGM energy rows and (requests, generation tokens) per pod and model."""
    return {
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": devices,
        "vllm:request_success_total": [r for r, _ in serving_samples],
        "vllm:generation_tokens_total": [t for _, t in serving_samples],
    }


SECRET = "secret-model"
# Pods named "web" in both namespaces, time-slicing GPU 0 (a serves 3x b's tokens); GPU 1 is
# team-b's alone; GPU 2 has no pod.
SHARED = history(
    [gpu("team-a", "web"), gpu("team-b", "web"), gpu("team-b", "web-2", "1"), gpu("", "", "2")],
    [
        (served("team-a", "web", "llama", 10), served("team-a", "web", "llama", 300)),
        (served("team-b", "web", SECRET, 30), served("team-b", "web", SECRET, 100)),
        (served("team-b", "web-2", SECRET, 5), served("team-b", "web-2", SECRET, 5)),
    ],
)


class StatusWriter:
    """A status-only ``kube.Writer``: the last status body of each (namespace, name)."""

    def __init__(self) -> None:
        self.status: dict[tuple[str, str], dict[str, Any]] = {}

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, body: Mapping[str, Any]
    ) -> None:
        self.status[(namespace or "", name)] = dict(body)


def condition(written: Mapping[str, Any], kind: str) -> tuple[str, str]:
    found = next(c for c in written["conditions"] if c["type"] == kind)
    return found["status"], found["reason"]
