"""The chart's gate policy is greenplace.controller.gatepolicy's, and gate.mode decides what
the chart installs.

Why this module exists: the CEL that gates pods is written twice, in Python (``gatepolicy``,
which the out-of-cluster operator installs and the equivalence test proves against the webhook)
and in the chart's template (built from the chart's ``accelerators`` values). These tests render
the chart with the real helm and fail when the two drift, for the default accelerators and for
others; and they check that ``gate.mode=policy`` installs no webhook and no certificate unless
Kueue needs the webhook for its signed records (then exactly the operator's records-only
webhook), that ``webhook`` installs no policy, and where ``--gate=auto`` draws the line.
"""

from __future__ import annotations

import base64
import subprocess
from typing import Any

import pytest
import yaml

from devcluster import build
from greenplace.controller import gatepolicy, resources, webhook
from tests.unit.test_chart import CHART

RELEASE = "gp"


def render(*sets: str) -> list[dict[str, Any]]:
    helm = str(build.ensure_built(log=False)["helm"])
    result = subprocess.run(
        [helm, "template", RELEASE, str(CHART), "--namespace=gs", "--skip-tests",
         *(f"--set={s}" for s in sets)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize(
    ("sets", "accelerators", "kueue_records"),
    [
        ((), resources.Accelerators(), False),
        (("kueue.enabled=true",), resources.Accelerators(), True),
        (("accelerators.resources={example.com/npu,nvidia.com/gpu}",
          "accelerators.prefixes={example.com/slice-}"),
         resources.Accelerators(("example.com/npu", "nvidia.com/gpu"), ("example.com/slice-",)),
         False),
    ],
)  # fmt: skip
def test_the_charts_policy_is_the_operators(
    sets: tuple[str, ...], accelerators: resources.Accelerators, kueue_records: bool
) -> None:
    docs = render(*sets)
    (policy,) = kinds(docs, "MutatingAdmissionPolicy")
    (binding,) = kinds(docs, "MutatingAdmissionPolicyBinding")
    assert policy["spec"] == gatepolicy.policy(accelerators, kueue_records)["spec"]
    assert binding["spec"] == gatepolicy.binding(policy_name=policy["metadata"]["name"])["spec"]


def test_the_chart_defaults_are_the_operators_accelerators() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["gate"]["mode"] == "policy"
    defaults = resources.Accelerators()
    assert tuple(values["accelerators"]["resources"]) == defaults.resources
    assert tuple(values["accelerators"]["prefixes"]) == defaults.prefixes


def _served(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = kinds(docs, "Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    return {
        "webhooks": kinds(docs, "MutatingWebhookConfiguration"),
        "policies": kinds(docs, "MutatingAdmissionPolicy"),
        "tls": [s for s in kinds(docs, "Secret") if s.get("type") == "kubernetes.io/tls"],
        "volumes": [v["name"] for v in pod["spec"]["volumes"]],
        "cert_flag": any(a.startswith("--webhook-cert-dir") for a in container["args"]),
        "checksum": "checksum/webhook-tls" in (pod["metadata"].get("annotations") or {}),
        "ready_on": container["readinessProbe"]["tcpSocket"]["port"],
    }


def test_policy_mode_installs_no_webhook_and_no_certificate() -> None:
    served = _served(render())
    assert served["webhooks"] == [] and served["tls"] == []
    assert "webhook-tls" not in served["volumes"] and not served["cert_flag"]
    assert not served["checksum"] and served["ready_on"] == "health"
    assert len(served["policies"]) == 1


def test_policy_mode_with_kueue_keeps_the_webhook_for_records_only() -> None:
    served = _served(render("kueue.enabled=true"))
    (configuration,) = served["webhooks"]
    (hook,) = configuration["webhooks"]
    assert hook["matchConditions"] == [webhook.RECORDS_ONLY]
    assert len(served["tls"]) == 1 and served["cert_flag"] and served["ready_on"] == "webhook"


def test_webhook_mode_installs_the_webhook_and_no_policy() -> None:
    served = _served(render("gate.mode=webhook"))
    (configuration,) = served["webhooks"]
    (hook,) = configuration["webhooks"]
    assert "matchConditions" not in hook
    assert served["policies"] == [] and kinds(render("gate.mode=webhook"),
                                              "MutatingAdmissionPolicyBinding") == []  # fmt: skip
    assert len(served["tls"]) == 1 and "webhook-tls" in served["volumes"] and served["cert_flag"]


def test_an_unknown_mode_is_refused() -> None:
    helm = str(build.ensure_built(log=False)["helm"])
    result = subprocess.run([helm, "template", RELEASE, str(CHART), "--set=gate.mode=auto"],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode != 0 and "gate" in result.stderr


def test_the_charts_records_only_webhook_is_the_operators() -> None:
    """With the policy and Kueue, the chart's webhook is webhook.configuration(records_only)."""
    docs = render("kueue.enabled=true", "webhook.url=https://127.0.0.1:9443")
    (configuration,) = kinds(docs, "MutatingWebhookConfiguration")
    ca = base64.b64decode(configuration["webhooks"][0]["clientConfig"]["caBundle"])
    expected = webhook.configuration("https://127.0.0.1:9443", ca, records_only=True)
    assert configuration["webhooks"] == expected["webhooks"]


@pytest.mark.parametrize(
    ("major", "minor", "served"),
    [("1", "35", False), ("1", "36", True), ("1", "37", True), ("1", "36+", True),
     ("1", "30+", False), ("2", "0", True), ("1", "", False)],
)  # fmt: skip
def test_auto_picks_the_policy_from_kubernetes_1_36(major: str, minor: str, served: bool) -> None:
    assert gatepolicy.supported(major, minor) is served
