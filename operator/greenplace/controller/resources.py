"""Which accelerators greenplace governs, and how many of them a pod asks for and a node offers.

Why this module exists: sovereignty holds only if *every* way to get an accelerator is governed.
A GPU reaches a pod as an extended resource (``nvidia.com/gpu``, a MIG slice such as
``nvidia.com/mig-1g.10gb``, ``amd.com/gpu``, ``gpu.intel.com/i915``) or through a Dynamic
Resource Allocation claim (``spec.resourceClaims``). The gate, the admission policies and the
planner's capacity must agree on that set, so it is defined once here (``Accelerators``, whose
defaults are the chart's) and every caller asks it.

Rules, as kube-scheduler counts them:

- A container asks for ``requests`` of a resource, else its ``limits`` (for extended resources
  they must be equal). Values are Kubernetes quantities: ``"1k"`` is 1000, ``"2"`` is 2; a
  fractional or unreadable value counts as *unreadable* and the pod is refused by the gate.
- The pod's request is the larger of its app containers' sum (plus every sidecar, i.e. an init
  container with ``restartPolicy: Always``) and each init container's peak (itself plus the
  sidecars started before it).
- A pod with ``resourceClaims`` is governed whatever the claim allocates: the claim's
  DeviceClass lives in another object that a tenant can change after admission, so greenplace
  cannot prove from the pod that it holds no accelerator. Claims count no accelerator units for
  capacity (DRA devices are not node allocatable; see docs/operator.md).
- A resource whose name looks like an accelerator (``ACCELERATOR_LOOKING``) but is not governed
  is refused in a governed namespace, rather than let through unplaced.

A pod's *units* are the sum of its governed resources: one full GPU and one MIG slice are one
unit each. Pools are sized in the same units (their nodes' allocatable governed resources), and
a pod only fits a node offering each resource it asks for (``offers_each``).
"""

from __future__ import annotations

import dataclasses
import decimal
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.utils import quantity

__all__ = [
    "ACCELERATOR_LOOKING",
    "DEFAULT_PREFIXES",
    "DEFAULT_RESOURCES",
    "Accelerators",
    "Request",
    "offers_each",
    "parse_count",
]

DEFAULT_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915", "gpu.intel.com/xe")
# Every MIG profile NVIDIA's device plugin can advertise (mixed strategy).
DEFAULT_PREFIXES = ("nvidia.com/mig-",)
# Resource names that look like an accelerator: refused unless governed.
ACCELERATOR_LOOKING = r"(?i)(gpu|mig-|tpu|npu|xpu|neuron|gaudi|habana|accelerator|fpga)"


def parse_count(value: object) -> int | None:
    """A whole, non-negative count written as a Kubernetes quantity (``"1k"`` is 1000); None
    when it is not one (fractional, negative, unreadable)."""
    try:
        parsed = quantity.parse_quantity(value)
    except (ValueError, TypeError, decimal.InvalidOperation):
        return None
    if parsed < 0 or parsed != parsed.to_integral_value():
        return None
    return int(parsed)


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """What one pod asks for of the governed accelerators."""

    per_resource: Mapping[str, int]
    claims: int  # entries of spec.resourceClaims
    unreadable: tuple[str, ...] = ()  # "container/resource: value" that is not a whole count
    ungoverned: tuple[str, ...] = ()  # accelerator-looking resources outside the governed set

    @property
    def units(self) -> int:
        return sum(self.per_resource.values())

    @property
    def governed(self) -> bool:
        return self.units > 0 or self.claims > 0


@dataclasses.dataclass(frozen=True, slots=True)
class Accelerators:
    """The governed accelerator resources (exact names and name prefixes)."""

    resources: tuple[str, ...] = DEFAULT_RESOURCES
    prefixes: tuple[str, ...] = DEFAULT_PREFIXES

    @classmethod
    def given(
        cls, resources: Iterable[str] | None = None, prefixes: Iterable[str] | None = None
    ) -> Accelerators:
        """The accelerators flags name (``--accelerator-resource``, ``--accelerator-prefix``
        of ``greenplace operate`` and ``explain --from-cluster``); the defaults for none."""
        return cls(tuple(resources or DEFAULT_RESOURCES), tuple(prefixes or DEFAULT_PREFIXES))

    def is_governed(self, resource: str) -> bool:
        return resource in self.resources or resource.startswith(self.prefixes)

    def request(self, pod: Mapping[str, Any]) -> Request:
        """The pod's effective request of each governed resource (see the module docstring)."""
        spec = pod.get("spec") or {}
        unreadable: list[str] = []
        ungoverned: set[str] = set()

        def of(container: Mapping[str, Any]) -> dict[str, int]:
            resources = container.get("resources") or {}
            asked: dict[str, int] = {}
            for section in ("limits", "requests"):  # requests win where both are given
                for name, value in (resources.get(section) or {}).items():
                    if not self.is_governed(name):
                        if re.search(ACCELERATOR_LOOKING, name):
                            ungoverned.add(name)
                        continue
                    count = parse_count(value)
                    if count is None:
                        unreadable.append(f"{container.get('name', '?')}/{name}: {value!r}")
                        continue
                    asked[name] = count
            return asked

        app = _total(of(c) for c in spec.get("containers") or [])
        sidecars: dict[str, int] = {}
        peak: dict[str, int] = {}
        for init in spec.get("initContainers") or []:
            asked = of(init)
            if init.get("restartPolicy") == "Always":
                sidecars = _total((sidecars, asked))
                peak = _maximum(peak, sidecars)
            else:
                peak = _maximum(peak, _total((sidecars, asked)))
        effective = _maximum(_total((app, sidecars)), peak)
        return Request(
            per_resource={k: v for k, v in sorted(effective.items()) if v > 0},
            claims=len(spec.get("resourceClaims") or []),
            unreadable=tuple(unreadable),
            ungoverned=tuple(sorted(ungoverned)),
        )

    def offered(self, node: Mapping[str, Any]) -> dict[str, int]:
        """The node's allocatable governed resources (unreadable values count 0)."""
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        offered = {}
        for name, value in allocatable.items():
            if self.is_governed(name):
                count = parse_count(value)
                if count:
                    offered[name] = count
        return dict(sorted(offered.items()))


def offers_each(offered: Mapping[str, int], request: Mapping[str, int]) -> bool:
    """Whether a node offering ``offered`` has every kind of accelerator ``request`` names (how
    many is the planner's concern: ``PodTooLargeForNode``, ``NoPoolWithRoom``)."""
    return all(offered.get(name, 0) > 0 for name in request)


def _total(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for name, count in part.items():
            total[name] = total.get(name, 0) + count
    return total


def _maximum(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {name: max(a.get(name, 0), b.get(name, 0)) for name in {*a, *b}}
