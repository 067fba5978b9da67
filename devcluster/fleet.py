"""Create fake GPU nodes (run by kwok) and their GpuPool objects from a fleet file.

Why this module exists: placement is only meaningful on a fleet with several pools, countries,
providers, prices and grids. A fleet file describes, per pool, how many nodes of how many GPUs
exist and the ``GpuPool`` spec a platform team would declare for them. The loader creates the
nodes with ``nvidia.com/gpu`` capacity, the pool's ``nodeSelector`` labels and the standard
topology labels, annotated so that kwok (and only kwok) manages them and makes bound pods Running.

Fleet file format (YAML)::

    pools:
      - name: ovh-gra-h100          # GpuPool name and node name prefix
        nodes: 2
        gpusPerNode: 8
        spec: {...}                 # a GpuPool spec; spec.nodeSelector labels go on the nodes
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from kubernetes import client

__all__ = ["FleetPool", "apply_fleet", "load_fleet", "node_manifests", "pool_manifest"]

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"


@dataclasses.dataclass(frozen=True)
class FleetPool:
    name: str
    nodes: int
    gpus_per_node: int
    spec: Mapping[str, Any]


def load_fleet(path: pathlib.Path) -> list[FleetPool]:
    """Read a fleet file; raise ValueError naming the pool and field that is wrong."""
    document = yaml.safe_load(path.read_text()) or {}
    pools = []
    for index, entry in enumerate(document.get("pools", [])):
        where = f"{path}: pools[{index}]"
        try:
            pools.append(
                FleetPool(
                    name=str(entry["name"]),
                    nodes=int(entry["nodes"]),
                    gpus_per_node=int(entry["gpusPerNode"]),
                    spec=dict(entry["spec"]),
                )
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{where}: missing or invalid field {error}") from error
    if not pools:
        raise ValueError(f"{path}: no pools")
    return pools


def node_manifests(pool: FleetPool) -> list[dict[str, Any]]:
    """The Node objects of ``pool``: labels from its nodeSelector and location."""
    location = pool.spec.get("location", {})
    labels = {
        "type": "kwok",
        "topology.kubernetes.io/region": str(location.get("region", "")),
        "topology.kubernetes.io/zone": str(location.get("zone", "")),
        "nvidia.com/gpu.product": str(pool.spec.get("gpu", {}).get("model", "")),
        **{str(k): str(v) for k, v in pool.spec.get("nodeSelector", {}).items()},
    }
    capacity = {
        "cpu": "64", "memory": "512Gi", "pods": "110", GPU_RESOURCE: str(pool.gpus_per_node),
    }  # fmt: skip
    return [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"{pool.name}-{i}",
                "labels": {**labels, "kubernetes.io/hostname": f"{pool.name}-{i}"},
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            },
            "spec": {},
            "status": {"capacity": capacity, "allocatable": capacity},
        }
        for i in range(pool.nodes)
    ]


def pool_manifest(pool: FleetPool) -> dict[str, Any]:
    return {
        "apiVersion": "greenplace.dev/v1alpha1",
        "kind": "GpuPool",
        "metadata": {"name": pool.name},
        "spec": dict(pool.spec),
    }


def apply_fleet(
    api: client.ApiClient, pools: Sequence[FleetPool], *, with_gpu_pools: bool = True
) -> None:
    """Create (or leave as they are) every node of the fleet and, optionally, its GpuPools."""
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    for pool in pools:
        for node in node_manifests(pool):
            _create_if_absent(lambda body=node: core.create_node(body))
        if with_gpu_pools:
            body = pool_manifest(pool)
            _create_if_absent(
                lambda body=body: custom.create_cluster_custom_object(
                    "greenplace.dev", "v1alpha1", "gpupools", body
                )
            )


def _create_if_absent(create: Any) -> None:
    try:
        create()
    except client.ApiException as error:
        if error.status != 409:
            raise
