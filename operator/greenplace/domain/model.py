"""The values the planner reasons about, free of any Kubernetes type.

Why this module exists: the planner must be a pure function that can be tested with tables,
replayed by the simulator and benchmarked at scale. So everything it needs arrives as frozen
values defined here, built by the controller from the API server (or by a test, a simulator, or a
snapshot file). Nothing here knows about kopf, the kubernetes client or Prometheus, and nothing
here reads the clock: time is always passed in.

Units are part of the names: ``gco2_per_kwh``, ``per_gpu_hour``, ``gpus``.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping

__all__ = [
    "Decision",
    "Location",
    "Outcome",
    "Plan",
    "Policy",
    "Pool",
    "Reason",
    "Rejection",
    "Snapshot",
    "Workload",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Location:
    """Where a pool's GPUs physically are, and which electricity grid feeds them."""

    provider: str
    region: str
    country: str  # ISO 3166-1 alpha-2, upper case
    grid_zone: str
    zone: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Pool:
    """A set of GPU nodes that share location, hardware and price (a `GpuPool`)."""

    name: str
    location: Location
    gpu_model: str
    gpus_total: int
    gpus_free: int
    price_per_gpu_hour: float
    currency: str
    pue: float = 1.0
    # Grid carbon intensity at the pool's grid zone now; None when no signal is known.
    gco2_per_kwh: float | None = None
    # Narrowing a pod to this pool means requiring these node labels.
    node_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def effective_gco2_per_kwh(self) -> float | None:
        """Carbon per kWh drawn by the GPUs, including the data centre's overhead (PUE)."""
        return None if self.gco2_per_kwh is None else self.gco2_per_kwh * self.pue


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The rules of one `PlacementPolicy` for the workloads it selects in its namespace."""

    namespace: str
    name: str
    # Label equality a workload must have to be governed by this policy; empty selects all.
    match_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Sovereignty: ISO 3166-1 alpha-2 codes; None means "no country rule".
    allowed_countries: frozenset[str] | None = None
    # Carbon ceiling on the pool's effective intensity (gCO2e/kWh, PUE included).
    max_gco2_per_kwh: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, workload: Workload) -> bool:
        return workload.namespace == self.namespace and all(
            workload.labels.get(k) == v for k, v in self.match_labels.items()
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    """A unit the planner places whole: one pod, or the pods of one Job/owner (a gang)."""

    namespace: str
    name: str
    gpus: int
    created: datetime.datetime
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pods: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the planner may look at, as of one instant."""

    pools: tuple[Pool, ...]
    policies: tuple[Policy, ...]
    workloads: tuple[Workload, ...]


class Outcome(enum.StrEnum):
    PLACED = "Placed"
    HELD = "Held"


class Reason(enum.StrEnum):
    """Stable reason codes: they appear in annotations, Events and metrics, so never rename one."""

    LOWEST_CARBON = "LowestCarbon"
    NO_POLICY = "NoPolicy"
    COUNTRY_NOT_ALLOWED = "CountryNotAllowed"
    CARBON_ABOVE_CEILING = "CarbonAboveCeiling"
    CARBON_UNKNOWN = "CarbonUnknown"
    INSUFFICIENT_CAPACITY = "InsufficientCapacity"
    NO_COMPLIANT_POOL = "NoCompliantPool"
    NO_POOL_WITH_ROOM = "NoPoolWithRoom"
    OUTRANKED = "Outranked"


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """Why one pool was not chosen for one workload."""

    pool: str
    reason: Reason
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """What the planner decided for one workload, and why, with every alternative it weighed."""

    workload: str
    outcome: Outcome
    reason: Reason
    message: str
    pool: str | None = None
    policies: tuple[str, ...] = ()
    alternatives: tuple[Rejection, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """The planner's answer: one decision per workload, in the order they were considered."""

    at: datetime.datetime
    decisions: tuple[Decision, ...]

    def placed(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.outcome is Outcome.PLACED)

    def held(self) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.outcome is Outcome.HELD)
