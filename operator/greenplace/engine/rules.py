"""The hard rules a pool must pass for a set of policies, each with its reason code and message.

Why this module exists: sovereignty and carbon ceilings are the part of greenplace a compliance
officer audits, so they live apart from the optimisation, one small function per rule, each
returning a ``Rejection`` that says what was excluded, by which policy, why, and how to fix it.
Rules fail closed: a fact the rule needs that the pool does not state excludes the pool.

The planner evaluates these once per planning round for each distinct set of governing policies
(not once per workload), which is what keeps a 10,000-workload round fast. Certificate dates are
checked by one function, ``model.validity_covers``, for one certificate and for the joint
window of several (``CertificateWindow``).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Sequence

from greenplace.domain import model

__all__ = [
    "CertificateWindow",
    "ceiling_violation",
    "certificate_window",
    "residency_violation",
    "sovereignty_violation",
]

R = model.Reason


def sovereignty_violation(
    pool: model.Pool,
    policies: Iterable[model.Policy],
    residency: frozenset[str] | None,
) -> model.Rejection | None:
    """The first location, regime, jurisdiction or residency rule ``pool`` breaks.

    Certifications are checked with their dates by ``certificate_window``.
    """
    for policy in policies:
        rejection = (
            _country(pool, policy) or _regime(pool, policy) or _extraterritorial(pool, policy)
        )
        if rejection is not None:
            return rejection
    if residency is not None:
        return residency_violation(pool, residency)
    return None


def ceiling_violation(
    pool: model.Pool, policies: Iterable[model.Policy], gco2_per_kwh: float | None
) -> model.Rejection | None:
    """The first carbon ceiling that grid intensity ``gco2_per_kwh`` (before PUE) breaks.

    An unknown intensity breaks the ceiling of a policy that holds on a missing signal (the
    default, fail-closed); a policy with ``on_missing_carbon="CostOnly"`` lets it through.
    """
    for policy in policies:
        ceiling = policy.max_gco2_per_kwh
        if ceiling is None:
            continue
        if gco2_per_kwh is None:
            if policy.on_missing_carbon == "CostOnly":
                continue
            return _reject(
                pool,
                R.CARBON_UNKNOWN,
                policy,
                f"carbon intensity of grid zone {pool.location.grid_zone} unknown, ceiling "
                f"{ceiling:g} gCO2e/kWh",
                "wait for the signal source or set a fallback intensity on the GpuPool",
            )
        effective = gco2_per_kwh * pool.pue
        if effective > ceiling:
            return _reject(
                pool,
                R.CARBON_ABOVE_CEILING,
                policy,
                f"{effective:.0f} gCO2e/kWh above ceiling {ceiling:g}",
                "wait for a cleaner grid, or raise spec.carbon.maxGramsPerKwh",
            )
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateWindow:
    """When every certification the policies require is valid in one pool (None: no rule)."""

    valid_from: datetime.datetime | None
    valid_until: datetime.datetime | None
    names: str  # the certifications, for messages

    def covers(self, start: datetime.datetime, end: datetime.datetime) -> bool:
        return model.validity_covers(self.valid_from, self.valid_until, start, end)

    def intersect(self, other: CertificateWindow) -> CertificateWindow:
        """When the certifications of both windows are valid together."""
        starts = [t for t in (self.valid_from, other.valid_from) if t is not None]
        ends = [t for t in (self.valid_until, other.valid_until) if t is not None]
        names = ", ".join(n for n in (self.names, other.names) if n)
        return CertificateWindow(max(starts, default=None), min(ends, default=None), names)


def certificate_window(
    pool: model.Pool, policies: Iterable[model.Policy], now: datetime.datetime
) -> model.Rejection | CertificateWindow:
    """A rejection if a required certification is missing, too low or not valid ``now``;
    otherwise the window in which all of them are valid (checked per workload, per run)."""
    valid_from: datetime.datetime | None = None
    valid_until: datetime.datetime | None = None
    names = []
    for policy in policies:
        for requirement in policy.required_certifications:
            held = [c for c in pool.certifications if c.name == requirement.name]
            if not held:
                return _reject(
                    pool,
                    R.CERTIFICATION_MISSING,
                    policy,
                    f"certification {requirement.name} missing",
                    f"choose a pool certified {requirement.name}, or declare it on the GpuPool",
                )
            counted = [c for c in held if _counts(c, requirement)]
            if not counted:
                return _reject(pool, R.CERTIFICATION_UNVERIFIED, policy, *_unverified(held))
            minimum = model.level_rank(requirement.min_level)
            high_enough = [c for c in counted if _meets(c.level, minimum)]
            if not high_enough:
                levels = ", ".join(sorted(c.level or "none" for c in held))
                return _reject(
                    pool,
                    R.CERTIFICATION_LEVEL_TOO_LOW,
                    policy,
                    f"certification {requirement.name} level {levels} below "
                    f"{requirement.min_level}",
                    "choose a pool certified at the required level",
                )
            current = [c for c in high_enough if c.valid_over(now, now)]
            if not current:
                until = max(c.valid_until for c in high_enough)
                return _reject(
                    pool,
                    R.CERTIFICATION_NOT_VALID,
                    policy,
                    f"certification {requirement.name} not valid on {now:%Y-%m-%d} "
                    f"(valid until {until:%Y-%m-%d})",
                    "renew the certification, or update its dates on the GpuPool",
                )
            best = max(current, key=lambda c: c.valid_until)
            names.append(requirement.name)
            if valid_until is None or best.valid_until < valid_until:
                valid_until = best.valid_until
            if best.valid_from is not None and (valid_from is None or best.valid_from > valid_from):
                valid_from = best.valid_from
    return CertificateWindow(valid_from, valid_until, ", ".join(names))


def _counts(held: model.Certification, requirement: model.CertificationRequirement) -> bool:
    """A certification whose credential failed never counts; one declared without a credential
    counts unless the requirement asks for a verified one."""
    return held.unverified is None and (held.verified or not requirement.verified)


def _unverified(held: Sequence[model.Certification]) -> tuple[str, str]:
    """The message and the fix when none of ``held`` counts (``_counts``)."""
    problems = sorted({c.unverified for c in held if c.unverified is not None})
    name = held[0].name
    if problems:
        return (
            f"certification {name} unverified: {'; '.join(problems)}",
            "fix the credential referenced in the GpuPool's spec.certifications[].credential",
        )
    return (
        f"certification {name} declared without a credential, and the policy requires a "
        "verified one",
        "reference a credential signed by a trusted issuer in the GpuPool's "
        "spec.certifications[].credential (docs/credentials.md)",
    )


def _meets(level: str, minimum: tuple[int, ...] | None) -> bool:
    rank = model.level_rank(level)
    return minimum is not None and rank is not None and rank >= minimum


def _country(pool: model.Pool, policy: model.Policy) -> model.Rejection | None:
    countries = policy.allowed_countries
    if countries is None:
        return None
    country = pool.location.country
    if not country:
        return _unknown_location(pool, policy)
    if country not in countries:
        return _reject(
            pool,
            R.COUNTRY_NOT_ALLOWED,
            policy,
            f"country {country} not in allowed {', '.join(sorted(countries))}",
            "choose a pool in an allowed country",
        )
    return None


def _regime(pool: model.Pool, policy: model.Policy) -> model.Rejection | None:
    regimes = policy.allowed_regimes
    if regimes is None:
        return None
    if not pool.location.country:
        return _unknown_location(pool, policy)
    if pool.jurisdiction is None:
        return _unknown_jurisdiction(pool, policy, f"allowed regimes {', '.join(sorted(regimes))}")
    members = frozenset().union(*(model.REGIMES.get(r, frozenset()) for r in regimes))
    for what, country in (
        ("located in", pool.location.country),
        ("provider legal home", pool.jurisdiction.legal_home),
    ):
        if country not in members:
            return _reject(
                pool,
                R.REGIME_NOT_ALLOWED,
                policy,
                f"{what} {country}, outside {', '.join(sorted(regimes))}",
                "choose a pool run by a provider established in an allowed regime",
            )
    return None


def _extraterritorial(pool: model.Pool, policy: model.Policy) -> model.Rejection | None:
    if not policy.forbid_extraterritorial:
        return None
    if pool.jurisdiction is None:
        return _unknown_jurisdiction(pool, policy, "no extraterritorial exposure allowed")
    exposures = pool.jurisdiction.all_exposures
    if exposures:
        derived = pool.jurisdiction.derived_exposures - pool.jurisdiction.exposures
        why = (
            f" ({', '.join(sorted(derived))} from legal home {pool.jurisdiction.legal_home})"
            if derived
            else ""
        )
        return _reject(
            pool,
            R.EXTRATERRITORIAL_EXPOSURE,
            policy,
            f"provider exposed to {', '.join(sorted(exposures))}{why}",
            "choose a provider not subject to non-local law",
        )
    return None


def residency_violation(pool: model.Pool, residency: frozenset[str]) -> model.Rejection | None:
    """Why ``pool`` is outside a workload's data residency (countries or regimes), if it is."""
    country = pool.location.country
    allowed = set(residency)
    for regime in residency & model.REGIMES.keys():
        allowed |= model.REGIMES[regime]
    if country and country in allowed:
        return None
    where = f"country {country}" if country else "location unknown"
    return model.Rejection(
        pool.name,
        R.RESIDENCY_NOT_MET,
        f"excluded by label {model.DATA_RESIDENCY_LABEL}={'_'.join(sorted(residency))} "
        f"({where} outside data residency); fix: choose a pool in {', '.join(sorted(residency))}",
    )


def _unknown_location(pool: model.Pool, policy: model.Policy) -> model.Rejection:
    return _reject(
        pool,
        R.LOCATION_UNKNOWN,
        policy,
        "pool country unknown",
        "set spec.location.country on the GpuPool",
    )


def _unknown_jurisdiction(pool: model.Pool, policy: model.Policy, rule: str) -> model.Rejection:
    return _reject(
        pool,
        R.JURISDICTION_UNKNOWN,
        policy,
        f"provider jurisdiction unknown, {rule}",
        "set spec.jurisdiction (legalHome, exposures) on the GpuPool",
    )


def _reject(
    pool: model.Pool, reason: model.Reason, policy: model.Policy, why: str, fix: str
) -> model.Rejection:
    return model.Rejection(
        pool.name, reason, f"excluded by PlacementPolicy {policy.key} ({why}); fix: {fix}"
    )
