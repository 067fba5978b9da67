"""Status of greenplace's own objects: free GPUs and carbon per pool, pods by outcome per policy.

Why this module exists: platform teams read the state of greenplace with ``kubectl get`` and
their GitOps tool's health checks, which look at ``status.conditions`` (``Ready``). Status is
derived from the cycle's snapshot and written only when it changed, so nothing flaps and the
API server is not flooded; the spec of an object is never written. Every body is built as the
kind's pydantic ``*Status`` model (``patch_body``), the same models the CRDs are generated
from, so what is written cannot drift from the schema the API server enforces.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

from kubernetes import client

from greenplace.accounting import billed
from greenplace.accounting import budget as burn
from greenplace.api import models
from greenplace.controller import billing as billing_
from greenplace.controller import budgets, credentials, kube, kueue, snapshot
from greenplace.controller import cache as cache_
from greenplace.domain import model
from greenplace.engine import rules
from greenplace.signals import contract

__all__ = [
    "Condition",
    "PolicyPods",
    "StatusModel",
    "StatusRecorder",
    "patch_body",
    "pods_by_policy",
    "pool_rejection",
    "residency_codes",
]

logger = logging.getLogger("greenplace.status")

# (type, status, reason, message) of one condition.
Condition = tuple[str, bool, str, str]
# Status fields that move on every read without meaning a change: written, not compared.
_VOLATILE = ("ageSeconds",)


class StatusRecorder:
    """Writes the status of pools, policies, signal sources, billing exports and budgets
    (and, for the reporter, EnergyReports) when (and only when) it changed."""

    def __init__(
        self,
        writer: kube.Writer,
        clock: Callable[[], datetime.datetime] | None = None,
        billing: billing_.BillingPrices | None = None,
    ) -> None:
        self._writer = writer
        self._billing = billing  # the FOCUS exports the pools' status.billing comes from
        self._clock = clock or (lambda: datetime.datetime.now(datetime.UTC))
        self._written: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        # Per policy: the allowed pools and their residency codes, as last published.
        self._allowed: dict[tuple[str, str], tuple[list[str], dict[str, list[str]]]] = {}
        # Per policy: why each other pool is not allowed (its Ready condition names them).
        self._excluded: dict[tuple[str, str], list[model.Rejection]] = {}
        # Per object and condition type: its status and since when it has had it.
        self._since: dict[tuple[str, str | None, str, str], tuple[str, datetime.datetime]] = {}
        # Per Budget, the figures of each limit as last recorded (the budget gauges').
        self.budget_figures: dict[tuple[str, str], dict[str, burn.BudgetFigures]] = {}
        # The pools' reconciled billing periods, as the exports last gave them (the
        # EnergyReports' billed basis).
        self.billed_prices: tuple[billed.Price, ...] = ()

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
            verdicts = {pool.name: pool_rejection(policy, pool, now) for pool in snap.pools}
            allowed = sorted(name for name, rejected in verdicts.items() if rejected is None)
            self._excluded[key] = [r for _, r in sorted(verdicts.items()) if r is not None]
            residency = {name: residency_codes(by_name[name]) for name in allowed}
            if self._allowed.get(key) == (allowed, residency):
                continue
            before = self._allowed.get(key, ([], {}))[1]
            gone = dict.fromkeys(name for name in before if name not in allowed)
            body = models.PlacementPolicyStatus(
                allowed_pools=allowed, pool_residency={**residency, **gone}
            )
            try:
                await self._writer.patch_status(
                    "placementpolicies", policy.namespace, policy.name, patch_body(body)
                )
            except kube.WriteConflictError:
                continue
            self._allowed[key] = (allowed, residency)

    async def record(
        self,
        gathered: snapshot.Gathered,
        snap: model.Snapshot,
        plan: model.Plan,
        *,
        built: snapshot.Built,
        now: datetime.datetime,
        ledger: budgets.Ledger | None = None,
    ) -> dict[tuple[str, str], budgets.Alerts]:
        """Write every status that changed; return each Budget's alert state."""
        carbon_sources = built.carbon_sources
        by_name = {p.name: p for p in snap.pools}
        flavored = _flavor_conditions(gathered)
        priced = (
            None
            if self._billing is None  # an export is a large file: read off the event loop
            else await asyncio.to_thread(
                self._billing.prices, gathered.pools, gathered.billing_exports, now
            )
        )
        if priced is not None:
            self.billed_prices = tuple(p for found in priced.values() for p in found.periods)
            if ledger is not None:
                ledger.bill(self.billed_prices)
        for cached in gathered.pools:
            pool = by_name[cached.name]
            nodes = len(snapshot.pool_nodes(cached, gathered.nodes))
            ready = nodes > 0
            billed = None if priced is None else priced.get(cached.name)
            # Set only when exports are configured; None then deletes a price gone stale.
            billing = {} if priced is None else {"billing": billed and billed.status}
            # CertificationsVerified and status.certifications, when a credential is referenced
            checked = credentials.of_pool(cached.spec, gathered.credentials.get(cached.name, {}))
            verified: tuple[Condition, ...] = (
                ("CertificationsVerified", *credentials.summary(checked, cached.spec)),
            ) if checked else ()  # fmt: skip
            await self.write(
                "gpupools",
                None,
                cached.name,
                models.GpuPoolStatus(
                    observed_generation=cached.generation,
                    nodes=nodes,
                    gpus_total=pool.gpus_total,
                    gpus_free=pool.gpus_free,
                    carbon_grams_per_kwh=pool.gco2_per_kwh,
                    carbon_source=carbon_sources.get(
                        cached.name,
                        snapshot.FALLBACK_SOURCE if pool.gco2_per_kwh is not None else None,
                    ),
                    certifications=credentials.to_status(checked, cached.spec) or None,
                    **billing,
                ),
                conditions=[
                    (
                        "Ready",
                        ready,
                        "NodesFound" if ready else "NoNodes",
                        f"{nodes} nodes, {pool.gpus_free}/{pool.gpus_total} GPUs free"
                        if ready
                        else "no schedulable node matches spec.nodeSelector",
                    ),
                    *flavored.get(cached.name, ()),
                    *verified,
                    *(
                        ()
                        if billed is None
                        else (("Billed", billed.status is not None, billed.reason, billed.message),)
                    ),
                ],
            )
        by_policy = pods_by_policy(gathered, snap, plan, built)
        for cached_policy in gathered.policies:
            pods = by_policy.get(f"{cached_policy.namespace}/{cached_policy.name}", PolicyPods())
            allowed, residency = self._allowed.get(
                (cached_policy.namespace, cached_policy.name), ([], {})
            )
            await self.write(
                "placementpolicies",
                cached_policy.namespace,
                cached_policy.name,
                models.PlacementPolicyStatus(
                    observed_generation=cached_policy.generation,
                    allowed_pools=allowed,
                    pool_residency=dict(residency),
                    **dataclasses.asdict(pods),
                ),
                conditions=[
                    _policy_ready(
                        cached_policy.spec,
                        pods,
                        allowed,
                        self._excluded.get((cached_policy.namespace, cached_policy.name), []),
                    )
                ],
            )
        await self._record_signal_sources(gathered)
        await self._record_billing_exports(gathered)
        return await self._record_budgets(gathered, built, now, ledger)

    async def _record_billing_exports(self, gathered: snapshot.Gathered) -> None:
        """Each BillingExport's status as ``controller.exports`` last read it."""
        if self._billing is None:
            return
        for cached in gathered.billing_exports:
            if cached.generation != self._billing.exports.generation(cached.name):
                continue  # changed since this cycle's read: the next cycle reads it
            body, ready = self._billing.exports.status(cached.name)
            await self.write(
                "billingexports", None, cached.name, body, conditions=[("Ready", *ready)]
            )

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
                models.SignalSourceStatus(observed_generation=cached.generation, readings=rows),
                conditions=[ready, degraded],
            )

    async def _record_budgets(
        self,
        gathered: snapshot.Gathered,
        built: snapshot.Built,
        now: datetime.datetime,
        ledger: budgets.Ledger | None,
    ) -> dict[tuple[str, str], budgets.Alerts]:
        """Write each Budget's status; post one Warning Event per alert threshold newly
        reached, once the status recording it is written (``budgets.alerts``)."""
        found = {}
        self.budget_figures = {}
        for cached in gathered.budgets:
            key = (cached.namespace, cached.name)
            account = None if ledger is None else ledger.account(key)
            spent = (
                built.spent.get(key, budgets.Spend())
                if account is None
                else account.billing().spent
            )
            through = None if account is None else account.charged_through
            closed = None if ledger is None else ledger.closed(key)
            figures, reached = budgets.status(cached, spent, now, through, account, closed=closed)
            self.budget_figures[key] = budgets.figures(cached.spec, spent, now)
            exceeded: Condition = (
                ("Exceeded", True, "LimitReached", "; ".join(reached) + f": {cached.spec.action}")
                if reached
                else ("Exceeded", False, "WithinLimits", "every limit has room left")
            )
            recorded = (
                gathered.budget_status.get(key) or {},
                self._written.get(("budgets", *key)) or {},
            )
            alerts = budgets.alerts(cached.spec, spent, recorded, now)
            written = await self.write(
                "budgets",
                cached.namespace,
                cached.name,
                figures.model_copy(update={"alerted_thresholds": list(alerts.crossed)}),
                conditions=[
                    ("Ready", True, "Tracking", "charged at each placement, as projected"),
                    exceeded,
                    *(
                        (("Reconciled", *budgets.reconciled_condition(account)),)
                        # Said when there is a bill, or was one (prices kept in the status).
                        if self._billing is not None or (account is not None and account.prices)
                        else ()
                    ),
                    ("ThresholdReached", *alerts.condition),
                ],
            )
            if not written:  # announced by the next cycle, which sees the same figures
                alerts = dataclasses.replace(alerts, new=(), messages={})
            for threshold in alerts.new:
                await self._budget_event(cached, alerts.messages[threshold])
            found[key] = alerts
        return found

    async def _budget_event(self, cached: cache_.CachedBudget, message: str) -> None:
        involved = {
            "apiVersion": f"{models.GROUP}/{models.VERSION}",
            "kind": "Budget",
            "metadata": {"name": cached.name, "namespace": cached.namespace, "uid": cached.uid},
        }
        try:
            await self._writer.pod_event(involved, "Warning", "BudgetThresholdReached", message)
        except client.ApiException as error:  # the status still records the threshold
            logger.warning(
                "budget %s/%s: could not post the Event: %s", cached.namespace, cached.name, error
            )

    async def write(
        self,
        plural: str,
        namespace: str | None,
        name: str,
        status: StatusModel,
        *,
        conditions: list[Condition],
    ) -> bool:
        """Write ``status`` with ``conditions`` when (and only when) they changed; False when
        the object changed or went away meanwhile (nothing written).

        ``status`` holds the fields to write (``patch_body``: set to None deletes, not set
        leaves alone); its ``observed_generation`` is the conditions' too. A condition keeps
        its ``lastTransitionTime`` until its status flips.
        """
        key = (plural, namespace, name)
        built = []
        for kind, ok, reason, message in conditions:
            flag: Literal["True", "False"] = "True" if ok else "False"
            since = self._since.get((*key, kind))
            if since is None or since[0] != flag:
                since = self._since[(*key, kind)] = (flag, self._clock())
            built.append(
                models.Condition(
                    type=kind,
                    status=flag,
                    reason=reason,
                    message=message[:4096],
                    last_transition_time=since[1],
                    observed_generation=status.observed_generation,
                )
            )
        body = patch_body(status.model_copy(update={"conditions": built}))
        if _stable(self._written.get(key)) == _stable(body):
            return True
        try:
            await self._writer.patch_status(plural, namespace, name, body)
        except kube.WriteConflictError:
            return False
        self._written[key] = body
        return True


# The status models the recorder writes, one per kind of greenplace's own objects.
StatusModel = (
    models.GpuPoolStatus
    | models.PlacementPolicyStatus
    | models.SignalSourceStatus
    | models.BillingExportStatus
    | models.BudgetStatus
    | models.EnergyReportStatus
)


def patch_body(status: StatusModel) -> dict[str, Any]:
    """The JSON merge patch that writes ``status``: the fields set when it was built, by their
    wire names and with the API's time format. A field set to None is sent as null, which
    deletes it (a value that went away must not linger); a field not set is left as it is."""
    return status.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _stable(body: Any) -> Any:
    """``body`` without the fields that move on every read (compared, not written)."""
    if isinstance(body, dict):
        return {k: _stable(v) for k, v in body.items() if k not in _VOLATILE}
    if isinstance(body, list):
        return [_stable(v) for v in body]
    return body


def _flavor_conditions(gathered: snapshot.Gathered) -> dict[str, tuple[Condition]]:
    """Per pool, its ``KueueFlavor`` condition: whether it lies in exactly one Kueue
    ResourceFlavor (``kueue.flavor_problems``); none while the cluster has no flavors."""
    if not gathered.flavors:
        return {}
    flavors = gathered.flavor_pools
    pools = sorted(p.name for p in gathered.pools)
    problems = kueue.flavor_problems(flavors, pools)
    conditions: dict[str, tuple[Condition]] = {}
    for pool in pools:
        if pool in problems:
            conditions[pool] = (("KueueFlavor", False, *problems[pool]),)
        else:
            (flavor,) = (f for f, members in flavors.pools_of.items() if pool in members)
            conditions[pool] = (
                ("KueueFlavor", True, "OneFlavor", f"lies in Kueue flavor {flavor}"),
            )
    return conditions


# How many excluded pools a NoAllowedPool condition names (each with its reason code).
_NAMED_POOLS = 8


def _policy_ready(
    spec: models.PlacementPolicySpec,
    pods: PolicyPods,
    allowed: list[str],
    excluded: list[model.Rejection],
) -> Condition:
    """Ready, saying so when the policy sets no rule at all (``spec: {}`` allows every pool);
    not Ready when no pool passes its sovereignty rules, so a GitOps health check shows a
    policy that can never place a pod as degraded, not green. That condition names each pool's
    reason code and, in full, why the first is excluded and the fix."""
    counts = pods.summary()
    if spec.sovereignty is None and spec.carbon is None and spec.budget_ref is None:
        return (
            "Ready",
            True,
            "AllowsEveryPool",
            f"{counts}; this policy sets no sovereignty, carbon or budget rule, so it allows every "
            "pool: set spec.sovereignty (allowedCountries, allowedRegimes, ...) to restrict it",
        )
    if not allowed:
        if not excluded:
            why = "there is no GpuPool: add one (kubectl get gpupools)"
        else:
            named = ", ".join(f"{r.pool} ({r.reason.value})" for r in excluded[:_NAMED_POOLS])
            more = len(excluded) - _NAMED_POOLS
            named += f" and {more} more" if more > 0 else ""
            why = f"{named}; {excluded[0].pool}: {excluded[0].message}"
        return (
            "Ready",
            False,
            "NoAllowedPool",
            f"{counts}; none of the {len(excluded)} GpuPools passes this policy's sovereignty "
            f"rules, so every pod it governs waits: {why}. To place them, allow a pool's "
            "country, regime or jurisdiction in spec.sovereignty, or add a GpuPool that "
            "satisfies it",
        )
    return ("Ready", True, "Active", counts)


def _skipped(readings: Sequence[contract.Reading]) -> str:
    """Each source skipped and why, once, e.g. ``emaps: Credentials``."""
    found = sorted({f"{a.source}: {a.reason}" for r in readings for a in r.status.attempts})
    return ", ".join(found) or "no source"


def _reading(
    owner: str, reading: contract.Reading, statics: frozenset[tuple[str, str]]
) -> models.SignalReadingStatus:
    is_static = (owner, reading.source or "") in statics
    observed = reading.observed_at
    return models.SignalReadingStatus(
        subject=reading.key.subject,
        value=reading.value,
        source=reading.source,
        # A static value has no observation time; its "now" would rewrite status every cycle.
        observed_at=None if observed is None or is_static else observed,
        age_seconds=None if reading.age_s is None or is_static else round(reading.age_s),
        reason=str(reading.status.reason),
        message=reading.status.message[:4096],
    )


def residency_codes(pool: model.Pool) -> list[str]:
    """The data-residency label codes ``pool`` satisfies: its country and each regime holding
    it (``rules.residency_violation`` reads the label the same way)."""
    country = pool.location.country
    if not country:
        return []
    return [country, *sorted(r for r, members in model.REGIMES.items() if country in members)]


def pool_rejection(
    policy: model.Policy, pool: model.Pool, now: datetime.datetime
) -> model.Rejection | None:
    """Why ``pool`` breaks ``policy``'s hard sovereignty rules ``now`` (certifications with
    their dates), None when it passes: the pools passing are the policy's ``allowedPools``."""
    violation = rules.sovereignty_violation(pool, [policy], None)
    if violation is not None:
        return violation
    window = rules.certificate_window(pool, [policy], now)
    return None if isinstance(window, rules.CertificateWindow) else window


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
