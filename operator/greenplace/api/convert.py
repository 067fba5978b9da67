"""Turn custom resources into the planner's domain values.

Why this module exists: the operator, the simulator and ``greenplace explain`` all read the same
``GpuPool`` and ``PlacementPolicy`` objects; converting them in one place means a field added to
the API reaches the planner the same way everywhere. Observed facts (free GPUs, the current
carbon intensity) are arguments, because they come from the cluster or a signal, not the spec.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
from collections.abc import Iterable, Mapping

from greenplace.api import models, timestamps
from greenplace.audit import credentials
from greenplace.domain import model

__all__ = [
    "CARBON_FIRST_PRICE_PER_TONNE",
    "DEADLINE_ANNOTATION",
    "DEFAULT_EXPECTED_HOURS",
    "DURATION_ANNOTATION",
    "MAX_DELAY_ANNOTATION",
    "MAX_EXPECTED_HOURS",
    "Timing",
    "budget_to_domain",
    "certification_to_domain",
    "duration",
    "period_bounds",
    "policy_to_domain",
    "pool_to_domain",
    "timing",
]

# Without an objective a policy ranks carbon first: a carbon price this high (1,000 per kg)
# makes any realistic difference in gCO2e outweigh any difference in price per GPU-hour.
CARBON_FIRST_PRICE_PER_TONNE = 1_000_000.0


def pool_to_domain(
    name: str,
    spec: models.GpuPoolSpec,
    *,
    gpus_total: int,
    gpus_free: int,
    gpus_per_node: int | None = None,
    gco2_per_kwh: float | None = None,
    checked: Mapping[int, credentials.Verified | credentials.Unverified] | None = None,
) -> model.Pool:
    """A domain pool; without an observed intensity the spec's fallback value is used.
    ``checked``: the verification of each certification's credential, by its index in
    ``spec.certifications`` (``controller.credentials``); one not checked does not count."""
    checked = checked or {}
    if gco2_per_kwh is None and spec.carbon_intensity is not None:
        gco2_per_kwh = spec.carbon_intensity.fallback_grams_per_kwh
    return model.Pool(
        name=name,
        location=model.Location(
            provider=spec.location.provider,
            region=spec.location.region,
            zone=spec.location.zone,
            country=spec.location.country,
            grid_zone=spec.location.grid_zone,
        ),
        gpu_model=spec.gpu.model,
        gpus_total=gpus_total,
        gpus_free=gpus_free,
        price_per_gpu_hour=spec.price.on_demand_per_gpu_hour,
        currency=spec.price.currency,
        pue=spec.pue,
        gco2_per_kwh=gco2_per_kwh,
        node_labels=dict(spec.node_selector),
        jurisdiction=(
            model.Jurisdiction(
                legal_home=spec.jurisdiction.legal_home,
                exposures=frozenset(spec.jurisdiction.exposures),
            )
            if spec.jurisdiction
            else None
        ),
        certifications=tuple(
            certification_to_domain(c, checked.get(i)) for i, c in enumerate(spec.certifications)
        ),
        gpu_watts=spec.gpu.tdp_watts,
        gpu_idle_watts=spec.gpu.idle_watts,
        embodied_gco2_per_gpu_hour=spec.embodied_grams_per_gpu_hour,
        gpus_per_node=gpus_per_node,
    )


def certification_to_domain(
    spec: models.Certification, checked: credentials.Verified | credentials.Unverified | None
) -> model.Certification:
    """A declared certification; with a credential, the credential's verification decides: a
    verified one (which certifies the declared name and level) is valid from its ``nbf`` until
    the earlier of its ``exp`` and ``expires``; any other never counts (``unverified`` says
    why)."""
    # valid through the whole last day
    expires = datetime.datetime.combine(spec.expires, datetime.time.max, tzinfo=datetime.UTC)
    declared = model.Certification(name=spec.name, level=spec.level or "", valid_until=expires)
    if spec.credential is None:
        return declared
    if checked is None:
        checked = credentials.Unverified(credentials.Problem.NOT_CHECKED, "not read here")
    if isinstance(checked, credentials.Unverified):
        return dataclasses.replace(declared, unverified=checked.message)
    return dataclasses.replace(
        declared,
        valid_until=min(expires, checked.valid_until),
        valid_from=checked.valid_from,
        verified=True,
    )


def policy_to_domain(namespace: str, name: str, spec: models.PlacementPolicySpec) -> model.Policy:
    sovereignty = spec.sovereignty
    return model.Policy(
        namespace=namespace,
        name=name,
        match_labels=dict(spec.pod_selector.match_labels),
        allowed_countries=(
            frozenset(sovereignty.allowed_countries)
            if sovereignty and sovereignty.allowed_countries
            else None
        ),
        allowed_regimes=(
            frozenset(sovereignty.allowed_regimes)
            if sovereignty and sovereignty.allowed_regimes
            else None
        ),
        forbid_extraterritorial=bool(sovereignty and sovereignty.forbid_extraterritorial_exposure),
        required_certifications=tuple(
            model.CertificationRequirement(name=r.name, min_level=r.min_level, verified=r.verified)
            for r in (sovereignty.required_certifications or [] if sovereignty else [])
        ),
        max_gco2_per_kwh=spec.carbon.max_grams_per_kwh if spec.carbon else None,
        carbon_ceiling_yields_at_deadline=(
            spec.carbon.ceiling_yields_at_deadline if spec.carbon else True
        ),
        on_missing_carbon=spec.carbon.on_missing_signal if spec.carbon else "Hold",
        carbon_price_per_tco2e=(
            spec.objective.carbon_price_per_tonne
            if spec.objective
            else CARBON_FIRST_PRICE_PER_TONNE
        ),
        budget=spec.budget_ref.name if spec.budget_ref else None,
        max_delay=(
            duration(spec.deferral.max_delay)
            if spec.deferral and spec.deferral.max_delay is not None
            else None
        ),
        deferral_min_saving_fraction=(
            spec.deferral.min_saving
            if spec.deferral and spec.deferral.min_saving is not None
            else model.DEFAULT_MIN_SAVING_FRACTION
        ),
    )


# ---------------------------------------------------------------- time a workload declares

# Annotations on a pod, or on a Job's pod template (its pods and its Kueue Workload carry them).
DURATION_ANNOTATION = "greenplace.dev/expected-duration-hours"
DEADLINE_ANNOTATION = "greenplace.dev/deadline"
MAX_DELAY_ANNOTATION = "greenplace.dev/max-delay"
# A year: longer runs are not planned as one (certificates, budgets and prices move first).
MAX_EXPECTED_HOURS = 8760.0
DEFAULT_EXPECTED_HOURS = 1.0
# The same range as a policy's spec.deferral.maxDelay (``models.MaxDelay``).
_MAX_DELAY_RANGE = models.MAX_DELAY_RANGE


@dataclasses.dataclass(frozen=True)
class Timing:
    """What one pod declares about time, each value bounded; ``problems`` says which values
    were unreadable and which fallback replaced them (the operator posts them as Events)."""

    duration_hours: float = DEFAULT_EXPECTED_HOURS
    deadline: datetime.datetime | None = None
    max_delay: datetime.timedelta | None = None
    problems: tuple[str, ...] = ()

    @classmethod
    def of_gang(cls, members: Iterable[Timing]) -> Timing:
        """A gang runs as long as its longest member and waits no longer than its most urgent."""
        timings = list(members)
        deadlines = [t.deadline for t in timings if t.deadline is not None]
        delays = [t.max_delay for t in timings if t.max_delay is not None]
        return cls(
            max((t.duration_hours for t in timings), default=DEFAULT_EXPECTED_HOURS),
            min(deadlines, default=None),
            min(delays, default=None),
            tuple(p for t in timings for p in t.problems),
        )


def timing(annotations: Mapping[str, object]) -> Timing:
    """The expected duration, deadline and maximum delay ``annotations`` declare.

    Fallbacks: an unreadable duration is 1 h; an unreadable deadline or maximum delay is
    ignored, so the window of the governing policies (``spec.deferral.maxDelay``) applies. A
    bad value can only shorten how long the workload waits, never let it skip a rule.
    """
    problems: list[str] = []
    hours = DEFAULT_EXPECTED_HOURS
    raw = annotations.get(DURATION_ANNOTATION)
    if raw is not None:
        text = str(raw)[:40]
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value) and 0 < value <= MAX_EXPECTED_HOURS:
            hours = value
        else:
            problems.append(
                f"{DURATION_ANNOTATION}={text!r} is not a number of hours in "
                f"(0, {MAX_EXPECTED_HOURS:g}]; {DEFAULT_EXPECTED_HOURS:g} h is assumed"
            )
    deadline = None
    raw = annotations.get(DEADLINE_ANNOTATION)
    if raw is not None:
        text = str(raw)[:64]
        deadline = _instant(text)
        if deadline is None:
            problems.append(
                f"{DEADLINE_ANNOTATION}={text!r} is not an RFC 3339 time with its offset, such "
                "as 2026-12-03T06:00:00Z; ignored, the policy's deferral window applies"
            )
    max_delay = None
    raw = annotations.get(MAX_DELAY_ANNOTATION)
    if raw is not None:
        text = str(raw)[:40]
        max_delay = _bounded_duration(text, *_MAX_DELAY_RANGE)
        if max_delay is None:
            problems.append(
                f"{MAX_DELAY_ANNOTATION}={text!r} "
                f"{models.duration_range_message(*_MAX_DELAY_RANGE)}; ignored, the policy's "
                "deferral window applies"
            )
    return Timing(hours, deadline, max_delay, tuple(problems))


def _instant(text: str) -> datetime.datetime | None:
    """An RFC 3339 time that names its offset (``Z`` or ``+02:00``), else None."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})", text):
        return None
    return timestamps.parse_rfc3339(text)


def _bounded_duration(text: str, low: str, high: str) -> datetime.timedelta | None:
    """``text`` as a duration when the API would accept it in ``[low, high]``, else None."""
    try:
        models.check_duration(text, low, high)
    except ValueError:
        return None
    return duration(text)


_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(text: str) -> datetime.timedelta:
    """A Go-style duration of the API (``models.DURATION_PATTERN``: 90s, 10m, 1h30m)."""
    if not re.fullmatch(models.DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 90s, 10m or 1h30m")
    return datetime.timedelta(
        seconds=sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    )


def period_bounds(
    period: str, now: datetime.datetime
) -> tuple[datetime.datetime, datetime.datetime]:
    """``[start, end)`` in UTC of the calendar ``period`` (Day, Week, Month, Quarter) at ``now``."""
    day = now.astimezone(datetime.UTC).date()
    if period == "Day":
        first, following = day, day + datetime.timedelta(days=1)
    elif period == "Week":
        first = day - datetime.timedelta(days=day.weekday())
        following = first + datetime.timedelta(days=7)
    else:
        months = 1 if period == "Month" else 3
        start_month = day.month if months == 1 else (day.month - 1) // 3 * 3 + 1
        first = day.replace(month=start_month, day=1)
        index = first.year * 12 + first.month - 1 + months
        following = datetime.date(index // 12, index % 12 + 1, 1)

    def midnight(d: datetime.date) -> datetime.datetime:
        return datetime.datetime.combine(d, datetime.time(), tzinfo=datetime.UTC)

    return midnight(first), midnight(following)


def budget_to_domain(
    namespace: str,
    name: str,
    spec: models.BudgetSpec,
    *,
    money_spent: float,
    kgco2e_spent: float,
    kwh_spent: float,
    period_end: datetime.datetime,
) -> model.Budget:
    """The planner's view of a Budget in its current period; spending is observed, not spec."""
    return model.Budget(
        namespace=namespace,
        name=name,
        currency=spec.currency,
        money_limit=spec.limits.money,
        money_spent=money_spent,
        kgco2e_limit=spec.limits.kg_co2e,
        kgco2e_spent=kgco2e_spent,
        kwh_limit=spec.limits.kwh,
        kwh_spent=kwh_spent,
        period_end=period_end,
        action=model.BudgetAction(spec.action),
    )
