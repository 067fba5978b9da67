"""Status of greenplace's own objects: free GPUs and carbon per pool, pods by outcome per policy.

Why this module exists: platform teams read the state of greenplace with ``kubectl get`` and
their GitOps tool's health checks, which look at ``status.conditions`` (``Ready``). Status is
derived from the cycle's snapshot and written only when it changed, so nothing flaps and the
API server is not flooded; the spec of an object is never written.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from greenplace.api import models, timestamps
from greenplace.controller import budgets, kube, snapshot
from greenplace.domain import model
from greenplace.engine import rules
from greenplace.signals import contract

__all__ = [
    "Condition",
    "PolicyPods",
    "StatusRecorder",
    "allowed_pools",
    "pods_by_policy",
    "residency_codes",
]

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
        built: snapshot.Built,
        now: datetime.datetime,
        ledger: budgets.Ledger | None = None,
    ) -> None:
        carbon_sources = built.carbon_sources
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
        by_policy = pods_by_policy(gathered, snap, plan, built)
        for cached_policy in gathered.policies:
            pods = by_policy.get(f"{cached_policy.namespace}/{cached_policy.name}", PolicyPods())
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
                    **dataclasses.asdict(pods),
                },
                conditions=[_policy_ready(cached_policy.spec, pods)],
                generation=cached_policy.generation,
            )
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


def _policy_ready(spec: models.PlacementPolicySpec, pods: PolicyPods) -> Condition:
    """Ready, saying so when the policy sets no rule at all (``spec: {}`` allows every pool)."""
    counts = pods.summary()
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


@dataclasses.dataclass
class PolicyPods:
    """The pods a policy governs, each counted once, by what happened to it (the fields of
    ``PlacementPolicy.status`` of the same names)."""

    placed: int = 0
    held: int = 0
    deferred: int = 0
    refused: int = 0

    def add(self, outcome: model.Outcome, pods: int = 1) -> None:
        if outcome is model.Outcome.PLACED:
            self.placed += pods
        elif outcome is model.Outcome.HELD:
            self.held += pods
        elif outcome is model.Outcome.DEFERRED:
            self.deferred += pods
        else:
            self.refused += pods

    def summary(self) -> str:
        return (
            f"{self.placed} pods placed, {self.held} held, {self.deferred} deferred, "
            f"{self.refused} refused"
        )


def pods_by_policy(
    gathered: snapshot.Gathered, snap: model.Snapshot, plan: model.Plan, built: snapshot.Built
) -> dict[str, PolicyPods]:
    """Pods per policy key (``namespace/name``), as gathered for this cycle's plan.

    Placed: released by greenplace, not finished, and named by its signed record (the policies
    that governed it when it was placed). Waiting: every pod of a workload the plan did not
    place, by the outcome of its decision, under the policies that decision names; a gang
    still missing members is held under every policy selecting one of its pods. A pod placed
    by this very plan is counted from the next cycle on, once its patch is known to have
    been applied.
    """
    counts: dict[str, PolicyPods] = {policy.key: PolicyPods() for policy in snap.policies}
    for pod in gathered.pods:
        if pod.placed_pool and not pod.gated and not pod.terminal and pod.record is not None:
            for key in set(pod.record.get("policies") or ()):
                if key in counts:
                    counts[key].add(model.Outcome.PLACED)
    for decision in plan.decisions:
        if decision.outcome is model.Outcome.PLACED:
            continue
        pods = len(built.members.get(decision.workload, ()))
        for key in set(decision.policies):
            if key in counts:
                counts[key].add(decision.outcome, pods)
    for members in built.incomplete.values():
        for pod in members:
            for policy in snap.policies:
                if pod.namespace == policy.namespace and model.labels_match(
                    pod.labels, policy.match_labels
                ):
                    counts[policy.key].add(model.Outcome.HELD)
    return counts
