"""Status of greenplace's own objects: free GPUs and carbon per pool, placed/held per policy.

Why this module exists: platform teams read the state of greenplace with ``kubectl get`` and
their GitOps tool's health checks, which look at ``status.conditions`` (``Ready``). Status is
derived from the cycle's snapshot and written only when it changed, so nothing flaps and the
API server is not flooded; the spec of an object is never written.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from greenplace.api import models, timestamps
from greenplace.controller import budgets, kube, snapshot
from greenplace.domain import model
from greenplace.engine import rules
from greenplace.signals import contract

__all__ = ["Condition", "StatusRecorder", "allowed_pools", "residency_codes"]

logger = logging.getLogger("greenplace.status")

# (type, status, reason, message) of one condition.
Condition = tuple[str, bool, str, str]
# Status fields that move on every read without meaning a change: written, not compared.
_VOLATILE = ("ageSeconds",)


class StatusRecorder:
    """Writes status for pools and policies when (and only when) it changed."""

    def __init__(
        self, writer: kube.Writer, clock: Callable[[], datetime.datetime] | None = None
    ) -> None:
        self._writer = writer
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._written: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self._allowed: dict[tuple[str, str], dict[str, Any]] = {}
        self._ready_since: dict[tuple[str, str | None, str], tuple[str, str]] = {}

    async def publish_allowed_pools(
        self, gathered: snapshot.Gathered, snap: model.Snapshot, now: datetime.datetime
    ) -> None:
        """Write each policy's ``status.allowedPools`` before any pod is released.

        The ValidatingAdmissionPolicy lets a pod leave its gate only towards these pools, so they
        must be in the API server first. Written only when the list changed.
        """
        by_name = {p.name: p for p in snap.pools}
        for policy in snap.policies:
            key = (policy.namespace, policy.name)
            allowed = allowed_pools(policy, snap.pools, now)
            residency: dict[str, list[str] | None] = {
                name: residency_codes(by_name[name]) for name in allowed
            }
            published = {"allowedPools": allowed, "poolResidency": residency}
            if self._allowed.get(key) == published:
                continue
            before: dict[str, Any] = self._allowed.get(key, {}).get("poolResidency", {})
            gone = {name: None for name in before if name not in allowed}  # merge patch: delete
            body = {**published, "poolResidency": {**residency, **gone}}
            try:
                await self._writer.patch_status(
                    "placementpolicies", policy.namespace, policy.name, body
                )
            except kube.WriteConflictError:
                continue
            self._allowed[key] = published

    async def record(
        self,
        gathered: snapshot.Gathered,
        snap: model.Snapshot,
        plan: model.Plan,
        *,
        built: snapshot.Built | None = None,
        now: datetime.datetime | None = None,
        ledger: budgets.Ledger | None = None,
    ) -> None:
        carbon_sources = built.carbon_sources if built is not None else {}
        by_name = {p.name: p for p in snap.pools}
        for cached in gathered.pools:
            pool = by_name[cached.name]
            nodes = len(snapshot.pool_nodes(cached, gathered.nodes))
            ready = nodes > 0
            await self.write(
                "gpupools",
                None,
                cached.name,
                {
                    "observedGeneration": cached.generation,
                    "nodes": nodes,
                    "gpusTotal": pool.gpus_total,
                    "gpusFree": pool.gpus_free,
                    "carbonGramsPerKwh": pool.gco2_per_kwh,
                    "carbonSource": carbon_sources.get(
                        cached.name,
                        snapshot.FALLBACK_SOURCE if pool.gco2_per_kwh is not None else None,
                    ),
                },
                conditions=[
                    (
                        "Ready",
                        ready,
                        "NodesFound" if ready else "NoNodes",
                        f"{nodes} nodes, {pool.gpus_free}/{pool.gpus_total} GPUs free"
                        if ready
                        else "no schedulable node matches spec.nodeSelector",
                    )
                ],
                generation=cached.generation,
            )
        outcomes = _outcomes_by_policy(gathered, snap, plan)
        for cached_policy in gathered.policies:
            key = f"{cached_policy.namespace}/{cached_policy.name}"
            placed, held = outcomes.get(key, (0, 0))
            await self.write(
                "placementpolicies",
                cached_policy.namespace,
                cached_policy.name,
                {
                    "observedGeneration": cached_policy.generation,
                    **self._allowed.get(
                        (cached_policy.namespace, cached_policy.name),
                        {"allowedPools": [], "poolResidency": {}},
                    ),
                    "placed": placed,
                    "held": held,
                },
                conditions=[_policy_ready(cached_policy.spec, placed, held)],
                generation=cached_policy.generation,
            )
        if built is not None and now is not None:
            await self._record_signal_sources(gathered)
            await self._record_budgets(gathered, built, now, ledger)

    async def _record_signal_sources(self, gathered: snapshot.Gathered) -> None:
        observed = gathered.observed
        for cached in gathered.signal_sources:
            readings = observed.by_source.get(cached.name, ())
            rows = [_reading(cached.name, r, observed.static_sources) for r in readings]
            missing = [r.key.subject for r in readings if r.value is None]
            fell_back = [r.key.subject for r in readings if r.status.reason == "Fallback"]
            skipped = _skipped(readings)
            if missing:
                degraded: Condition = (
                    "Degraded",
                    True,
                    "Unavailable",
                    f"no value for {', '.join(missing)} ({skipped}): pools there use their "
                    "GpuPool fallbackGramsPerKwh (see readings for each source's error)",
                )
            elif fell_back:
                degraded = (
                    "Degraded",
                    True,
                    "Fallback",
                    f"{', '.join(fell_back)} answered by a fallback source ({skipped}; see "
                    "readings)",
                )
            else:
                degraded = ("Degraded", False, "Fresh", "every subject from its first source")
            ready: Condition = (
                ("Ready", False, "Unavailable", f"no value for {', '.join(missing)}")
                if missing
                else ("Ready", True, "Answering", f"{len(rows)} subjects have a value")
            )
            await self.write(
                "signalsources",
                None,
                cached.name,
                {"observedGeneration": cached.generation, "readings": rows},
                conditions=[ready, degraded],
                generation=cached.generation,
            )

    async def _record_budgets(
        self,
        gathered: snapshot.Gathered,
        built: snapshot.Built,
        now: datetime.datetime,
        ledger: budgets.Ledger | None,
    ) -> None:
        for cached in gathered.budgets:
            key = (cached.namespace, cached.name)
            account = None if ledger is None else ledger.account(key)
            spent = built.spent.get(key, budgets.Spend()) if account is None else account.spent
            through = None if account is None else account.charged_through
            fields, reached = budgets.status(cached, spent, now, through)
            exceeded: Condition = (
                ("Exceeded", True, "LimitReached", "; ".join(reached) + f": {cached.spec.action}")
                if reached
                else ("Exceeded", False, "WithinLimits", "every limit has room left")
            )
            await self.write(
                "budgets",
                cached.namespace,
                cached.name,
                {"observedGeneration": cached.generation, **fields},
                conditions=[
                    ("Ready", True, "Tracking", "charged at each placement, as projected"),
                    exceeded,
                ],
                generation=cached.generation,
            )

    async def write(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        fields: Mapping[str, Any],
        *,
        conditions: list[Condition],
        generation: int,
    ) -> None:
        """Write status ``fields`` and ``conditions`` when (and only when) they changed."""
        key = (plural, namespace, name)
        written = []
        for kind, ok, reason, message in conditions:
            flag = "True" if ok else "False"
            since = self._ready_since.get((*key[:2], f"{key[2]}#{kind}"))
            if since is None or since[0] != flag:
                since = (flag, timestamps.rfc3339(self._clock()))
                self._ready_since[(*key[:2], f"{key[2]}#{kind}")] = since
            written.append(
                {
                    "type": kind,
                    "status": flag,
                    "reason": reason,
                    "message": message[:4096],
                    "lastTransitionTime": since[1],
                    "observedGeneration": generation,
                }
            )
        body = {**fields, "conditions": written}
        if _stable(self._written.get(key)) == _stable(body):
            return
        try:
            await self._writer.patch_status(plural, namespace, name, body)
        except kube.WriteConflictError:
            return
        self._written[key] = body


def _stable(body: Any) -> Any:
    """``body`` without the fields that move on every read (compared, not written)."""
    if isinstance(body, dict):
        return {k: _stable(v) for k, v in body.items() if k not in _VOLATILE}
    if isinstance(body, list):
        return [_stable(v) for v in body]
    return body


def _policy_ready(spec: models.PlacementPolicySpec, placed: int, held: int) -> Condition:
    """Ready, saying so when the policy sets no rule at all (``spec: {}`` allows every pool)."""
    counts = f"{placed} pods placed, {held} held"
    if spec.sovereignty is None and spec.carbon is None and spec.budget_ref is None:
        return (
            "Ready",
            True,
            "AllowsEveryPool",
            f"{counts}; this policy sets no sovereignty, carbon or budget rule, so it allows every "
            "pool: set spec.sovereignty (allowedCountries, allowedRegimes, ...) to restrict it",
        )
    return ("Ready", True, "Active", counts)


def _skipped(readings: Sequence[contract.Reading]) -> str:
    """Each source skipped and why, once, e.g. ``emaps: Credentials``."""
    found = sorted({f"{a.source}: {a.reason}" for r in readings for a in r.status.attempts})
    return ", ".join(found) or "no source"


def _reading(
    owner: str, reading: contract.Reading, statics: frozenset[tuple[str, str]]
) -> dict[str, Any]:
    is_static = (owner, reading.source or "") in statics
    observed = reading.observed_at
    return {
        "subject": reading.key.subject,
        "value": reading.value,
        "source": reading.source,
        # A static value has no observation time; its "now" would rewrite status every cycle.
        "observedAt": None if observed is None or is_static else timestamps.rfc3339(observed),
        "ageSeconds": None if reading.age_s is None or is_static else round(reading.age_s),
        "reason": str(reading.status.reason),
        "message": reading.status.message[:4096],
    }


def residency_codes(pool: model.Pool) -> list[str]:
    """The data-residency label codes ``pool`` satisfies: its country and each regime holding
    it (``rules.residency_violation`` reads the label the same way)."""
    country = pool.location.country
    if not country:
        return []
    return [country, *sorted(r for r, members in model.REGIMES.items() if country in members)]


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
    gathered: snapshot.Gathered, snap: model.Snapshot, plan: model.Plan
) -> dict[str, tuple[int, int]]:
    """Placed (released, still running) and held pods per governing policy."""
    counts: dict[str, list[int]] = {}
    for decision in plan.decisions:
        if decision.outcome is model.Outcome.HELD:
            for key in decision.policies:
                counts.setdefault(key, [0, 0])[1] += 1
    for policy in snap.policies:
        placed = sum(
            1
            for pod in gathered.pods
            if pod.namespace == policy.namespace
            and pod.placed_pool
            and not pod.gated
            and not pod.terminal
            and model.labels_match(pod.labels, policy.match_labels)
        )
        counts.setdefault(policy.key, [0, 0])[0] += placed
    return {k: (v[0], v[1]) for k, v in counts.items()}
