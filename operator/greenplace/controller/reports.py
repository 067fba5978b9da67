"""EnergyReport reconciler: measure a window in Prometheus, write the rows, publish the gauges.

Why this module exists: per-request figures are computed by ``accounting.serving`` (PromQL) and
``accounting.report`` (pure); something must run them for each ``EnergyReport`` on a period,
with the pools as the placement loop last saw them (price from signals, PUE, grid zone) and the
intensity each zone had in that plan. On a Prometheus error the last rows are kept (status is a
merge patch without ``rows``) and ``Degraded`` says why, with the signal reason code.

The intensity used for a zone is the one of the last placement cycle (SignalSource or the
GpuPool's fallback), not the mean over the window: a report over a past window (``windowEnd``)
says which source it used in ``intensitySources``.

Tenancy: a report sees only the pods of its own namespace (``spec.scope: Namespace``, the
default). ``Cluster`` is honoured only for a report in the operator's own namespace, where only
the platform team can create resources; elsewhere the report gets Ready False,
``ClusterScopeNotAllowed``, and no rows. When the operator's namespace is unknown (run out of
cluster, no ``$POD_NAMESPACE``), Cluster is allowed anywhere: the operator then runs with the
user's own credentials, which already read every namespace's metrics. Gauges are labelled by the
report (namespace, name); a deleted or refused report's gauges are removed.

Egress: ``spec.prometheus.url`` is chosen by whoever may write an EnergyReport, so it follows the
SignalSources' rules (``signals.egress.EgressPolicy``, from the same ``--allow-signal-hosts`` and
``--allow-insecure-signal-http``): https to public addresses unless allowed, checked as written
here and at connect time by the querier (every address resolved, the connection pinned to a
checked one). Otherwise a tenant could have the operator query the cloud metadata endpoint or
any service on the pod network and read what came back in the report's messages. A refused URL
gives Ready False, reason ``SourceNotAllowed``, no rows and no gauges (logged once per
generation). The operator's own ``--prometheus-url`` (the platform team's choice) is trusted and
not checked, as is a ``spec.prometheus.url`` equal to it (it reaches nothing more than leaving
``spec.prometheus`` out would).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Protocol

from greenplace.accounting import grading, report, serving, telemetry
from greenplace.api import convert, models, timestamps
from greenplace.controller import cache as cache_
from greenplace.controller import status
from greenplace.domain import model
from greenplace.signals import contract, egress, promql

__all__ = ["QuerierFactory", "Reporter"]

logger = logging.getLogger("greenplace.reports")
_SERVING = {"vLLM": serving.VLLM, "TGI": serving.TGI, "Triton": serving.TRITON}


class QuerierFactory(Protocol):
    """Builds the querier of one URL; ``policy`` given for a URL an EnergyReport chose."""

    def __call__(
        self, url: str, *, policy: egress.EgressPolicy | None = None
    ) -> promql.Querier: ...


class Reporter:
    """Computes every cached EnergyReport; one ``run`` per period of the report loop."""

    def __init__(
        self,
        recorder: status.StatusRecorder,
        metrics: telemetry.AccountingMetrics,
        default_url: str | None,
        querier: QuerierFactory = promql.Querier,
        own_namespace: str | None = None,
        *,
        allow_hosts: Sequence[str] = (),
        allow_insecure_http: bool = False,
    ) -> None:
        self._recorder = recorder
        self._metrics = metrics
        self._default_url = default_url
        self._querier = querier
        self._own_namespace = own_namespace
        # ValueError on a bad entry; the CLI checks them first (egress.parse_entry).
        self._egress = egress.EgressPolicy.parse(allow_hosts, allow_http=allow_insecure_http)
        self._refused: dict[tuple[str, str], int] = {}  # logged refusals: report -> generation
        self._last: dict[tuple[str, str], list[status.Condition]] = {}
        # Pools last written in each report's unattributedGpuWh (a merge patch keeps old keys).
        self._pools: dict[tuple[str, str], set[str]] = {}

    @property
    def own_namespace(self) -> str | None:
        """The operator's namespace (``--namespace``, default ``$POD_NAMESPACE``); None: unknown."""
        return self._own_namespace

    async def run(
        self, cache: cache_.Cache, now: datetime.datetime, *, pools: Sequence[model.Pool] = ()
    ) -> None:
        """Compute every cached report at ``now`` with ``pools`` as the last placement cycle
        planned them (``cycle.CycleReport.pools``; none before the first cycle)."""
        for cached in list(cache.reports.values()):
            try:
                await self._one(cache, cached, now, pools)
            except Exception:  # one bad report never stops the others, nor the operator
                logger.exception("EnergyReport %s/%s failed", cached.namespace, cached.name)
        for gone in self._metrics.reports() - set(cache.reports):
            self._metrics.forget(*gone)  # deleted: its gauges go with it
        for gone in set(self._last) - set(cache.reports):
            del self._last[gone]
        for gone in set(self._pools) - set(cache.reports):
            del self._pools[gone]
        for gone in set(self._refused) - set(cache.reports):
            del self._refused[gone]

    def cluster_scope_refusal(self, namespace: str) -> str | None:
        """Why a Cluster report in ``namespace`` is refused, or None when it is allowed."""
        own = self.own_namespace
        if own is None or namespace == own:
            return None
        return (
            f"scope Cluster reads every namespace's pods: create this EnergyReport in the "
            f"operator's namespace {own!r}, or use scope Namespace to report on {namespace!r}"
        )

    async def _one(
        self,
        cache: cache_.Cache,
        cached: cache_.CachedReport,
        now: datetime.datetime,
        planned: Sequence[model.Pool],
    ) -> None:
        spec = cached.spec
        key = (cached.namespace, cached.name)
        url = spec.prometheus.url if spec.prometheus else self._default_url
        # A URL the report chose is checked; the operator's own is trusted, even restated.
        chosen = url is not None and url.rstrip("/") != (self._default_url or "").rstrip("/")
        write = _writer(self._recorder, cached)
        refused = self.cluster_scope_refusal(cached.namespace) if spec.scope == "Cluster" else None
        if refused is not None:
            await self._clear(key, write, "ClusterScopeNotAllowed", "Refused", refused)
            return
        if chosen and url is not None:
            try:
                self._egress.check_url(url)
            except contract.SignalNotAllowedError as error:
                await self._refuse_url(cached, write, error)
                return
        if url is None:
            await write([_not_ready("NoPrometheus", _NO_URL), _degraded("NoPrometheus", _NO_URL)])
            return
        pools = {p.name: p for p in planned}
        facts = [report.PoolFacts.from_pool(p) for p in pools.values()]
        carbon = {p.location.grid_zone: p.gco2_per_kwh for p in pools.values()}
        power = {n: serving.PowerModel(p.gpu_watts, p.gpu_idle_watts) for n, p in pools.items()}
        end = spec.window_end or now
        try:
            window = convert.duration(spec.window)
            _ = end - window  # its start must be a time too (year 1 minus a day overflows)
        except (OverflowError, ValueError) as error:
            # The models bound window and windowEnd; this guards a spec that escaped them.
            ending = timestamps.rfc3339(end)
            message = f"spec.window {spec.window} ending {ending}: {error}; {_WINDOW_FIX}"
            await write([_not_ready("InvalidWindow", message), _degraded("Invalid", message)])
            return
        querier = self._querier(url, policy=self._egress) if chosen else self._querier(url)
        try:
            measured = await asyncio.to_thread(
                serving.measure,
                querier.vector,
                end,
                window,
                serving=_SERVING[spec.serving],
                power_models=power,
                namespace=None if spec.scope == "Cluster" else cached.namespace,
            )
        except contract.SignalNotAllowedError as error:  # at connect: resolved to the inside
            await self._refuse_url(cached, write, error)
            return
        except contract.SignalError as error:
            reason = str(error.reason)
            ready = self._last.get(key, [_not_ready(reason, str(error))])[0]
            await write([ready, _degraded(reason, str(error))])
            return
        grades = spec.grading
        built = report.build(
            measured,
            facts,
            carbon,
            intensity_sources={z: _source(cache, z) for z in carbon},
            energy_scale=grading.Scale.of("energy", "Wh/request", grades.energy_wh_per_request)
            if grades and grades.energy_wh_per_request
            else grading.DEFAULT_ENERGY_SCALE,
            carbon_scale=grading.Scale.of(
                "carbon", "gCO2e/request", grades.carbon_gco2e_per_request
            )
            if grades and grades.carbon_gco2e_per_request
            else grading.DEFAULT_CARBON_SCALE,
            mig_slices_total=spec.mig_slices_total,
            prices=self._recorder.billed_prices,
        )
        self._refused.pop(key, None)
        self._metrics.publish(built, *key)
        ready = (
            "Ready",
            True,
            "Reported",
            f"{len(built.rows)} rows, energy from {built.energy_source}",
        )
        self._last[key] = [ready]
        conditions = [ready, ("Degraded", False, "Measured", "Prometheus answered")]
        shown = set(built.unattributed_gpu_wh)
        if key not in self._pools:
            # Pools written before this process (e.g. by a version without scopes) are unknown:
            # drop the whole map once rather than leave other tenants' figures in it.
            await write(conditions, models.EnergyReportStatus(unattributed_gpu_wh=None))
        gone = self._pools.get(key, set()) - shown
        self._pools[key] = shown
        await write(conditions, _status(built, gone))

    async def _clear(
        self, key: tuple[str, str], write: _Write, reason: str, degraded: str, message: str
    ) -> None:
        """A report refused by its spec: Ready False, no rows and no gauges."""
        self._metrics.forget(*key)
        self._last.pop(key, None)
        self._pools.pop(key, None)
        await write(
            [_not_ready(reason, message), _degraded(degraded, message)],
            models.EnergyReportStatus(rows=[], costs=[], unattributed_gpu_wh=None),
        )

    async def _refuse_url(
        self, cached: cache_.CachedReport, write: _Write, error: contract.SignalNotAllowedError
    ) -> None:
        key = (cached.namespace, cached.name)
        message = f"spec.prometheus.url refused: {error}"
        if self._default_url is not None:
            message += "; or remove spec.prometheus to use the operator's own Prometheus"
        if self._refused.get(key) != cached.generation:
            self._refused[key] = cached.generation
            logger.warning("EnergyReport %s/%s: %s", *key, message)
        reason = str(contract.SignalReason.NOT_ALLOWED)
        await self._clear(key, write, reason, reason, message)


_NO_URL = "set spec.prometheus.url or run the operator with --prometheus-url"
_WINDOW_FIX = "set spec.window from 1m to 8784h and spec.windowEnd after 1970"


def _not_ready(reason: str, message: str) -> status.Condition:
    return ("Ready", False, reason, message)


def _degraded(reason: str, message: str) -> status.Condition:
    return ("Degraded", True, reason, message)


def _source(cache: cache_.Cache, zone: str) -> str:
    for source in sorted(cache.signal_sources.values(), key=lambda s: s.name):
        if source.spec.signal == "CarbonIntensity" and zone in source.spec.zones:
            return f"SignalSource {source.name}"
    return "GpuPool fallbackGramsPerKwh"


class _Write(Protocol):
    """Writes one report's status: ``conditions``, and the fields set in ``fields``."""

    async def __call__(
        self, conditions: list[status.Condition], fields: models.EnergyReportStatus | None = None
    ) -> None: ...


def _writer(recorder: status.StatusRecorder, cached: cache_.CachedReport) -> _Write:
    async def write(
        conditions: list[status.Condition], fields: models.EnergyReportStatus | None = None
    ) -> None:
        written = (fields or models.EnergyReportStatus()).model_copy(
            update={"observed_generation": cached.generation}
        )
        await recorder.write(
            "energyreports", cached.namespace, cached.name, written, conditions=conditions
        )

    return write


def _status(built: report.EnergyReport, gone: Iterable[str]) -> models.EnergyReportStatus:
    """The status of a computed report; the ``gone`` pools leave ``unattributedGpuWh``.

    Figures are rounded to 9 decimal places, so floating-point noise between two runs
    over the same samples does not rewrite the status.
    """

    def num(value: float) -> float:
        return round(value, 9)

    def maybe(value: float | None) -> float | None:
        return None if value is None else num(value)

    def money(value: Decimal | None) -> float | None:
        return None if value is None else float(value)

    unattributed: dict[str, float | None] = {
        pool: num(wh) for pool, wh in built.unattributed_gpu_wh.items()
    }
    return models.EnergyReportStatus(
        window_start=built.window_start,
        window_end=built.window_end,
        energy_source=str(built.energy_source),
        intensity_sources=dict(built.intensity_sources),
        unattributed_gpu_wh=unattributed | dict.fromkeys(gone),
        notes=list(built.notes),
        rows=[
            models.ReportRowStatus(
                model=r.model,
                pool=r.pool,
                grid_zone=r.grid_zone,
                requests=num(r.requests),
                tokens=num(r.tokens),
                gpu_wh=num(r.gpu_wh),
                facility_wh=num(r.facility_wh),
                gpu_hours=num(r.gpu_hours),
                g_co2e=maybe(r.gco2e),
                cost=num(r.cost),
                currency=r.currency,
                g_co2_per_kwh=maybe(r.gco2_per_kwh),
                gpu_wh_per_request=maybe(r.gpu_wh_per_request),
                g_co2e_per_request=maybe(r.gco2e_per_request),
                cost_per_request=maybe(r.cost_per_request),
                cost_per_1k_tokens=maybe(r.cost_per_1k_tokens),
                energy_grade=None if r.energy_grade is None else str(r.energy_grade),
                carbon_grade=None if r.carbon_grade is None else str(r.carbon_grade),
                attribution=[str(m) for m in r.attribution],
                billed_cost=money(r.billed_cost),
                billed_cost_per_request=maybe(r.billed_cost_per_request),
                billed_cost_per_1k_tokens=maybe(r.billed_cost_per_1k_tokens),
            )
            for r in built.rows
        ],
        costs=[
            models.ReportPoolCost(
                pool=c.pool,
                currency=c.currency,
                gpu_hours=num(c.gpu_hours),
                idle_gpu_hours=num(c.idle_gpu_hours),
                per_gpu_hour=float(c.per_gpu_hour),
                total=float(c.total),
                allocated=float(c.allocated),
                idle=float(c.idle),
                billed_period_start=None if c.billed is None else c.billed.start,
                billed_period_end=None if c.billed is None else c.billed.end,
                effective_per_gpu_hour=(
                    None if c.billed is None else num(float(c.billed.per_gpu_hour))
                ),
                billed_total=money(c.billed_total),
                billed_allocated=money(c.billed_allocated),
                billed_idle=money(c.billed_idle),
            )
            for c in built.costs
        ],
    )
