"""kopf handlers: the table of wiring between kopf's events and the operator's parts.

Why this module exists: it is the only module that knows kopf. Each handler routes and decides
nothing: a watch event goes to the cache (``cache.Cache.put``/``remove``), a pod creation to the
admission gate (``podspec``; ``webhook.kueue_placement`` spares pods Kueue admitted through
greenplace's check), a Lease event and the liveness probe to the loops (``loops``), and
the login to the service account or the kubeconfig. The startup handler wires the process: the
webhook server (with a self-signed certificate unless one is mounted), the API client, the
record signer, the gate (``--out-of-cluster``: the gate policy or the webhook configuration,
``--gate``) and the metrics server, then
starts the loops (``loops.Loops.start``); the cleanup handler stops them. What the operator
decides lives elsewhere (``cycle``, ``engine``), and what the loops carry between turns lives
with them (``loops``), not in the cache.

Every replica watches and serves the webhook; only the holder of the Lease (``leadership``)
runs cycles and reports (``loops``).

Handlers are registered on a registry passed in (``register``), so tests and the CLI each get a
fresh operator with its own configuration (``config.OperatorConfig``). All but the login are
coroutines on purpose: kopf runs plain functions in worker threads, and the cache (with its
asyncio.Event) and the loops belong to the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import pathlib
import tempfile
from collections.abc import Iterable
from typing import Any

import kopf
import prometheus_client
from kubernetes import client

from greenplace.controller import cache as cache_
from greenplace.controller import config as config_
from greenplace.controller import (
    credentials,
    gatepolicy,
    kube,
    leadership,
    ledger,
    loops,
    policyreports,
    records,
    webhook,
)

__all__ = ["NoEssence", "OperatorConfig", "register", "settings_for"]

# Where the operator's settings are defined; named here too for the callers that wire it.
OperatorConfig = config_.OperatorConfig


def settings_for(config: config_.OperatorConfig) -> kopf.OperatorSettings:
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
    settings.persistence.diffbase_storage = NoEssence()
    # Only greenplace's own Lease, filtered by the API server (not every node's heartbeat).
    settings.watching.label_selectors["coordination.k8s.io", "leases"] = (
        f"{leadership.LEASE_LABEL}=true"
    )
    return settings


class NoEssence(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, not built: greenplace has only event handlers, which read no diff.

    kopf works out every watch event's "essence" (a deep copy of the body without its system
    fields, then a diff against the last handled one) for change handlers (on.create,
    on.update, ...) and daemons, even when a resource has none: profiled in bench_burst, that
    was the largest part of the operator's CPU per pod event (issue 15). greenplace registers
    neither (``tests/unit/test_handlers_essence.py`` fails if one is added), so the essence is
    empty and the diff never computed from a copy. Nothing is stored either: kopf stores the
    essence only after change handlers ran.
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[Any] | None = None,
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def register(registry: kopf.OperatorRegistry, config: config_.OperatorConfig) -> cache_.Cache:
    """Register every handler of greenplace on ``registry``; return the cache they feed."""
    cache = cache_.Cache(config.accelerators, kueue=config.kueue, multikueue=config.multikueue)
    collectors = prometheus_client.CollectorRegistry()
    running = loops.Loops(config, cache, collectors)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In-cluster service account first, then the kubeconfig ($KUBECONFIG or ~/.kube/config).
        in_cluster: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs)
        if in_cluster is not None:
            return _api_server_from_env(in_cluster)
        info: kopf.ConnectionInfo | None = kopf.login_with_kubeconfig(**kwargs)
        return info

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        files = config.webhook_certs or webhook.self_signed(
            pathlib.Path(tempfile.mkdtemp(prefix="greenplace-webhook-")), config.webhook_host
        )
        settings.admission.server = kopf.WebhookServer(
            addr=config.listen_address,
            port=config.webhook_port,
            host=config.webhook_host,
            certfile=str(files.cert),
            pkeyfile=str(files.key),
            cafile=str(files.ca),
        )
        api = kube.api_client(config.kubeconfig)
        cache.signer = await _record_signer(config, api)  # before any pod is cached
        if config.ledger:  # before the loops start: the first cycle appends (docs/audit.md)
            running.cycle_state.audit = await ledger.open_ledger(config, api)
        # Certification credentials (docs/credentials.md): read in the operator's namespace.
        running.cycle_state.credentials = credentials.Credentials(
            api, config.lease_namespace_in_use, config.trusted_issuers_file
        )
        if config.policy_reports:  # wgpolicyk8s.io PolicyReports (docs/audit.md)
            running.cycle_state.reports = policyreports.PolicyReports(api)
        if config.manage_webhook_configuration:
            url = f"https://{config.webhook_host}:{config.webhook_port}"
            await _install_gate(config, api, url, files.ca)
        if config.metrics_port is not None:
            prometheus_client.start_http_server(config.metrics_port, registry=collectors)
        await running.start(api)

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await running.stop()

    @kopf.on.probe(id="health", registry=registry)
    async def health(**_: Any) -> dict[str, Any]:
        try:
            return running.health()
        except loops.StalledError as stalled:
            raise kopf.PermanentError(str(stalled)) from None

    @kopf.on.mutate("pods", id=webhook.HANDLER_ID, operations={"CREATE"}, registry=registry)
    async def gate(body: kopf.Body, patch: kopf.Patch, warnings: list[str], **_: Any) -> None:
        workloads = (entry.workload for entry in cache.kueue_workloads.values())
        decision = webhook.decide(body, config.accelerators, workloads, cache.signer)
        if decision.refused is not None:
            raise kopf.AdmissionError(decision.refused, code=403)
        if decision.warning is not None:
            warnings.append(decision.warning)
        if decision.gates is not None:
            patch.spec["schedulingGates"] = decision.gates

    @kopf.on.event(
        "coordination.k8s.io", "v1", "leases", labels={leadership.LEASE_LABEL: "true"},
        registry=registry,
    )  # fmt: skip
    async def on_lease(namespace: str | None, **_: Any) -> None:
        running.lease_event(namespace)

    for watched in cache.watched:

        @kopf.on.event(
            watched.group, watched.version, watched.plural, id=watched.plural, registry=registry
        )
        async def on_object(
            type: str, body: kopf.Body, _kind: str = watched.kind, **_: Any
        ) -> None:
            cache.remove(_kind, body) if type == "DELETED" else cache.put(_kind, body)

    return cache


async def _install_gate(
    config: config_.OperatorConfig, api: client.ApiClient, url: str, ca: pathlib.Path
) -> None:
    """Out of cluster: gate with the policy (1.36+, or --gate=policy) or the webhook, and remove
    the other, the new one in place first so no pod is created ungated meanwhile. With --kueue
    the policy leaves pods carrying a Kueue record to the webhook (``gatepolicy``)."""
    mode = config.gate
    if mode == "auto":
        version = await asyncio.to_thread(client.VersionApi(api).get_code)
        mode = "policy" if gatepolicy.supported(version.major, version.minor) else "webhook"
    if mode == "policy":
        await gatepolicy.ensure(api, config.accelerators, kueue_records=config.kueue)
        if config.kueue:
            await webhook.ensure_configuration(api, url, ca, records_only=True)
        else:
            await webhook.remove_configuration(api)
    else:
        await webhook.ensure_configuration(api, url, ca)
        await gatepolicy.remove(api)
    logging.getLogger(__name__).info("gating pods with the %s", mode)


async def _record_signer(config: config_.OperatorConfig, api: client.ApiClient) -> records.Signer:
    """The signer of placement records, from the mounted key or the key Secret."""
    if config.record_key_file is not None:
        return records.Signer(config.record_key_file.read_bytes().strip())
    return records.Signer(
        await asyncio.to_thread(records.load_key, api, config.lease_namespace_in_use)
    )


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
