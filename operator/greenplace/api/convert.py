"""Turn custom resources into the planner's domain values.

Why this module exists: the operator, the simulator and ``greenplace explain`` all read the same
``GpuPool`` and ``PlacementPolicy`` objects; converting them in one place means a field added to
the API reaches the planner the same way everywhere. Observed facts (free GPUs, the current
carbon intensity) are arguments, because they come from the cluster or a signal, not the spec.
"""

from __future__ import annotations

from greenplace.api import models
from greenplace.domain import model

__all__ = ["policy_to_domain", "pool_to_domain"]


def pool_to_domain(
    name: str,
    spec: models.GpuPoolSpec,
    *,
    gpus_total: int,
    gpus_free: int,
    gco2_per_kwh: float | None = None,
) -> model.Pool:
    """A domain pool; without an observed intensity the spec's fallback value is used."""
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
    )


def policy_to_domain(namespace: str, name: str, spec: models.PlacementPolicySpec) -> model.Policy:
    return model.Policy(
        namespace=namespace,
        name=name,
        match_labels=dict(spec.pod_selector.match_labels),
        allowed_countries=(
            frozenset(spec.sovereignty.allowed_countries) if spec.sovereignty else None
        ),
        max_gco2_per_kwh=spec.carbon.max_grams_per_kwh if spec.carbon else None,
    )
