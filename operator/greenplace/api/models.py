"""Pydantic models of greenplace's custom resources: the single source of truth of the API.

Why this module exists: the same shapes must be enforced in three places — the API server
(OpenAPI schema and CEL rules, so bad input is refused at ``kubectl apply``), the operator
(which parses what it watches) and the docs. The CRD manifests in ``crds/`` are generated from
these models by ``greenplace.api.crdgen``; a test fails if they drift.

Conventions: Python names are snake_case and the wire names camelCase (an alias generator);
``x-kubernetes-validations`` (CEL) travel in ``json_schema_extra`` and always carry a message that
says what to fix. Every field has a description (it is what ``kubectl explain`` prints).

Status models are what the operator writes, not only a schema: ``controller.status`` builds
every status body as one of them and sends the fields it set as a JSON merge patch (a field set
to None is deleted, one not set is left as it is), with times in the one wire format of
``api.timestamps``. So a write the CRD would prune or refuse fails where it is built.

Hostile input: every spec number has a minimum and a maximum (JSON carries no NaN or Infinity,
and a maximum refuses 1e308), every string, list and map a length cap, every duration and time a
range, each bound with its reason in the field's description. The operator parses what it
watches with these same models, so an object stored before a bound existed is reported invalid
(``controller.cache``) instead of overflowing somewhere later; CEL rules on spec values are
therefore checked here too (validators carrying the same message).
"""

from __future__ import annotations

import datetime
import itertools
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pydantic
from pydantic import alias_generators

from greenplace.api import timestamps
from greenplace.domain import countries, model

__all__ = [
    "GROUP",
    "VERSION",
    "Billing",
    "BillingExportSpec",
    "BillingExportStatus",
    "BillingMatch",
    "BudgetSpec",
    "BudgetStatus",
    "Condition",
    "EnergyReportSpec",
    "EnergyReportStatus",
    "GpuPoolSpec",
    "GpuPoolStatus",
    "PlacementPolicySpec",
    "PlacementPolicyStatus",
    "SignalSourceSpec",
    "SignalSourceStatus",
]

GROUP = "greenplace.dev"
VERSION = "v1alpha1"
# The node label that names a node's pool; every GpuPool's nodeSelector must carry it.
POOL_LABEL = "greenplace.dev/pool"


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One CEL rule for ``x-kubernetes-validations``."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _check_country(code: str) -> str:
    if not countries.is_country(code):
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code (e.g. FR, DE)")
    return code


_COUNTRY_LIST = ", ".join(f"'{c}'" for c in sorted(countries.ISO_ALPHA2))
Country = Annotated[
    str,
    pydantic.AfterValidator(_check_country),
    pydantic.Field(
        min_length=2,
        max_length=2,
        description="ISO 3166-1 alpha-2 country code in upper case, e.g. FR.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self in [{_COUNTRY_LIST}]",
                    "must be an ISO 3166-1 alpha-2 country code in upper case, such as FR or DE",
                )
            ]
        },
    ),
]
Name = Annotated[str, pydantic.Field(min_length=1, max_length=253)]
# Kubernetes label keys (an optional 253-character DNS prefix, a slash, a 63-character name) and
# values (63 characters), as the API server bounds them on real labels.
LabelKey = Annotated[str, pydantic.Field(min_length=1, max_length=317)]
LabelValue = Annotated[str, pydantic.Field(max_length=63)]
# How many labels a selector may list: far more than any real selector needs.
MAX_SELECTOR_LABELS = 32
# Appended to the description of every Name field.
_NAME_BOUND = "1 to 253 characters, the Kubernetes name limit."


# A status time as the API writes it (RFC 3339, UTC, "Z"); MicroTimestamp keeps microseconds,
# for times that order events closer than a second apart.
Timestamp = Annotated[
    datetime.datetime, pydantic.PlainSerializer(timestamps.rfc3339, when_used="json")
]
MicroTimestamp = Annotated[
    datetime.datetime,
    pydantic.PlainSerializer(
        lambda at: timestamps.rfc3339(at, microseconds=True), when_used="json"
    ),
]


class Model(pydantic.BaseModel):
    """Base of every API shape: camelCase on the wire, unknown fields refused, immutable."""

    model_config = pydantic.ConfigDict(
        alias_generator=alias_generators.to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


# ---------------------------------------------------------------- GpuPool


class Location(Model):
    """Where the pool's GPUs physically are and which electricity grid feeds them."""

    provider: Name = pydantic.Field(
        description=f"Cloud or hosting provider, e.g. ovhcloud. {_NAME_BOUND}"
    )
    region: Name = pydantic.Field(description=f"Provider region, e.g. europe-west9. {_NAME_BOUND}")
    zone: str = pydantic.Field(
        "", max_length=253, description="Provider zone, if any; at most 253 characters."
    )
    country: Country = pydantic.Field(description="Country of the data centre (ISO alpha-2).")
    grid_zone: Name = pydantic.Field(
        description="Electricity grid zone for carbon signals (Electricity Maps zone key), e.g. "
        f"FR. {_NAME_BOUND}"
    )


class Jurisdiction(Model):
    """The provider's legal home and the foreign laws that can reach its data."""

    legal_home: Country = pydantic.Field(description="Country whose law governs the provider.")
    exposures: list[Name] = pydantic.Field(
        default_factory=list,
        max_length=32,
        description="Extraterritorial laws the provider is subject to beyond those its legal "
        "home implies (a US legal home always means US-CLOUD-Act and US-FISA-702, a CN one "
        "CN-National-Intelligence-Law: listing fewer removes none). At most 32 (no provider "
        f"is reached by more). Each: {_NAME_BOUND}",
    )


class KeyRef(Model):
    """One key of a Secret or ConfigMap in the operator's own namespace."""

    name: Name = pydantic.Field(description=f"Object name. {_NAME_BOUND}")
    key: str = pydantic.Field(
        min_length=1,
        max_length=253,
        description="Key holding the compact JWT; 1 to 253 characters, the key limit.",
    )


_ONE_CREDENTIAL_SOURCE = (
    "set exactly one of secretKeyRef or configMapKeyRef (the object holding the credential, "
    "in the operator's namespace)"
)


class CredentialRef(Model):
    """Where a certification's signed credential (a W3C Verifiable Credential as a JWT) is:
    a key of a Secret or a ConfigMap in the operator's namespace (GpuPools are cluster-scoped;
    tenants cannot write there). docs/credentials.md says how to obtain one."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.secretKeyRef) != has(self.configMapKeyRef)", _ONE_CREDENTIAL_SOURCE)
            ]
        }
    )

    secret_key_ref: KeyRef | None = pydantic.Field(
        None, description="A Secret key (the chart must list the Secret: docs/credentials.md)."
    )
    config_map_key_ref: KeyRef | None = pydantic.Field(
        None, description="A ConfigMap key (a credential is public: a ConfigMap is enough)."
    )

    @pydantic.model_validator(mode="after")
    def _exactly_one(self) -> CredentialRef:
        # The CEL rule's twin (an object stored before the rule).
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError(f"certifications[].credential: {_ONE_CREDENTIAL_SOURCE}")
        return self


class Certification(Model):
    """A certification the pool holds, valid until ``expires``; with a ``credential``, only
    if that credential verifies (its signed level and dates then prevail)."""

    name: Name = pydantic.Field(
        description=f"Certification name, e.g. SecNumCloud, HDS, C5. {_NAME_BOUND}"
    )
    level: str | None = pydantic.Field(
        None,
        max_length=64,
        description="Level or version, e.g. 3.2 or high; at most 64 characters.",
    )
    expires: datetime.date = pydantic.Field(description="Last day of validity (YYYY-MM-DD).")
    credential: CredentialRef | None = pydantic.Field(
        None,
        description="The signed credential backing this certification, verified against the "
        "issuers trusted in the chart (certificationCredentials.trustedIssuers). Set: the "
        "certification counts only while it verifies (reason CertificationUnverified "
        "otherwise): signed for this pool, this name and this level, valid until the earlier "
        "of its exp and expires.",
    )


class Gpu(Model):
    """The pool's GPU model and its power envelope (used by the energy model)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.idleWatts <= self.tdpWatts", "idleWatts must not exceed tdpWatts")
            ]
        }
    )

    model: Name = pydantic.Field(description=f"GPU model, e.g. H100-80GB. {_NAME_BOUND}")
    tdp_watts: float = pydantic.Field(
        gt=0,
        le=5000,
        description="Board power at full load (W), above 0 and at most 5000: several times any "
        "GPU board sold (H100 SXM: 700 W).",
    )
    idle_watts: float = pydantic.Field(
        0,
        ge=0,
        le=5000,
        description="Board power when idle (W), 0 to 5000 and at most tdpWatts (same reason).",
    )

    @pydantic.model_validator(mode="after")
    def _idle_within_tdp(self) -> Gpu:
        # The CEL rule's twin: a spec that escaped it would make the energy model raise.
        if self.idle_watts > self.tdp_watts:
            raise ValueError(
                f"gpu.idleWatts {self.idle_watts:g} exceeds gpu.tdpWatts {self.tdp_watts:g}; "
                "fix: set idleWatts to the board's idle draw, at most tdpWatts"
            )
        return self


# A GPU-hour price cap that holds in any ISO 4217 currency, the weakest included (VND, IDR).
MAX_PRICE_PER_GPU_HOUR = 1_000_000


class Price(Model):
    """What one GPU-hour costs in this pool.

    No spot price: a live workload cannot be spot (greenplace has no preemption contract, and a
    pool's nodes are not sold as spot capacity), so such a field would be accepted and ignored.
    """

    currency: str = pydantic.Field(
        pattern=r"^[A-Z]{3}$", max_length=3, description="ISO 4217 currency code, e.g. EUR."
    )
    on_demand_per_gpu_hour: float = pydantic.Field(
        ge=0,
        le=MAX_PRICE_PER_GPU_HOUR,
        description="On-demand price, 0 to 1000000: a GPU-hour at many times today's price "
        "even in the weakest currencies (VND, IDR); more is a typo.",
    )


# No electricity grid has averaged above ~1100 gCO2e/kWh (lignite); 2000 leaves room for error.
MAX_GRAMS_PER_KWH = 2000


class CarbonIntensity(Model):
    """Grid carbon intensity to assume when no signal source answers."""

    fallback_grams_per_kwh: float = pydantic.Field(
        ge=0,
        le=MAX_GRAMS_PER_KWH,
        description="gCO2e per kWh drawn from the grid (before PUE), 0 to 2000: no grid "
        "averages above ~1100 (lignite).",
    )


# A billing rule's bounds: a provider's resource id (an ARN, an Azure resource path) stays under
# 2048 characters, as do SKU and account ids; no pool needs more values than these caps.
BillingId = Annotated[str, pydantic.Field(min_length=1, max_length=2048)]
MAX_BILLING_VALUES = 256
_BILLING_KEYS = ("resourceIds", "tags", "regionIds", "skuIds", "subAccountIds")


class BillingMatch(Model):
    """Which charges of a FOCUS billing export are this pool's (``greenplace finops``).

    A charge is the pool's when every criterion set here holds (a list holds when the charge's
    column equals one of its values; ``tags`` when the charge carries every key with that
    value). At least one criterion: an empty rule would claim the whole bill.
    """

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    " || ".join(f"has(self.{key})" for key in _BILLING_KEYS),
                    "set at least one of " + ", ".join(_BILLING_KEYS) + ": an empty rule "
                    "would claim every charge of the bill",
                )
            ]
        }
    )

    resource_ids: list[BillingId] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=MAX_BILLING_VALUES,
        description="FOCUS ResourceId values (an instance ARN, an Azure resource path), "
        "compared exactly; 1 to 256 ids of up to 2048 characters.",
    )
    tags: (
        dict[
            Annotated[str, pydantic.Field(min_length=1, max_length=256)],
            Annotated[str, pydantic.Field(max_length=256)],
        ]
        | None
    ) = pydantic.Field(
        None,
        min_length=1,
        max_length=32,
        description="FOCUS Tags the charge must all carry, key to value (a node pool's label, "
        "say); 1 to 32 tags, keys and values up to 256 characters (the providers' tag limit).",
    )
    region_ids: list[BillingId] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=32,
        description="FOCUS RegionId values, e.g. eu-west-3; 1 to 32.",
    )
    sku_ids: list[BillingId] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=MAX_BILLING_VALUES,
        description="FOCUS SkuId values (the GPU instance type's SKU); 1 to 256.",
    )
    sub_account_ids: list[BillingId] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=MAX_BILLING_VALUES,
        description="FOCUS SubAccountId values (an AWS account, an Azure subscription, a GCP "
        "project); 1 to 256.",
    )

    @pydantic.model_validator(mode="after")
    def _claims_something(self) -> BillingMatch:
        # The CEL rule's twin: an object stored before the rule must not claim the whole bill.
        if all(getattr(self, name) is None for name in type(self).model_fields):
            raise ValueError(
                "billing.match sets no criterion; fix: set at least one of "
                + ", ".join(_BILLING_KEYS)
                + " (an empty rule would claim every charge of the bill)"
            )
        return self


class Billing(Model):
    """How this pool's charges are found in FOCUS billing exports, and counted in GPU-hours."""

    match: BillingMatch
    gpus_per_consumed_hour: int = pydantic.Field(
        1,
        ge=1,
        le=64,
        description="GPUs in one hour of a matched usage charge (ConsumedUnit Hours): 8 when "
        "the provider bills 8-GPU instances by the instance-hour; 1 to 64 (no node has more).",
    )


class GpuPoolSpec(Model):
    """A set of GPU nodes sharing location, jurisdiction, hardware and price."""

    node_selector: dict[LabelKey, LabelValue] = pydantic.Field(
        min_length=1,
        max_length=MAX_SELECTOR_LABELS,
        description="Node labels that select this pool's nodes; pods are narrowed to them. "
        "1 to 32 labels, keys and values as Kubernetes bounds labels (317 and 63 characters).",
    )
    location: Location
    jurisdiction: Jurisdiction | None = pydantic.Field(
        None, description="Legal facts; a pool without them fails every jurisdiction rule."
    )
    certifications: list[Certification] = pydantic.Field(
        default_factory=list,
        max_length=32,
        description="Certifications the pool holds; at most 32 (more than any provider has).",
    )
    gpu: Gpu
    price: Price
    pue: float = pydantic.Field(
        1.0,
        ge=1.0,
        le=3.0,
        description="Power usage effectiveness of the data centre, 1 to 3: 1 is the physical "
        "floor and even legacy rooms stay under 3 (the average is about 1.5).",
    )
    embodied_grams_per_gpu_hour: float = pydantic.Field(
        0,
        ge=0,
        le=10_000,
        description="Embodied (manufacturing) emissions amortised per GPU-hour, 0 to 10000 g: "
        "published estimates are a few to tens of grams.",
    )
    carbon_intensity: CarbonIntensity | None = pydantic.Field(
        None, description="Fallback grid intensity when no SignalSource answers."
    )
    cluster: str | None = pydantic.Field(
        None,
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The MultiKueueCluster (on this manager cluster) whose worker holds this "
        "pool's nodes: the nodes of that worker matching nodeSelector. Set, the pool is a "
        "remote pool: only Workloads greenplace dispatches through MultiKueue "
        "(greenplace operate --multikueue) are planned onto it, never this cluster's own pods. "
        "Unset: the pool's nodes are this cluster's. A Kubernetes object name (lower case, "
        "digits, '-' and '.'; 1 to 253 characters).",
    )
    billing: Billing | None = pydantic.Field(
        None,
        description="Which charges of a FOCUS billing export are this pool's, for its effective "
        "price per GPU-hour (greenplace finops reconcile). Unset: the pool claims none.",
    )


class Condition(Model):
    """A standard Kubernetes condition."""

    type: Name
    status: Literal["True", "False", "Unknown"]
    reason: str = pydantic.Field(max_length=1024)
    message: str = pydantic.Field("", max_length=32768)
    last_transition_time: Timestamp
    observed_generation: int | None = None


class PoolBillingStatus(Model):
    """The pool's prices per GPU-hour in the newest billing period of the operator's FOCUS
    exports (``greenplace operate --focus-export``; docs/finops.md)."""

    period_start: Timestamp = pydantic.Field(description="BillingPeriodStart of that period.")
    period_end: Timestamp = pydantic.Field(description="BillingPeriodEnd, excluded.")
    currency: str = pydantic.Field(max_length=3, description="The export's BillingCurrency.")
    gpu_hours: float = pydantic.Field(description="GPU-hours of the pool's usage charges.")
    effective_cost: float = pydantic.Field(
        description="EffectiveCost of the charges the pool claims (commitments amortised)."
    )
    billed_cost: float = pydantic.Field(description="BilledCost of those charges.")
    effective_per_gpu_hour: float | None = pydantic.Field(
        None, description="The effective price: effectiveCost / gpuHours (none: no GPU-hour)."
    )
    list_per_gpu_hour: float | None = pydantic.Field(
        None, description="ListCost / gpuHours: the providers' public price."
    )


class CertificationVerification(Model):
    """How the credential of one of the pool's certifications verified (the operator's check,
    which ``greenplace explain --from-cluster`` reads back)."""

    index: int = pydantic.Field(ge=0, description="Its position in spec.certifications.")
    name: str = pydantic.Field(description="The certification's name.")
    verified: bool = pydantic.Field(description="Whether the credential verified.")
    problem: str | None = pydantic.Field(
        None, description="Why not: expired, bad signature, other subject, untrusted issuer, ..."
    )
    message: str | None = pydantic.Field(
        None, max_length=1024, description="What went wrong and the fix (not verified)."
    )
    issuer: str | None = pydantic.Field(None, description="The trusted issuer (verified).")
    level: str | None = pydantic.Field(None, description="The certified level (verified).")
    valid_from: Timestamp | None = pydantic.Field(None, description="The credential's nbf.")
    valid_until: Timestamp | None = pydantic.Field(None, description="The credential's exp.")


class GpuPoolStatus(Model):
    """What the operator observes about the pool."""

    observed_generation: int | None = None
    nodes: int | None = pydantic.Field(None, description="Nodes matching the nodeSelector.")
    gpus_total: int | None = pydantic.Field(None, description="Allocatable GPUs on those nodes.")
    gpus_free: int | None = pydantic.Field(None, description="GPUs not requested by any pod.")
    carbon_grams_per_kwh: float | None = pydantic.Field(
        None, description="Grid intensity used for the last plan."
    )
    carbon_source: str | None = pydantic.Field(None, description="Where that value came from.")
    billing: PoolBillingStatus | None = pydantic.Field(
        None, description="Effective price per GPU-hour from the FOCUS exports (Billed condition)."
    )
    certifications: list[CertificationVerification] | None = pydantic.Field(
        None,
        max_length=32,
        description="Each certification that references a credential, as it verified "
        "(condition CertificationsVerified sums them up).",
    )
    conditions: list[Condition] = pydantic.Field(default_factory=list)


# ---------------------------------------------------------------- PlacementPolicy


class LabelSelector(Model):
    """Which pods of the namespace the policy governs (absent or empty: all GPU pods)."""

    match_labels: dict[LabelKey, LabelValue] = pydantic.Field(
        default_factory=dict,
        max_length=MAX_SELECTOR_LABELS,
        description="Labels a pod must carry, all of them. At most 32 labels, keys and values "
        "as Kubernetes bounds labels (317 and 63 characters).",
    )


class CertificationRequirement(Model):
    """A certification every pool must hold, valid on the day of placement and for the run."""

    name: Name = pydantic.Field(description=f"Certification name, e.g. SecNumCloud. {_NAME_BOUND}")
    min_level: str = pydantic.Field(
        "",
        max_length=64,
        description="Lowest acceptable level: a version (3.2) or an EUCS level; at most 64 "
        "characters.",
    )
    verified: bool = pydantic.Field(
        False,
        description="Only a certification backed by a credential that verifies counts (one "
        "declared without a credential does not; reason CertificationUnverified).",
    )


class Sovereignty(Model):
    """Hard rules: a pool that breaks one is never used; a pool missing a fact a rule needs
    (its jurisdiction, a certification date) fails that rule. Absent from the spec: every pool
    is allowed, wherever it is and whatever law reaches it."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.allowedCountries) || has(self.allowedRegimes) || "
                    "(has(self.forbidExtraterritorialExposure) && "
                    "self.forbidExtraterritorialExposure) || has(self.requiredCertifications)",
                    "set at least one rule: allowedCountries, allowedRegimes, "
                    "forbidExtraterritorialExposure or requiredCertifications",
                )
            ]
        }
    )

    allowed_countries: list[Country] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=249,
        description="Countries whose pools may run the pods (ISO alpha-2); 1 to 249, the "
        "number of ISO 3166-1 countries.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    allowed_regimes: list[Literal["EU", "EEA"]] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=2,
        description="Legal regimes that both the pool's country and its provider's legal home "
        "must belong to (at most the two there are).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    forbid_extraterritorial_exposure: bool = pydantic.Field(
        False,
        description="Refuse providers exposed to any extraterritorial law (e.g. US CLOUD Act), "
        "as SecNumCloud requires.",
    )
    required_certifications: list[CertificationRequirement] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=16,
        description="Certifications every pool must hold; 1 to 16 (no scheme stacks more).",
    )


class Carbon(Model):
    """Carbon rules on the grid intensity (PUE included) of the pool's zone. Absent from the
    spec: no ceiling, no pool is held for its carbon."""

    max_grams_per_kwh: float = pydantic.Field(
        ge=0,
        le=MAX_GRAMS_PER_KWH,
        description="Ceiling on effective intensity, gCO2e/kWh, 0 to 2000: no grid averages "
        "above ~1100 (lignite), so a higher ceiling would hold nothing.",
    )
    ceiling_yields_at_deadline: bool = pydantic.Field(
        True,
        description="Hold a pod above the ceiling only while it can wait: once its latest start "
        "has come (deadline minus duration, or creation plus max delay) place it above the "
        "ceiling in the best pool passing every other rule (reason CeilingWaivedAtDeadline). "
        "false: the ceiling always holds. Sovereignty rules are never waived.",
    )
    on_missing_signal: Literal["Hold", "CostOnly"] = pydantic.Field(
        "Hold",
        description="A pool whose grid intensity is unknown: Hold excludes it under the "
        "ceiling (CarbonUnknown, fail-closed); CostOnly lets it through and ranks it on cost "
        "plus embodied carbon only.",
    )


class Objective(Model):
    """How compliant pools are ranked: cost plus carbon priced at an internal carbon price.
    Absent from the spec: carbon first (lowest gCO2e), price breaks ties."""

    carbon_price_per_tonne: float = pydantic.Field(
        ge=0,
        le=1_000_000,
        description="Internal carbon price in the pool's currency per tCO2e, 0 to 1000000: "
        "past that carbon outweighs any price (the carbon-first ranking uses 1000000). Without "
        "an objective, greenplace ranks carbon first (lowest gCO2e) and uses price to break ties.",
    )


class Deferral(Model):
    """How long the selected pods may wait for a cleaner hour. Absent from the spec: a pod waits
    only within the window it declares itself (annotations greenplace.dev/max-delay,
    greenplace.dev/deadline)."""

    max_delay: MaxDelay | None = pydantic.Field(
        None,
        description="How long after its creation a selected pod may wait for a forecast "
        "cleaner slot (or for the carbon ceiling to be met) when it declares no "
        "greenplace.dev/max-delay itself; 0s to 168h (the planner looks 7 days ahead). A pod's "
        "greenplace.dev/deadline (minus its expected duration) shortens the window further.",
    )
    min_saving: float | None = pydantic.Field(
        None,
        ge=0,
        le=1,
        description="The least CO2e saving worth waiting for, as a fraction of running now "
        f"(default {model.DEFAULT_MIN_SAVING_FRACTION:g}, i.e. "
        f"{model.DEFAULT_MIN_SAVING_FRACTION:.0%}); 0 waits for any forecast saving. With "
        "several policies, the largest applies.",
    )


class BudgetRef(Model):
    """A ``Budget`` of the policy's namespace."""

    name: Name = pydantic.Field(description=f"Name of the Budget in this namespace. {_NAME_BOUND}")


class PlacementPolicySpec(Model):
    """How the selected pods of this namespace may be placed. Every rule is optional: an
    empty spec ({}) governs every GPU pod of the namespace and allows every pool, with no
    carbon ceiling, ranking carbon first."""

    pod_selector: LabelSelector = pydantic.Field(default_factory=LabelSelector)
    sovereignty: Sovereignty | None = None
    carbon: Carbon | None = None
    objective: Objective | None = None
    deferral: Deferral | None = None
    budget_ref: BudgetRef | None = pydantic.Field(
        None,
        description="The Budget charged for the pods this policy places; while it is exhausted "
        "its action applies (a missing Budget holds the pods with BudgetUnknown).",
    )


class PlacementPolicyStatus(Model):
    observed_generation: int | None = None
    allowed_pools: list[Name] | None = pydantic.Field(
        None,
        description="GpuPools passing this policy's hard sovereignty rules now; the admission "
        "policy only lets a pod out of its gate towards these.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    # None for a pool: delete its entry (the body is a merge patch).
    pool_residency: dict[Name, list[Annotated[str, pydantic.Field(max_length=8)]] | None] | None = (
        pydantic.Field(
            None,
            description="For each allowed pool, the data-residency codes it satisfies (its "
            "country and the regimes holding it); the admission policy checks a pod's "
            "greenplace.dev/data-residency label against them.",
        )
    )
    # Every count is of pods, as the last cycle gathered them; a pod counts under each policy
    # that governs it (their rules intersect), so the counts of two policies may overlap.
    placed: int | None = pydantic.Field(
        None,
        description="Pods greenplace released to a pool under this policy (its signed "
        "placement record names the policy) that have not finished.",
    )
    held: int | None = pydantic.Field(
        None,
        description="Pods still gated under this policy that wait until something changes "
        "(outcome Held: no compliant pool, no room, a gang still missing members); each "
        "pod's greenplace.dev/held annotation says why.",
    )
    deferred: int | None = pydantic.Field(
        None,
        description="Pods still gated under this policy that wait on purpose until a known "
        "time (outcome Deferred: a cleaner slot, the Budget's next period).",
    )
    refused: int | None = pydantic.Field(
        None,
        description="Pods still gated under this policy that will not be placed as they stand "
        "(outcome Refused: Budget action Reject, a gang larger than any allowed pool).",
    )
    conditions: list[Condition] = pydantic.Field(default_factory=list)


# ---------------------------------------------------------------- shared pieces

# A Go-style duration (what kubectl users know): 90s, 10m, 2h, 1h30m.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
Duration = Annotated[
    str,
    pydantic.Field(
        pattern=DURATION_PATTERN,
        max_length=32,
        description="A duration such as 90s, 10m, 2h or 1h30m.",
    ),
]
# Every duration field has a range (one of the aliases below). The range is checked on the
# canonical form: hours, minutes, seconds then milliseconds, each at most once and of at most 6
# digits. So nothing accepted exceeds ~1.02 million hours, and neither CEL's duration() (Go's,
# int64 nanoseconds: ~2.56 million hours) nor the operator's timedelta arithmetic can overflow,
# whatever digits a hostile object carries (99999999999999h is refused with the range).
_CANONICAL_DURATION = r"^([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?([0-9]{1,6}ms)?$"
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_DURATION_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}


def _milliseconds(text: str) -> int:
    return sum(int(n) * _DURATION_MS[unit] for n, unit in _DURATION_PART.findall(text))


def duration_range_message(low: str, high: str) -> str:
    """What the API server and the models say about a duration out of ``[low, high]``."""
    return (
        f"must be a duration from {low} to {high}, written as hours, minutes, seconds then ms, "
        "each at most 6 digits (e.g. 1h30m)"
    )


def _duration_schema(low: str, high: str) -> Any:
    """The CEL rule of a duration in ``[low, high]`` (malformed text is the pattern's to refuse)."""
    rule = (
        f"!self.matches('{DURATION_PATTERN}') || (self.matches('{_CANONICAL_DURATION}') && "
        f"duration(self) >= duration('{low}') && duration(self) <= duration('{high}'))"
    )
    message = duration_range_message(low, high)
    return pydantic.Field(json_schema_extra={"x-kubernetes-validations": [cel(rule, message)]})


def check_duration(text: str, low: str, high: str) -> str:
    """``text`` when the API server accepts it as a duration in ``[low, high]``, else ValueError
    (also used for durations tenants write in annotations)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 90s, 10m or 1h30m")
    in_range = _milliseconds(low) <= _milliseconds(text) <= _milliseconds(high)
    if not (re.fullmatch(_CANONICAL_DURATION, text) and in_range):
        raise ValueError(duration_range_message(low, high))
    return text


def _duration_check(low: str, high: str) -> Any:
    """The same check in Python, so the operator refuses what the API server would."""
    return pydantic.AfterValidator(lambda text: check_duration(text, low, high))


# Accounting windows: 1m holds two scrapes at the usual 30 s interval; a leap year is the longest
# accounting period (the audit's 99999999999999h overflowed the report loop's timedelta).
Window = Annotated[Duration, _duration_schema("1m", "8784h"), _duration_check("1m", "8784h")]
# Signal TTLs: 0 would make every reading stale; a reading older than a year is no signal.
Ttl = Annotated[Duration, _duration_schema("1s", "8784h"), _duration_check("1s", "8784h")]
# Network timeouts: below 100 ms even a local server misses; a slower answer would stall every
# signal refresh behind it.
Timeout = Annotated[Duration, _duration_schema("100ms", "60s"), _duration_check("100ms", "60s")]
# Deferral windows: the planner looks at most 7 days ahead (``engine.deferral.MAX_DEFERRAL``).
MAX_DELAY_RANGE = ("0s", "168h")
MaxDelay = Annotated[
    Duration, _duration_schema(*MAX_DELAY_RANGE), _duration_check(*MAX_DELAY_RANGE)
]
# Trace shifts: replay traces recorded up to a century ago (876000h is 99.9 years).
Shift = Annotated[Duration, _duration_schema("0s", "876000h"), _duration_check("0s", "876000h")]
Url = Annotated[
    str,
    pydantic.Field(
        pattern=r"^https?://[^\s]+$",
        max_length=2048,
        description="An http(s) URL, e.g. http://prometheus.monitoring:9090.",
    ),
]
Currency = Annotated[
    str, pydantic.Field(pattern=r"^[A-Z]{3}$", max_length=3, description="ISO 4217 code, e.g. EUR.")
]


def _status_conditions() -> Any:
    return pydantic.Field(
        default_factory=list,
        description="Standard conditions: Ready, and Degraded when something is off.",
    )


# ---------------------------------------------------------------- SignalSource


class SecretKeyRef(Model):
    """Where a source's credentials are (read by the operator from a mounted Secret)."""

    name: Name = pydantic.Field(description=f"Secret name. {_NAME_BOUND}")
    namespace: Name = pydantic.Field(
        description=f"Secret namespace, the operator's own (it can mount no other). {_NAME_BOUND}"
    )
    key: str | None = pydantic.Field(
        None,
        max_length=253,
        description="Key of the token (Electricity Maps, default token); WattTime reads "
        "username and password, so refuses key. At most 253 characters, the Secret key limit.",
    )


class StaticValues(Model):
    """Fixed values per subject; never stale (a good last fallback)."""

    values: dict[Name, Annotated[float, pydantic.Field(ge=0, le=MAX_PRICE_PER_GPU_HOUR)]] = (
        pydantic.Field(
            min_length=1,
            max_length=256,
            description="Value per subject: gCO2e/kWh per grid zone, or price per GPU-hour per "
            "pool. 1 to 256 subjects; each value 0 to 1000000 (a price's cap) and, for "
            "CarbonIntensity, at most 2000 gCO2e/kWh (no grid averages above ~1100).",
        )
    )


class TraceFiles(Model):
    """Recorded CSV traces (``Time,<value>`` rows) replayed, optionally shifted in time."""

    files: dict[Name, Annotated[str, pydantic.Field(max_length=4096)]] = pydantic.Field(
        min_length=1,
        max_length=256,
        description="CSV path per subject, as seen by the operator (mount a ConfigMap there). "
        "1 to 256 subjects; paths of at most 4096 characters (Linux PATH_MAX).",
    )
    shift: Shift | None = pydantic.Field(
        None,
        description="Added to every trace timestamp, e.g. 52608h plays 2020 as 2026. 0s to "
        "876000h: replays traces recorded up to a century ago.",
    )


class PrometheusQuery(Model):
    """A PromQL instant query per subject; ``$subject`` is replaced by the zone or pool name."""

    url: Url = pydantic.Field(
        description="Prometheus base URL, e.g. http://prometheus.monitoring:9090; at most 2048 "
        "characters (what proxies and browsers accept). The operator reaches only what its "
        "chart values signals.allowHosts and signals.allowInsecureHttp allow (https to public "
        "addresses by default)."
    )
    query: str = pydantic.Field(
        min_length=1,
        max_length=4096,
        description="PromQL returning one series, e.g. "
        'greenplace_grid_carbon_intensity{zone="$subject"}. A plain selector gives a true age. '
        "At most 4096 characters, what fits a GET query string.",
    )


class HttpApi(Model):
    """The base URL of a public signal API (default: the vendor's)."""

    url: Url | None = pydantic.Field(
        None, description="Override of the API's base URL; at most 2048 characters."
    )


_SOURCE_KINDS = {
    "Static": "static",
    "Trace": "trace",
    "Prometheus": "prometheus",
    "ElectricityMaps": "electricityMaps",
    "WattTime": "wattTime",
}


_ENTRY_RULES: list[pydantic.JsonValue] = [  # type: ignore[assignment]
    cel(
        f"self.kind != '{kind}' || has(self.{block})",
        f"a source of kind {kind} needs its {block} block",
    )
    for kind, block in _SOURCE_KINDS.items()
    if kind not in ("ElectricityMaps", "WattTime")
] + [
    cel(
        "!(self.kind in ['Static', 'Trace']) || !has(self.credentialsSecretRef)",
        "static and trace sources need no credentialsSecretRef; remove it",
    )
]

_NETWORK_KINDS = ("Prometheus", "ElectricityMaps", "WattTime")
# Fields of an entry that only some kinds read (wire name -> those kinds): set on another kind,
# it would be accepted and ignored. A static value is observed "now" (never stale, so no ttl);
# static and trace sources make no network call (no timeout).
_READ_ONLY_BY: dict[str, tuple[str, ...]] = {
    **{block: (kind,) for kind, block in _SOURCE_KINDS.items()},
    "ttl": ("Trace", *_NETWORK_KINDS),
    "timeout": _NETWORK_KINDS,
}


def _only_for_message(field: str, kinds: tuple[str, ...]) -> str:
    return (
        f"spec.sources[].{field} is used only by a source of kind {' or '.join(kinds)}: "
        "remove it, or set a kind that uses it"
    )


_WATTTIME_KEY_MESSAGE = (
    "spec.sources[].credentialsSecretRef.key: WattTime reads the Secret keys username and "
    "password; remove key"
)
_ENTRY_RULES += [
    cel(
        f"!has(self.{field}) || self.kind in [{', '.join(repr(k) for k in kinds)}]",
        _only_for_message(field, kinds),
        f".{field}",
    )
    for field, kinds in _READ_ONLY_BY.items()
] + [
    cel(
        "self.kind != 'WattTime' || !has(self.credentialsSecretRef) || "
        "!has(self.credentialsSecretRef.key)",
        _WATTTIME_KEY_MESSAGE,
        ".credentialsSecretRef",
    )
]


class SignalSourceEntry(Model):
    """One link of the fallback chain."""

    model_config = pydantic.ConfigDict(json_schema_extra={"x-kubernetes-validations": _ENTRY_RULES})

    name: Name = pydantic.Field(
        description=f"Unique in this SignalSource; used in fallbackOrder. {_NAME_BOUND}"
    )
    kind: Literal["Static", "Trace", "Prometheus", "ElectricityMaps", "WattTime"]
    ttl: Ttl | None = pydantic.Field(
        None,
        description="Oldest observation still used (defaults: Prometheus 10m, Trace 1h, "
        "ElectricityMaps 2h, WattTime 15m; refused on Static, which never goes stale). 1s to "
        "8784h: 0 would make every reading stale, and a reading older than a year is no signal.",
    )
    # No schema defaults inside list items: kubectl apply would see the defaulted list as a
    # change at every apply (JSON merge patch replaces whole lists). Defaults apply in code.
    timeout: Timeout | None = pydantic.Field(
        None,
        description="Bound on every network call (default 5s; refused on Static and Trace, "
        "which make none). 100ms to 60s: below, even a "
        "local server misses; above, a slow provider stalls every refresh behind it.",
    )
    static: StaticValues | None = None
    trace: TraceFiles | None = None
    prometheus: PrometheusQuery | None = None
    electricity_maps: HttpApi | None = None
    watt_time: HttpApi | None = None
    zone_mapping: dict[Name, Name] = pydantic.Field(
        default_factory=dict,
        max_length=256,
        description="Our grid zone -> the provider's zone or region code (identity if absent). "
        f"At most 256 zones, as spec.zones; keys and values: {_NAME_BOUND}",
    )
    credentials_secret_ref: SecretKeyRef | None = None

    @pydantic.model_validator(mode="after")
    def _only_fields_its_kind_reads(self) -> SignalSourceEntry:
        """The CEL rules above, in Python: a field this kind ignores is refused."""
        wire = {f.alias or name: name for name, f in type(self).model_fields.items()}
        for field, kinds in _READ_ONLY_BY.items():
            if getattr(self, wire[field]) is not None and self.kind not in kinds:
                raise ValueError(_only_for_message(field, kinds))
        ref = self.credentials_secret_ref
        if self.kind == "WattTime" and ref is not None and ref.key is not None:
            raise ValueError(_WATTTIME_KEY_MESSAGE)
        return self


_STATIC_CARBON_MESSAGE = (
    "static values of a CarbonIntensity source are gCO2e/kWh: each must be at most "
    f"{MAX_GRAMS_PER_KWH} (no grid averages above ~1100)"
)


class SignalSourceSpec(Model):
    """Where carbon intensity (and forecasts) or prices come from, in fallback order."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.fallbackOrder) || "
                    "self.fallbackOrder.all(n, self.sources.exists(s, s.name == n))",
                    "every fallbackOrder entry must name one of spec.sources",
                    ".fallbackOrder",
                ),
                cel(
                    "(has(self.signal) && self.signal != 'CarbonIntensity') || "
                    "self.sources.all(s, !has(s.static) || "
                    f"s.static.values.all(z, s.static.values[z] <= {MAX_GRAMS_PER_KWH}.0))",
                    _STATIC_CARBON_MESSAGE,
                    ".sources",
                ),
            ]
        }
    )

    @pydantic.field_validator("sources")
    @classmethod
    def _static_carbon_bounded(
        cls, sources: list[SignalSourceEntry], info: pydantic.ValidationInfo
    ) -> list[SignalSourceEntry]:
        """The CEL rule above, in Python (``signal`` is validated before ``sources``)."""
        if info.data.get("signal") == "CarbonIntensity":
            for source in sources:
                if source.static and max(source.static.values.values()) > MAX_GRAMS_PER_KWH:
                    raise ValueError(_STATIC_CARBON_MESSAGE)
        return sources

    signal: Literal["CarbonIntensity", "Price"] = pydantic.Field(
        "CarbonIntensity",
        description="CarbonIntensity (subjects are grid zones) or Price (subjects are GpuPools).",
    )
    zones: list[Name] = pydantic.Field(
        min_length=1,
        max_length=256,
        description="Subjects this source answers for: grid zones, or GpuPool names for Price. "
        f"1 to 256 (each is read at every refresh); each: {_NAME_BOUND}",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    fallback_order: list[Name] | None = pydantic.Field(
        None,
        min_length=1,
        max_length=8,
        description="Source names in the order they are tried (default: the order of sources); "
        "1 to 8, as spec.sources.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    sources: list[SignalSourceEntry] = pydantic.Field(
        min_length=1,
        max_length=8,
        description="The fallback chain; 1 to 8 links (each a network call per refresh when it "
        "is reached).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class SignalReadingStatus(Model):
    """The value in use for one subject and why."""

    subject: Name
    value: float | None = pydantic.Field(None, description="Value in use (none: Unavailable).")
    source: str | None = pydantic.Field(None, max_length=253, description="Source that gave it.")
    observed_at: Timestamp | None = pydantic.Field(
        None, description="When the provider observed it (absent for static values)."
    )
    age_seconds: float | None = pydantic.Field(None, description="Age when last written.")
    reason: str = pydantic.Field(max_length=64, description="Fresh, Fallback or Unavailable.")
    message: str = pydantic.Field("", max_length=4096)


class SignalSourceStatus(Model):
    observed_generation: int | None = None
    readings: list[SignalReadingStatus] = pydantic.Field(default_factory=list)
    conditions: list[Condition] = _status_conditions()


# ---------------------------------------------------------------- Budget


class BudgetLimits(Model):
    """Limits per period; at least one."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.money) || has(self.kgCO2e) || has(self.kWh)",
                    "set at least one limit: money, kgCO2e or kWh",
                )
            ]
        }
    )

    money: float | None = pydantic.Field(
        None,
        gt=0,
        le=1e12,
        description="In spec.currency, above 0 and at most 1e12: a trillion is past any "
        "namespace's spend, even in the weakest currencies.",
    )
    kg_co2e: float | None = pydantic.Field(
        None,
        gt=0,
        le=1e9,
        alias="kgCO2e",
        description="kgCO2e, above 0 and at most 1e9 (a million tonnes: more than a 100 MW "
        "campus on coal emits in a year).",
    )
    kwh: float | None = pydantic.Field(
        None,
        gt=0,
        le=1e10,
        alias="kWh",
        description="Facility kWh, above 0 and at most 1e10 (10 TWh: more than a 1 GW campus "
        "draws in a year).",
    )


class BudgetSpec(Model):
    """What a namespace may spend per period in money, kgCO2e and kWh, and what happens after."""

    period: Literal["Day", "Week", "Month", "Quarter"] = pydantic.Field(
        description="Calendar period in UTC; spending starts from zero at each period's start."
    )
    currency: Currency = "EUR"
    limits: BudgetLimits
    alert_thresholds: list[Annotated[float, pydantic.Field(gt=0, le=1)]] = pydantic.Field(
        default_factory=list,
        max_length=8,
        description="Fractions of a limit that, once spent in a period, raise the "
        "ThresholdReached condition and one Warning Event (BudgetThresholdReached) per "
        "threshold and period, e.g. [0.5, 0.8, 1]: each above 0 and at most 1, at most 8; "
        "none by default.",
    )
    action: Literal["Defer", "Reject", "Downgrade"] = pydantic.Field(
        "Defer",
        description="When a placement would exceed a limit: Defer (wait for the next period), "
        "Reject, or Downgrade (cheaper pools that still fit).",
    )


class BudgetAmounts(Model):
    """Money, kgCO2e and kWh."""

    money: float | None = None
    kg_co2e: float | None = pydantic.Field(None, alias="kgCO2e")
    kwh: float | None = pydantic.Field(None, alias="kWh")


# Pools x UTC months a Budget period spans (a quarter: three): 341 pools a quarter, bounded
# for etcd (about 150 kB at most).
_BUDGET_BILLING_ROWS = 1024


class BudgetCharge(Model):
    """What the placements of this period in one pool and UTC month were charged, at the
    pool's price (spec.price): what a reconciled bill corrects (docs/finops.md)."""

    pool: str = pydantic.Field(max_length=253)
    month: Timestamp = pydantic.Field(description="Start of the UTC month of the placements.")
    gpu_hours: float = pydantic.Field(description="GPUs x expected hours of those placements.")
    money: float = pydantic.Field(description="Charged at the pool's price per GPU-hour.")


class BudgetBilled(Model):
    """One pool and billing period reconciled: the charges of that pool and month repriced at
    the period's effective price per GPU-hour (greenplace operate --focus-export)."""

    pool: str = pydantic.Field(max_length=253)
    period_start: Timestamp = pydantic.Field(description="BillingPeriodStart of the period.")
    period_end: Timestamp = pydantic.Field(description="BillingPeriodEnd, excluded.")
    currency: str = pydantic.Field(max_length=3, description="The export's BillingCurrency.")
    gpu_hours: float = pydantic.Field(description="GPU-hours this Budget was charged there.")
    charged: float = pydantic.Field(description="What they were charged at the pool's price.")
    effective_per_gpu_hour: float = pydantic.Field(
        description="The period's effective price: the pool's EffectiveCost over its GPU-hours."
    )
    billed: float = pydantic.Field(description="gpuHours x effectivePerGpuHour.")
    correction: float = pydantic.Field(description="billed - charged, included in spent.money.")
    fingerprint: str = pydantic.Field(
        max_length=64, description="Of the period's rows: a re-issued export changes it."
    )


class BudgetPreviousPeriod(Model):
    """The period before this one, kept so that a bill that arrives after it ended still
    corrects it (docs/finops.md): its charges, the reconciled ones and the corrected money."""

    period_start: Timestamp = pydantic.Field(description="Start of the ended period.")
    period_end: Timestamp = pydantic.Field(description="Its end, excluded: this periodStart.")
    money: float = pydantic.Field(
        description="Spent in it, at the pools' prices corrected to the bill where reconciled."
    )
    charges: list[BudgetCharge] | None = pydantic.Field(
        None, max_length=_BUDGET_BILLING_ROWS, description="Its charges at the pools' prices."
    )
    billed: list[BudgetBilled] | None = pydantic.Field(
        None,
        max_length=_BUDGET_BILLING_ROWS,
        description="Its charges whose billing period is reconciled, at its effective price.",
    )
    correction: float | None = pydantic.Field(None, description="The sum of billed[].correction.")


class BudgetStatus(Model):
    observed_generation: int | None = None
    period_start: Timestamp | None = None
    period_end: Timestamp | None = None
    spent: BudgetAmounts | None = pydantic.Field(
        None,
        description="Charged by the operator for the placements it made this period, as the "
        "planner projected them (see docs/operator.md), money corrected to the bill where a "
        "billing period is reconciled (billed, correction); kept by the operator.",
    )
    charged_through: MicroTimestamp | None = pydantic.Field(
        None, description="Time of the newest placement included in spent."
    )
    charges: list[BudgetCharge] | None = pydantic.Field(
        None,
        max_length=_BUDGET_BILLING_ROWS,
        description="This period's charges per pool and month, at the pools' prices.",
    )
    billed: list[BudgetBilled] | None = pydantic.Field(
        None,
        max_length=_BUDGET_BILLING_ROWS,
        description="The charges whose billing period is reconciled, at its effective price.",
    )
    correction: float | None = pydantic.Field(
        None,
        description="The sum of billed[].correction: spent.money minus this is what the "
        "placements were charged at the pools' prices.",
    )
    forecast_at_period_end: BudgetAmounts | None = pydantic.Field(
        None, description="Linear burn to the period end."
    )
    remaining: BudgetAmounts | None = None
    alerted_thresholds: list[float] | None = pydantic.Field(
        None,
        max_length=8,
        description="The spec.alertThresholds crossed in the period starting at periodStart, "
        "each announced by one Warning Event (BudgetThresholdReached); a new period starts "
        "the list again.",
    )
    previous_period: BudgetPreviousPeriod | None = pydantic.Field(
        None,
        description="The period before periodStart, corrected by bills that arrive after it "
        "ended; the planner sees this period's spent only.",
    )
    conditions: list[Condition] = _status_conditions()


# ---------------------------------------------------------------- EnergyReport


_GRADE_MESSAGE = "four increasing positive bounds (A, B, C, D)"
_GRADE_BOUNDS: dict[str, pydantic.JsonValue] = {
    "x-kubernetes-validations": [
        cel(
            "size(self) != 4 || (self[0] > 0.0 && self[0] < self[1] && self[1] < self[2] "
            "&& self[2] < self[3])",
            _GRADE_MESSAGE,
        )
    ]
}


def _increasing(bounds: Sequence[float]) -> Sequence[float]:
    """The CEL rule above, in Python (the report would otherwise fail on every cycle)."""
    if not (bounds and bounds[0] > 0 and all(a < b for a, b in itertools.pairwise(bounds))):
        raise ValueError(_GRADE_MESSAGE)
    return bounds


# A grade bound above 0 and at most 1e6 (a megawatt-hour, or a tonne, per request: no model).
GradeBound = Annotated[float, pydantic.Field(gt=0, le=1e6)]
GradeBounds = Annotated[list[GradeBound], pydantic.AfterValidator(_increasing)]


class Grading(Model):
    """Upper bounds of grades A, B, C and D (above D is E)."""

    energy_wh_per_request: GradeBounds | None = pydantic.Field(
        None,
        min_length=4,
        max_length=4,
        description="GPU Wh per request (default 0.03, 0.1, 0.3, 1.0); each above 0 and at "
        "most 1e6 (a megawatt-hour per request is no model).",
        json_schema_extra=_GRADE_BOUNDS,
    )
    carbon_gco2e_per_request: GradeBounds | None = pydantic.Field(
        None,
        min_length=4,
        max_length=4,
        alias="carbonGCO2ePerRequest",
        description="gCO2e per request (default 0.003, 0.01, 0.03, 0.1); each above 0 and at "
        "most 1e6 (a tonne per request is no model).",
        json_schema_extra=_GRADE_BOUNDS,
    )


class PrometheusServer(Model):
    url: Url = pydantic.Field(
        description="Prometheus base URL, e.g. http://prometheus.monitoring:9090; at most 2048 "
        "characters (what proxies and browsers accept). The operator reaches only what its "
        "chart values signals.allowHosts and signals.allowInsecureHttp allow (https to public "
        "addresses by default)."
    )


EPOCH = "1970-01-01T00:00:00Z"
_WINDOW_END_MESSAGE = f"must be on or after {EPOCH}: Prometheus holds nothing older"


def _after_epoch(at: datetime.datetime) -> datetime.datetime:
    """The CEL rule of ``WindowEnd`` in Python (year 1 minus the window overflowed)."""
    aware = at if at.tzinfo else at.replace(tzinfo=datetime.UTC)
    if aware < datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC):
        raise ValueError(_WINDOW_END_MESSAGE)
    return at


WindowEnd = Annotated[
    datetime.datetime,
    pydantic.AfterValidator(_after_epoch),
    pydantic.Field(
        json_schema_extra={
            "x-kubernetes-validations": [cel(f"self >= timestamp('{EPOCH}')", _WINDOW_END_MESSAGE)]
        }
    ),
]


class EnergyReportSpec(Model):
    """Energy, carbon and cost per request and per model, over a window, from Prometheus."""

    window: Window = pydantic.Field(
        "1h",
        description="Length of the accounting window, 1m to 8784h (366 days): 1m holds two "
        "scrapes at the usual 30s interval, and a leap year is the longest accounting period.",
    )
    window_end: WindowEnd | None = pydantic.Field(
        None,
        description="Report this fixed window instead of the one ending now. From "
        f"{EPOCH}: Prometheus holds nothing older.",
    )
    prometheus: PrometheusServer | None = pydantic.Field(
        None, description="Where DCGM and serving metrics are (default: --prometheus-url)."
    )
    serving: Literal["vLLM", "TGI", "Triton"] = pydantic.Field(
        "vLLM", description="Which serving stack's request and token counters to read."
    )
    mig_slices_total: int = pydantic.Field(
        7,
        ge=1,
        le=8,
        description="Compute slices of a MIG-capable GPU (7 on A100/H100), 1 to 8: no GPU "
        "splits into more.",
    )
    grading: Grading | None = pydantic.Field(
        None,
        description="Upper bounds of grades A, B, C and D, above D is E (absent: the defaults "
        "of each list).",
    )
    scope: Literal["Namespace", "Cluster"] = pydantic.Field(
        "Namespace",
        description=(
            "Which pods the report covers. Namespace (default): only the pods of the report's "
            "own namespace; a GPU shared with other namespaces is split between all its pods "
            "but only this namespace's share is shown, and unattributedGpuWh holds only the "
            "energy of its own pods that served nothing. Cluster: every pod of every "
            "namespace, with the idle and free-slice energy per pool; honoured only for a "
            "report in the operator's own namespace (anywhere when the operator does not know "
            "its namespace, e.g. run out of cluster), elsewhere the report is refused with "
            "Ready False, reason ClusterScopeNotAllowed."
        ),
    )


class ReportRowStatus(Model):
    """One model on one pool over the window."""

    model: str = pydantic.Field(max_length=253)
    pool: str = pydantic.Field(max_length=253)
    grid_zone: str = pydantic.Field(max_length=253)
    requests: float
    tokens: float
    gpu_wh: float
    facility_wh: float
    gpu_hours: float
    g_co2e: float | None = pydantic.Field(None, alias="gCO2e")
    cost: float
    currency: str = pydantic.Field(max_length=3)
    g_co2_per_kwh: float | None = pydantic.Field(None, alias="gCO2PerKWh")
    gpu_wh_per_request: float | None = None
    g_co2e_per_request: float | None = pydantic.Field(None, alias="gCO2ePerRequest")
    cost_per_request: float | None = None
    cost_per_1k_tokens: float | None = pydantic.Field(None, alias="costPer1kTokens")
    energy_grade: str | None = pydantic.Field(None, max_length=1)
    carbon_grade: str | None = pydantic.Field(None, max_length=1)
    attribution: list[str] = pydantic.Field(default_factory=list)
    billed_cost: float | None = pydantic.Field(
        None,
        description="On the billed basis: gpuHours x the effective price per GPU-hour of the "
        "reconciled billing period covering the window, in cents (none: no such period).",
    )
    billed_cost_per_request: float | None = None
    billed_cost_per_1k_tokens: float | None = pydantic.Field(None, alias="billedCostPer1kTokens")


class ReportPoolCost(Model):
    """One pool's GPU-hours over the window priced, in cents: allocated (the rows) + idle (no
    model used them) = total, at the pool's price and, once reconciled, on the billed basis."""

    pool: str = pydantic.Field(max_length=253)
    currency: str = pydantic.Field(max_length=3)
    gpu_hours: float = pydantic.Field(description="Measured: the rows' and the idle ones.")
    idle_gpu_hours: float
    per_gpu_hour: float = pydantic.Field(description="The pool's spec.price.onDemandPerGpuHour.")
    total: float
    allocated: float
    idle: float
    billed_period_start: Timestamp | None = None
    billed_period_end: Timestamp | None = None
    effective_per_gpu_hour: float | None = None
    billed_total: float | None = None
    billed_allocated: float | None = None
    billed_idle: float | None = None


class EnergyReportStatus(Model):
    observed_generation: int | None = None
    window_start: Timestamp | None = None
    window_end: Timestamp | None = None
    energy_source: str | None = pydantic.Field(None, max_length=64)
    intensity_sources: dict[str, str] = pydantic.Field(default_factory=dict)
    # None for the map or a pool: delete it (the body is a merge patch).
    unattributed_gpu_wh: dict[str, float | None] | None = pydantic.Field(default_factory=dict)
    rows: list[ReportRowStatus] = pydantic.Field(default_factory=list)
    costs: list[ReportPoolCost] = pydantic.Field(
        default_factory=list, description="Per pool: allocated + idle = total, on both bases."
    )
    notes: list[str] = pydantic.Field(default_factory=list)
    conditions: list[Condition] = _status_conditions()


# ---------------------------------------------------------------- BillingExport

# How often an export is listed again: 10 s lists a bucket (one small LIST or a stat per file)
# often enough for a test or a demo, and the objects are read again only when their size or
# version changed; a day is the slowest any provider re-issues its exports.
INTERVAL_RANGE = ("10s", "24h")
Interval = Annotated[Duration, _duration_schema(*INTERVAL_RANGE), _duration_check(*INTERVAL_RANGE)]
# Objects one export may list: a provider writes one file per day or per month.
MAX_EXPORT_OBJECTS = 1024
# Billing periods a BillingExport's status shows (the newest): months, so 85 years.
MAX_EXPORT_PERIODS = 1024
_ONE_EXPORT_SOURCE = "spec: set exactly one of file or s3 (where the FOCUS export is)"
_ONE_S3_SELECTION = "spec.s3: set exactly one of prefix or keys (which objects are the export)"
_ABSOLUTE_PATH = r"^/[^\x00]*$"


MAX_EXPORT_FILES = 64  # files one BillingExport (or every --focus-export together) names


class BillingFiles(Model):
    """FOCUS files on a volume mounted into the operator (the chart's finops.exports)."""

    paths: list[Annotated[str, pydantic.Field(max_length=4096, pattern=_ABSOLUTE_PATH)]] = (
        pydantic.Field(
            min_length=1,
            max_length=MAX_EXPORT_FILES,
            description="Absolute paths in the operator's container (.csv, .csv.gz, .parquet); "
            f"1 to {MAX_EXPORT_FILES}, each at most 4096 characters (PATH_MAX).",
            json_schema_extra={"x-kubernetes-list-type": "set"},
        )
    )


class S3CredentialsRef(Model):
    """The Secret, in the operator's namespace, holding the access key (the chart lets the
    operator read only the Secrets it lists: finops.exportCredentials.secrets)."""

    name: Name = pydantic.Field(description=f"Secret name. {_NAME_BOUND}")
    access_key_id_key: str = pydantic.Field(
        "accessKeyId", min_length=1, max_length=253, description="Key of the access key id."
    )
    secret_access_key_key: str = pydantic.Field(
        "secretAccessKey",
        min_length=1,
        max_length=253,
        description="Key of the secret access key.",
    )


class S3Export(Model):
    """FOCUS objects in an S3-compatible object store (AWS S3, MinIO, Ceph, OVH, Scaleway...)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("has(self.prefix) != has(self.keys)", _ONE_S3_SELECTION)
            ]
        }
    )

    @pydantic.model_validator(mode="after")
    def _one_selection(self) -> S3Export:
        """The CEL rule above, in Python."""
        if (self.prefix is None) == (self.keys is None):
            raise ValueError(_ONE_S3_SELECTION)
        return self

    endpoint: Url | None = pydantic.Field(
        None,
        description="The store's URL, e.g. https://s3.gra.io.cloud.ovh.net (default: AWS S3 of "
        "spec.s3.region); http only for a store the operator reaches on its own network.",
    )
    bucket: str = pydantic.Field(
        min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$",
        description="Bucket name, 3 to 63 characters (the S3 naming rules).",
    )  # fmt: skip
    prefix: str | None = pydantic.Field(
        None,
        max_length=1024,
        description="Every object under this folder of the bucket (keys starting with it and a "
        "slash, e.g. focus/2026 for focus/2026/12.csv) is the export, at "
        f"most {MAX_EXPORT_OBJECTS} objects; at most 1024 characters (the S3 key limit).",
    )
    keys: list[Annotated[str, pydantic.Field(min_length=1, max_length=1024)]] | None = (
        pydantic.Field(
            None,
            min_length=1,
            max_length=64,
            description="These object keys are the export; 1 to 64, each at most 1024 characters.",
            json_schema_extra={"x-kubernetes-list-type": "set"},
        )
    )
    region: str = pydantic.Field(
        "us-east-1",
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9-]+$",
        description="The bucket's region (signs the requests).",
    )
    credentials_secret_ref: S3CredentialsRef = pydantic.Field(
        description="The access key, read from a Secret in the operator's namespace."
    )


class BillingExportSpec(Model):
    """Where a FOCUS billing export is and how often it is read (docs/finops.md)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [cel("has(self.file) != has(self.s3)", _ONE_EXPORT_SOURCE)]
        }
    )

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> BillingExportSpec:
        """The CEL rule above, in Python."""
        if (self.file is None) == (self.s3 is None):
            raise ValueError(_ONE_EXPORT_SOURCE)
        return self

    format: Literal["Auto", "CSV", "Parquet"] = pydantic.Field(
        "Auto",
        description="How the objects are read: Auto by name (.parquet is Parquet, anything "
        "else CSV, .gz compressed), or CSV or Parquet whatever their names.",
    )
    interval: Interval = pydantic.Field(
        "1h",
        description="How often the export is listed again, 10s to 24h; an object is read again "
        "only when its size or version changed.",
    )
    file: BillingFiles | None = None
    s3: S3Export | None = None


class ExportObjectStatus(Model):
    """One file or object of the export as last read."""

    name: str = pydantic.Field(max_length=4096, description="Path, or s3://bucket/key.")
    size: int = pydantic.Field(ge=0, description="Bytes.")
    version: str | None = pydantic.Field(
        None, max_length=64, description="Its modification time, as the source gave it."
    )


class ExportPeriodStatus(Model):
    """One billing period the export holds."""

    period_start: Timestamp
    period_end: Timestamp
    fingerprint: str = pydantic.Field(
        max_length=64, description="Of the period's rows, as in the Budgets' status.billed."
    )


class BillingExportStatus(Model):
    observed_generation: int | None = None
    last_read_time: Timestamp | None = pydantic.Field(
        None, description="When the export was last listed and read."
    )
    next_read_time: Timestamp | None = pydantic.Field(None, description="When it is listed again.")
    objects: list[ExportObjectStatus] | None = pydantic.Field(
        None, max_length=MAX_EXPORT_OBJECTS, description="What the counted contents were read from."
    )
    rows: int | None = pydantic.Field(None, description="Distinct charges counted.")
    periods: list[ExportPeriodStatus] | None = pydantic.Field(
        None, max_length=MAX_EXPORT_PERIODS, description="The newest billing periods it holds."
    )
    conditions: list[Condition] = _status_conditions()
