"""The admission webhook that gates governed GPU pods, and its configuration.

Why this module exists: a scheduling gate can only be added when a pod is created, so a
mutating webhook must add ``greenplace.dev/placement`` to every GPU pod created in a governed
namespace (label ``greenplace.dev/governed=true``). It fails closed (``failurePolicy: Fail``): if
greenplace is down, governed pods are refused rather than scheduled anywhere. Other namespaces
are never sent to the webhook, so they are unaffected by greenplace's health.

In a cluster, the Helm chart owns the webhook configuration and points it at the Service. When
the operator runs outside the cluster (``make run``, the tests), ``ensure_configuration`` points
the configuration at this process's URL.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import pathlib
from typing import Any

from kubernetes import client

from greenplace import pki

__all__ = [
    "CONFIGURATION_NAME",
    "GOVERNED_LABEL",
    "HANDLER_ID",
    "ServingFiles",
    "configuration",
    "ensure_configuration",
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


def self_signed(directory: pathlib.Path, host: str) -> ServingFiles:
    """A CA and a serving certificate for ``host`` (an IP or DNS name) under ``directory``."""
    authority = pki.new_authority(directory, "greenplace-webhook-ca")
    serving = authority.issue(directory, "webhook", common_name=host, hosts=(host,))
    return ServingFiles(serving.cert, serving.key, authority.files.cert)


def configuration(url: str, ca_bundle: bytes) -> dict[str, Any]:
    """The MutatingWebhookConfiguration for a webhook served at ``url``."""
    return {
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
            }
        ],
    }


async def ensure_configuration(api: client.ApiClient, url: str, ca: pathlib.Path) -> None:
    """Create or update the webhook configuration to point at ``url`` (out-of-cluster runs)."""
    body = configuration(url, ca.read_bytes())
    registration = client.AdmissionregistrationV1Api(api)

    def call() -> None:
        try:
            registration.create_mutating_webhook_configuration(body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            registration.patch_mutating_webhook_configuration(CONFIGURATION_NAME, body)

    await asyncio.to_thread(call)
