"""The operator's view of the cluster, fed by watch events and read by the placement cycle.

Why this module exists: kopf handlers must stay thin. They only record what they saw here
(pools, policies, nodes, pods), and mark the cache dirty so the cycle runs. The cycle then works
on a consistent copy, never on the API server directly, like Kueue's cache and snapshot.

Watches can miss a deletion: after a disconnect that outlived the API server's event window
(HTTP 410), kopf lists again but reports only what exists, never what vanished meanwhile. So the
operator lists every kind again from time to time (``reconcile``), and a listing decides only
about objects the watch has not touched since the listing began, so it never undoes a fresher
event. The cache holds watched objects only: what the loops did (the last cycle, the last
listing, the pools they planned with, the last Lease event) is theirs (``loops``).

A cached object that cannot be parsed (for example a GpuPool written before a schema change) is
kept out of planning and its error is remembered (``invalid``); the loops log each one after
the startup listing (``loops.Loops.start``). It is not yet reported in the object's status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pydantic

from greenplace.api import models, timestamps
from greenplace.controller import kueue, podspec, records, resources
from greenplace.controller.kueue import AdmissionCheck

__all__ = [
    "KINDS",
    "KUEUE_WATCHED",
    "WATCHED",
    "Cache",
    "CachedBillingExport",
    "CachedBudget",
    "CachedMultiKueueCluster",
    "CachedNode",
    "CachedPod",
    "CachedPolicy",
    "CachedPool",
    "CachedReport",
    "CachedSignalSource",
    "Watched",
]


class Changes(asyncio.Event):
    """Set by every change that matters to planning, remembering when it was first set.

    ``since`` is the monotonic time of the oldest change not yet cleared: the placement loop's
    settle wait counts from it, so a pod that arrived while a cycle ran waits at most
    ``settle_max_seconds`` in all, not a whole cycle plus a fresh wait after it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.since: float | None = None

    def set(self) -> None:
        if not self.is_set():
            self.since = time.monotonic()
        super().set()

    def clear(self) -> None:
        super().clear()
        self.since = None


@dataclasses.dataclass(frozen=True)
class Watched:
    """One kind of object the operator watches and caches, and where the API serves it."""

    group: str  # "" for the core API group
    version: str
    plural: str
    kind: str  # the cache's name for it (``Cache.put``)


WATCHED = (
    Watched(models.GROUP, models.VERSION, "gpupools", "GpuPool"),
    Watched(models.GROUP, models.VERSION, "placementpolicies", "PlacementPolicy"),
    Watched("", "v1", "nodes", "Node"),
    Watched("", "v1", "pods", "Pod"),
    Watched(models.GROUP, models.VERSION, "signalsources", "SignalSource"),
    Watched(models.GROUP, models.VERSION, "billingexports", "BillingExport"),
    Watched(models.GROUP, models.VERSION, "budgets", "Budget"),
    Watched(models.GROUP, models.VERSION, "energyreports", "EnergyReport"),
)
# Kueue's kinds, watched when the operator answers Kueue's AdmissionChecks (``--kueue``).
KUEUE_WATCHED = tuple(
    Watched(kueue.GROUP, kueue.VERSION, plural, kind) for kind, plural in kueue.KINDS.items()
)
# MultiKueue's worker clusters, watched when the operator dispatches for MultiKueue
# (``--multikueue``, ``dispatch``).
MULTIKUEUE_WATCHED = (
    Watched(kueue.GROUP, kueue.VERSION, "multikueueclusters", "MultiKueueCluster"),
)
KINDS = tuple(watched.kind for watched in (*WATCHED, *KUEUE_WATCHED, *MULTIKUEUE_WATCHED))
# On a manager Workload: greenplace's signed dispatch record (``dispatch``).
DISPATCH_ANNOTATION = "greenplace.dev/dispatch"

M = TypeVar("M", bound=pydantic.BaseModel)


@dataclasses.dataclass(frozen=True)
class CachedPool:
    name: str
    generation: int
    spec: models.GpuPoolSpec
    uid: str = ""  # the involved object of its Events


@dataclasses.dataclass(frozen=True)
class CachedPolicy:
    namespace: str
    name: str
    generation: int
    spec: models.PlacementPolicySpec


@dataclasses.dataclass(frozen=True)
class CachedSignalSource:
    name: str
    generation: int
    spec: models.SignalSourceSpec


@dataclasses.dataclass(frozen=True)
class CachedBillingExport:
    name: str
    generation: int
    spec: models.BillingExportSpec


@dataclasses.dataclass(frozen=True)
class CachedBudget:
    namespace: str
    name: str
    generation: int
    spec: models.BudgetSpec
    uid: str = ""  # the involved object of its Events


@dataclasses.dataclass(frozen=True)
class CachedReport:
    namespace: str
    name: str
    generation: int
    spec: models.EnergyReportSpec


@dataclasses.dataclass(frozen=True)
class CachedNode:
    name: str
    labels: Mapping[str, str]
    gpus: int  # accelerator units: the sum of ``offered``
    schedulable: bool
    offered: Mapping[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class CachedPod:
    uid: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    gpus: int  # accelerator units: the sum of ``request``
    created: datetime.datetime
    node_name: str | None
    gated: bool
    terminal: bool
    placed_pool: str | None  # from a placement record greenplace signed, else None
    body: Mapping[str, Any]
    request: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # The placement record, when greenplace signed it for this pod (``records``).
    record: Mapping[str, Any] | None = None
    # A placement record is present but greenplace did not write it (forged, copied, edited).
    untrusted_record: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def annotations(self) -> Mapping[str, Any]:
        return (self.body.get("metadata") or {}).get("annotations") or {}


@dataclasses.dataclass(frozen=True)
class CachedKueueWorkload:
    """A Kueue Workload and the pods its pod sets will make, as the planner places them."""

    workload: kueue.KueueWorkload
    members: tuple[CachedPod, ...]
    # Our signed placement record on its check (Ready), or our signed dispatch record on the
    # Workload (MultiKueue), as a pod the budget ledger reads (``budgets.Ledger``); None when
    # it has none, or one greenplace did not sign.
    carrier: CachedPod | None = None
    # MultiKueue (``dispatch``): ``status.clusterName``, ``status.nominatedClusterNames``, and
    # the dispatch record when greenplace signed it for this Workload (else None).
    cluster_name: str | None = None
    nominated: tuple[str, ...] = ()
    dispatch_record: Mapping[str, Any] | None = None
    # A dispatch record is present but greenplace did not sign it (forged, copied, edited).
    untrusted_dispatch: bool = False


@dataclasses.dataclass(frozen=True)
class CachedMultiKueueCluster:
    """A MultiKueueCluster: its kubeconfig Secret (None: not a Secret) and Kueue's Active."""

    name: str
    secret: str | None
    active: bool
    message: str
    uid: str = ""


class Cache:
    """Latest known state of the objects greenplace plans with."""

    def __init__(
        self,
        accelerators: resources.Accelerators | None = None,
        signer: records.Signer | None = None,
        *,
        kueue: bool = False,
        multikueue: bool = False,
    ) -> None:
        # What counts as an accelerator, and the key that proves a placement record is ours
        # (None: no record is trusted). Both are set before the first object arrives.
        self.accelerators = accelerators or resources.Accelerators()
        self.signer = signer
        self.pools: dict[str, CachedPool] = {}
        self.policies: dict[tuple[str, str], CachedPolicy] = {}
        self.nodes: dict[str, CachedNode] = {}
        self.pods: dict[str, CachedPod] = {}
        self.signal_sources: dict[str, CachedSignalSource] = {}
        self.billing_exports: dict[str, CachedBillingExport] = {}
        self.budgets: dict[tuple[str, str], CachedBudget] = {}
        self.reports: dict[tuple[str, str], CachedReport] = {}
        # What the watches and the relisting cover: Kueue's kinds only with ``kueue``.
        self.watched = (*WATCHED, *KUEUE_WATCHED) if kueue or multikueue else WATCHED
        if multikueue:
            self.watched = (*self.watched, *MULTIKUEUE_WATCHED)
        self.multikueue_clusters: dict[str, CachedMultiKueueCluster] = {}
        # Kueue (``controller.kueue``): Workloads with their pod sets as pods to plan, the
        # AdmissionChecks' controller names, the flavors' node labels, each queue's flavors.
        self.kueue_workloads: dict[tuple[str, str], CachedKueueWorkload] = {}
        self.admission_checks: dict[str, AdmissionCheck] = {}
        self.flavors: dict[str, Mapping[str, str]] = {}
        self.queue_flavors: dict[str, frozenset[str]] = {}
        self.invalid: dict[str, str] = {}  # "Kind ns/name" -> parse error
        self.changed = Changes()  # set by every change that matters to planning
        # Budget status as last seen (the ledger's starting point after a restart); our own
        # status writes come back here without waking the loop.
        self.budget_status: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._touched: dict[tuple[str, Any], float] = {}  # (kind, key) -> last put/drop
        self._kinds: dict[str, _Kind] = {
            "GpuPool": _Kind(_name_key, self.pools, self.put_pool, self.drop_pool),
            "PlacementPolicy": _Kind(
                _namespaced_key, self.policies, self.put_policy, lambda k: self.drop_policy(*k)
            ),
            "Node": _Kind(_name_key, self.nodes, self.put_node, self.drop_node),
            "Pod": _Kind(lambda b: b["metadata"]["uid"], self.pods, self.put_pod, self.drop_pod),
            "SignalSource": _Kind(
                _name_key,
                self.signal_sources,
                self.put_signal_source,
                lambda k: self.drop("SignalSource", None, k),
            ),
            "BillingExport": _Kind(
                _name_key,
                self.billing_exports,
                self.put_billing_export,
                lambda k: self.drop("BillingExport", None, k),
            ),
            "Budget": _Kind(
                _namespaced_key, self.budgets, self.put_budget, lambda k: self.drop("Budget", *k)
            ),
            "EnergyReport": _Kind(
                _namespaced_key,
                self.reports,
                self.put_report,
                lambda k: self.drop("EnergyReport", *k),
            ),
            "Workload": _Kind(
                _namespaced_key, self.kueue_workloads, self.put_kueue_workload,
                lambda k: self._forget(self.kueue_workloads, k),
            ),
            "AdmissionCheck": _Kind(
                _name_key, self.admission_checks,
                lambda b: self._remember(self.admission_checks, _name_key(b),
                                         AdmissionCheck.of(b)),
                lambda k: self._forget(self.admission_checks, k),
            ),
            "ResourceFlavor": _Kind(
                _name_key, self.flavors,
                lambda b: self._remember(self.flavors, _name_key(b),
                                         _string_map((b.get("spec") or {}).get("nodeLabels"))),
                lambda k: self._forget(self.flavors, k),
            ),
            "ClusterQueue": _Kind(
                _name_key, self.queue_flavors,
                lambda b: self._remember(self.queue_flavors, _name_key(b), _queue_flavors(b)),
                lambda k: self._forget(self.queue_flavors, k),
            ),
            "MultiKueueCluster": _Kind(
                _name_key, self.multikueue_clusters,
                lambda b: self._remember(self.multikueue_clusters, _name_key(b),
                                         _multikueue_cluster(b)),
                lambda k: self._forget(self.multikueue_clusters, k),
            ),
        }  # fmt: skip

    def put(self, kind: str, body: Mapping[str, Any]) -> None:
        """Record the latest state of one object of ``kind`` (a key of ``KINDS``)."""
        handling = self._kinds[kind]
        self._touched[(kind, handling.key_of(body))] = time.monotonic()
        handling.put(body)

    def remove(self, kind: str, body: Mapping[str, Any]) -> None:
        """Forget one object of ``kind`` that was deleted."""
        handling = self._kinds[kind]
        key = handling.key_of(body)
        self._touched[(kind, key)] = time.monotonic()
        handling.forget(key)

    def reconcile(self, kind: str, bodies: list[Mapping[str, Any]], listed_at: float) -> int:
        """Make ``kind`` match a full listing that began at ``listed_at`` (``time.monotonic``).

        Objects the watch touched after ``listed_at`` are left as the watch saw them. Returns
        how many cached objects the listing proved gone.
        """
        handling = self._kinds[kind]
        never = -math.inf
        listed = set()
        for body in bodies:
            key = handling.key_of(body)
            listed.add(key)
            if self._touched.get((kind, key), never) < listed_at:
                self.put(kind, body)
        gone = [
            key
            for key in list(handling.store)
            if key not in listed and self._touched.get((kind, key), never) < listed_at
        ]
        for key in gone:
            handling.forget(key)
        self._touched = {  # tombstones older than this listing have done their job
            (k, key): at
            for (k, key), at in self._touched.items()
            if at >= listed_at or key in self._kinds[k].store
        }
        return len(gone)

    # --- GpuPool -------------------------------------------------------------
    def put_pool(self, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        spec = self._parse(f"GpuPool {name}", models.GpuPoolSpec, body.get("spec"))
        if spec is None:
            self.pools.pop(name, None)
        else:
            generation = body["metadata"].get("generation", 0)
            uid = str(body["metadata"].get("uid", ""))
            self.pools[name] = CachedPool(name, generation, spec, uid)
        self.changed.set()

    def drop_pool(self, name: str) -> None:
        self.pools.pop(name, None)
        self.invalid.pop(f"GpuPool {name}", None)
        self.changed.set()

    # --- PlacementPolicy -----------------------------------------------------
    def put_policy(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        spec = self._parse(
            f"PlacementPolicy {key[0]}/{key[1]}", models.PlacementPolicySpec, body.get("spec")
        )
        if spec is None:
            self.policies.pop(key, None)
        else:
            self.policies[key] = CachedPolicy(*key, meta.get("generation", 0), spec)
        self.changed.set()

    def drop_policy(self, namespace: str, name: str) -> None:
        self.policies.pop((namespace, name), None)
        self.invalid.pop(f"PlacementPolicy {namespace}/{name}", None)
        self.changed.set()

    # --- SignalSource, BillingExport, Budget, EnergyReport --------------------------------------
    def put_signal_source(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        spec = self._parse(
            f"SignalSource {meta['name']}", models.SignalSourceSpec, body.get("spec")
        )
        self._store(self.signal_sources, meta["name"], spec, lambda s: CachedSignalSource(
            meta["name"], meta.get("generation", 0), s))  # fmt: skip

    def put_billing_export(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        spec = self._parse(
            f"BillingExport {meta['name']}", models.BillingExportSpec, body.get("spec")
        )
        self._store(self.billing_exports, meta["name"], spec, lambda s: CachedBillingExport(
            meta["name"], meta.get("generation", 0), s))  # fmt: skip

    def put_budget(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        spec = self._parse(f"Budget {key[0]}/{key[1]}", models.BudgetSpec, body.get("spec"))
        self.budget_status[key] = dict(body.get("status") or {})
        self._store(self.budgets, key, spec, lambda s: CachedBudget(
            *key, meta.get("generation", 0), s, meta.get("uid", "")))  # fmt: skip

    def put_report(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        spec = self._parse(
            f"EnergyReport {key[0]}/{key[1]}", models.EnergyReportSpec, body.get("spec")
        )
        self._store(self.reports, key, spec, lambda s: CachedReport(
            *key, meta.get("generation", 0), s))  # fmt: skip

    def drop(self, kind: str, namespace: str | None, name: str) -> None:
        """Forget a SignalSource, BillingExport, Budget or EnergyReport."""
        stores: dict[str, dict[Any, Any]] = {
            "SignalSource": self.signal_sources,
            "BillingExport": self.billing_exports,
            "Budget": self.budgets,
            "EnergyReport": self.reports,
        }
        store = stores[kind]
        store.pop(name if namespace is None else (namespace, name), None)
        if kind == "Budget":
            self.budget_status.pop((namespace or "", name), None)
        self.invalid.pop(f"{kind} {name if namespace is None else f'{namespace}/{name}'}", None)
        self.changed.set()

    def _store(self, store: dict[Any, Any], key: Any, spec: M | None, make: Any) -> None:
        before = store.get(key)
        if spec is None:
            store.pop(key, None)
        else:
            store[key] = make(spec)
        if store.get(key) != before:  # our own status writes come back as events: ignore them
            self.changed.set()

    # --- Node ----------------------------------------------------------------
    def put_node(self, body: Mapping[str, Any]) -> None:
        meta, spec, status = body["metadata"], body.get("spec", {}), body.get("status", {})
        offered = self.accelerators.offered({"status": status})
        node = CachedNode(
            name=meta["name"],
            labels=dict(meta.get("labels") or {}),
            gpus=sum(offered.values()),
            schedulable=not spec.get("unschedulable", False),
            offered=offered,
        )
        if self.nodes.get(node.name) != node:
            self.nodes[node.name] = node
            self.changed.set()

    def drop_node(self, name: str) -> None:
        if self.nodes.pop(name, None) is not None:
            self.changed.set()

    # --- Pod -----------------------------------------------------------------
    def put_pod(self, body: Mapping[str, Any]) -> None:
        meta, spec = body["metadata"], body.get("spec", {})
        request = self.accelerators.request(body)
        if not request.governed and not podspec.is_gated(body):
            self.drop_pod(meta["uid"])
            return
        previous = self.pods.get(meta["uid"])
        record, trusted = self._placement_record(previous, body)
        pod = CachedPod(
            uid=meta["uid"],
            namespace=meta["namespace"],
            name=meta["name"],
            labels=dict(meta.get("labels") or {}),
            gpus=request.units,
            created=_created(meta.get("creationTimestamp")),
            node_name=spec.get("nodeName") or None,
            gated=podspec.is_gated(body),
            terminal=podspec.is_terminal(body) or bool(meta.get("deletionTimestamp")),
            placed_pool=_placed_pool(record) if trusted else None,
            body=body,
            request=request.per_resource,
            record=record if trusted else None,
            untrusted_record=record is not None and not trusted,
        )
        self.pods[pod.uid] = pod
        if previous is None or _planning_fields(previous) != _planning_fields(pod):
            self.changed.set()

    def _placement_record(
        self, previous: CachedPod | None, body: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any] | None, bool]:
        """The pod's placement record and whether greenplace signed it for this pod. A record
        already verified on this pod, its annotation unchanged, is not parsed and checked
        again: a placed pod's later events (binding, status) repeat it word for word."""
        raw = (body["metadata"].get("annotations") or {}).get(podspec.PLACEMENT_ANNOTATION)
        if (
            raw is not None
            and previous is not None
            and previous.record is not None
            and previous.annotations.get(podspec.PLACEMENT_ANNOTATION) == raw
        ):
            return previous.record, True
        record = podspec.placement_record(body)
        trusted = (
            record is not None
            and self.signer is not None
            and self.signer.verify(body["metadata"]["uid"], record)
        )
        return record, trusted

    def drop_pod(self, uid: str) -> None:
        if self.pods.pop(uid, None) is not None:
            self.changed.set()

    # --- Kueue ---------------------------------------------------------------
    def put_kueue_workload(self, body: Mapping[str, Any]) -> None:
        """A Kueue Workload, its pod sets expanded into the pods the planner places."""
        key = _namespaced_key(body)
        parsed = kueue.parse_workload(body)
        if isinstance(parsed, str):
            self.invalid[f"Workload {key[0]}/{key[1]}"] = parsed
            self._forget(self.kueue_workloads, key)
            return
        members = tuple(
            member for pod_set in parsed.pod_sets for member in self._members(parsed, pod_set)
        )
        record = kueue.recorded(parsed)
        trusted = (
            record is not None
            and self.signer is not None
            and self.signer.verify(parsed.uid, record)
        )
        carrier = dataclasses.replace(members[0], record=record) if trusted and members else None
        status = body.get("status") or {}
        dispatched = _dispatch_record(body)
        signed = (
            dispatched is not None
            and self.signer is not None
            and self.signer.verify(parsed.uid, dispatched)
        )
        if signed and members and carrier is None:
            carrier = dataclasses.replace(members[0], record=dispatched)
        entry = CachedKueueWorkload(
            parsed,
            members,
            carrier,
            cluster_name=status.get("clusterName") or None,
            nominated=tuple(str(c) for c in status.get("nominatedClusterNames") or ()),
            dispatch_record=dispatched if signed else None,
            untrusted_dispatch=dispatched is not None and not signed,
        )
        self._remember(self.kueue_workloads, key, entry)

    def _members(self, parsed: kueue.KueueWorkload, pod_set: kueue.PodSet) -> list[CachedPod]:
        """The ``count`` pods of ``pod_set``, as its template will make them (one body)."""
        meta = dict(pod_set.template.get("metadata") or {})
        body = {
            "metadata": {**meta, "namespace": parsed.namespace},
            "spec": pod_set.template.get("spec") or {},
        }
        request = self.accelerators.request(body)
        return [
            CachedPod(
                uid=f"{parsed.uid}/{pod_set.name}/{index}",
                namespace=parsed.namespace,
                name=f"{pod_set.name}-{index}",
                labels=dict(meta.get("labels") or {}),
                gpus=request.units,
                created=parsed.created,
                node_name=None,
                gated=True,
                terminal=False,
                placed_pool=None,
                body=body,
                request=request.per_resource,
            )
            for index in range(pod_set.count)
        ]

    def _remember(self, store: dict[Any, Any], key: Any, value: Any) -> None:
        if store.get(key) != value:
            store[key] = value
            self.changed.set()

    def _forget(self, store: dict[Any, Any], key: Any) -> None:
        if store.pop(key, None) is not None:
            self.changed.set()

    # -------------------------------------------------------------------------
    def _parse(self, what: str, model: type[M], spec: Any) -> M | None:
        try:
            parsed = model.model_validate(spec or {})
        except pydantic.ValidationError as error:
            self.invalid[what] = _short(error)
            return None
        self.invalid.pop(what, None)
        return parsed


@dataclasses.dataclass(frozen=True)
class _Kind:
    """How the cache keys, stores, records and forgets one kind of object."""

    key_of: Callable[[Mapping[str, Any]], Any]
    store: Mapping[Any, Any]
    put: Callable[[Mapping[str, Any]], None]
    forget: Callable[[Any], None]


def _string_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _queue_flavors(body: Mapping[str, Any]) -> frozenset[str]:
    """Every flavor a ClusterQueue's resource groups name."""
    groups = (body.get("spec") or {}).get("resourceGroups") or []
    return frozenset(
        str(flavor["name"])
        for group in groups
        for flavor in group.get("flavors") or []
        if isinstance(flavor, dict) and flavor.get("name")
    )


def _dispatch_record(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The dispatch record annotation of a Workload (unverified), if it is a JSON object."""
    text = ((body.get("metadata") or {}).get("annotations") or {}).get(DISPATCH_ANNOTATION)
    if not isinstance(text, str):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {}  # present but unreadable: untrusted
    return record if isinstance(record, dict) else {}


def _multikueue_cluster(body: Mapping[str, Any]) -> CachedMultiKueueCluster:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    source = (spec.get("clusterSource") or {}).get("kubeConfig") or {}
    secret = source.get("location") if source.get("locationType", "Secret") == "Secret" else None
    active: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Active"), {}
    )
    return CachedMultiKueueCluster(
        name=_name_key(body),
        secret=str(secret) if secret else None,
        active=active.get("status") == "True",
        message=str(active.get("message") or "Kueue has not reported it Active"),
        uid=str((body.get("metadata") or {}).get("uid") or ""),
    )


def _name_key(body: Mapping[str, Any]) -> str:
    name: str = body["metadata"]["name"]
    return name


def _namespaced_key(body: Mapping[str, Any]) -> tuple[str, str]:
    return (body["metadata"]["namespace"], body["metadata"]["name"])


# Pod annotations greenplace writes itself: a change to them is its own echo, not news.
_OWN_POD_ANNOTATIONS = frozenset({podspec.HOLD_ANNOTATION, podspec.PLACEMENT_ANNOTATION})
# The parts of a pod's spec that decide which pools may take it (a tenant may narrow them
# while the pod is gated: the plan must follow at once, not at the next resync).
_CONSTRAINT_FIELDS = ("affinity", "nodeSelector", "tolerations", "resourceClaims")


def _planning_fields(pod: CachedPod) -> tuple[Any, ...]:
    spec = pod.body.get("spec") or {}
    annotations = (pod.body.get("metadata") or {}).get("annotations") or {}
    return (
        pod.gpus,
        pod.node_name,
        pod.gated,
        pod.terminal,
        pod.placed_pool,
        pod.labels,
        pod.untrusted_record,
        tuple(spec.get(field) for field in _CONSTRAINT_FIELDS),
        {k: v for k, v in annotations.items() if k not in _OWN_POD_ANNOTATIONS},
    )


def _placed_pool(record: Mapping[str, Any] | None) -> str | None:
    pool = (record or {}).get("pool")
    return pool if isinstance(pool, str) else None


def _created(value: Any) -> datetime.datetime:
    """A pod's creationTimestamp; the earliest time when it has none (it waits longest)."""
    return timestamps.parse_rfc3339(value) or datetime.datetime.min.replace(tzinfo=datetime.UTC)


def _short(error: pydantic.ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in error.errors()
    )
