"""PromQL over GPU energy and serving metrics: what each pod used and served in a window.

Why this module exists: per-request figures need two measured inputs over the same window, the
GPU energy (DCGM, or Kepler) and the requests and tokens served (vLLM, TGI, Triton). This is the
thin adapter that asks Prometheus for both and turns the answers into ``attribution`` values.
It takes a query callable (``greenplace.signals.promql.Querier.vector`` in the operator, so only
one module talks to Prometheus), and reads no clock: the window's end is passed in.

Labels expected on the series (set by the scrape config's relabelling; names configurable):
``pool`` (from the node label ``greenplace.dev/pool``), ``pod``, and on DCGM series ``Hostname``,
``gpu`` and, under MIG, ``GPU_I_PROFILE``. Energy is taken from the first of these that has data:

1. ``increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[w])`` (mJ counter);
2. ``avg_over_time(DCGM_FI_DEV_POWER_USAGE[w])`` x w (W gauge);
3. ``increase(kepler_container_gpu_joules_total[w])`` (J, already per pod: one pseudo-GPU a pod);
4. the power model ``TDP x u + idle x (1 - u)`` x w with u = ``DCGM_FI_DEV_GPU_UTIL`` / 100.

Tenancy: pod-level series also carry ``namespace`` (dcgm-exporter's Kubernetes mapping, the
Kubernetes SD relabelling of serving pods), and pods are keyed by (pool, namespace, pod). With
``namespace`` given (a namespaced report), the serving queries select ``{namespace="<ns>"}``, so
other tenants' models never reach the report. GPU-level energy (DCGM, modelled) is not filtered:
a GPU time-sliced or MIG-partitioned between namespaces must still be split between all its pods.
Only GPUs that hold a pod of the namespace are kept, and for those shared by time-slicing with
other namespaces' pods, those pods' request and token totals (no model label) are read to weigh
the split; ``attribution`` then returns only the namespace's shares.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from greenplace.accounting import attribution, energy

__all__ = [
    "TGI",
    "TRITON",
    "VLLM",
    "EnergySource",
    "LabelNames",
    "Measurement",
    "PowerModel",
    "QueryFn",
    "ServingMetrics",
    "measure",
    "selector",
]


class SampleLike(Protocol):
    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def value(self) -> float: ...


QueryFn = Callable[[str, datetime.datetime], Sequence[SampleLike]]


class EnergySource(enum.StrEnum):
    """Where the GPU energy of a report came from; shown in the report. Never rename."""

    DCGM_ENERGY = "DcgmEnergyCounter"
    DCGM_POWER = "DcgmPower"
    KEPLER = "Kepler"
    MODELLED = "Modelled"
    NONE = "None"


@dataclasses.dataclass(frozen=True, slots=True)
class LabelNames:
    pool: str = "pool"
    pod: str = "pod"
    node: str = "Hostname"
    gpu: str = "gpu"
    mig_profile: str = "GPU_I_PROFILE"
    model: str = "model_name"
    namespace: str = "namespace"


@dataclasses.dataclass(frozen=True, slots=True)
class ServingMetrics:
    """Counter names of a serving stack. ``suffix`` is appended to the token metrics."""

    requests: str
    prompt_tokens: str
    generation_tokens: str


# vLLM: counters labelled model_name (https://docs.vllm.ai/en/latest/design/metrics.html).
VLLM = ServingMetrics(
    "vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"
)
# TGI: one model per server, so model_name comes from a relabelled pod label; token counts are
# the sums of its per-request histograms.
TGI = ServingMetrics(
    "tgi_request_success", "tgi_request_input_length_sum", "tgi_request_generated_tokens_sum"
)
# Triton: requests per model (label ``model``, relabel it to model_name); no token counters in
# the core server, so time-sliced GPUs fall back to request shares.
TRITON = ServingMetrics("nv_inference_request_success", "", "")


@dataclasses.dataclass(frozen=True, slots=True)
class PowerModel:
    """A pool's GPU power figures for the modelled fallback (from its GpuPool spec)."""

    tdp_w: float
    idle_w: float


@dataclasses.dataclass(frozen=True, slots=True)
class Measurement:
    """What Prometheus said about one window."""

    window_end: datetime.datetime
    window: datetime.timedelta
    rows: tuple[attribution.DeviceRow, ...]
    usages: tuple[attribution.Usage, ...]
    energy_source: EnergySource
    # The namespace measured (None: the whole cluster).
    namespace: str | None = None
    # Other namespaces' pod totals (model ""), only to weigh GPUs time-sliced with them.
    foreign: tuple[attribution.Usage, ...] = ()


def measure(
    query: QueryFn,
    window_end: datetime.datetime,
    window: datetime.timedelta,
    *,
    serving: ServingMetrics = VLLM,
    labels: LabelNames = LabelNames(),
    power_models: Mapping[str, PowerModel] | None = None,
    namespace: str | None = None,
) -> Measurement:
    """Ask for energy per GPU series and requests/tokens per pod and model over the window.

    ``namespace``: only that namespace's pods (see the module docstring); None: every pod.
    """
    seconds = window.total_seconds()
    if seconds <= 0:
        raise ValueError(f"accounting window {window} must be positive")
    rows, source = _energy_rows(
        query, window_end, seconds, labels, power_models or {}, namespace=namespace
    )
    usages = _usages(query, window_end, seconds, serving, labels, namespace=namespace)
    foreign: tuple[attribution.Usage, ...] = ()
    if namespace is not None:
        rows = _devices_of(rows, namespace)
        shared = _foreign_time_sliced(rows, namespace)
        if shared:
            totals = _usages(
                query, window_end, seconds, serving, labels, namespace=None, by_model=False
            )
            foreign = tuple(u for u in totals if (u.pool, u.namespace, u.pod) in shared)
    return Measurement(window_end, window, rows, usages, source, namespace, foreign)


def selector(labels: LabelNames, namespace: str | None) -> str:
    """The PromQL label selector of a namespace (empty for the whole cluster)."""
    if namespace is None:
        return ""
    value = namespace.replace("\\", "\\\\").replace('"', '\\"')
    return f'{{{labels.namespace}="{value}"}}'


def _devices_of(
    rows: tuple[attribution.DeviceRow, ...], namespace: str
) -> tuple[attribution.DeviceRow, ...]:
    """The rows of GPUs that hold at least one pod of ``namespace``."""
    mine = {(r.pool, r.node, r.gpu) for r in rows if r.pod and r.namespace == namespace}
    return tuple(r for r in rows if (r.pool, r.node, r.gpu) in mine)


def _foreign_time_sliced(
    rows: tuple[attribution.DeviceRow, ...], namespace: str
) -> set[tuple[str, str, str]]:
    """(pool, namespace, pod) of other namespaces' pods time-slicing a GPU with ``namespace``."""
    return {
        (r.pool, r.namespace, r.pod)
        for r in rows
        if r.pod and r.namespace != namespace and not r.mig_profile
    }


def _energy_rows(
    query: QueryFn,
    at: datetime.datetime,
    seconds: float,
    labels: LabelNames,
    power_models: Mapping[str, PowerModel],
    *,
    namespace: str | None,
) -> tuple[tuple[attribution.DeviceRow, ...], EnergySource]:
    w = f"[{seconds:.0f}s]"
    device = (
        f"{labels.pool}, {labels.node}, {labels.gpu}, {labels.namespace}, {labels.pod}, "
        f"{labels.mig_profile}"
    )
    hours = seconds / 3600
    counter = query(f"sum by ({device}) (increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{w}))", at)
    if counter:
        return _rows(counter, labels, energy.wh_from_millijoules, hours), EnergySource.DCGM_ENERGY
    power = query(f"max by ({device}) (avg_over_time(DCGM_FI_DEV_POWER_USAGE{w}))", at)
    if power:
        return _rows(
            power, labels, lambda w_: energy.wh_from_mean_power(w_, seconds), hours
        ), EnergySource.DCGM_POWER
    # Kepler is already per pod: no GPU to share, so it can be filtered like serving metrics.
    kepler = query(
        f"sum by ({labels.pool}, {labels.namespace}, {labels.pod}) "
        f"(increase(kepler_container_gpu_joules_total{selector(labels, namespace)}{w}))",
        at,
    )
    if kepler:
        return _rows(kepler, labels, lambda j: j / 3600, hours, per_pod=True), EnergySource.KEPLER
    util = query(f"max by ({device}) (avg_over_time(DCGM_FI_DEV_GPU_UTIL{w}))", at)
    modelled = [s for s in util if s.labels.get(labels.pool, "") in power_models]
    if modelled:

        def wh(sample: SampleLike) -> float:
            model = power_models[sample.labels.get(labels.pool, "")]
            u = min(max(sample.value / 100.0, 0.0), 1.0)
            return energy.wh_from_mean_power(
                energy.modelled_power_w(model.tdp_w, model.idle_w, u), seconds
            )

        return tuple(
            _row(s, labels, wh(s), hours, per_pod=False) for s in modelled
        ), EnergySource.MODELLED
    return (), EnergySource.NONE


def _rows(
    samples: Sequence[SampleLike],
    labels: LabelNames,
    to_wh: Callable[[float], float],
    hours: float,
    per_pod: bool = False,
) -> tuple[attribution.DeviceRow, ...]:
    return tuple(_row(s, labels, to_wh(s.value), hours, per_pod) for s in samples)


def _row(
    sample: SampleLike, labels: LabelNames, wh: float, hours: float, per_pod: bool
) -> attribution.DeviceRow:
    get = sample.labels.get
    pod = get(labels.pod, "")
    namespace = get(labels.namespace, "")
    return attribution.DeviceRow(
        pool=get(labels.pool, ""),
        node=get(labels.node, ""),
        gpu=(f"pod:{namespace}/{pod}" if namespace else f"pod:{pod}")
        if per_pod
        else get(labels.gpu, ""),
        pod=pod,
        mig_profile=get(labels.mig_profile, ""),
        gpu_wh=max(wh, 0.0),
        gpu_hours=hours,
        namespace=namespace,
    )


def _usages(
    query: QueryFn,
    at: datetime.datetime,
    seconds: float,
    serving: ServingMetrics,
    labels: LabelNames,
    *,
    namespace: str | None,
    by_model: bool = True,
) -> tuple[attribution.Usage, ...]:
    by = f"{labels.pool}, {labels.namespace}, {labels.pod}"
    if by_model:
        by += f", {labels.model}"
    where = selector(labels, namespace)
    figures: dict[tuple[str, str, str, str], list[float]] = {}
    for position, metric in enumerate(
        (serving.requests, serving.prompt_tokens, serving.generation_tokens)
    ):
        if not metric:
            continue
        for sample in query(f"sum by ({by}) (increase({metric}{where}[{seconds:.0f}s]))", at):
            get = sample.labels.get
            ns = get(labels.namespace, "")
            if namespace is not None and ns != namespace:
                continue  # belt and braces: the selector already keeps only this namespace
            key = (get(labels.pool, ""), ns, get(labels.pod, ""), get(labels.model, ""))
            figures.setdefault(key, [0.0, 0.0, 0.0])[position] = max(sample.value, 0.0)
    return tuple(
        attribution.Usage(pool, pod, model, values[0], values[1], values[2], ns)
        for (pool, ns, pod, model), values in sorted(figures.items())
    )
