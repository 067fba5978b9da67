"""Builders of the Kubernetes objects tests send to a real API server, and readers of what comes
back, so each test states only what it is about.

Why this module exists: ``tests/builders.py`` does this for the planner's domain values; this is
the same for manifests (pods, PlacementPolicies, Budgets, SignalSources, GpuPools, EnergyReports)
as a user writes them: no server-set field (uid, resourceVersion), so each can be created with
``kubectl``. Integration and e2e tests build every object here instead of a hand-written dict per
file, and no test module imports another for its helpers. Everything here is pure: the readers
take an object already read (``Kube.custom``, ``Kube.pod`` in ``tests/integration/conftest.py``
read the cluster).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from greenplace.api import models
from greenplace.controller import podspec

__all__ = [
    "API_VERSION",
    "budget",
    "condition",
    "cycles",
    "energy_report",
    "gpu_pod",
    "gpu_pool",
    "kueue_job",
    "kueue_queue",
    "manifest",
    "metric",
    "metric_families",
    "placed_pools",
    "placement_record",
    "pod",
    "pod_list",
    "policy",
    "pool_affinity",
    "pool_affinity_terms",
    "pool_carbon",
    "reading",
    "resource",
    "signal_source",
    "static_source",
]

API_VERSION = f"{models.GROUP}/{models.VERSION}"
Obj = dict[str, Any]


# -- builders ------------------------------------------------------------------------------------


def pod(
    namespace: str,
    name: str,
    limits: Mapping[str, Any] | None = None,
    *,
    gated: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    **spec: Any,
) -> Obj:
    """A pod of one container asking for ``limits``; ``spec`` adds fields to its spec."""
    body: Obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {}),
                     "annotations": dict(annotations or {})},
        "spec": {"containers": [{"name": "main", "image": "example/train:1",
                                 "resources": {"limits": dict(limits or {})}}], **spec},
    }  # fmt: skip
    if gated:
        body["spec"]["schedulingGates"] = [{"name": podspec.GATE}]
    return body


def gpu_pod(namespace: str, name: str, gpus: int = 1, **options: Any) -> Obj:
    """A pod asking for ``gpus`` whole NVIDIA GPUs (``options`` as for ``pod``)."""
    return pod(namespace, name, {"nvidia.com/gpu": str(gpus)}, **options)


def pod_list(namespace: str, names: Iterable[str], gpus: int = 1) -> Obj:
    """One-GPU pods as one ``List``: one ``kubectl apply`` creates them all."""
    return {"apiVersion": "v1", "kind": "List",
            "items": [gpu_pod(namespace, n, gpus) for n in names]}  # fmt: skip


def resource(kind: str, name: str, spec: Mapping[str, Any], namespace: str | None = None) -> Obj:
    """A greenplace custom resource (cluster-scoped without ``namespace``)."""
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": dict(spec)}


def policy(
    namespace: str,
    name: str,
    countries: Sequence[str] | None = None,
    *,
    sovereignty: Mapping[str, Any] | None = None,
    select: Mapping[str, str] | None = None,
    budget: str | None = None,
    **spec: Any,
) -> Obj:
    """A PlacementPolicy allowing ``countries`` (plus any other ``sovereignty`` rule), for the
    pods matching ``select`` (all without it), charged to the Budget ``budget``."""
    rules = {**({"allowedCountries": list(countries)} if countries else {}), **(sovereignty or {})}
    body = {**({"sovereignty": rules} if rules else {}), **spec}
    if select:
        body["podSelector"] = {"matchLabels": dict(select)}
    if budget:
        body["budgetRef"] = {"name": budget}
    return resource("PlacementPolicy", name, body, namespace)


def budget(
    namespace: str,
    name: str,
    *,
    money: float,
    period: str = "Month",
    action: str = "Defer",
    currency: str = "EUR",
    thresholds: Sequence[float] = (0.8,),
) -> Obj:
    spec = {"period": period, "currency": currency, "limits": {"money": money},
            "alertThresholds": list(thresholds), "action": action}  # fmt: skip
    return resource("Budget", name, spec, namespace)


def static_source(values: Mapping[str, float], name: str = "static") -> Obj:
    """A ``Static`` source of a SignalSource: fixed values per subject."""
    return {"name": name, "kind": "Static", "static": {"values": dict(values)}}


def signal_source(name: str, sources: Sequence[Mapping[str, Any]], zones: Sequence[str]) -> Obj:
    return resource("SignalSource", name, {"zones": list(zones), "sources": list(sources)})


def gpu_pool(
    name: str,
    country: str,
    *,
    price: float,
    model: str = "A100",
    watts: int = 400,
    zone: str | None = None,
    **spec: Any,
) -> Obj:
    """A GpuPool of the nodes labelled ``greenplace.dev/pool=<name>``."""
    body = {
        "nodeSelector": {podspec.POOL_LABEL: name},
        "location": {"provider": "p", "region": "r", "country": country,
                     "gridZone": zone or country},
        "gpu": {"model": model, "tdpWatts": watts},
        "price": {"currency": "EUR", "onDemandPerGpuHour": price},
        **spec,
    }  # fmt: skip
    return resource("GpuPool", name, body)


KUEUE_API_VERSION = "kueue.x-k8s.io/v1beta2"


def kueue_queue(
    name: str,
    namespace: str,
    flavors: Mapping[str, Mapping[str, str]],
    *,
    gpus: int,
    check: str | None = None,
) -> list[Obj]:
    """Kueue's ResourceFlavors (name -> nodeLabels), a ClusterQueue ``name`` of ``gpus`` GPUs
    in each, in that order, behind the AdmissionCheck ``check``, and a LocalQueue ``name``."""
    quotas = [
        {"name": flavor, "resources": [{"name": "cpu", "nominalQuota": 64},
                                       {"name": "nvidia.com/gpu", "nominalQuota": gpus}]}
        for flavor in flavors
    ]  # fmt: skip
    spec: Obj = {
        "namespaceSelector": {},
        "resourceGroups": [{"coveredResources": ["cpu", "nvidia.com/gpu"], "flavors": quotas}],
    }
    if check:
        spec["admissionChecksStrategy"] = {"admissionChecks": [{"name": check}]}
    return [
        *({"apiVersion": KUEUE_API_VERSION, "kind": "ResourceFlavor", "metadata": {"name": f},
           "spec": {"nodeLabels": dict(labels)} if labels else {}}
          for f, labels in flavors.items()),
        {"apiVersion": KUEUE_API_VERSION, "kind": "ClusterQueue", "metadata": {"name": name},
         "spec": spec},
        {"apiVersion": KUEUE_API_VERSION, "kind": "LocalQueue",
         "metadata": {"name": name, "namespace": namespace}, "spec": {"clusterQueue": name}},
    ]  # fmt: skip


def kueue_job(namespace: str, name: str, local_queue: str, gpus: int = 1) -> Obj:
    """A batch/Job of one pod asking for ``gpus`` GPUs, sent to the LocalQueue ``local_queue``."""
    container = {"name": "train", "image": "example.invalid/train:1",
                 "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": str(gpus)},
                               "limits": {"nvidia.com/gpu": str(gpus)}}}  # fmt: skip
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"kueue.x-k8s.io/queue-name": local_queue}},
        "spec": {"completions": 1, "template": {"spec": {"restartPolicy": "Never",
                                                         "containers": [container]}}},
    }  # fmt: skip


def energy_report(namespace: str, name: str, **spec: Any) -> Obj:
    return resource("EnergyReport", name, spec, namespace)


def pool_affinity(*pools: str) -> Obj:
    """A required node affinity to ``pools`` (the shape greenplace itself writes)."""
    return pool_affinity_terms([pools])


def pool_affinity_terms(terms: Iterable[Sequence[str]]) -> Obj:
    """A required node affinity of one term per list of pools (a node must match one term)."""
    selectors = [
        {"matchExpressions": [{"key": podspec.POOL_LABEL, "operator": "In", "values": list(t)}]}
        for t in terms
    ]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": selectors}}}  # fmt: skip


def manifest(*objects: Mapping[str, Any]) -> str:
    """The text ``kubectl apply -f -`` reads: one object, or several as YAML documents."""
    return "\n---\n".join(json.dumps(o) for o in objects)


# -- readers -------------------------------------------------------------------------------------


def condition(body: Mapping[str, Any], kind: str) -> Obj | None:
    """The status condition ``kind`` of an object, if it has one."""
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), None)


def pool_carbon(gpupool: Mapping[str, Any]) -> tuple[Any, Any]:
    """A GpuPool's carbon intensity in use and where it comes from, as its status says."""
    status = gpupool.get("status") or {}
    return status.get("carbonGramsPerKwh"), status.get("carbonSource")


def reading(signalsource: Mapping[str, Any], subject: str) -> Obj:
    """A SignalSource's reading for ``subject`` ({} when it has none)."""
    readings = (signalsource.get("status") or {}).get("readings") or []
    return next((r for r in readings if r["subject"] == subject), {})


def placement_record(body: Mapping[str, Any]) -> Obj:
    """The placement record greenplace wrote on a pod."""
    found: Obj = json.loads(body["metadata"]["annotations"][podspec.PLACEMENT_ANNOTATION])
    return found


def placed_pools(body: Mapping[str, Any]) -> list[list[str]]:
    """The pools each required node-affinity term of a pod restricts it to."""
    terms = body["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"]
    return [
        [v for e in t["matchExpressions"] if e["key"] == podspec.POOL_LABEL for v in e["values"]]
        for t in terms
    ]


def metric(metrics: str, series: str) -> float | None:
    """The value of one series (``name`` or ``name{labels}``) in a /metrics page, if present."""
    for line in metrics.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


# The last phase of a placement cycle: its count is the number of cycles that completed.
_LAST_PHASE = 'greenplace_cycle_phase_seconds_count{phase="6-ledger"}'


def cycles(metrics: str) -> int:
    """How many placement cycles completed (``greenplace_cycle_phase_seconds`` counts each
    phase of each cycle; 0 before the first)."""
    return int(metric(metrics, _LAST_PHASE) or 0)


def metric_families(metrics: str) -> dict[str, str]:
    """Family name -> type of every metric a /metrics page declares (``# TYPE`` lines), with
    or without samples yet."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", metrics, flags=re.MULTILINE))
