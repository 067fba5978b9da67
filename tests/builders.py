"""Small builders for planner inputs, so each test row states only what it is about.

A keyword a test leaves out means the domain model's default (read from ``DEFAULT_*`` values
built with only their required fields), so a default lives in ``domain/model.py`` alone.
"""

from __future__ import annotations

import datetime
import typing
from collections.abc import Sequence

from greenplace.domain import model, series

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
HOUR = datetime.timedelta(hours=1)
# A sovereign European provider with no foreign exposure, and a US hyperscaler's EU region.
LOCAL = model.Jurisdiction("FR")
CLOUD_ACT = model.Jurisdiction("US", frozenset({"US-CLOUD-Act"}))
# The domain model's defaults.
DEFAULT_POOL = model.Pool(
    "", model.Location("", "", "", ""), "", gpus_total=0, gpus_free=0, price_per_gpu_hour=0,
    currency="",
)  # fmt: skip
DEFAULT_POLICY = model.Policy(namespace="", name="")
DEFAULT_WORKLOAD = model.Workload(namespace="", name="", gpus=0, created=T0)
DEFAULT_BUDGET = model.Budget(namespace="", name="")


def pool(
    name: str,
    *,
    country: str = "FR",
    gco2: float | None = 50.0,
    free: int = 8,
    total: int | None = None,
    price: float = 2.0,
    pue: float = DEFAULT_POOL.pue,
    jurisdiction: model.Jurisdiction | None = LOCAL,
    certs: Sequence[model.Certification] = (),
    spot: float | None = None,
    watts: float = DEFAULT_POOL.gpu_watts,
    embodied: float = DEFAULT_POOL.embodied_gco2_per_gpu_hour,
    per_node: int | None = None,
    zone: str | None = None,
) -> model.Pool:
    return model.Pool(
        name=name,
        location=model.Location(
            provider="p", region="r", country=country, grid_zone=zone or country
        ),
        gpu_model="H100",
        gpus_total=free if total is None else total,
        gpus_free=free,
        price_per_gpu_hour=price,
        currency=DEFAULT_BUDGET.currency,  # the pool is priced as budgets count by default
        pue=pue,
        gco2_per_kwh=gco2,
        node_labels={"greenplace.dev/pool": name},
        jurisdiction=jurisdiction,
        certifications=tuple(certs),
        spot_price_per_gpu_hour=spot,
        gpu_watts=watts,
        embodied_gco2_per_gpu_hour=embodied,
        gpus_per_node=per_node,
    )


def cert(
    name: str, *, level: str = "", until_days: float = 365, from_days: float | None = None
) -> model.Certification:
    """A certification valid from ``from_days`` to ``until_days`` after T0."""
    return model.Certification(
        name=name,
        level=level,
        valid_until=T0 + datetime.timedelta(days=until_days),
        valid_from=None if from_days is None else T0 + datetime.timedelta(days=from_days),
    )


def policy(
    name: str = "pol",
    *,
    namespace: str = "ml",
    countries: set[str] | None = None,
    ceiling: float | None = None,
    match: dict[str, str] | None = None,
    regimes: set[str] | None = None,
    no_foreign_law: bool = DEFAULT_POLICY.forbid_extraterritorial,
    certs: dict[str, str] | None = None,
    carbon_price: float = DEFAULT_POLICY.carbon_price_per_tco2e,
    max_delay_h: float | None = None,
    min_saving: float = DEFAULT_POLICY.deferral_min_saving_fraction,
    budget: str | None = None,
    yields: bool = DEFAULT_POLICY.carbon_ceiling_yields_at_deadline,
    on_missing: typing.Literal["Hold", "CostOnly"] = DEFAULT_POLICY.on_missing_carbon,
) -> model.Policy:
    return model.Policy(
        namespace=namespace,
        name=name,
        match_labels=match or {},
        allowed_countries=None if countries is None else frozenset(countries),
        max_gco2_per_kwh=ceiling,
        allowed_regimes=None if regimes is None else frozenset(regimes),
        forbid_extraterritorial=no_foreign_law,
        required_certifications=tuple(
            model.CertificationRequirement(n, level) for n, level in (certs or {}).items()
        ),
        carbon_price_per_tco2e=carbon_price,
        max_delay=None if max_delay_h is None else max_delay_h * HOUR,
        deferral_min_saving_fraction=min_saving,
        budget=budget,
        carbon_ceiling_yields_at_deadline=yields,
        on_missing_carbon=on_missing,
    )


def workload(
    name: str,
    *,
    namespace: str = "ml",
    gpus: int = 1,
    at: int = 0,
    labels: dict[str, str] | None = None,
    hours: float = DEFAULT_WORKLOAD.duration_hours,
    max_delay_h: float | None = None,
    deadline_h: float | None = None,
    spot: bool = DEFAULT_WORKLOAD.spot,
    pods: Sequence[int] = (),
    residency: str | None = None,
) -> model.Workload:
    """``at`` is in seconds after T0; ``pods`` lists the GPUs of each pod of a gang."""
    all_labels = dict(labels or {})
    if residency is not None:
        all_labels[model.DATA_RESIDENCY_LABEL] = residency
    return model.Workload(
        namespace=namespace,
        name=name,
        gpus=sum(pods) if pods else gpus,
        created=T0 + datetime.timedelta(seconds=at),
        labels=all_labels,
        pods=tuple(f"{name}-{i}" for i in range(len(pods))) if pods else (name,),
        duration_hours=hours,
        max_delay=None if max_delay_h is None else max_delay_h * HOUR,
        deadline=None if deadline_h is None else T0 + deadline_h * HOUR,
        spot=spot,
        gpus_per_pod=tuple(pods),
    )


def budget(
    name: str = "team",
    *,
    namespace: str = "ml",
    money: float | None = None,
    kg: float | None = None,
    spent: float = DEFAULT_BUDGET.money_spent,
    kwh: float | None = None,
    kg_spent: float = DEFAULT_BUDGET.kgco2e_spent,
    kwh_spent: float = DEFAULT_BUDGET.kwh_spent,
    action: model.BudgetAction = DEFAULT_BUDGET.action,
    ends_h: float | None = 24.0,
    currency: str = DEFAULT_BUDGET.currency,
) -> model.Budget:
    return model.Budget(
        namespace=namespace,
        name=name,
        currency=currency,
        money_limit=money,
        money_spent=spent,
        kgco2e_limit=kg,
        kgco2e_spent=kg_spent,
        kwh_limit=kwh,
        kwh_spent=kwh_spent,
        period_end=None if ends_h is None else T0 + ends_h * HOUR,
        action=action,
    )


def forecast(*values: float, step_h: float = 0.5) -> series.TimeSeries:
    """Grid intensity from T0, one value per step, plus a closing point repeating the last."""
    times = tuple(T0 + i * step_h * HOUR for i in range(len(values) + 1))
    return series.TimeSeries(times, (*values, values[-1]))


def snapshot(
    pools: list[model.Pool],
    policies: list[model.Policy],
    workloads: list[model.Workload],
    *,
    budgets: Sequence[model.Budget] = (),
    forecasts: dict[str, series.TimeSeries] | None = None,
) -> model.Snapshot:
    return model.Snapshot(
        tuple(pools), tuple(policies), tuple(workloads), tuple(budgets), forecasts or {}
    )
