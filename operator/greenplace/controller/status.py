"""Status of greenplace's own objects: free GPUs and carbon per pool, placed/held per policy.

Why this module exists: platform teams read the state of greenplace with ``kubectl get`` and
their GitOps tool's health checks, which look at ``status.conditions`` (``Ready``). Status is
derived from the cycle's snapshot and written only when it changed, so nothing flaps and the
API server is not flooded; the spec of an object is never written.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any

from greenplace.api import convert
from greenplace.controller import kube, snapshot
from greenplace.domain import model
from greenplace.engine import rules

__all__ = ["StatusRecorder", "allowed_pools"]

logger = logging.getLogger("greenplace.status")


class StatusRecorder:
    """Writes status for pools and policies when (and only when) it changed."""

    def __init__(
        self, writer: kube.Writer, clock: Callable[[], datetime.datetime] | None = None
    ) -> None:
        self._writer = writer
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._written: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self._allowed: dict[tuple[str, str], list[str]] = {}
        self._ready_since: dict[tuple[str, str | None, str], tuple[str, str]] = {}

    async def publish_allowed_pools(
        self, gathered: snapshot.Gathered, snap: model.Snapshot, now: datetime.datetime
    ) -> None:
        """Write each policy's ``status.allowedPools`` before any pod is released.

        The ValidatingAdmissionPolicy lets a pod leave its gate only towards these pools, so they
        must be in the API server first. Written only when the list changed.
        """
        for cached in gathered.policies:
            key = (cached.namespace, cached.name)
            policy = convert.policy_to_domain(cached.namespace, cached.name, cached.spec)
            allowed = allowed_pools(policy, snap.pools, now)
            if self._allowed.get(key) == allowed:
                continue
            try:
                await self._writer.patch_status(
                    "placementpolicies", cached.namespace, cached.name, {"allowedPools": allowed}
                )
            except kube.WriteConflictError:
                continue
            self._allowed[key] = allowed

    async def record(
        self, gathered: snapshot.Gathered, snap: model.Snapshot, plan: model.Plan
    ) -> None:
        by_name = {p.name: p for p in snap.pools}
        for cached in gathered.pools:
            pool = by_name[cached.name]
            nodes = len(snapshot.pool_nodes(cached, gathered.nodes))
            ready = nodes > 0
            await self._write(
                "gpupools",
                None,
                cached.name,
                {
                    "observedGeneration": cached.generation,
                    "nodes": nodes,
                    "gpusTotal": pool.gpus_total,
                    "gpusFree": pool.gpus_free,
                    "carbonGramsPerKwh": pool.gco2_per_kwh,
                    "carbonSource": "spec.carbonIntensity.fallbackGramsPerKwh"
                    if pool.gco2_per_kwh is not None
                    else None,
                },
                ready=ready,
                reason="NodesFound" if ready else "NoNodes",
                message=f"{nodes} nodes, {pool.gpus_free}/{pool.gpus_total} GPUs free"
                if ready
                else "no schedulable node matches spec.nodeSelector",
                generation=cached.generation,
            )
        outcomes = _outcomes_by_policy(gathered, plan)
        for cached_policy in gathered.policies:
            key = f"{cached_policy.namespace}/{cached_policy.name}"
            placed, held = outcomes.get(key, (0, 0))
            await self._write(
                "placementpolicies",
                cached_policy.namespace,
                cached_policy.name,
                {
                    "observedGeneration": cached_policy.generation,
                    "allowedPools": self._allowed.get(
                        (cached_policy.namespace, cached_policy.name), []
                    ),
                    "placed": placed,
                    "held": held,
                },
                ready=True,
                reason="Active",
                message=f"{placed} pods placed, {held} held",
                generation=cached_policy.generation,
            )

    async def _write(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        fields: Mapping[str, Any],
        *,
        ready: bool,
        reason: str,
        message: str,
        generation: int,
    ) -> None:
        key = (plural, namespace, name)
        flag = "True" if ready else "False"
        since = self._ready_since.get(key)
        if since is None or since[0] != flag:
            since = (flag, self._clock().isoformat(timespec="seconds").replace("+00:00", "Z"))
            self._ready_since[key] = since
        body = {
            **fields,
            "conditions": [
                {
                    "type": "Ready",
                    "status": flag,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": since[1],
                    "observedGeneration": generation,
                }
            ],
        }
        if self._written.get(key) == body:
            return
        try:
            await self._writer.patch_status(plural, namespace, name, body)
        except kube.WriteConflictError:
            return
        self._written[key] = body


def allowed_pools(
    policy: model.Policy, pools: tuple[model.Pool, ...], now: datetime.datetime
) -> list[str]:
    """Pools passing ``policy``'s hard sovereignty rules (certifications valid ``now``)."""
    return sorted(
        pool.name
        for pool in pools
        if rules.sovereignty_violation(pool, [policy], None) is None
        and isinstance(rules.certificate_window(pool, [policy], now), rules.CertificateWindow)
    )


def _outcomes_by_policy(
    gathered: snapshot.Gathered, plan: model.Plan
) -> dict[str, tuple[int, int]]:
    """Placed (released, still running) and held pods per governing policy."""
    counts: dict[str, list[int]] = {}
    for decision in plan.decisions:
        if decision.outcome is model.Outcome.HELD:
            for key in decision.policies:
                counts.setdefault(key, [0, 0])[1] += 1
    for policy in gathered.policies:
        key = f"{policy.namespace}/{policy.name}"
        labels = policy.spec.pod_selector.match_labels
        placed = sum(
            1
            for pod in gathered.pods
            if pod.namespace == policy.namespace
            and pod.placed_pool
            and not pod.gated
            and not pod.terminal
            and all(pod.labels.get(k) == v for k, v in labels.items())
        )
        counts.setdefault(key, [0, 0])[0] += placed
    return {k: (v[0], v[1]) for k, v in counts.items()}
