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
import typing
from collections.abc import Mapping

from greenplace.domain import series

__all__ = [
    "DATA_RESIDENCY_LABEL",
    "DEFAULT_DEFERRAL_STEP",
    "DEFAULT_MIN_SAVING_FRACTION",
    "EXTRATERRITORIAL_LAWS",
    "REGIMES",
    "Budget",
    "BudgetAction",
    "Certification",
    "CertificationRequirement",
    "Decision",
    "Jurisdiction",
    "Location",
    "Outcome",
    "Plan",
    "Policy",
    "Pool",
    "Reason",
    "Rejection",
    "Snapshot",
    "Workload",
    "labels_match",
    "level_rank",
    "validity_covers",
]

_EU = frozenset(
    [
        "AT",
        "BE",
        "BG",
        "CY",
        "CZ",
        "DE",
        "DK",
        "EE",
        "ES",
        "FI",
        "FR",
        "GR",
        "HR",
        "HU",
        "IE",
        "IT",
        "LT",
        "LU",
        "LV",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SE",
        "SI",
        "SK",
    ]
)
# Legal regimes a policy may name, as the ISO 3166-1 alpha-2 countries that belong to them.
REGIMES: Mapping[str, frozenset[str]] = {
    "EU": _EU,
    "EEA": _EU | {"IS", "LI", "NO"},
}

# Workload label listing where its data may be processed: countries or regimes joined by "_"
# (label values cannot hold commas), e.g. ``FR`` or ``EU`` or ``FR_DE``.
DATA_RESIDENCY_LABEL = "greenplace.dev/data-residency"

_NAMED_LEVELS = {"basic": (1,), "substantial": (2,), "high": (3,)}


def _residency_codes(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split("_") if part.strip())


def labels_match(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """Kubernetes ``matchLabels``: every key of ``selector`` with the same value (empty: all)."""
    return all(labels.get(key) == value for key, value in selector.items())


def level_rank(level: str) -> tuple[int, ...] | None:
    """Order certification levels: EUCS names (basic < substantial < high) or dotted numbers.

    The empty level ranks lowest; a level that is neither gives None (unknown, so it never meets
    a minimum: sovereignty fails closed).
    """
    text = level.strip().lower()
    if not text:
        return ()
    if text in _NAMED_LEVELS:
        return _NAMED_LEVELS[text]
    parts = text.split(".")
    if all(part.isdigit() for part in parts):
        return tuple(int(part) for part in parts)
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Location:
    """Where a pool's GPUs physically are, and which electricity grid feeds them."""

    provider: str
    region: str
    country: str  # ISO 3166-1 alpha-2, upper case
    grid_zone: str
    zone: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Jurisdiction:
    """Whose law governs the provider: its legal home and the foreign laws it is exposed to.

    ``exposures`` names extraterritorial laws that can reach the data wherever it sits, e.g.
    ``US-CLOUD-Act`` or ``US-FISA-702``, as declared. The laws of the legal home itself are
    derived (``EXTRATERRITORIAL_LAWS``): a declared list can add exposures, never remove them,
    so a US-law provider declared ``exposures: []`` is still exposed to the CLOUD Act.
    """

    legal_home: str  # ISO 3166-1 alpha-2 country of the provider's legal seat
    exposures: frozenset[str] = frozenset()

    @property
    def derived_exposures(self) -> frozenset[str]:
        """The extraterritorial laws of the legal home (``EXTRATERRITORIAL_LAWS``)."""
        return EXTRATERRITORIAL_LAWS.get(self.legal_home, frozenset())

    @property
    def all_exposures(self) -> frozenset[str]:
        """Declared and derived exposures together: what the rules judge."""
        return self.exposures | self.derived_exposures


# Laws whose reach follows a provider of that legal home to data held abroad. Sources:
# - US: the CLOUD Act (18 U.S.C. 2713, 2018: disclosure "regardless of whether such
#   communication ... is located within or outside of the United States") and FISA section 702
#   (50 U.S.C. 1881a: targeting of non-US persons outside the US through US providers). Both
#   are why SecNumCloud 3.2 excludes providers subject to non-EU law with extraterritorial reach.
# - CN: the National Intelligence Law (2017, articles 7 and 14: organisations must support
#   and cooperate with state intelligence work, with no territorial limit).
# A legal home absent here derives nothing; declare further exposures on the GpuPool.
EXTRATERRITORIAL_LAWS: Mapping[str, frozenset[str]] = {
    "US": frozenset({"US-CLOUD-Act", "US-FISA-702"}),
    "CN": frozenset({"CN-National-Intelligence-Law"}),
}


def validity_covers(
    valid_from: datetime.datetime | None,
    valid_until: datetime.datetime | None,
    start: datetime.datetime,
    end: datetime.datetime,
) -> bool:
    """Whether a validity period (an unset bound is open) covers ``start`` to ``end``: the one
    date check for one certificate (``Certification.valid_over``) and for the joint window of
    several (``engine.rules.CertificateWindow.covers``)."""
    return (valid_from is None or valid_from <= start) and (
        valid_until is None or end <= valid_until
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Certification:
    """A certification a pool holds (SecNumCloud, HDS, C5, EUCS, ...) and when it is valid.

    ``verified``: backed by a signed credential that checked out against a trusted issuer (for
    this name and level; its dates bound the validity). ``unverified``: why a credential the pool
    referenced did not check out (expired, forged, another subject, ...); such a certification
    never counts (``engine.rules.certificate_window``). Neither: declared without a credential,
    counted unless a policy requires verified certifications."""

    name: str
    valid_until: datetime.datetime
    level: str = ""
    valid_from: datetime.datetime | None = None
    verified: bool = False
    unverified: str | None = None

    def valid_over(self, start: datetime.datetime, end: datetime.datetime) -> bool:
        return validity_covers(self.valid_from, self.valid_until, start, end)


@dataclasses.dataclass(frozen=True, slots=True)
class CertificationRequirement:
    """A certification a policy requires, at ``min_level`` or above (see ``level_rank``);
    ``verified``: only a certification backed by a verified credential counts."""

    name: str
    min_level: str = ""
    verified: bool = False


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
    # Sovereignty facts; None (unknown) fails every rule that needs them.
    jurisdiction: Jurisdiction | None = None
    certifications: tuple[Certification, ...] = ()
    # Price for workloads that accept preemption; None when the pool sells no spot capacity.
    spot_price_per_gpu_hour: float | None = None
    # Average electrical draw of one busy GPU (board power), before PUE.
    gpu_watts: float = 700.0
    # Draw of one idle GPU (W): the EnergyReport's modelled power at low utilisation.
    gpu_idle_watts: float = 0.0
    # Manufacturing emissions of the hardware, amortised per GPU-hour of use.
    embodied_gco2_per_gpu_hour: float = 0.0
    # Largest number of GPUs one node offers (a pod cannot span nodes); None when unknown.
    gpus_per_node: int | None = None

    @property
    def effective_gco2_per_kwh(self) -> float | None:
        """Carbon per kWh drawn by the GPUs, including the data centre's overhead (PUE)."""
        return None if self.gco2_per_kwh is None else self.gco2_per_kwh * self.pue


# Later starts a deferral considers are this far apart (grid forecasts come in 5 to 60 minute
# steps; 30 minutes keeps a week's search small).
DEFAULT_DEFERRAL_STEP = datetime.timedelta(minutes=30)
# The least CO2e saving worth waiting for when a policy does not say (2%: below, forecast
# error is larger than the saving).
DEFAULT_MIN_SAVING_FRACTION = 0.02


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
    # Sovereignty: the pool's country *and* its provider's legal home must belong to one of these
    # regimes (keys of ``REGIMES``, e.g. "EU"); None means "no regime rule".
    allowed_regimes: frozenset[str] | None = None
    # Sovereignty: exclude providers exposed to any extraterritorial law (SecNumCloud-like).
    forbid_extraterritorial: bool = False
    # Sovereignty: certifications valid at placement and for the whole expected run.
    required_certifications: tuple[CertificationRequirement, ...] = ()
    # Objective: internal carbon price turning tCO2e into money (currency per tCO2e).
    carbon_price_per_tco2e: float = 100.0
    # Deferral window for the workloads it governs unless they set their own.
    max_delay: datetime.timedelta | None = None
    # Defer only when a later slot emits at least this fraction less CO2e than running now
    # (and has a lower objective at all).
    deferral_min_saving_fraction: float = DEFAULT_MIN_SAVING_FRACTION
    # Name of the ``Budget`` (same namespace) charged for the workloads it governs.
    budget: str | None = None
    # The carbon ceiling holds a workload only while it can wait: once its latest start has come
    # (deadline - duration, or created + max delay) it may run above the ceiling, in the best
    # pool passing every other rule (``CeilingWaivedAtDeadline``). False: the ceiling always
    # holds. Sovereignty is never waived.
    carbon_ceiling_yields_at_deadline: bool = True
    # A pool whose grid intensity is unknown: "Hold" (fail-closed, the ceiling excludes it with
    # ``CarbonUnknown``) or "CostOnly" (the ceiling does not exclude it; when every governing
    # policy says so it is ranked on cost + embodied carbon only).
    on_missing_carbon: typing.Literal["Hold", "CostOnly"] = "Hold"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def selects(self, workload: Workload) -> bool:
        """Whether this policy governs ``workload``: a gang is governed by every policy that
        selects any of its members (their rules intersect), so no member loses its rules by
        being ganged with others."""
        if workload.namespace != self.namespace:
            return False
        if not workload.member_labels:  # one pod, or a gang whose pods share their labels
            return labels_match(workload.labels, self.match_labels)
        return any(labels_match(labels, self.match_labels) for labels in workload.member_labels)


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    """A unit the planner places whole: one pod, or the pods of one Job/owner (a gang)."""

    namespace: str
    name: str
    gpus: int
    created: datetime.datetime
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    pods: tuple[str, ...] = ()
    # Expected run time; drives projected cost, carbon and certification validity.
    duration_hours: float = 1.0
    # Deferral window: may wait at most this long after ``created`` ...
    max_delay: datetime.timedelta | None = None
    # ... and must finish by this instant (so start by deadline - duration).
    deadline: datetime.datetime | None = None
    # Accepts preemption, so it may use a pool's spot price.
    spot: bool = False
    # GPUs of each pod (same order as ``pods``); empty means "one pod needs all ``gpus``".
    gpus_per_pod: tuple[int, ...] = ()
    # Labels of each pod of a gang (same order as ``pods``); empty: every pod has ``labels``.
    member_labels: tuple[Mapping[str, str], ...] = ()
    # Pools with a node that each pod's own constraints (node selector, node affinity, the
    # accelerators it asks for) admit; None: every pool.
    fits_pools: frozenset[str] | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.duration_hours

    @property
    def largest_pod_gpus(self) -> int:
        return max(self.gpus_per_pod, default=self.gpus)

    @property
    def data_residency(self) -> frozenset[str] | None:
        """Countries or regimes named by the data-residency label; None without the label.

        In a gang, the strictest: when members name different residencies, only the countries
        all of them allow (regimes expanded to their countries; empty when none is common).
        """
        if not self.member_labels:
            value = self.labels.get(DATA_RESIDENCY_LABEL)
            return None if value is None else _residency_codes(value)
        named = {
            _residency_codes(value)
            for labels in self.member_labels
            if (value := labels.get(DATA_RESIDENCY_LABEL)) is not None
        }
        if len(named) <= 1:
            return next(iter(named), None)
        countries = [
            frozenset().union(*(REGIMES.get(part, frozenset((part,))) for part in residency))
            for residency in named
        ]
        return frozenset.intersection(*countries)


class BudgetAction(enum.StrEnum):
    """What the planner does when a placement would exceed a budget."""

    DEFER = "Defer"  # wait for the next period
    REJECT = "Reject"  # refuse the workload
    DOWNGRADE = "Downgrade"  # fall back to cheaper pools that fit what is left


@dataclasses.dataclass(frozen=True, slots=True)
class Budget:
    """A team's money, carbon and energy allowance for the current period (a ``Budget``
    object); a limit of None does not constrain."""

    namespace: str
    name: str
    currency: str = "EUR"
    money_limit: float | None = None
    money_spent: float = 0.0
    kgco2e_limit: float | None = None
    kgco2e_spent: float = 0.0
    period_end: datetime.datetime | None = None
    action: BudgetAction = BudgetAction.DEFER
    # Facility kWh (GPU TDP x PUE x hours), as ``objective.Estimate.kwh`` counts them.
    kwh_limit: float | None = None
    kwh_spent: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def money_remaining(self) -> float | None:
        return None if self.money_limit is None else self.money_limit - self.money_spent

    @property
    def kgco2e_remaining(self) -> float | None:
        return None if self.kgco2e_limit is None else self.kgco2e_limit - self.kgco2e_spent

    @property
    def kwh_remaining(self) -> float | None:
        return None if self.kwh_limit is None else self.kwh_limit - self.kwh_spent


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the planner may look at, as of one instant."""

    pools: tuple[Pool, ...]
    policies: tuple[Policy, ...]
    workloads: tuple[Workload, ...]
    budgets: tuple[Budget, ...] = ()
    # Forecast grid intensity (gCO2e/kWh, before PUE) per grid zone, for deferral decisions.
    forecasts: Mapping[str, series.TimeSeries] = dataclasses.field(default_factory=dict)
    # The granularity of the later starts a deferral considers.
    deferral_step: datetime.timedelta = DEFAULT_DEFERRAL_STEP


class Outcome(enum.StrEnum):
    PLACED = "Placed"
    # Waits until something changes (capacity, signals, policies); re-planned every round.
    HELD = "Held"
    # Waits on purpose until ``Decision.not_before`` (cleaner slot, next budget period).
    DEFERRED = "Deferred"
    # Will never be placed as it stands (budget action Reject, gang larger than any pool).
    REFUSED = "Refused"


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
    # Placed: best objective (cost + priced carbon) though not the lowest-carbon pool.
    BEST_OBJECTIVE = "BestObjective"
    # Placed in a cheaper pool because the preferred one would exceed a budget.
    DOWNGRADED_FOR_BUDGET = "DowngradedForBudget"
    # Sovereignty (per pool).
    LOCATION_UNKNOWN = "LocationUnknown"
    REGIME_NOT_ALLOWED = "RegimeNotAllowed"
    JURISDICTION_UNKNOWN = "JurisdictionUnknown"
    EXTRATERRITORIAL_EXPOSURE = "ExtraterritorialExposure"
    RESIDENCY_NOT_MET = "ResidencyNotMet"
    CERTIFICATION_MISSING = "CertificationMissing"
    CERTIFICATION_LEVEL_TOO_LOW = "CertificationLevelTooLow"
    CERTIFICATION_NOT_VALID = "CertificationNotValid"
    CERTIFICATION_EXPIRES_DURING_RUN = "CertificationExpiresDuringRun"
    # The certification's credential did not verify, or the policy requires a verified one.
    CERTIFICATION_UNVERIFIED = "CertificationUnverified"
    # Gangs and capacity.
    POD_TOO_LARGE_FOR_NODE = "PodTooLargeForNode"
    # No node of the pool matches the pod's own node selector, affinity or accelerators.
    NODE_CONSTRAINTS_NOT_MET = "NodeConstraintsNotMet"
    GANG_TOO_LARGE = "GangTooLarge"
    # Held by the controller: fewer pods of the gang exist than its declared size.
    GANG_INCOMPLETE = "GangIncomplete"
    # Budgets.
    BUDGET_EXCEEDED = "BudgetExceeded"
    BUDGET_UNKNOWN = "BudgetUnknown"
    CURRENCY_MISMATCH = "CurrencyMismatch"
    # Deferral.
    DEFERRED_FOR_CLEANER_SLOT = "DeferredForCleanerSlot"
    DEFERRED_UNTIL_UNDER_CEILING = "DeferredUntilUnderCeiling"
    # Placed above a carbon ceiling because the workload's latest start has come and the policy
    # lets its ceiling yield at the deadline (``Policy.carbon_ceiling_yields_at_deadline``).
    CEILING_WAIVED_AT_DEADLINE = "CeilingWaivedAtDeadline"
    # Held by the controller: planning this workload raised (isolated from the others).
    PLANNING_FAILED = "PlanningFailed"


# The reasons a workload is placed for; every other code says why one waits (or a pool lost).
PLACEMENT_REASONS = frozenset({
    Reason.LOWEST_CARBON, Reason.BEST_OBJECTIVE, Reason.DOWNGRADED_FOR_BUDGET,
    Reason.CEILING_WAIVED_AT_DEADLINE,
})  # fmt: skip


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
    # The most telling rejected pools, with why (bounded on large fleets; ``rejected_by_reason``
    # counts every pool, and ``greenplace explain`` can say why any one pool lost).
    alternatives: tuple[Rejection, ...] = ()
    # Deferred: re-plan at this instant (cleaner slot, next budget period). Held by a carbon
    # ceiling that yields at the latest start: that latest start, when the ceiling is waived.
    not_before: datetime.datetime | None = None
    # Placed: projection for the whole expected run in the chosen pool.
    cost: float | None = None
    kgco2e: float | None = None
    objective: float | None = None
    # Every pool that lost, counted by reason, sorted by reason code.
    rejected_by_reason: tuple[tuple[Reason, int], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """The planner's answer: one decision per workload, in the order they were considered."""

    at: datetime.datetime
    decisions: tuple[Decision, ...]

    def placed(self) -> tuple[Decision, ...]:
        return self._with(Outcome.PLACED)

    def held(self) -> tuple[Decision, ...]:
        return self._with(Outcome.HELD)

    def deferred(self) -> tuple[Decision, ...]:
        return self._with(Outcome.DEFERRED)

    def refused(self) -> tuple[Decision, ...]:
        return self._with(Outcome.REFUSED)

    def decision(self, workload: str) -> Decision | None:
        """The decision for workload key ``namespace/name``, if it was in the snapshot."""
        return next((d for d in self.decisions if d.workload == workload), None)

    def _with(self, outcome: Outcome) -> tuple[Decision, ...]:
        return tuple(d for d in self.decisions if d.outcome is outcome)
