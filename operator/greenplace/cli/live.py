"""The live cluster as the operator sees it, for ``greenplace explain --from-cluster``.

Why this module exists: a policy should be tried before it is applied. The planner is pure, so
the question "what would this policy do to the pods that wait, and to those already placed?"
has an exact answer, provided the snapshot is the operator's own. So nothing here builds a
snapshot: it lists the kinds the operator watches with the operator's listing code
(``kube.list_watched``), feeds them into the operator's ``cache.Cache`` (with the operator's
record key, so only records it signed count, as in the operator) and builds with
``snapshot.build``. What differs, and why:

* Signals are the values the operator last planned with, read from the SignalSources'
  status (``feeds.recorded``), not fetched again: the feeds' credentials and egress rules are
  the operator's. Forecasts are not in status, so there are none.
* Certification credentials are taken as the operator last verified them, from the GpuPools'
  status (``credentials.recorded``): the trusted issuers and the right to read the operator's
  namespace are the operator's.
* The record key Secret may be unreadable (RBAC) or absent: records then cannot be verified;
  released-but-unbound pods do not hold capacity and the Budgets' spending comes from their
  status alone. ``Live.notes`` says so.
* A policy file (``-f``) is put into the cache as a watch event would put it: it replaces the
  live policy of the same namespace and name, or adds one.

Pods greenplace already placed (bound, with its placement record) are planned again in a
second snapshot (``Live.placed``): each as if it were gated again, with the affinity greenplace
narrowed to its pool, so the question is "may it stay where it is?", with its GPUs given back
to its pool and nothing else waiting. Budgets are not charged twice for them (their spending
is set to zero in that snapshot: each pod is weighed against its budget's limit alone).
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from kubernetes import client

from greenplace.api import models
from greenplace.cli import output
from greenplace.controller import cache as cache_
from greenplace.controller import (
    credentials,
    feeds,
    kube,
    podspec,
    records,
    resources,
    snapshot,
)
from greenplace.domain import model

__all__ = ["Live", "read", "read_policies"]

POLICY_KIND = "PlacementPolicy"
API_VERSION = f"{models.GROUP}/{models.VERSION}"


@dataclasses.dataclass(frozen=True)
class Live:
    """The snapshot of the waiting workloads, and the one of the placed pods (each keyed
    ``namespace/name`` or its gang, with the pool it is in now)."""

    pending: model.Snapshot
    placed: model.Snapshot
    placed_in: Mapping[str, str]
    notes: tuple[str, ...]


def read_policies(path: pathlib.Path, namespace: str | None) -> list[dict[str, Any]]:
    """The PlacementPolicies of a manifest file (one or several YAML documents), each with
    its namespace (the document's, else ``namespace``); ``CliError`` naming what is wrong."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as error:
        raise output.CliError(f"{path}: {str(error).splitlines()[0]}", 2) from error
    found = []
    for index, document in enumerate(documents):
        where = f"{path} (document {index + 1})"
        if not isinstance(document, dict) or document.get("kind") != POLICY_KIND:
            kind = document.get("kind") if isinstance(document, dict) else type(document).__name__
            raise output.CliError(f"{where}: kind {kind!r}: only {POLICY_KIND} can be tried", 2)
        if document.get("apiVersion") != API_VERSION:
            raise output.CliError(
                f"{where}: apiVersion {document.get('apiVersion')!r}: expected {API_VERSION}", 2
            )
        meta = document.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
            raise output.CliError(f"{where}: metadata.name is required", 2)
        own = meta.get("namespace")
        if own is not None and namespace is not None and own != namespace:
            raise output.CliError(
                f'{where}: the namespace from the provided object "{own}" does not match the '
                f"namespace \"{namespace}\". You must pass '--namespace={own}' to perform this "
                "operation.",
                2,
            )
        if own is None and namespace is None:
            raise output.CliError(f"{where}: metadata.namespace is not set: pass -n NAMESPACE", 2)
        body = {
            **document,
            "metadata": {**meta, "namespace": own or namespace, "generation": 0},
        }
        found.append(body)
    if not found:
        raise output.CliError(f"{path}: no {POLICY_KIND} in the file", 2)
    return found


def read(
    api: client.ApiClient,
    now: datetime.datetime,
    *,
    key_namespace: str,
    key: bytes | None = None,
    accelerators: resources.Accelerators | None = None,
    policies: Sequence[Mapping[str, Any]] = (),
) -> Live:
    """List the cluster, apply ``policies`` on top, and build both snapshots at ``now``,
    with the operator's record ``key`` (None: its Secret in ``key_namespace``) and governed
    ``accelerators``."""
    notes = []
    try:
        key = key or records.read_key(api, key_namespace)
    except ValueError as error:  # the Secret holds no key
        raise output.CliError(str(error)) from error
    except client.ApiException as error:
        key = None
        notes.append(
            f"cannot read Secret {key_namespace}/{records.KEY_SECRET} ({error.reason}): "
            "placement records are not verified (released pods not yet bound hold no GPUs; "
            "budgets count only what their status says)"
        )
    else:
        if key is None:
            notes.append(
                f"no Secret {key_namespace}/{records.KEY_SECRET} (is the operator's namespace "
                "--operator-namespace?): placement records are not verified"
            )
    try:
        signer = None if key is None else records.Signer(key)
    except ValueError as error:
        raise output.CliError(f"the record key: {error}", 2) from error
    cache = cache_.Cache(accelerators, signer, kueue=True)
    signal_bodies: list[Mapping[str, Any]] = []
    pool_bodies: list[Mapping[str, Any]] = []
    for watched in cache.watched:
        if watched.kind == "BillingExport":
            continue  # bills price the pools' status, not a plan: not read (nor needed in RBAC)
        try:
            bodies = kube.list_watched(api, watched, timeout=(5, 30))
        except client.ApiException as error:
            if error.status == 404 and watched.group != models.GROUP and watched.group:
                continue  # Kueue is not installed: nothing of it to plan
            raise
        if watched.kind == "SignalSource":
            signal_bodies = bodies
        if watched.kind == "GpuPool":
            pool_bodies = bodies
        for body in bodies:
            cache.put(watched.kind, body)
    for body in policies:
        cache.put(POLICY_KIND, body)
        meta = body["metadata"]
        problem = cache.invalid.get(f"{POLICY_KIND} {meta['namespace']}/{meta['name']}")
        if problem is not None:
            raise output.CliError(
                f"{POLICY_KIND} {meta['namespace']}/{meta['name']}: invalid: {problem}", 2
            )
    gathered = snapshot.gather(
        cache, feeds.recorded(signal_bodies), credentials.recorded(pool_bodies)
    )
    pending = snapshot.build(gathered, now).snapshot
    placed, placed_in = _placed(gathered, now, verified=key is not None)
    return Live(pending, placed, placed_in, tuple(notes))


def _placed(
    gathered: snapshot.Gathered, now: datetime.datetime, *, verified: bool
) -> tuple[model.Snapshot, dict[str, str]]:
    """The pods greenplace placed, gated again in their narrowed affinity, nothing else
    waiting, and each one's pool now."""
    pool_of_node = {
        node: pool.name
        for pool in gathered.pools
        for node in snapshot.pool_nodes(pool, gathered.nodes)
    }
    again: list[cache_.CachedPod] = []
    others: list[cache_.CachedPod] = []
    for pod in gathered.pods:
        ours = pod.placed_pool is not None or (
            not verified and podspec.placement_record(pod.body) is not None
        )
        if ours and pod.node_name in pool_of_node and not pod.terminal:
            again.append(dataclasses.replace(pod, node_name=None, gated=True))
        elif not pod.gated:  # pods waiting now are the other snapshot's question
            others.append(pod)
    again_only = dataclasses.replace(gathered, pods=(*again, *others), kueue_workloads=())
    built = snapshot.build(again_only, now)
    pool_of_pod = {p.uid: pool_of_node[p.node_name or ""] for p in gathered.pods if p.node_name}
    placed_in = {
        key: pool_of_pod[members[0].uid]
        for key, members in built.members.items()
        if members[0].uid in pool_of_pod
    }
    unspent = tuple(
        dataclasses.replace(b, money_spent=0.0, kgco2e_spent=0.0, kwh_spent=0.0)
        for b in built.snapshot.budgets
    )
    return dataclasses.replace(built.snapshot, budgets=unspent), placed_in
