"""Bad custom resources are refused by the API server itself, with the field and the fix.

No operator runs here: the CRD's OpenAPI schema and CEL rules (generated from the pydantic
models) must be enough, so that ``kubectl apply`` fails before greenplace ever sees the object.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import Kube

pytestmark = pytest.mark.cluster

GOOD_POOL: dict[str, Any] = {
    "nodeSelector": {"greenplace.dev/pool": "bad"},
    "location": {"provider": "p", "region": "r", "country": "FR", "gridZone": "FR"},
    "gpu": {"model": "H100", "tdpWatts": 700, "idleWatts": 80},
    "price": {"currency": "EUR", "onDemandPerGpuHour": 2.5},
}


def policy(spec: dict[str, Any]) -> str:
    return json.dumps({
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "PlacementPolicy",
        "metadata": {"name": "p", "namespace": "default"}, "spec": spec,
    })  # fmt: skip


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
    return json.dumps({
        "apiVersion": "greenplace.dev/v1alpha1", "kind": "GpuPool",
        "metadata": {"name": "bad"}, "spec": spec,
    })  # fmt: skip


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
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
