"""The admission webhook that gates governed GPU pods, and its configuration.

Why this module exists: a scheduling gate can only be added when a pod is created, so a
mutating webhook must add ``greenplace.dev/placement`` to every GPU pod created in a governed
namespace (label ``greenplace.dev/governed=true``). It fails closed (``failurePolicy: Fail``): if
greenplace is down, governed pods are refused rather than scheduled anywhere. Other namespaces
are never sent to the webhook, so they are unaffected by greenplace's health.

A pod of a Job that Kueue admitted through greenplace's AdmissionCheck is not gated
(``kueue_placement``): greenplace already chose its pool when it answered the check Ready, and
gating it again would hold it twice (the pod path could re-plan it, or charge its budget again).
What marks such a pod is the signed record the Ready answer put in Kueue's podSetUpdates
(annotation ``greenplace.dev/kueue-placement``) and the pool's nodeSelector. A tenant may write
any annotation, label, nodeSelector or ownerReference on their own pods, so the record is
trusted only when it is exactly the one a Workload of the pod's own namespace carries on a
Ready check, its signature verifies for that Workload, and the pod's nodeSelector pins the
record's pool; anything else is gated like any GPU pod, with a warning. A valid record copied
onto another pod of the same namespace still escapes the gate, but not the pools: the
sovereignty admission policy admits an ungated GPU pod only if its ``greenplace.dev/pool`` node
selection lies in the allowed pools (docs/kueue.md, "Which path governs which workload").

In a cluster, the Helm chart owns the webhook configuration and points it at the Service. When
the operator runs outside the cluster (``make run``, the tests), ``ensure_configuration`` points
the configuration at this process's URL.

On Kubernetes 1.36+ the API server adds the gate itself (``gatepolicy``, the chart's default):
the webhook is then configured only with Kueue, for the pods carrying a Kueue record
(``configuration(records_only=True)``), the one rule CEL cannot apply. ``decide`` is the
webhook's whole answer as a pure function, which the policy is compared with.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client

from greenplace import pki
from greenplace.controller import kueue, podspec, records, resources

__all__ = [
    "CONFIGURATION_NAME",
    "GOVERNED_LABEL",
    "HANDLER_ID",
    "Decision",
    "KueuePlacement",
    "ServingFiles",
    "configuration",
    "decide",
    "ensure_configuration",
    "kueue_placement",
    "remove_configuration",
    "self_signed",
]

CONFIGURATION_NAME = "greenplace.dev"
GOVERNED_LABEL = "greenplace.dev/governed"
HANDLER_ID = "gate"


@dataclasses.dataclass(frozen=True)
class ServingFiles:
    cert: pathlib.Path
    key: pathlib.Path
    ca: pathlib.Path


@dataclasses.dataclass(frozen=True)
class KueuePlacement:
    """What the webhook makes of a pod's Kueue placement record."""

    trusted: bool  # True: Kueue admitted it through greenplace's check; leave it ungated
    message: str  # the Workload that placed it, or why the record is not trusted


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the webhook answers for one pod created in a governed namespace."""

    refused: str | None = None  # the message the creation is refused with
    gates: list[dict[str, Any]] | None = None  # the pod's new schedulingGates; None: unchanged
    warning: str | None = None  # shown to the client (an untrusted Kueue record)


def decide(
    pod: Mapping[str, Any],
    accelerators: resources.Accelerators,
    workloads: Iterable[kueue.KueueWorkload] = (),
    signer: records.Signer | None = None,
) -> Decision:
    """The webhook's whole answer for ``pod`` (the kopf handler only carries it out), kept pure
    so the MutatingAdmissionPolicy can be compared with it (``gatepolicy``)."""
    refused = podspec.refusal(pod, accelerators)
    if refused is not None:
        return Decision(refused=refused)
    gates = podspec.gates_with_ours(pod, accelerators)
    if gates is None:
        return Decision()
    placed = kueue_placement(pod, workloads, signer)
    if placed is not None and placed.trusted:
        return Decision()  # Kueue admitted it through greenplace's check: its pool is chosen
    return Decision(gates=gates, warning=None if placed is None else placed.message)


def kueue_placement(
    pod: Mapping[str, Any],
    workloads: Iterable[kueue.KueueWorkload],
    signer: records.Signer | None,
) -> KueuePlacement | None:
    """Whether ``pod`` was placed by greenplace's Ready answer to a Kueue AdmissionCheck.

    None: the pod carries no record (``kueue.RECORD_ANNOTATION``). Trusted only when a Workload
    of the pod's namespace has a Ready check whose podSetUpdates carry exactly this record, the
    record's signature verifies for that Workload's UID, the record names a pool, and the pod's
    nodeSelector holds that update's nodeSelector (so it pins the record's pool).
    """
    metadata = pod.get("metadata") or {}
    text = (metadata.get("annotations") or {}).get(kueue.RECORD_ANNOTATION)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return _untrusted("is not a JSON object")
    pool = record.get("pool")
    if not isinstance(pool, str) or not pool:
        return _untrusted("names no pool")
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    if selector.get(podspec.POOL_LABEL) != pool:
        return _untrusted(
            f"names pool {pool}, but spec.nodeSelector does not pin {podspec.POOL_LABEL}: {pool}"
        )
    namespace = metadata.get("namespace")
    for workload in workloads:
        if workload.namespace != namespace:
            continue
        for update in _ready_updates(workload):
            if (update.get("annotations") or {}).get(kueue.RECORD_ANNOTATION) != text:
                continue
            wanted = update.get("nodeSelector") or {}
            if (
                signer is not None
                and signer.verify(workload.uid, record)
                and all(selector.get(key) == value for key, value in wanted.items())
            ):
                return KueuePlacement(True, f"placed in pool {pool} for Workload {workload.name}")
    return _untrusted(
        f"is not the signed record of a Workload of namespace {namespace} whose greenplace "
        "check is Ready with this pod's nodeSelector"
    )


def _ready_updates(workload: kueue.KueueWorkload) -> Iterable[Mapping[str, Any]]:
    for state in workload.checks.values():
        if state.get("state") == "Ready":
            yield from state.get("podSetUpdates") or []


def _untrusted(why: str) -> KueuePlacement:
    return KueuePlacement(
        False,
        f"greenplace: annotation {kueue.RECORD_ANNOTATION} {why}, so it was not written by "
        "greenplace for this pod: the pod is gated and placed like any GPU pod. Only greenplace "
        "writes it, through Kueue's podSetUpdates; remove it from your manifest.",
    )


def self_signed(directory: pathlib.Path, host: str) -> ServingFiles:
    """A CA and a serving certificate for ``host`` (an IP or DNS name) under ``directory``."""
    authority = pki.new_authority(directory, "greenplace-webhook-ca")
    serving = authority.issue(directory, "webhook", common_name=host, hosts=(host,))
    return ServingFiles(serving.cert, serving.key, authority.files.cert)


# With the gate in the API server (``gatepolicy``, the operator answering Kueue's checks), the
# webhook is still called for the pods only it can judge: those carrying a Kueue record, whose
# HMAC signature CEL cannot verify.
RECORDS_ONLY = {
    "name": "kueue-record",
    "expression": "has(object.metadata.annotations) && "
    f"'{kueue.RECORD_ANNOTATION}' in object.metadata.annotations",
}


def configuration(url: str, ca_bundle: bytes, records_only: bool = False) -> dict[str, Any]:
    """The MutatingWebhookConfiguration for a webhook served at ``url``; ``records_only``:
    called only for pods carrying a Kueue record (the gate policy gates the others)."""
    body: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": CONFIGURATION_NAME},
        "webhooks": [
            {
                "name": f"{HANDLER_ID}.{CONFIGURATION_NAME}",
                "clientConfig": {
                    "url": f"{url.rstrip('/')}/{HANDLER_ID}",
                    "caBundle": base64.b64encode(ca_bundle).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {"matchLabels": {GOVERNED_LABEL: "true"}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 10,
                "reinvocationPolicy": "IfNeeded",
                **({"matchConditions": [RECORDS_ONLY]} if records_only else {}),
            }
        ],
    }
    return body


async def ensure_configuration(
    api: client.ApiClient, url: str, ca: pathlib.Path, records_only: bool = False
) -> None:
    """Create or update the webhook configuration to point at ``url`` (out-of-cluster runs)."""
    body = configuration(url, ca.read_bytes(), records_only)
    registration = client.AdmissionregistrationV1Api(api)

    def call() -> None:
        try:
            registration.create_mutating_webhook_configuration(body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            registration.patch_mutating_webhook_configuration(CONFIGURATION_NAME, body)

    await asyncio.to_thread(call)


async def remove_configuration(api: client.ApiClient) -> None:
    """Delete the webhook configuration if present (an operator switched to the gate policy)."""
    registration = client.AdmissionregistrationV1Api(api)

    def call() -> None:
        try:
            registration.delete_mutating_webhook_configuration(CONFIGURATION_NAME)
        except client.ApiException as error:
            if error.status != 404:
                raise

    await asyncio.to_thread(call)
