"""Small builders for planner inputs, so each test row states only what it is about."""

from __future__ import annotations

import datetime

from greenplace.domain import model

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def pool(
    name: str,
    *,
    country: str = "FR",
    gco2: float | None = 50.0,
    free: int = 8,
    total: int | None = None,
    price: float = 2.0,
    pue: float = 1.0,
) -> model.Pool:
    return model.Pool(
        name=name,
        location=model.Location(provider="p", region="r", country=country, grid_zone=country),
        gpu_model="H100",
        gpus_total=free if total is None else total,
        gpus_free=free,
        price_per_gpu_hour=price,
        currency="EUR",
        pue=pue,
        gco2_per_kwh=gco2,
        node_labels={"greenplace.dev/pool": name},
    )


def policy(
    name: str = "pol",
    *,
    namespace: str = "ml",
    countries: set[str] | None = None,
    ceiling: float | None = None,
    match: dict[str, str] | None = None,
) -> model.Policy:
    return model.Policy(
        namespace=namespace,
        name=name,
        match_labels=match or {},
        allowed_countries=None if countries is None else frozenset(countries),
        max_gco2_per_kwh=ceiling,
    )


def workload(
    name: str,
    *,
    namespace: str = "ml",
    gpus: int = 1,
    at: int = 0,
    labels: dict[str, str] | None = None,
) -> model.Workload:
    return model.Workload(
        namespace=namespace,
        name=name,
        gpus=gpus,
        created=T0 + datetime.timedelta(seconds=at),
        labels=labels or {},
        pods=(name,),
    )


def snapshot(
    pools: list[model.Pool], policies: list[model.Policy], workloads: list[model.Workload]
) -> model.Snapshot:
    return model.Snapshot(tuple(pools), tuple(policies), tuple(workloads))
