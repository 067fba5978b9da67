"""The few writes greenplace makes to the API server, behind one small protocol.

Why this module exists: the placement cycle decides; something must then patch pods, post
Events and update the status of greenplace's own objects. ``Writer`` is that contract (the
cycle's unit tests run against ``tests/fakes.py``'s ``RecordingWriter``, which applies the JSON
patches as the API server does and refuses writes on demand), and ``KubeWriter`` implements it
with the official client, running its blocking calls in threads so the operator's event loop
never stalls.

Events are posted in the background (``pod_event`` queues one and returns), at most
``EVENT_CONCURRENCY`` at a time on their own threads, as client-go's EventRecorder posts them:
a burst's releases (the patches, ``WRITE_THREADS`` at a time) never wait behind its Events, and
the API server spends most of its time on the writes pods wait for. Measured on the local
control plane (``bench.bench_burst``): a held backlog of 2,000 pods drained in 30 s with each
Event awaited after its patch. Each client connection is kept alive in a pool sized to the
threads (``api_client``): the official client's default pool (5 per CPU) was smaller than 16
writers on 2 CPUs, so every round of patches opened and TLS-handshook fresh connections.

Contract: every method but ``pod_event`` raises a ``WriteError`` (``greenplace.errors`` draws
the tree):
``WriteConflictError`` when the object changed or vanished under us (the cycle then simply
re-plans from fresher state), ``AdmissionRefusedError`` when an admission policy refused the
write (expected while a namespace has no PlacementPolicy); and ``client.ApiException``
otherwise. Every call has a timeout (``REQUEST_TIMEOUT``): a
connection that went silent (a forgotten NAT entry) fails the write instead of hanging the
cycle, and the next cycle retries on a fresh connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import functools
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from kubernetes import client, config

from greenplace import errors
from greenplace.api import models, timestamps
from greenplace.controller import kueue

if TYPE_CHECKING:
    from greenplace.controller import cache as cache_

__all__ = [
    "AdmissionRefusedError",
    "KubeWriter",
    "WriteConflictError",
    "WriteError",
    "Writer",
    "api_client",
    "list_watched",
]

logger = logging.getLogger("greenplace.operator")

REQUEST_TIMEOUT = (5.0, 15.0)  # seconds to connect, seconds to wait for the response
WRITE_THREADS = 16  # blocking client calls in flight at once (the cycle patches 16 at a time)
EVENT_CONCURRENCY = 4  # Events posted at once, behind the patches
EVENT_BACKLOG = 50_000  # Events waiting to be posted; beyond it, new ones are dropped (logged)
# Kept-alive connections: the writers, the Event posters, and the election, listings and
# status writes beside them.
CONNECTIONS = WRITE_THREADS + EVENT_CONCURRENCY + 4


class WriteError(errors.GreenplaceError):
    """A write greenplace made did not happen; the object is as it was."""


class WriteConflictError(WriteError):
    """The object changed (resourceVersion test failed) or was deleted; re-plan and retry."""


class AdmissionRefusedError(WriteError):
    """The API server refused the write (an admission policy or webhook, or the object would
    be invalid, e.g. annotations too large); ``code`` is a stable reason, ``reason`` the API
    server's message."""

    def __init__(self, where: str, reason: str, code: str = "AdmissionRefused") -> None:
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.code = code


class Writer(Protocol):
    async def patch_pod(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> Mapping[str, Any]: ...

    async def pod_event(self, pod: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """An Event on ``pod`` (or the object it names: ``kind``/``apiVersion`` in the body).
        ``KubeWriter`` queues it and returns: a failure to post it is logged, never raised."""
        ...

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None: ...

    async def apply_kueue_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Server-side apply of greenplace's part of a Kueue object's status (``kind``: a
        ``kueue.KINDS`` key): the entries greenplace owns of map-type lists (its admission
        check's state, its AdmissionCheck's conditions) merge with what Kueue writes.
        Returns the object as the API server stored it."""
        ...

    async def patch_kueue(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """JSON merge patch of a namespaced Kueue object (``kind``: a ``kueue.KINDS`` key),
        not its status: a Workload's ``spec.active`` and greenplace's annotations on it.
        Returns the object as the API server stored it."""
        ...


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A client from ``kubeconfig``, else $KUBECONFIG/~/.kube/config, else in-cluster, that
    keeps ``CONNECTIONS`` connections alive (one per thread that writes through it)."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = max(
        configuration.connection_pool_maxsize or 0, CONNECTIONS
    )
    return client.ApiClient(configuration)


class KubeWriter:
    """``Writer`` over the official kubernetes client."""

    def __init__(
        self, api: client.ApiClient, component: str = "greenplace", instance: str = "greenplace"
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._component = component
        self._instance = instance  # which replica wrote: Events say who placed a pod
        # Our own threads: the event loop's default pool has only CPUs + 4 of them.
        self._threads = concurrent.futures.ThreadPoolExecutor(
            WRITE_THREADS, thread_name_prefix="greenplace-write"
        )
        self._event_threads = concurrent.futures.ThreadPoolExecutor(
            EVENT_CONCURRENCY, thread_name_prefix="greenplace-event"
        )
        # Events to post, and the tasks posting them: made in the first event loop that posts.
        self._events: asyncio.Queue[tuple[str, dict[str, Any]]] | None = None
        self._posters: list[asyncio.Task[None]] = []
        self.events_dropped = 0  # Events not posted because EVENT_BACKLOG were waiting

    async def _run(self, call: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    async def patch_pod(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> Mapping[str, Any]:
        def call() -> Mapping[str, Any]:
            try:
                # The raw JSON, not a V1Pod: building the model and turning it back into a dict
                # cost more CPU than the request itself.
                response = self._core.patch_namespaced_pod(
                    name, namespace, ops, _request_timeout=REQUEST_TIMEOUT, _preload_content=False
                )
            except client.ApiException as error:
                if _is_conflict(error):
                    raise WriteConflictError(f"pod {namespace}/{name}: {error.reason}") from error
                if error.status in (403, 422) and "admission" in (error.body or "").lower():
                    raise AdmissionRefusedError(
                        f"pod {namespace}/{name}", _message(error)
                    ) from error
                if error.status == 422 and "metadata.annotations: Too long" in (error.body or ""):
                    raise AdmissionRefusedError(
                        f"pod {namespace}/{name}", _message(error), "AnnotationsTooLarge"
                    ) from error
                raise
            result: Mapping[str, Any] = json.loads(response.data)
            return result

        result: Mapping[str, Any] = await self._run(call)
        return result

    async def pod_event(self, pod: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        now = timestamps.rfc3339(datetime.datetime.now(datetime.UTC))
        body = {
            "metadata": {
                "name": f"{meta['name']}.{uuid.uuid4().hex[:10]}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {  # a pod, unless the body says it is another kind
                "apiVersion": pod.get("apiVersion", "v1"),
                "kind": pod.get("kind", "Pod"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self._component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
        }
        self._post_later(meta["namespace"], body)

    def _post_later(self, namespace: str, body: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        if self._events is None or not self._posters or self._posters[0].get_loop() is not loop:
            self._events = asyncio.Queue(EVENT_BACKLOG)
            self._posters = [
                asyncio.create_task(self._post_events(self._events))
                for _ in range(EVENT_CONCURRENCY)
            ]
        try:
            self._events.put_nowait((namespace, body))
        except asyncio.QueueFull:
            self.events_dropped += 1
            if self.events_dropped % 1000 == 1:
                logger.warning(
                    "%d Events dropped: %d are waiting to be posted (is the API server slow?)",
                    self.events_dropped,
                    EVENT_BACKLOG,
                )

    async def _post_events(self, queue: asyncio.Queue[tuple[str, dict[str, Any]]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            namespace, body = await queue.get()
            try:
                await loop.run_in_executor(
                    self._event_threads,
                    functools.partial(
                        self._core.create_namespaced_event, namespace, body,
                        _request_timeout=REQUEST_TIMEOUT, _preload_content=False,
                    ),
                )  # fmt: skip
            except Exception as error:  # an Event is worth a log line, never a stopped poster
                involved = body["involvedObject"]
                logger.warning(
                    "could not post the %s Event on %s %s/%s: %s",
                    body["reason"],
                    involved["kind"],
                    namespace,
                    involved["name"],
                    getattr(error, "reason", None) or error,
                )
            finally:
                queue.task_done()

    @property
    def events_waiting(self) -> int:
        """Events queued and not yet posted."""
        return self._events.qsize() if self._events is not None else 0

    async def flush(self) -> None:
        """Return once every Event queued so far is posted (or failed, logged)."""
        if self._events is not None:
            await self._events.join()

    async def close(self, timeout: float = 5.0) -> None:
        """Post what is queued, for at most ``timeout`` seconds (a graceful stop), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        for poster in self._posters:
            poster.cancel()
        await asyncio.gather(*self._posters, return_exceptions=True)
        self._posters = []

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        body = {"status": dict(status)}
        group, version = models.GROUP, models.VERSION

        def write() -> Any:
            if namespace is None:
                return self._custom.patch_cluster_custom_object_status(
                    group, version, plural, name, body, _request_timeout=REQUEST_TIMEOUT
                )
            return self._custom.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, body, _request_timeout=REQUEST_TIMEOUT
            )

        await self._run(lambda: _unless_gone(f"{plural} {namespace}/{name}", write))

    async def apply_kueue_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        plural = kueue.KINDS[kind]
        body = {
            "apiVersion": kueue.API_VERSION,
            "kind": kind,
            "metadata": {"name": name, **({"namespace": namespace} if namespace else {})},
            "status": dict(status),
        }
        group, version = kueue.GROUP, kueue.VERSION
        options: dict[str, Any] = {
            "field_manager": kueue.FIELD_MANAGER,
            "force": True,
            "_content_type": "application/apply-patch+yaml",  # JSON is YAML
            "_request_timeout": REQUEST_TIMEOUT,
        }

        def write() -> Any:
            if namespace is None:
                return self._custom.patch_cluster_custom_object_status(
                    group, version, plural, name, body, **options
                )
            return self._custom.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, body, **options
            )

        stored: Mapping[str, Any] = await self._run(
            lambda: _unless_gone(f"{kind} {namespace}/{name}", write)
        )
        return stored

    async def patch_kueue(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        plural = kueue.KINDS[kind]

        def write() -> Any:
            return self._custom.patch_namespaced_custom_object(
                kueue.GROUP, kueue.VERSION, namespace, plural, name, dict(patch),
                _content_type="application/merge-patch+json",
                _request_timeout=REQUEST_TIMEOUT,
            )  # fmt: skip

        stored: Mapping[str, Any] = await self._run(
            lambda: _unless_gone(f"{kind} {namespace}/{name}", write)
        )
        return stored


def list_watched(
    api: client.ApiClient,
    watched: cache_.Watched,
    timeout: tuple[float, float] = (5, 60),
) -> list[Any]:
    """Every object of one watched kind, across namespaces, as JSON bodies: what the operator's
    relisting reconciles its cache with, and what ``greenplace explain --from-cluster`` fills
    a cache from (one listing code for both)."""
    if watched.plural == "nodes":
        nodes = client.CoreV1Api(api).list_node(_request_timeout=timeout)
        return [api.sanitize_for_serialization(n) for n in nodes.items]
    if watched.plural == "pods":
        pods = client.CoreV1Api(api).list_pod_for_all_namespaces(_request_timeout=timeout)
        return [api.sanitize_for_serialization(p) for p in pods.items]
    found: dict[str, Any] = client.CustomObjectsApi(api).list_cluster_custom_object(
        watched.group, watched.version, watched.plural, _request_timeout=timeout
    )
    return list(found["items"])


def _unless_gone(what: str, write: Callable[[], Any]) -> Mapping[str, Any]:
    """``write()``'s stored object; a 404 (the object was deleted meanwhile) is a conflict."""
    try:
        stored: Mapping[str, Any] = write()
    except client.ApiException as error:
        if error.status == 404:
            raise WriteConflictError(f"{what} is gone") from error
        raise
    return stored


def _is_conflict(error: client.ApiException) -> bool:
    """404: gone; 409: conflict; 422 from a failed JSON-patch ``test`` or ``remove`` op."""
    if error.status in (404, 409):
        return True
    body = error.body or ""
    return error.status == 422 and ("testing value" in body or "nonexistent" in body)


def _message(error: client.ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message", error.reason))
    except ValueError:
        return str(error.reason)
