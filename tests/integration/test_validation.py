"""Bad custom resources are refused by the API server itself, with the field and the fix.

No operator runs here: the CRD's OpenAPI schema and CEL rules (generated from the pydantic
models) must be enough, so that ``kubectl apply`` fails before greenplace ever sees the object.

The hostile-value table (tests/hostile.py, issue 10) is the same one the pydantic models are
tested with: every number at 1e308 and -1, every duration far and just out of its range, every
string, list and map past its cap. Infinity and NaN cannot be written in JSON: a YAML file's
.inf is refused by kubectl before it is sent, and by the API server when another client sends
it (as YAML, or as the Infinity a Python client's json.dumps writes), both before any schema.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from greenplace.api import models
from tests import hostile
from tests import kubeobjects as k8s
from tests.integration.conftest import Kube

pytestmark = pytest.mark.cluster

GOOD_POOL: dict[str, Any] = {
    "nodeSelector": {"greenplace.dev/pool": "bad"},
    "location": {"provider": "p", "region": "r", "country": "FR", "gridZone": "FR"},
    "gpu": {"model": "H100", "tdpWatts": 700, "idleWatts": 80},
    "price": {"currency": "EUR", "onDemandPerGpuHour": 2.5},
}


def custom(kind: str, spec: dict[str, Any], namespaced: bool = True) -> str:
    return k8s.manifest(k8s.resource(kind, "bad", spec, "default" if namespaced else None))


STATIC = k8s.static_source({"FR": 56})


def signal_source(**spec: Any) -> str:
    return custom("SignalSource", {"zones": ["FR"], "sources": [STATIC], **spec}, False)


def budget(**spec: Any) -> str:
    return custom("Budget", {"period": "Month", "limits": {"money": 100}, **spec})


def energy_report(**spec: Any) -> str:
    return custom("EnergyReport", spec)


def policy(spec: dict[str, Any]) -> str:
    return k8s.manifest(k8s.resource("PlacementPolicy", "p", spec, "default"))


def pool(**changes: Any) -> str:
    spec = json.loads(json.dumps(GOOD_POOL))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = spec
        for key in parents:
            target = target[key]
        if value is None:
            del target[leaf]
        else:
            target[leaf] = value
    return custom("GpuPool", spec, namespaced=False)


def certified(credential: dict[str, Any]) -> str:
    """A pool whose certification names ``credential``."""
    cert = {
        "name": "SecNumCloud",
        "level": "3.2",
        "expires": "2030-01-01",
        "credential": credential,
    }
    return pool(certifications=[cert])


REF = {"name": "vc", "key": "token"}


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        pytest.param(
            certified({"secretKeyRef": REF, "configMapKeyRef": REF}),
            [
                "spec.certifications[0].credential",
                "set exactly one of secretKeyRef or configMapKeyRef",
            ],
            id="credential-two-sources",
        ),
        pytest.param(
            certified({}),
            [
                "spec.certifications[0].credential",
                "set exactly one of secretKeyRef or configMapKeyRef",
            ],
            id="credential-no-source",
        ),
        pytest.param(
            certified({"configMapKeyRef": {"name": "vc"}}),
            ["spec.certifications[0].credential.configMapKeyRef.key", "Required value"],
            id="credential-no-key",
        ),
        pytest.param(
            policy({"sovereignty": {"allowedCountries": ["FR", "XX"]}}),
            ["spec.sovereignty.allowedCountries[1]", "ISO 3166-1 alpha-2 country code"],
            id="unknown-country",
        ),
        pytest.param(
            policy({"sovereignty": {"allowedCountries": ["fr"]}}),
            ["spec.sovereignty.allowedCountries[0]", "in upper case"],
            id="lower-case-country",
        ),
        pytest.param(
            policy({"sovereignty": {"allowedCountries": []}}),
            ["spec.sovereignty.allowedCountries", "at least 1 item"],
            id="empty-country-list",
        ),
        pytest.param(
            policy({"carbon": {"maxGramsPerKwh": -5}}),
            ["spec.carbon.maxGramsPerKwh", "should be greater than or equal to 0"],
            id="negative-ceiling",
        ),
        pytest.param(
            policy({"sovereignty": {"allowedCountry": ["FR"]}}),
            ['unknown field "spec.sovereignty.allowedCountry"'],
            id="unknown-field",
        ),
        pytest.param(
            pool(pue=0.5), ["spec.pue", "should be greater than or equal to 1"], id="pue-below-1"
        ),
        pytest.param(
            pool(gpu__idleWatts=900),
            ["spec.gpu", "idleWatts must not exceed tdpWatts"],
            id="idle-above-tdp",
        ),
        pytest.param(
            pool(nodeSelector=None),
            ["spec.nodeSelector", "Required value"],
            id="missing-node-selector",
        ),
        pytest.param(pool(price__currency="euro"), ["spec.price.currency"], id="bad-currency"),
        pytest.param(
            pool(location__country="France"), ["spec.location.country"], id="country-name"
        ),
        pytest.param(
            signal_source(sources=[{"name": "prom", "kind": "Prometheus"}]),
            ["spec.sources[0]", "a source of kind Prometheus needs its prometheus block"],
            id="signal-kind-without-block",
        ),
        pytest.param(
            signal_source(fallbackOrder=["emaps"]),
            ["spec.fallbackOrder", "every fallbackOrder entry must name one of spec.sources"],
            id="signal-fallback-unknown-source",
        ),
        pytest.param(
            signal_source(sources=[{**STATIC, "ttl": "two hours"}]),
            ["spec.sources[0].ttl", "should match"],
            id="signal-bad-duration",
        ),
        pytest.param(
            signal_source(sources=[STATIC, STATIC]),
            ["spec.sources[1]", "Duplicate value"],
            id="signal-duplicate-source-name",
        ),
        pytest.param(
            signal_source(signal="Carbon"),
            ["spec.signal", "Unsupported value"],
            id="signal-unknown-kind",
        ),
        pytest.param(
            signal_source(zones=[]), ["spec.zones", "at least 1 item"], id="signal-no-zones"
        ),
        pytest.param(
            signal_source(
                sources=[
                    {
                        "name": "p",
                        "kind": "Prometheus",
                        "prometheus": {"url": "prometheus:9090", "query": "x"},
                    }
                ]
            ),
            ["spec.sources[0].prometheus.url", "should match"],
            id="signal-url-without-scheme",
        ),
        pytest.param(
            budget(limits={}),
            ["spec.limits", "set at least one limit: money, kgCO2e or kWh"],
            id="budget-no-limit",
        ),
        pytest.param(
            budget(period="Year"), ["spec.period", "Unsupported value"], id="budget-bad-period"
        ),
        pytest.param(
            budget(limits={"money": -1}),
            ["spec.limits.money", "should be greater than 0"],
            id="budget-negative-limit",
        ),
        pytest.param(
            budget(alertThresholds=[0.8, 1.5]),
            ["spec.alertThresholds[1]", "should be less than or equal to 1"],
            id="budget-threshold-above-1",
        ),
        pytest.param(
            budget(action="Pause"), ["spec.action", "Unsupported value"], id="budget-bad-action"
        ),
        pytest.param(budget(currency="eur"), ["spec.currency"], id="budget-bad-currency"),
        pytest.param(
            energy_report(window="1 hour"), ["spec.window", "should match"], id="report-bad-window"
        ),
        pytest.param(
            energy_report(grading={"energyWhPerRequest": [0.3, 0.1, 0.5, 1]}),
            ["spec.grading.energyWhPerRequest", "four increasing positive bounds"],
            id="report-decreasing-grades",
        ),
        pytest.param(
            energy_report(grading={"carbonGCO2ePerRequest": [0.1, 0.2]}),
            ["spec.grading.carbonGCO2ePerRequest", "should have at least 4 items"],
            id="report-three-grades",
        ),
        pytest.param(
            energy_report(migSlicesTotal=0),
            ["spec.migSlicesTotal", "should be greater than or equal to 1"],
            id="report-no-mig-slices",
        ),
        pytest.param(
            energy_report(serving="ollama"),
            ["spec.serving", "Unsupported value"],
            id="report-unknown-serving",
        ),
    ],
)
def test_invalid_resources_are_refused_with_the_field_named(
    kube: Kube, manifest: str, expected: list[str]
) -> None:
    result = kube.apply(manifest)
    assert result.returncode != 0, f"accepted: {manifest}"
    for fragment in expected:
        assert fragment in result.stderr, result.stderr


def test_the_valid_baseline_is_accepted(kube: Kube) -> None:
    """Guards the table above: each row fails for its own change, not for a broken baseline."""
    assert kube.apply(pool()).returncode == 0
    valid_policy = policy({"sovereignty": {"allowedCountries": ["FR", "DE"]}})
    result = kube.apply(valid_policy)
    assert result.returncode == 0, result.stderr
    assert kube.kubectl("delete", "gpupool", "bad").returncode == 0
    for manifest in (signal_source(), budget(), energy_report()):
        result = kube.apply(manifest)
        assert result.returncode == 0, result.stderr


_PLURALS = {
    "GpuPool": "gpupools",
    "PlacementPolicy": "placementpolicies",
    "SignalSource": "signalsources",
    "Budget": "budgets",
    "EnergyReport": "energyreports",
}
_CASES = hostile.all_cases()


@pytest.mark.parametrize("kind", hostile.FULL)
def test_the_full_hostile_baselines_are_accepted(kube: Kube, kind: str) -> None:
    """Guards the hostile table: each row fails for its own value, not for a broken baseline."""
    manifest = hostile.manifest(kind, hostile.FULL[kind])
    result = kube.apply(manifest)
    assert result.returncode == 0, result.stderr
    result = kube.kubectl("delete", "-f", "-", stdin=manifest)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("case", [c for c in _CASES if not c.special], ids=lambda c: c.id)
def test_hostile_values_are_refused_with_the_field_named(kube: Kube, case: hostile.Case) -> None:
    result = kube.apply(case.manifest())
    assert result.returncode != 0, f"accepted: {case.id}"
    assert case.field() in result.stderr, result.stderr[:3000]
    for fragment in case.expected:
        assert fragment in result.stderr, result.stderr[:3000]


def _post(kube: Kube, case: hostile.Case, body: Any, content_type: str) -> tuple[int, str]:
    """POST ``body`` as a client other than kubectl would: the HTTP status and the reply."""
    path = f"/apis/{models.GROUP}/{models.VERSION}"
    if case.kind in hostile.NAMESPACED:
        path += "/namespaces/default"
    request = kube.api.param_serialize(
        "POST", f"{path}/{_PLURALS[case.kind]}", body=body, auth_settings=["BearerToken"],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
    )  # fmt: skip
    response = kube.api.call_api(*request)
    return response.status, response.read().decode()


@pytest.mark.parametrize("case", [c for c in _CASES if c.special], ids=lambda c: c.id)
def test_infinity_and_nan_are_refused_before_any_schema(kube: Kube, case: hostile.Case) -> None:
    """kubectl cannot turn .inf into JSON; the API server refuses it as YAML and as Infinity."""
    manifest = case.manifest()
    result = kube.apply(manifest)
    assert result.returncode != 0, f"accepted: {case.id}"
    assert "unsupported value" in result.stderr, result.stderr
    status, reply = _post(kube, case, manifest, "application/yaml")
    assert status == 400 and "json: unsupported value" in reply, reply
    # The Python client encodes with json.dumps, which writes inf and nan as Infinity and NaN.
    resource = hostile.resource(case.kind, case.spec(hostile.PYTHON_SPECIALS))
    status, reply = _post(kube, case, resource, "application/json")
    assert status == 400 and "json parse error: invalid character" in reply, reply


def test_a_pool_with_a_spot_price_is_refused(kube: Kube) -> None:
    """spotPerGpuHour left the CRD (no live workload can be spot). kubectl validates strictly by
    default (fieldValidation=Strict), so the API server refuses the unknown field by name; a
    client that turns validation off gets the field pruned, as for any unknown field (no CRD
    schema preserves unknown fields)."""
    spot = {**GOOD_POOL["price"], "spotPerGpuHour": 1.0}
    result = kube.apply(pool(price=spot))
    assert result.returncode != 0, "a pool with a spot price was accepted"
    assert 'unknown field "spec.price.spotPerGpuHour"' in result.stderr, result.stderr
    result = kube.kubectl("apply", "--validate=false", "-f", "-", stdin=pool(price=spot))
    assert result.returncode == 0, result.stderr
    stored = kube.kubectl("get", "gpupool", "bad", "-o", "jsonpath={.spec.price}")
    assert stored.returncode == 0 and "spot" not in stored.stdout, stored.stdout
    assert "onDemandPerGpuHour" in stored.stdout, stored.stdout
    assert kube.kubectl("delete", "gpupool", "bad").returncode == 0


TRACE_FILES = {"files": {"FR": "/data/fr.csv"}}
PROM = {"url": "http://prom:9090", "query": "carbon"}
WATTTIME_REF = {"name": "wt", "namespace": "greenplace"}


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        pytest.param({**STATIC, "trace": TRACE_FILES}, "trace", id="static-with-trace"),
        pytest.param(
            {"name": "p", "kind": "Prometheus", "prometheus": PROM, "static": STATIC["static"]},
            "static",
            id="prometheus-with-static",
        ),
        pytest.param({**STATIC, "ttl": "1h"}, "ttl", id="static-with-ttl"),
        pytest.param(
            {"name": "t", "kind": "Trace", "trace": TRACE_FILES, "timeout": "1s"},
            "timeout",
            id="trace-with-timeout",
        ),
        pytest.param(
            {"name": "w", "kind": "WattTime", "credentialsSecretRef": {**WATTTIME_REF, "key": "k"}},
            "credentialsSecretRef",
            id="watttime-with-key",
        ),
    ],
)
def test_a_source_entry_carries_only_what_its_kind_reads(
    kube: Kube, entry: dict[str, Any], field: str
) -> None:
    """An entry's field its kind ignores is refused by the API server's CEL rules, at the field
    and naming the fix (the models' twin is tests/unit/test_crd_fields.py)."""
    result = kube.apply(custom("SignalSource", {"zones": ["FR"], "sources": [entry]}, False))
    assert result.returncode != 0, f"accepted: {entry}"
    assert f"spec.sources[0].{field}" in result.stderr, result.stderr
    assert "remove" in result.stderr, result.stderr
