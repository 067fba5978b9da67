"""Pydantic models of greenplace's custom resources: the single source of truth of the API.

Why this module exists: the same shapes must be enforced in three places — the API server
(OpenAPI schema and CEL rules, so bad input is refused at ``kubectl apply``), the operator
(which parses what it watches) and the docs. The CRD manifests in ``crds/`` are generated from
these models by ``greenplace.api.crdgen``; a test fails if they drift.

Conventions: Python names are snake_case and the wire names camelCase (an alias generator);
``x-kubernetes-validations`` (CEL) travel in ``json_schema_extra`` and always carry a message that
says what to fix. Every field has a description (it is what ``kubectl explain`` prints).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

import pydantic
from pydantic import alias_generators

from greenplace.domain import countries

__all__ = [
    "GROUP",
    "VERSION",
    "Condition",
    "GpuPoolSpec",
    "GpuPoolStatus",
    "PlacementPolicySpec",
    "PlacementPolicyStatus",
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

    provider: Name = pydantic.Field(description="Cloud or hosting provider, e.g. ovhcloud.")
    region: Name = pydantic.Field(description="Provider region, e.g. europe-west9.")
    zone: str = pydantic.Field("", max_length=253, description="Provider zone, if any.")
    country: Country = pydantic.Field(description="Country of the data centre (ISO alpha-2).")
    grid_zone: Name = pydantic.Field(
        description="Electricity grid zone for carbon signals (Electricity Maps zone key), e.g. FR."
    )


class Jurisdiction(Model):
    """The provider's legal home and the foreign laws that can reach its data."""

    legal_home: Country = pydantic.Field(description="Country whose law governs the provider.")
    exposures: list[Name] = pydantic.Field(
        default_factory=list,
        max_length=32,
        description="Extraterritorial laws the provider is subject to, e.g. US-CLOUD-Act.",
    )


class Certification(Model):
    """A certification the pool holds, valid until ``expires``."""

    name: Name = pydantic.Field(description="Certification name, e.g. SecNumCloud, HDS, C5.")
    level: str | None = pydantic.Field(
        None, max_length=64, description="Level or version, e.g. 3.2 or high."
    )
    expires: datetime.date = pydantic.Field(description="Last day of validity (YYYY-MM-DD).")


class Gpu(Model):
    """The pool's GPU model and its power envelope (used by the energy model)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("self.idleWatts <= self.tdpWatts", "idleWatts must not exceed tdpWatts")
            ]
        }
    )

    model: Name = pydantic.Field(description="GPU model, e.g. H100-80GB.")
    tdp_watts: float = pydantic.Field(gt=0, le=5000, description="Board power at full load (W).")
    idle_watts: float = pydantic.Field(0, ge=0, le=5000, description="Board power when idle (W).")


class Price(Model):
    """What one GPU-hour costs in this pool."""

    currency: str = pydantic.Field(
        pattern=r"^[A-Z]{3}$", max_length=3, description="ISO 4217 currency code, e.g. EUR."
    )
    on_demand_per_gpu_hour: float = pydantic.Field(ge=0, description="On-demand price.")
    spot_per_gpu_hour: float | None = pydantic.Field(None, ge=0, description="Spot price.")


class CarbonIntensity(Model):
    """Grid carbon intensity to assume when no signal source answers."""

    fallback_grams_per_kwh: float = pydantic.Field(
        ge=0, le=2000, description="gCO2e per kWh drawn from the grid (before PUE)."
    )


class GpuPoolSpec(Model):
    """A set of GPU nodes sharing location, jurisdiction, hardware and price."""

    node_selector: dict[str, str] = pydantic.Field(
        min_length=1,
        description="Node labels that select this pool's nodes; pods are narrowed to them.",
    )
    location: Location
    jurisdiction: Jurisdiction | None = pydantic.Field(
        None, description="Legal facts; a pool without them fails every jurisdiction rule."
    )
    certifications: list[Certification] = pydantic.Field(default_factory=list, max_length=32)
    gpu: Gpu
    price: Price
    pue: float = pydantic.Field(
        1.0, ge=1.0, le=3.0, description="Power usage effectiveness of the data centre."
    )
    embodied_grams_per_gpu_hour: float = pydantic.Field(
        0, ge=0, description="Embodied (manufacturing) emissions amortised per GPU-hour."
    )
    carbon_intensity: CarbonIntensity | None = pydantic.Field(
        None, description="Fallback grid intensity when no SignalSource answers."
    )


class Condition(Model):
    """A standard Kubernetes condition."""

    type: Name
    status: Literal["True", "False", "Unknown"]
    reason: str = pydantic.Field(max_length=1024)
    message: str = pydantic.Field("", max_length=32768)
    last_transition_time: datetime.datetime
    observed_generation: int | None = None


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
    conditions: list[Condition] = pydantic.Field(default_factory=list)


# ---------------------------------------------------------------- PlacementPolicy


class LabelSelector(Model):
    """Which pods of the namespace the policy governs (empty: all GPU pods)."""

    match_labels: dict[str, str] = pydantic.Field(
        default_factory=dict, description="Labels a pod must carry, all of them."
    )


class CertificationRequirement(Model):
    """A certification every pool must hold, valid on the day of placement and for the run."""

    name: Name = pydantic.Field(description="Certification name, e.g. SecNumCloud.")
    min_level: str = pydantic.Field(
        "", max_length=64, description="Lowest acceptable level: a version (3.2) or an EUCS level."
    )


class Sovereignty(Model):
    """Hard rules: a pool that breaks one is never used; a pool missing a fact a rule needs
    (its jurisdiction, a certification date) fails that rule."""

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
        description="Countries whose pools may run the pods (ISO alpha-2).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    allowed_regimes: list[Literal["EU", "EEA"]] | None = pydantic.Field(
        None,
        min_length=1,
        description="Legal regimes that both the pool's country and its provider's legal home "
        "must belong to.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    forbid_extraterritorial_exposure: bool = pydantic.Field(
        False,
        description="Refuse providers exposed to any extraterritorial law (e.g. US CLOUD Act), "
        "as SecNumCloud requires.",
    )
    required_certifications: list[CertificationRequirement] | None = pydantic.Field(
        None, min_length=1, max_length=16
    )


class Carbon(Model):
    """Carbon rules on the grid intensity (PUE included) of the pool's zone."""

    max_grams_per_kwh: float = pydantic.Field(
        ge=0, le=2000, description="Ceiling on effective intensity, gCO2e/kWh."
    )


class Objective(Model):
    """How compliant pools are ranked: cost plus carbon priced at an internal carbon price."""

    carbon_price_per_tonne: float = pydantic.Field(
        ge=0,
        le=1_000_000,
        description="Internal carbon price in the pool's currency per tCO2e. Without an "
        "objective, greenplace ranks carbon first (lowest gCO2e) and uses price to break ties.",
    )


class PlacementPolicySpec(Model):
    """How the selected pods of this namespace may be placed."""

    pod_selector: LabelSelector = pydantic.Field(default_factory=LabelSelector)
    sovereignty: Sovereignty | None = None
    carbon: Carbon | None = None
    objective: Objective | None = None


class PlacementPolicyStatus(Model):
    observed_generation: int | None = None
    allowed_pools: list[Name] | None = pydantic.Field(
        None,
        description="GpuPools passing this policy's hard sovereignty rules now; the admission "
        "policy only lets a pod out of its gate towards these.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    placed: int | None = pydantic.Field(None, description="Pods placed under this policy.")
    held: int | None = pydantic.Field(None, description="Pods waiting under this policy.")
    conditions: list[Condition] = pydantic.Field(default_factory=list)
