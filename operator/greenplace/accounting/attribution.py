"""Split measured GPU energy between the models that used the GPU, and say how.

Why this module exists: DCGM measures a physical GPU, not a pod, and under MIG or time-slicing
several pods (and models) share one GPU, each series often repeating the whole GPU's figure
(dcgm-exporter #257, #201; kepler #1926). Charging each pod the whole GPU double-counts; ignoring
the sharing hides it. The rule here, per physical GPU (pool, node, gpu index):

1. the GPU's energy is the largest figure any of its series reports (never their sum);
2. one pod on it: the pod gets it all (``WholeGpu``);
3. MIG instances: each pod gets its slice fraction, compute slices / ``mig_slices_total``
   (``3g.40gb`` -> 3/7 on A100/H100), and unallocated slices stay ``unattributed``
   (``MigSlice``);
4. several pods time-sliced: shares by tokens served in the window (``TokenShare``), by
   requests when no tokens are counted (``RequestShare``), evenly when nothing was served
   (``EvenSplit``);
5. a pod serving several models (LoRA adapters) splits its share the same way as in 4.

GPU-hours follow the same fractions. Each share carries the methods used, and the report shows
them. A GPU with no pod, or a pod with no serving metrics, stays ``unattributed`` per pool, its
energy and its GPU-hours (the idle cost of the report: ``report.PoolCost``): per pool, the
shares' GPU-hours and the unattributed ones add up to the GPU-hours measured.

Pods are keyed by (pool, namespace, pod): two namespaces may run pods of the same name. With
``namespace`` given (a namespaced ``EnergyReport``), every GPU is still split between all its
pods, whatever their namespace, but only that namespace's shares are returned, and
``unattributed`` holds only the share of its own pods that served nothing: idle GPUs, free MIG
slices and other tenants' pods are none of its business (they show in a Cluster report).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["Attribution", "DeviceRow", "Method", "Share", "Usage", "attribute", "mig_fraction"]


class Method(enum.StrEnum):
    """How a share of a GPU's energy was attributed; shown in reports. Never rename."""

    WHOLE_GPU = "WholeGpu"
    MIG_SLICE = "MigSlice"
    TOKEN_SHARE = "TokenShare"
    REQUEST_SHARE = "RequestShare"
    EVEN_SPLIT = "EvenSplit"


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceRow:
    """One energy series of a physical GPU over the window (one per pod or MIG instance)."""

    pool: str
    node: str
    gpu: str
    pod: str
    mig_profile: str
    gpu_wh: float
    gpu_hours: float
    namespace: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """What one pod served for one model over the window (from serving metrics)."""

    pool: str
    pod: str
    model: str
    requests: float
    prompt_tokens: float
    generation_tokens: float
    namespace: str = ""

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.generation_tokens


@dataclasses.dataclass(frozen=True, slots=True)
class Share:
    """GPU energy and GPU-hours charged to one model on one pool."""

    pool: str
    model: str
    gpu_wh: float
    gpu_hours: float
    methods: frozenset[Method]


@dataclasses.dataclass(frozen=True, slots=True)
class Attribution:
    shares: tuple[Share, ...]
    unattributed_gpu_wh: Mapping[str, float]
    unattributed_gpu_hours: Mapping[str, float] = dataclasses.field(default_factory=dict)


_MIG_SLICES = re.compile(r"^(\d+)g\.")


def mig_fraction(profile: str, slices_total: int = 7) -> float:
    """Compute-slice fraction of a MIG profile such as ``3g.40gb`` (3 of 7 slices)."""
    match = _MIG_SLICES.match(profile)
    if match is None or not 0 < int(match.group(1)) <= slices_total:
        raise ValueError(
            f"MIG profile {profile!r} is not '<slices>g.<memory>' with 1..{slices_total} "
            "slices; check the GPU_I_PROFILE label or mig_slices_total"
        )
    return int(match.group(1)) / slices_total


_PodKey = tuple[str, str, str]  # pool, namespace, pod


def attribute(
    rows: Iterable[DeviceRow],
    usages: Iterable[Usage],
    mig_slices_total: int = 7,
    *,
    namespace: str | None = None,
) -> Attribution:
    """Charge each GPU's energy to the models that used it (see the module docstring).

    ``namespace``: return only the shares of that namespace's pods (None: every pod). Usages of
    other namespaces may be given without models (pod totals), only to weigh shared GPUs.
    """
    by_device: dict[tuple[str, str, str], list[DeviceRow]] = collections.defaultdict(list)
    for row in rows:
        by_device[(row.pool, row.node, row.gpu)].append(row)
    by_pod: dict[_PodKey, list[Usage]] = collections.defaultdict(list)
    for usage in usages:
        by_pod[(usage.pool, usage.namespace, usage.pod)].append(usage)

    charged: dict[tuple[str, str], list[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    methods: dict[tuple[str, str], set[Method]] = collections.defaultdict(set)
    unattributed: dict[str, float] = collections.defaultdict(float)
    idle_hours: dict[str, float] = collections.defaultdict(float)
    for (pool, _, _), device_rows in sorted(by_device.items()):
        device_wh = max(r.gpu_wh for r in device_rows)
        device_hours = max(r.gpu_hours for r in device_rows)
        pods = sorted({((r.namespace, r.pod), r.mig_profile) for r in device_rows if r.pod})
        shares = _pod_shares(pool, pods, by_pod, mig_slices_total)
        if namespace is None:
            free = 1.0 - sum(f for _, f, _ in shares)
            unattributed[pool] += device_wh * free
            idle_hours[pool] += device_hours * free
        for (pod_namespace, pod), fraction, method in shares:
            if namespace is not None and pod_namespace != namespace:
                continue
            served = by_pod.get((pool, pod_namespace, pod), [])
            if not served:
                unattributed[pool] += device_wh * fraction
                idle_hours[pool] += device_hours * fraction
                continue
            weights, split = _weights(served)
            for usage, weight in zip(served, weights, strict=True):
                key = (pool, usage.model)
                charged[key][0] += device_wh * fraction * weight
                charged[key][1] += device_hours * fraction * weight
                methods[key].add(method)
                if len(served) > 1:
                    methods[key].add(split)
    return Attribution(
        shares=tuple(
            Share(pool, model, wh, hours, frozenset(methods[(pool, model)]))
            for (pool, model), (wh, hours) in sorted(charged.items())
        ),
        unattributed_gpu_wh={p: wh for p, wh in sorted(unattributed.items()) if wh > 1e-12},
        unattributed_gpu_hours={p: h for p, h in sorted(idle_hours.items()) if h > 1e-12},
    )


def _pod_shares(
    pool: str,
    pods: Sequence[tuple[tuple[str, str], str]],
    by_pod: Mapping[_PodKey, list[Usage]],
    mig_slices_total: int,
) -> list[tuple[tuple[str, str], float, Method]]:
    if not pods:
        return []
    if any(profile for _, profile in pods):
        return [
            (pod, mig_fraction(profile, mig_slices_total), Method.MIG_SLICE)
            for pod, profile in pods
        ]
    if len(pods) == 1:
        return [(pods[0][0], 1.0, Method.WHOLE_GPU)]
    names = sorted({pod for pod, _ in pods})
    totals = [_pod_total(pool, pod, by_pod.get((pool, *pod), [])) for pod in names]
    weights, method = _weights(totals)
    return [(pod, weight, method) for pod, weight in zip(names, weights, strict=True)]


def _pod_total(pool: str, pod: tuple[str, str], usages: Sequence[Usage]) -> Usage:
    """All models of one pod added up, to weigh pods that time-slice one GPU."""
    return Usage(
        pool,
        pod[1],
        "",
        sum(u.requests for u in usages),
        sum(u.prompt_tokens for u in usages),
        sum(u.generation_tokens for u in usages),
    )


def _weights(usages: Sequence[Usage]) -> tuple[list[float], Method]:
    """Shares by tokens, else by requests, else even; with the method that was used."""
    for method, measure in (
        (Method.TOKEN_SHARE, [u.tokens for u in usages]),
        (Method.REQUEST_SHARE, [u.requests for u in usages]),
    ):
        total = sum(measure)
        if total > 0:
            return [m / total for m in measure], method
    return [1.0 / len(usages)] * len(usages), Method.EVEN_SPLIT
