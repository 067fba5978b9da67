"""The CRDs in crds/ are exactly what the pydantic models generate, and stay structural."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

from greenplace.api import crdgen, models

CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_committed_crd_matches_the_models(kind: crdgen.Kind) -> None:
    committed = (CRDS / f"{kind.crd_name}.yaml").read_text()
    assert committed == crdgen.render(kind), "crds/ drifted from api/models.py: run `make crds`"


def _walk(node: Any, path: str = "") -> list[str]:
    """Paths of schema nodes that break Kubernetes' structural-schema rules."""
    problems = []
    if isinstance(node, dict):
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "uniqueItems", "title"):
            if banned in node:
                problems.append(f"{path}: {banned}")
        if "properties" in node and node.get("type") != "object":
            problems.append(f"{path}: properties without type object")
        for key, value in node.items():
            problems += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems += _walk(value, f"{path}[{i}]")
    return problems


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: crdgen.Kind) -> None:
    schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []
    assert yaml.safe_load(yaml.safe_dump(schema)) == schema


def test_every_cel_rule_has_a_message() -> None:
    text = "".join(crdgen.render(k) for k in crdgen.KINDS)
    rules = text.count("rule:")
    assert rules > 0
    assert text.count("message:") >= rules


def test_models_refuse_what_the_api_server_refuses() -> None:
    with pytest.raises(ValueError, match="not an ISO 3166-1 alpha-2 country code"):
        models.Sovereignty.model_validate({"allowedCountries": ["XX"]})
    with pytest.raises(ValueError, match="allowedCountry"):
        models.Sovereignty.model_validate({"allowedCountry": ["FR"]})
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        models.Carbon.model_validate({"maxGramsPerKwh": -1})
