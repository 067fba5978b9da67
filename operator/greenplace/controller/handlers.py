"""kopf handlers: feed the cache, gate pods at admission, and run the placement loop.

Why this module exists: it is the only module that knows kopf. Each watch handler is one line
that records an object in the cache; the admission handler adds the gate; the placement loop
waits for the cache to change (or a periodic resync), then runs one cycle. Everything with a
decision in it lives elsewhere (``cycle``, ``engine``), so this file stays a table of wiring.

Every replica watches and serves the webhook; only the holder of the Lease (``leadership``)
runs cycles and reports. A replica that becomes leader lists everything again before its first
cycle, so it acts on an exact view, and the leader lists again every ``relist_seconds`` to
catch deletions a watch can miss (see ``cache``).

Handlers are registered on a registry passed in (``register``), so tests and the CLI each get a
fresh operator with its own configuration. They are coroutines on purpose: kopf runs plain
functions in worker threads, and the cache (with its asyncio.Event) belongs to the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import pathlib
import socket
import tempfile
import time
import uuid
from typing import Any

import kopf
import prometheus_client
from kubernetes import client

from greenplace.accounting import telemetry as accounting_telemetry
from greenplace.api import models
from greenplace.controller import cache as cache_
from greenplace.controller import (
    cycle,
    feeds,
    kube,
    leadership,
    metrics,
    podspec,
    records,
    reports,
    resources,
    status,
    webhook,
)
from greenplace.signals import telemetry as signal_telemetry

__all__ = ["WATCHED", "OperatorConfig", "register", "relist", "settings_for"]

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
    debounce_seconds: float = 0.2  # a burst has settled once this long passes without a change
    settle_max_seconds: float = 1.0  # ... but a cycle never waits longer than this for it
    prometheus_url: str | None = None  # EnergyReports without spec.prometheus use this
    report_seconds: float = 60.0  # how often every EnergyReport is recomputed
    credentials_dir: pathlib.Path | None = None  # mounted Secrets of the SignalSources
    namespace: str | None = None  # the operator's own (None: unknown, e.g. out of cluster)
    signal_memory_seconds: float = 30.0  # each SignalSource subject is read at most this often
    # Trace SignalSources read files only inside these directories; none: trace sources refused.
    trace_directories: tuple[pathlib.Path, ...] = ()
    # What HTTP SignalSources may reach besides https to public addresses: CIDRs, addresses,
    # hostnames or *.domain (signals.egress); loopback, private and link-local need an entry.
    allow_signal_hosts: tuple[str, ...] = ()
    allow_insecure_signal_http: bool = False  # http:// SignalSource URLs allowed (else https only)
    identity: str = dataclasses.field(  # this replica's name in the Lease and in Events
        default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    )
    lease_namespace: str = "default"  # where the leader-election Lease lives
    lease_seconds: float = 15.0  # a crashed leader is replaced after this long
    watch_inactivity_seconds: float = 70.0  # a watch silent this long is reconnected
    relist_seconds: float = 300.0  # the leader lists everything again this often
    # The accelerator resources governed: gated, checked by admission, counted as capacity.
    accelerators: resources.Accelerators = dataclasses.field(default_factory=resources.Accelerators)
    # File holding the key that signs placement records (the chart mounts a Secret); None:
    # read or create the Secret records.KEY_SECRET in lease_namespace through the API.
    record_key_file: pathlib.Path | None = None

    @property
    def stale_after_seconds(self) -> float:
        """A loop that has not finished an iteration for this long is reported dead."""
        return 3 * self.resync_seconds + 30

    @property
    def watch_stale_seconds(self) -> float:
        """No Lease event through the watch for this long: the watches are reported dead.

        Someone writes the Lease every ``lease_seconds`` at most (the leader renews it, or a
        standby takes it over); a stalled watch is reconnected after the inactivity timeout and
        then replays what it missed. Beyond both, events are not arriving.
        """
        return self.watch_inactivity_seconds + 2 * self.lease_seconds + 30


def settings_for(config: OperatorConfig) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    # A silent watch stall is a known failure mode: the server ends every watch request after
    # server_timeout, the client gives up after client_timeout, and a stream that carries
    # nothing (not even the API server's bookmark, sent about every minute) for
    # inactivity_timeout is reconnected from its last resourceVersion.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.watching.inactivity_timeout = config.watch_inactivity_seconds
    settings.networking.request_timeout = 30
    settings.posting.level = logging.WARNING
    # Only greenplace's own Lease, filtered by the API server (not every node's heartbeat).
    settings.watching.label_selectors["coordination.k8s.io", "leases"] = (
        f"{leadership.LEASE_LABEL}=true"
    )
    return settings


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> cache_.Cache:
    """Register every handler of greenplace on ``registry``; return the cache they feed."""
    cache = cache_.Cache(config.accelerators)
    collectors = prometheus_client.CollectorRegistry()
    placement_metrics = metrics.PlacementMetrics(collectors)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In-cluster service account first, then the kubeconfig ($KUBECONFIG or ~/.kube/config).
        in_cluster: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        if in_cluster is not None:
            return _api_server_from_env(in_cluster)
        info: kopf.ConnectionInfo | None = kopf.login_with_kubeconfig(**kwargs)
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
        cache.signer = await _record_signer(config, api)  # before any pod is cached
        if config.manage_webhook_configuration:
            url = f"https://{config.webhook_host}:{config.webhook_port}"
            await webhook.ensure_configuration(api, url, files.ca)
        await relist(cache, api)
        if config.metrics_port is not None:
            prometheus_client.start_http_server(config.metrics_port, registry=collectors)
        elected = _elect(memo, cache, api, config, placement_metrics)
        _start_loops(
            memo,
            cache,
            api,
            elected,
            config=config,
            collectors=collectors,
            placement_metrics=placement_metrics,
        )

    @kopf.on.cleanup(registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        for name in ("loop", "reports", "election"):
            task = memo.get(name)
            if task is not None:
                task.cancel()
        elected = memo.get("leadership")
        if elected is not None:
            await elected.release()

    @kopf.on.probe(id="health", registry=registry)
    async def health(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
        return _health(memo, cache, config)

    @kopf.on.mutate("pods", id=webhook.HANDLER_ID, operations={"CREATE"}, registry=registry)
    async def gate(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        refused = podspec.refusal(body, config.accelerators)
        if refused is not None:
            raise kopf.AdmissionError(refused, code=403)
        gates = podspec.gates_with_ours(body, config.accelerators)
        if gates is not None:
            patch.spec["schedulingGates"] = gates

    @kopf.on.event(
        "coordination.k8s.io", "v1", "leases", labels={leadership.LEASE_LABEL: "true"},
        registry=registry,
    )  # fmt: skip
    async def on_lease(namespace: str | None, **_: Any) -> None:
        if namespace == config.lease_namespace:
            cache.watch_heartbeat = time.monotonic()

    for group, version, plural, kind in WATCHED:

        @kopf.on.event(group, version, plural, id=plural, registry=registry)
        async def on_object(type: str, body: kopf.Body, _kind: str = kind, **_: Any) -> None:
            cache.remove(_kind, body) if type == "DELETED" else cache.put(_kind, body)

    return cache


def _health(memo: kopf.Memo, cache: cache_.Cache, config: OperatorConfig) -> dict[str, Any]:
    """Liveness: the loops run, watch events arrive, and the leader finishes cycles."""
    loop, elected = memo.get("loop"), memo.get("leadership")
    if loop is None or elected is None:
        return {"starting": True}
    if loop.done():
        raise kopf.PermanentError("the placement loop has stopped")
    watch_age = time.monotonic() - cache.watch_heartbeat
    if watch_age > config.watch_stale_seconds:
        raise kopf.PermanentError(
            f"no watch event for {watch_age:.0f}s (the Lease is written at least every "
            f"{config.lease_seconds:.0f}s): the watches are stalled"
        )
    loop_age = (datetime.datetime.now(datetime.UTC) - cache.last_cycle).total_seconds()
    if loop_age > config.stale_after_seconds:
        raise kopf.PermanentError(f"the placement loop has not turned for {loop_age:.0f}s")
    return {
        "leading": elected.leading,
        "watchAgeSeconds": round(watch_age, 1),
        "loopAgeSeconds": round(loop_age, 1),
    }


async def _record_signer(config: OperatorConfig, api: client.ApiClient) -> records.Signer:
    """The signer of placement records, from the mounted key or the key Secret."""
    if config.record_key_file is not None:
        return records.Signer(config.record_key_file.read_bytes().strip())
    return records.Signer(await asyncio.to_thread(records.load_key, api, config.lease_namespace))


def _api_server_from_env(info: kopf.ConnectionInfo) -> kopf.ConnectionInfo:
    """Reach the API server at $KUBERNETES_SERVICE_HOST:PORT, as client-go does in a pod.

    kopf's service-account login names ``https://kubernetes.default.svc``, which needs cluster
    DNS; the kubelet puts the Service's address in the environment of every container.
    """
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    if not host:
        return info
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return dataclasses.replace(info, server=server)


# (group, version, plural, cache kind) of everything the operator plans with.
WATCHED = (
    (models.GROUP, models.VERSION, "gpupools", "GpuPool"),
    (models.GROUP, models.VERSION, "placementpolicies", "PlacementPolicy"),
    ("", "v1", "nodes", "Node"),
    ("", "v1", "pods", "Pod"),
    (models.GROUP, models.VERSION, "signalsources", "SignalSource"),
    (models.GROUP, models.VERSION, "budgets", "Budget"),
    (models.GROUP, models.VERSION, "energyreports", "EnergyReport"),
)


def _elect(
    memo: kopf.Memo,
    cache: cache_.Cache,
    api: client.ApiClient,
    config: OperatorConfig,
    placement_metrics: metrics.PlacementMetrics,
) -> leadership.Leadership:
    """Start competing for the Lease; a change of leadership wakes the placement loop."""

    def changed(leading: bool) -> None:
        placement_metrics.leader.set(1 if leading else 0)
        cache.changed.set()  # wake the loop: to start placing, or to stop

    lease = leadership.LeaseSettings(
        config.lease_namespace, config.identity, lease_seconds=config.lease_seconds
    )
    elected = leadership.Leadership(api, lease, on_change=changed)
    memo["leadership"] = elected
    memo["election"] = asyncio.create_task(elected.run())
    return elected


def _start_loops(
    memo: kopf.Memo,
    cache: cache_.Cache,
    api: client.ApiClient,
    elected: leadership.Leadership,
    *,
    config: OperatorConfig,
    collectors: prometheus_client.CollectorRegistry,
    placement_metrics: metrics.PlacementMetrics,
) -> None:
    """Start the placement loop (with the signal feeds) and the EnergyReport loop."""
    writer = kube.KubeWriter(api, instance=config.identity)
    signal_feeds = feeds.Feeds(
        signal_telemetry.SignalMetrics(collectors),
        memory=datetime.timedelta(seconds=config.signal_memory_seconds),
        credentials_dir=config.credentials_dir,
        own_namespace=config.namespace,
        trace_directories=config.trace_directories,
        allow_hosts=config.allow_signal_hosts,
        allow_insecure_http=config.allow_insecure_signal_http,
    )
    recorder = status.StatusRecorder(writer)
    memo["loop"] = asyncio.create_task(
        _placement_loop(
            cache,
            api,
            writer,
            elected,
            config=config,
            placement_metrics=placement_metrics,
            recorder=recorder,
            signal_feeds=signal_feeds,
        )
    )
    accounting_metrics = accounting_telemetry.AccountingMetrics(collectors)
    reporter = reports.Reporter(
        recorder,
        accounting_metrics,
        config.prometheus_url,
        own_namespace=config.namespace,
        allow_hosts=config.allow_signal_hosts,
        allow_insecure_http=config.allow_insecure_signal_http,
    )
    memo["reports"] = asyncio.create_task(_report_loop(cache, reporter, elected, config))


async def relist(cache: cache_.Cache, api: client.ApiClient) -> int:
    """List every watched kind and reconcile the cache with it; return objects found gone."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    serialize = api.sanitize_for_serialization

    def listing(group: str, plural: str) -> list[Any]:
        timeout = (5, 60)
        if plural == "nodes":
            return [serialize(n) for n in core.list_node(_request_timeout=timeout).items]
        if plural == "pods":
            pods = core.list_pod_for_all_namespaces(_request_timeout=timeout)
            return [serialize(p) for p in pods.items]
        found: dict[str, Any] = custom.list_cluster_custom_object(
            group, models.VERSION, plural, _request_timeout=timeout
        )
        return list(found["items"])

    listed_at = time.monotonic()
    cache.listed_at = listed_at
    listings = await asyncio.to_thread(
        lambda: [listing(group, plural) for group, _, plural, _ in WATCHED]
    )
    return sum(
        cache.reconcile(kind, bodies, listed_at)
        for (_, _, _, kind), bodies in zip(WATCHED, listings, strict=True)
    )


async def _placement_loop(
    cache: cache_.Cache,
    api: client.ApiClient,
    writer: kube.Writer,
    elected: leadership.Leadership,
    *,
    config: OperatorConfig,
    placement_metrics: metrics.PlacementMetrics,
    recorder: status.StatusRecorder,
    signal_feeds: feeds.Feeds,
) -> None:
    for name, error in cache.invalid.items():
        logger.warning("ignoring invalid %s: %s", name, error)
    sleep_s = config.resync_seconds
    state = cycle.LoopState()
    led = False  # whether we led at the previous turn: gaining the lead calls for a listing
    failures = 0  # consecutive failed cycles: retried after 2, 4, 8 ... s (at most a resync)
    while True:
        try:
            await asyncio.wait_for(cache.changed.wait(), timeout=sleep_s)
            await _settle(cache, config)
        except TimeoutError:
            pass  # periodic resync: signals and time move on even when nothing changes
        cache.changed.clear()
        now = datetime.datetime.now(datetime.UTC)
        if not elected.leading:  # a standby keeps its cache warm and waits
            cache.last_cycle, led, sleep_s = now, False, config.resync_seconds
            continue
        try:
            # The startup listing serves a replica that leads at once; one that gains the lead
            # later lists again, and the leader does every relist_seconds.
            age = time.monotonic() - cache.listed_at
            if not led:  # another replica may have charged Budgets meanwhile
                state.ledger.forget()
            if (not led and age > config.lease_seconds) or age > config.relist_seconds:
                gone = await relist(cache, api)
                placement_metrics.relisted.inc()
                if gone:
                    logger.info("listing found %d objects deleted while unwatched", gone)
            led = True
            report = await cycle.run_cycle(cache, writer, now, recorder, signal_feeds, state=state)
            cache.last_cycle = now
            placement_metrics.observe(report)
            sleep_s = report.seconds_until_next_wake(config.resync_seconds)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one bad cycle stop placement for good
            placement_metrics.cycle_failures.inc()
            cache.last_cycle = now  # the loop turns (liveness); failures show in metrics
            failures += 1
            sleep_s = min(config.resync_seconds, 2.0**failures)
            logger.exception("placement cycle failed; retrying within %.0f s", sleep_s)
            await asyncio.sleep(1.0)
            continue
        failures = 0
        busy = report.placed or report.conflicts or report.errors
        logger.log(logging.INFO if busy else logging.DEBUG, report.summary())


async def _settle(cache: cache_.Cache, config: OperatorConfig) -> None:
    """Let a burst of events settle: wait until the cache is quiet for ``debounce_seconds``.

    Pods created one after another (``kubectl apply`` of a list, a Job's pods) are then planned
    in one cycle, which can leave room for the last of them, instead of being placed greedily
    as they trickle in. Bounded by ``settle_max_seconds`` so a steady stream still gets cycles.
    """
    deadline = time.monotonic() + config.settle_max_seconds
    while (remaining := deadline - time.monotonic()) > 0:
        cache.changed.clear()
        try:
            await asyncio.wait_for(
                cache.changed.wait(), timeout=min(config.debounce_seconds, remaining)
            )
        except TimeoutError:
            return  # quiet


async def _report_loop(
    cache: cache_.Cache,
    reporter: reports.Reporter,
    elected: leadership.Leadership,
    config: OperatorConfig,
) -> None:
    """Recompute every EnergyReport each ``report_seconds`` (the first after one cycle)."""
    while True:
        await asyncio.sleep(min(config.report_seconds, config.resync_seconds))
        try:
            if elected.leading:
                await reporter.run(cache, datetime.datetime.now(datetime.UTC))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("energy reports failed; retrying at the next period")
        await asyncio.sleep(max(config.report_seconds - config.resync_seconds, 0))
