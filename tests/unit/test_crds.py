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
        # propertyNames is no field of a Kubernetes schema: the API server would drop it.
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "uniqueItems", "title", "propertyNames"):
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


def _cel_rules(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every ``x-kubernetes-validations`` entry anywhere in ``node``, with where it is."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "x-kubernetes-validations":
                found += [(f"{path}[{i}]", rule) for i, rule in enumerate(value)]
            else:
                found += _cel_rules(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _cel_rules(value, f"{path}[{i}]")
    return found


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_every_cel_rule_has_a_message(kind: crdgen.Kind) -> None:
    """Each rule, wherever it sits (a property named ``message`` or ``rule`` is no rule), says
    what to fix: without a message the API server only prints the CEL expression."""
    rules = _cel_rules(crdgen.crd(kind)["spec"]["versions"][0]["schema"], kind.kind)
    without = [
        where
        for where, rule in rules
        if not (isinstance(rule, dict) and isinstance(rule.get("message"), str) and rule["message"])
    ]
    assert without == [], "CEL rules without a message"
    assert rules, "every kind has CEL rules: the walk found none"


def test_models_refuse_what_the_api_server_refuses() -> None:
    with pytest.raises(ValueError, match="not an ISO 3166-1 alpha-2 country code"):
        models.Sovereignty.model_validate({"allowedCountries": ["XX"]})
    with pytest.raises(ValueError, match="allowedCountry"):
        models.Sovereignty.model_validate({"allowedCountry": ["FR"]})
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        models.Carbon.model_validate({"maxGramsPerKwh": -1})


def _rules(node: dict[str, Any]) -> str:
    return " ".join(r["rule"] for r in node.get("x-kubernetes-validations", []))


def _unbounded(node: dict[str, Any], path: str) -> list[str]:
    """Spec schema nodes a hostile value could take to any size (issue 10)."""
    kind = node.get("type")
    problems = []
    if kind in ("number", "integer") and not {"minimum", "maximum"} <= set(node):
        problems.append(f"{path}: a number needs a minimum and a maximum")
    elif kind == "string":
        capped = {"maxLength", "enum"} & set(node) or node.get("format") == "date"
        ranged = node.get("format") == "date-time" and "self >=" in _rules(node)
        if not (capped or ranged):
            problems.append(f"{path}: a string needs a maxLength (or an enum, or a range)")
        duration = node.get("pattern") == models.DURATION_PATTERN
        if duration and "duration(self) <=" not in _rules(node):
            problems.append(f"{path}: a duration needs a range rule")
    elif kind == "array":
        if "maxItems" not in node:
            problems.append(f"{path}: a list needs maxItems")
        problems += _unbounded(node["items"], f"{path}[]")
    elif kind == "object" and "additionalProperties" in node:
        if "maxProperties" not in node or "size(k) <=" not in _rules(node):
            problems.append(f"{path}: a map needs maxProperties and a rule on its keys' length")
        problems += _unbounded(node["additionalProperties"], f"{path}.*")
    for name, sub in node.get("properties", {}).items():
        problems += _unbounded(sub, f"{path}.{name}")
    return problems


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_every_spec_field_is_bounded(kind: crdgen.Kind) -> None:
    """Every number, string, duration, list and map of a spec has a cap the API server enforces."""
    schema = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _unbounded(schema["properties"]["spec"], "spec") == []
