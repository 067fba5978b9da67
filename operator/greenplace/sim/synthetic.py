"""A seeded synthetic GPU batch workload: deferrable training mixed with non-deferrable inference.

Why this module exists: examples and benchmarks need a workload trace that anyone can regenerate
bit for bit (``examples/simulate/make_workload.py`` writes it as CSV; the year benchmark builds it
in memory). Shapes are plausible, not measured: arrivals follow office hours more than nights;
training gangs of 4-16 GPUs run 2-20 h and may wait 12-36 h; sovereign health research runs on
1-4 GPUs and may wait a day; batch inference runs on 1-2 GPUs for under 3 h and may not wait.
Each row's window is its own (``deferrable_hours``, a pod's ``greenplace.dev/max-delay``) except
health research's, which declares none: its team's PlacementPolicy gives every cohort the same
day (``spec.deferral.maxDelay: 24h`` in ``examples/simulate/policies.yaml``).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import pathlib
import random
from collections.abc import Iterable

__all__ = ["FIELDS", "Row", "generate", "write_csv"]

FIELDS = (
    "name",
    "namespace",
    "arrival",
    "gpus",
    "duration_hours",
    "deferrable_hours",
    "model",
    "labels",
)

# Share of office hours (08-19 UTC, Monday-Friday) in arrivals, against 11/24 for uniform.
_OFFICE_WEIGHT = 0.7


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    name: str
    namespace: str
    arrival: datetime.datetime
    gpus: int
    duration_hours: float
    deferrable_hours: float | None  # None: the policy's spec.deferral.maxDelay applies
    model: str
    labels: str = ""

    def as_csv(self) -> dict[str, str]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "arrival": self.arrival.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "gpus": str(self.gpus),
            "duration_hours": f"{self.duration_hours:g}",
            "deferrable_hours": (
                "" if self.deferrable_hours is None else f"{self.deferrable_hours:g}"
            ),
            "model": self.model,
            "labels": self.labels,
        }


def generate(
    seed: int, start: datetime.datetime, end: datetime.datetime, jobs_per_day: float
) -> list[Row]:
    rng = random.Random(seed)
    days = (end - start).total_seconds() / 86400
    rows = [
        _row(rng, index, _arrival(rng, start, end)) for index in range(round(days * jobs_per_day))
    ]
    return sorted(rows, key=lambda r: (r.arrival, r.name))


def write_csv(rows: Iterable[Row], path: pathlib.Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row.as_csv() for row in rows)


def _arrival(
    rng: random.Random, start: datetime.datetime, end: datetime.datetime
) -> datetime.datetime:
    span_min = int((end - start).total_seconds() // 60)
    while True:
        moment = start + datetime.timedelta(minutes=rng.randrange(span_min))
        office = moment.weekday() < 5 and 8 <= moment.hour < 19
        if rng.random() < (_OFFICE_WEIGHT if office else 1 - _OFFICE_WEIGHT):
            return moment


def _row(rng: random.Random, index: int, arrival: datetime.datetime) -> Row:
    kind = rng.random()
    if kind < 0.45:
        return Row(
            name=f"train-{index:06d}",
            namespace="ml-training",
            arrival=arrival,
            gpus=rng.choice((4, 8, 8, 8, 16)),
            duration_hours=round(min(20.0, rng.lognormvariate(1.7, 0.6)), 2),
            deferrable_hours=float(rng.choice((12, 24, 24, 36))),
            model=rng.choice(("llama-3-8b-sft", "mistral-7b-dpo", "mixtral-8x7b-lora")),
            labels="greenplace.dev/kind=training",
        )
    if kind < 0.60:
        return Row(
            name=f"cohort-{index:06d}",
            namespace="health-research",
            arrival=arrival,
            gpus=rng.choice((1, 2, 4)),
            duration_hours=round(rng.uniform(1.0, 6.0), 2),
            deferrable_hours=None,
            model=rng.choice(("biomed-bert-ft", "radiology-vit")),
            labels="greenplace.dev/kind=training",
        )
    return Row(
        name=f"infer-{index:06d}",
        namespace="inference",
        arrival=arrival,
        gpus=rng.choice((1, 1, 2)),
        duration_hours=round(rng.uniform(0.25, 3.0), 2),
        deferrable_hours=0.0,
        model=rng.choice(("llama-3-70b-instruct", "mistral-small", "whisper-large-v3")),
        labels="greenplace.dev/kind=inference",
    )
