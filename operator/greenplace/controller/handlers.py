"""kopf handlers: feed the cache, gate pods at admission, and run the placement loop.

Why this module exists: it is the only module that knows kopf. Each watch handler is one line
that records an object in the cache; the admission handler adds the gate; the placement loop
waits for the cache to change (or a periodic resync), then runs one cycle. Everything with a
decision in it lives elsewhere (``cycle``, ``engine``), so this file stays a table of wiring.

Handlers are registered on a registry passed in (``register``), so tests and the CLI each get a
fresh operator with its own configuration. They are coroutines on purpose: kopf runs plain
functions in worker threads, and the cache (with its asyncio.Event) belongs to the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import pathlib
import tempfile
from typing import Any

import kopf
import prometheus_client
from kubernetes import client

from greenplace.accounting import telemetry as accounting_telemetry
from greenplace.api import models
from greenplace.controller import cache as cache_
from greenplace.controller import cycle, feeds, kube, metrics, podspec, reports, status, webhook
from greenplace.signals import telemetry as signal_telemetry

__all__ = ["OperatorConfig", "register", "settings_for"]

logger = logging.getLogger("greenplace.operator")


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """How this operator process runs."""

    kubeconfig: str | None = None
    webhook_host: str = "127.0.0.1"  # the address the API server calls
    webhook_listen: str = "127.0.0.1"  # the address to bind
    webhook_port: int = 9443
    webhook_certs: webhook.ServingFiles | None = None  # None: self-signed for webhook_host
    manage_webhook_configuration: bool = True  # False when the Helm chart owns it
    metrics_port: int | None = None  # serve /metrics on 0.0.0.0:PORT when set
    resync_seconds: float = 30.0
    debounce_seconds: float = 0.2
    prometheus_url: str | None = None  # EnergyReports without spec.prometheus use this
    report_seconds: float = 60.0  # how often every EnergyReport is recomputed
    credentials_dir: pathlib.Path | None = None  # mounted Secrets of the SignalSources

    @property
    def stale_after_seconds(self) -> float:
        """A loop that has not finished a cycle for this long is reported dead (liveness)."""
        return 3 * self.resync_seconds + 30


def settings_for(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # A silent watch stall is a known failure mode: bound every watch request.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.posting.level = logging.WARNING
    return settings


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> cache_.Cache:
    """Register every handler of greenplace on ``registry``; return the cache they feed."""
    cache = cache_.Cache()
    collectors = prometheus_client.CollectorRegistry()
    placement_metrics = metrics.PlacementMetrics(collectors)
    group = models.GROUP

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In-cluster service account first, then the kubeconfig ($KUBECONFIG or ~/.kube/config).
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(
            **kwargs
        ) or kopf.login_with_kubeconfig(**kwargs)
        return info

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        files = config.webhook_certs or webhook.self_signed(
            pathlib.Path(tempfile.mkdtemp(prefix="greenplace-webhook-")), config.webhook_host
        )
        settings.admission.server = kopf.WebhookServer(
            addr=config.webhook_listen,
            port=config.webhook_port,
            host=config.webhook_host,
            certfile=str(files.cert),
            pkeyfile=str(files.key),
            cafile=str(files.ca),
        )
        api = kube.api_client(config.kubeconfig)
        if config.manage_webhook_configuration:
            url = f"https://{config.webhook_host}:{config.webhook_port}"
            await webhook.ensure_configuration(api, url, files.ca)
        await _seed(cache, api)
        if config.metrics_port is not None:
            prometheus_client.start_http_server(config.metrics_port, registry=collectors)
        _start_loops(
            memo,
            cache,
            kube.KubeWriter(api),
            config=config,
            collectors=collectors,
            placement_metrics=placement_metrics,
        )

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        for name in ("loop", "reports"):
            task = memo.get(name)
            if task is not None:
                task.cancel()

    @kopf.on.probe(id="placementLoop", registry=registry)
    async def placement_loop_alive(memo: kopf.Memo, **_: Any) -> float:
        """Seconds since the last finished cycle; raising makes the liveness endpoint fail."""
        task = memo.get("loop")
        if task is None:
            return 0.0  # still starting
        if task.done():
            raise kopf.PermanentError("the placement loop has stopped")
        age = (datetime.datetime.now(datetime.UTC) - cache.last_cycle).total_seconds()
        if age > config.stale_after_seconds:
            raise kopf.PermanentError(f"no placement cycle for {age:.0f}s")
        return age

    @kopf.on.mutate("pods", id=webhook.HANDLER_ID, operations={"CREATE"}, registry=registry)
    async def gate(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        gates = podspec.gates_with_ours(body)
        if gates is not None:
            patch.spec["schedulingGates"] = gates

    @kopf.on.event(group, models.VERSION, "gpupools", registry=registry)
    async def on_pool(type: str, body: kopf.Body, name: str, **_: Any) -> None:
        cache.drop_pool(name) if type == "DELETED" else cache.put_pool(body)

    @kopf.on.event(group, models.VERSION, "placementpolicies", registry=registry)
    async def on_policy(
        type: str, body: kopf.Body, namespace: str | None, name: str, **_: Any
    ) -> None:
        if type == "DELETED":
            cache.drop_policy(namespace or "", name)
        else:
            cache.put_policy(body)

    _watch_inputs(registry, cache)

    @kopf.on.event("", "v1", "nodes", registry=registry)
    async def on_node(type: str, body: kopf.Body, name: str, **_: Any) -> None:
        cache.drop_node(name) if type == "DELETED" else cache.put_node(body)

    @kopf.on.event("", "v1", "pods", registry=registry)
    async def on_pod(type: str, body: kopf.Body, uid: str, **_: Any) -> None:
        cache.drop_pod(uid) if type == "DELETED" else cache.put_pod(body)

    return cache


def _start_loops(
    memo: kopf.Memo,
    cache: cache_.Cache,
    writer: kube.Writer,
    *,
    config: OperatorConfig,
    collectors: prometheus_client.CollectorRegistry,
    placement_metrics: metrics.PlacementMetrics,
) -> None:
    """Start the placement loop (with the signal feeds) and the EnergyReport loop."""
    signal_feeds = feeds.Feeds(
        signal_telemetry.SignalMetrics(collectors), credentials_dir=config.credentials_dir
    )
    recorder = status.StatusRecorder(writer)
    memo["loop"] = asyncio.create_task(
        _placement_loop(
            cache,
            writer,
            config=config,
            placement_metrics=placement_metrics,
            recorder=recorder,
            signal_feeds=signal_feeds,
        )
    )
    accounting_metrics = accounting_telemetry.AccountingMetrics(collectors)
    reporter = reports.Reporter(recorder, accounting_metrics, config.prometheus_url)
    memo["reports"] = asyncio.create_task(_report_loop(cache, reporter, config))


def _watch_inputs(registry: kopf.OperatorRegistry, cache: cache_.Cache) -> None:
    """SignalSource, Budget and EnergyReport events: one line each into the cache."""
    for plural, kind, put in (
        ("signalsources", "SignalSource", cache.put_signal_source),
        ("budgets", "Budget", cache.put_budget),
        ("energyreports", "EnergyReport", cache.put_report),
    ):

        @kopf.on.event(models.GROUP, models.VERSION, plural, id=plural, registry=registry)
        async def on_input(
            type: str,
            body: kopf.Body,
            namespace: str | None,
            name: str,
            _kind: str = kind,
            _put: Any = put,
            **_: Any,
        ) -> None:
            cache.drop(_kind, namespace, name) if type == "DELETED" else _put(body)


async def _seed(cache: cache_.Cache, api: client.ApiClient) -> None:
    """List everything once before the first cycle, so capacity is never judged half-seen."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)

    def items(plural: str) -> list[Any]:
        found: list[Any] = custom.list_cluster_custom_object(models.GROUP, models.VERSION, plural)[
            "items"
        ]
        return found

    def lists() -> tuple[list[Any], ...]:
        serialize = api.sanitize_for_serialization
        return (
            items("gpupools"),
            items("placementpolicies"),
            [serialize(n) for n in core.list_node().items],
            [serialize(p) for p in core.list_pod_for_all_namespaces().items],
            items("signalsources"),
            items("budgets"),
            items("energyreports"),
        )

    puts = (
        cache.put_pool,
        cache.put_policy,
        cache.put_node,
        cache.put_pod,
        cache.put_signal_source,
        cache.put_budget,
        cache.put_report,
    )
    for put, bodies in zip(puts, await asyncio.to_thread(lists), strict=True):
        for body in bodies:
            put(body)


async def _placement_loop(
    cache: cache_.Cache,
    writer: kube.Writer,
    *,
    config: OperatorConfig,
    placement_metrics: metrics.PlacementMetrics,
    recorder: status.StatusRecorder,
    signal_feeds: feeds.Feeds,
) -> None:
    for name, error in cache.invalid.items():
        logger.warning("ignoring invalid %s: %s", name, error)
    sleep_s = config.resync_seconds
    while True:
        try:
            await asyncio.wait_for(cache.changed.wait(), timeout=sleep_s)
            await asyncio.sleep(config.debounce_seconds)  # let a burst of events settle
        except TimeoutError:
            pass  # periodic resync: signals and time move on even when nothing changes
        cache.changed.clear()
        try:
            now = datetime.datetime.now(datetime.UTC)
            report = await cycle.run_cycle(cache, writer, now, recorder, signal_feeds)
            cache.last_cycle = now
            placement_metrics.observe(report)
            sleep_s = report.seconds_until_next_wake(config.resync_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one bad cycle stop placement for good
            logger.exception("placement cycle failed; retrying at the next change or resync")
            sleep_s = config.resync_seconds
            await asyncio.sleep(1.0)
            continue
        busy = report.placed or report.conflicts or report.errors
        logger.log(logging.INFO if busy else logging.DEBUG, report.summary())


async def _report_loop(
    cache: cache_.Cache, reporter: reports.Reporter, config: OperatorConfig
) -> None:
    """Recompute every EnergyReport each ``report_seconds`` (the first after one cycle)."""
    while True:
        await asyncio.sleep(min(config.report_seconds, config.resync_seconds))
        try:
            await reporter.run(cache, datetime.datetime.now(datetime.UTC))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("energy reports failed; retrying at the next period")
        await asyncio.sleep(max(config.report_seconds - config.resync_seconds, 0))
