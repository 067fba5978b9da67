"""A recording ``kube.Writer`` and builders of the Kubernetes objects the operator reads.

Why this module exists: the placement cycle is tested without an API server where the point is
its logic (what it patches, charges and reports), with one fake that applies JSON patches the
way the API server does (``jsonpatch``, including the ``test`` operation that guards each
placement by resourceVersion) and can refuse writes on demand.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jsonpatch

from greenplace.controller import billing, exports, kube, podspec

NOW_ISO = "2026-03-10T11:00:00Z"


@dataclasses.dataclass
class RecordingWriter:
    """Pods by ``namespace/name``; every write is recorded; ``refuse`` maps a pod to the
    API server's refusal message for any patch of it."""

    pods: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    events: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)
    statuses: list[tuple[str, str | None, str, dict[str, Any]]] = dataclasses.field(
        default_factory=list
    )
    refuse: dict[str, str] = dataclasses.field(default_factory=dict)
    patches: list[tuple[str, str, str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    # Kueue objects by (kind, namespace, name): server-side apply of a status merges its
    # map-type lists by their key (name, type), as the API server does.
    kueue_objects: dict[tuple[str, str | None, str], dict[str, Any]] = dataclasses.field(
        default_factory=dict
    )

    def add(self, body: Mapping[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(dict(body))
        self.pods[f"{stored['metadata']['namespace']}/{stored['metadata']['name']}"] = stored
        return stored

    async def patch_pod(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> Mapping[str, Any]:
        key = f"{namespace}/{name}"
        if key in self.refuse:
            raise kube.AdmissionRefusedError(f"pod {key}", self.refuse[key])
        try:
            patched = jsonpatch.apply_patch(self.pods[key], ops)
        except (KeyError, jsonpatch.JsonPatchTestFailed, jsonpatch.JsonPointerException) as e:
            raise kube.WriteConflictError(f"pod {key}: {e}") from e
        version = int(patched["metadata"].get("resourceVersion", "0")) + 1
        patched["metadata"]["resourceVersion"] = str(version)
        self.pods[key] = patched
        return copy.deepcopy(patched)

    async def pod_event(self, pod: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        self.events.append((pod["metadata"]["name"], kind, reason, message))

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> None:
        self.statuses.append((plural, namespace, name, json.loads(json.dumps(status))))

    async def apply_kueue_status(
        self, kind: str, namespace: str | None, name: str, status: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        self.statuses.append((kind, namespace, name, json.loads(json.dumps(status))))
        stored = self.kueue_objects.setdefault(
            (kind, namespace, name), {"metadata": {"namespace": namespace, "name": name}}
        )
        merged = stored.setdefault("status", {})
        for field, entries in status.items():
            key = "type" if field == "conditions" else "name"
            by_key = {e[key]: e for e in merged.get(field, [])}
            by_key.update({e[key]: copy.deepcopy(e) for e in entries})
            merged[field] = list(by_key.values())
        return copy.deepcopy(stored)

    async def patch_kueue(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """A JSON merge patch (RFC 7386) of the stored object; also listed in ``patches``."""
        self.patches.append((kind, namespace, name, json.loads(json.dumps(patch))))
        stored = self.kueue_objects.setdefault(
            (kind, namespace, name), {"metadata": {"namespace": namespace, "name": name}}
        )
        _merge(stored, patch)
        return copy.deepcopy(stored)

    def last_status(self, plural: str, name: str) -> dict[str, Any]:
        found = [s for p, _, n, s in self.statuses if p == plural and n == name]
        assert found, f"no status written for {plural} {name}"
        return found[-1]


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386: null removes a key, an object merges, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def pod(
    name: str,
    resources: Mapping[str, Any] | None = None,
    *,
    namespace: str = "ml",
    annotations: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    gated: bool = True,
    **spec: Any,
) -> dict[str, Any]:
    """A pod asking for ``resources`` (limits) in one container; gated by default."""
    body_spec: dict[str, Any] = {
        "containers": [{"name": "c", "resources": {"limits": dict(resources or {})}}],
        **spec,
    }
    if gated:
        body_spec["schedulingGates"] = [{"name": podspec.GATE}]
    return {
        "metadata": {
            "name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
            "resourceVersion": "1", "creationTimestamp": NOW_ISO,
            "annotations": dict(annotations or {}), "labels": dict(labels or {}),
        },
        "spec": body_spec,
    }  # fmt: skip


def gpus(count: int | str, resource: str = "nvidia.com/gpu") -> dict[str, Any]:
    return {resource: count}


def node(name: str, pool: str, offered: Mapping[str, Any], **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"greenplace.dev/pool": pool, **labels}},
        "status": {"allocatable": {k: str(v) for k, v in offered.items()}},
    }


def pool_spec(
    pool: str, country: str, *, gco2: float = 50.0, price: float = 2.0, legal_home: str = ""
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeSelector": {"greenplace.dev/pool": pool},
        "location": {"provider": "p", "region": "r", "country": country, "gridZone": country},
        "gpu": {"model": "H100", "tdpWatts": 700},
        "price": {"currency": "EUR", "onDemandPerGpuHour": price},
        "carbonIntensity": {"fallbackGramsPerKwh": gco2},
    }
    if legal_home:
        spec["jurisdiction"] = {"legalHome": legal_home}
    return spec


def gpu_pool(name: str, country: str, **options: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "generation": 1},
        "spec": pool_spec(name, country, **options),
    }


def policy(name: str, namespace: str = "ml", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace, "generation": 1}, "spec": spec}


def billing_from_files(paths: Sequence[pathlib.Path]) -> Any:
    """The operator's prices from FOCUS files, as ``greenplace operate --focus-export`` gives
    them (``billing.shorthand``); no Secret is read for files."""

    def no_secret(kind: str, namespace: str, name: str) -> Any:
        raise AssertionError(f"files need no Secret, yet {kind} {namespace}/{name} was read")

    return billing.BillingPrices(
        exports.BillingExports(no_secret, "greenplace-system"),
        [billing.shorthand([str(p) for p in paths])],
    )
