"""The placement gate as a MutatingAdmissionPolicy: CEL inside the API server, no webhook.

Why this module exists: a scheduling gate can only be added when a pod is created. Kubernetes
1.36 made MutatingAdmissionPolicy GA (``admissionregistration.k8s.io/v1``), so on such a server
the API server adds ``greenplace.dev/placement`` itself: no network call per pod, nothing to be
down, no serving certificate. The policy must gate exactly the pods the webhook gates
(``podspec.gates_with_ours``), so its CEL is written here, from the same
``resources.Accelerators`` the webhook counts with, and the Helm chart's template
(``templates/gate-policy.yaml``) is checked against ``policy()`` by a unit test.

The webhook's rules, in CEL (each a ``matchCondition``, so a pod that fails one is not touched):

- **GPU requests.** The webhook gates a pod whose effective request of a governed accelerator
  (app containers and sidecars summed, each init container's peak, requests winning over
  limits) is above 0, or that has a DRA ``resourceClaim``. Counts are never negative, so that
  sum-and-max is above 0 exactly when some container (app, init or sidecar) asks for more than
  0 of a governed resource: the CEL tests that, with Kubernetes quantities
  (``isGreaterThan(quantity('0'))``), which read huge counts (``1k``, ``1e6``) without
  overflow.
  A count that is no quantity (the webhook refuses it) fails the CEL, and the policy fails
  closed; the API server's own validation refuses fractional extended resources first anyway.
- **Not bound.** A pod created with ``spec.nodeName`` cannot carry a gate.
- **Not twice.** A pod already carrying the gate is left alone (the ``not-gated`` match
  condition), so the JSON patch, which appends to the pod's gates or creates the list, never
  adds it twice.

The mutation is a JSON patch, not an ApplyConfiguration: bench_burst measured the structured
merge of an ApplyConfiguration as the largest admission cost of a governed create.
- **Governed namespaces only.** The binding selects namespaces labelled
  ``greenplace.dev/governed=true``, the webhook's ``namespaceSelector``.

One rule the API server cannot apply: the webhook leaves ungated a pod that Kueue admitted
through greenplace's AdmissionCheck, after verifying the HMAC-signed record on it
(``webhook.kueue_placement``); CEL has no HMAC. So with ``kueue_records=True`` (the operator
answers Kueue's checks) the policy skips pods carrying that record's annotation and the webhook
is kept for those pods only (``webhook.configuration(records_only=True)``), which verifies the
record and gates any pod whose record is not trusted, as before. Without Kueue, no record can be
trusted and the policy gates every GPU pod, records or not, as the webhook does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client

from greenplace.controller import kueue, podspec, resources, webhook

__all__ = [
    "API_VERSION",
    "MIN_SERVER_VERSION",
    "NAME",
    "binding",
    "ensure",
    "match_conditions",
    "policy",
    "remove",
    "supported",
]

API_VERSION = "admissionregistration.k8s.io/v1"
NAME = webhook.CONFIGURATION_NAME  # out of cluster; the chart names it <fullname>-gate
MIN_SERVER_VERSION = (1, 36)  # MutatingAdmissionPolicy GA


def _strings(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def match_conditions(
    accelerators: resources.Accelerators, kueue_records: bool = False
) -> list[dict[str, str]]:
    """The webhook's rules as CEL match conditions (see the module docstring)."""
    names, prefixes = _strings(accelerators.resources), _strings(accelerators.prefixes)

    def asks(section: str, unless: str | None) -> str:
        skip = f"!(has(c.resources.{unless}) && k in c.resources.{unless}) && " if unless else ""
        return (
            f"(has(c.resources.{section}) && c.resources.{section}.exists(k, "
            f"(k in {names} || {prefixes}.exists(p, k.startsWith(p))) && {skip}"
            f"quantity(dyn(c.resources.{section}[k])).isGreaterThan(quantity('0'))))"
        )

    containers = "(has(object.spec.initContainers) ? object.spec.initContainers : []) + "
    conditions = [
        {
            "name": "not-bound",
            "expression": "!has(object.spec.nodeName) || object.spec.nodeName == ''",
        },
        {
            "name": "not-gated",
            "expression": "!has(object.spec.schedulingGates) || "
            f"!object.spec.schedulingGates.exists(g, g.name == '{podspec.GATE}')",
        },
        {
            "name": "asks-for-an-accelerator",
            "expression": f"({containers}object.spec.containers).exists(c, has(c.resources) && "
            f"({asks('requests', None)} || {asks('limits', 'requests')})) || "
            "(has(object.spec.resourceClaims) && size(object.spec.resourceClaims) > 0)",
        },
    ]
    if kueue_records:
        conditions.append(
            {
                "name": "no-kueue-record",
                "expression": "!has(object.metadata.annotations) || "
                f"!('{kueue.RECORD_ANNOTATION}' in object.metadata.annotations)",
            }
        )
    return conditions


def policy(
    accelerators: resources.Accelerators, kueue_records: bool = False, name: str = NAME
) -> dict[str, Any]:
    """The MutatingAdmissionPolicy that adds the gate to the pods the webhook would gate."""
    return {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {webhook.GOVERNED_LABEL: "true"}},
            },
            "matchConditions": match_conditions(accelerators, kueue_records),
            "mutations": [
                {  # a JSON patch: cheaper for the API server than a structured merge
                    "patchType": "JSONPatch",
                    "jsonPatch": {
                        "expression": "has(object.spec.schedulingGates) ? "
                        "[JSONPatch{op: 'add', path: '/spec/schedulingGates/-', "
                        f"value: Object.spec.schedulingGates{{name: '{podspec.GATE}'}}}}] : "
                        "[JSONPatch{op: 'add', path: '/spec/schedulingGates', "
                        f"value: [Object.spec.schedulingGates{{name: '{podspec.GATE}'}}]}}]"
                    },
                }
            ],
        },
    }


def binding(name: str = NAME, policy_name: str = NAME) -> dict[str, Any]:
    """The binding of ``policy()`` to governed namespaces (the webhook's namespaceSelector)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": policy_name,
            "matchResources": {
                "namespaceSelector": {"matchLabels": {webhook.GOVERNED_LABEL: "true"}}
            },
        },
    }


def supported(major: str, minor: str) -> bool:
    """Whether an API server of this version serves MutatingAdmissionPolicy GA (``/version``'s
    major and minor, where minor may read ``36+`` on some distributions)."""
    digits = "".join(ch for ch in minor if ch.isdigit())
    try:
        return (int(major), int(digits)) >= MIN_SERVER_VERSION
    except ValueError:
        return False


async def ensure(
    api: client.ApiClient, accelerators: resources.Accelerators, kueue_records: bool
) -> None:
    """Create or update the policy and its binding (out-of-cluster runs)."""
    registration = client.AdmissionregistrationV1Api(api)

    def call() -> None:
        for body, create, patch in (
            (policy(accelerators, kueue_records), registration.create_mutating_admission_policy,
             registration.patch_mutating_admission_policy),
            (binding(), registration.create_mutating_admission_policy_binding,
             registration.patch_mutating_admission_policy_binding),
        ):  # fmt: skip
            try:
                create(body)
            except client.ApiException as error:
                if error.status != 409:
                    raise
                patch(NAME, body)

    await asyncio.to_thread(call)


async def remove(api: client.ApiClient) -> None:
    """Delete the policy and its binding if present (an operator switched to the webhook)."""
    registration = client.AdmissionregistrationV1Api(api)

    def call() -> None:
        for delete in (
            registration.delete_mutating_admission_policy_binding,
            registration.delete_mutating_admission_policy,
        ):
            try:
                delete(NAME)
            except client.ApiException as error:
                if error.status != 404:
                    raise

    await asyncio.to_thread(call)
