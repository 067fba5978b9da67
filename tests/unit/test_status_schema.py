"""Every status body the operator writes is valid under the CRD's status schema once applied.

Status is built through the pydantic ``*Status`` models (``controller.status.patch_body``); the
CRDs are generated from the same models. This test closes the loop from the other side: it runs
placement cycles against ``tests.fakes.RecordingWriter`` (pools with and without nodes, policies,
a Budget, a SignalSource with a fresh, a static and a missing subject), applies each recorded
body as the API server applies a status patch (JSON merge patch: null deletes; then nulls the
schema does not allow are pruned) and checks the result against the generated CRD's status
schema, the way a structural schema is enforced: a field the schema does not know is an error
(the API server would silently prune it), as is a wrong type, a missing required field, a
value out of its enum, range or length, or a time not in RFC 3339.
"""

from __future__ import annotations

import asyncio
import datetime
import pathlib
import re
from typing import Any

import pytest
import yaml

from greenplace.api import crdgen
from greenplace.controller import cache as cache_
from greenplace.controller import cycle, feeds, records, status
from tests import fakes

NOW = datetime.datetime(2026, 3, 10, 12, tzinfo=datetime.UTC)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
CRDS = pathlib.Path(__file__).resolve().parents[2] / "crds"


def status_schema(kind: crdgen.Kind) -> dict[str, Any]:
    """The committed CRD's status schema, as the API server has it (``test_crds`` keeps the
    committed CRDs equal to what the models generate)."""
    crd = yaml.safe_load((CRDS / f"{kind.crd_name}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return dict(schema["properties"]["status"])


SCHEMAS = {kind.plural: status_schema(kind) for kind in crdgen.KINDS}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def without_nulls(value: Any) -> Any:
    """What the API server stores: a null in a field that is not nullable is pruned."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def problems(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Where ``value`` breaks the structural ``schema`` (the subset the CRDs use)."""
    kind = schema.get("type")
    found: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{path}: {value!r} not in {schema['enum']}")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{path}: {type(value).__name__}, not an object"]
        found += [f"{path}.{r}: required" for r in schema.get("required", []) if r not in value]
        if len(value) > schema.get("maxProperties", len(value)):
            found.append(f"{path}: more than {schema['maxProperties']} entries")
        known, each = schema.get("properties"), schema.get("additionalProperties")
        for key, item in value.items():
            if known is not None and key in known:
                found += problems(item, known[key], f"{path}.{key}")
            elif isinstance(each, dict):
                found += problems(item, each, f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                found.append(f"{path}.{key}: not in the schema (the API server would prune it)")
    elif kind == "array":
        if not isinstance(value, list):
            return [f"{path}: {type(value).__name__}, not an array"]
        if len(value) > schema.get("maxItems", len(value)):
            found.append(f"{path}: more than {schema['maxItems']} items")
        for index, item in enumerate(value):
            found += problems(item, schema["items"], f"{path}[{index}]")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{path}: {value!r} is not a string"]
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            found.append(f"{path}: length {len(value)} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            found.append(f"{path}: {value!r} does not match {schema['pattern']}")
        if schema.get("format") == "date-time" and not RFC3339.match(value):
            found.append(f"{path}: {value!r} is not an RFC 3339 time")
    elif kind in ("integer", "number"):
        numeric = int if kind == "integer" else (int, float)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return [f"{path}: {value!r} is not of type {kind}"]
        if not schema.get("minimum", value) <= value <= schema.get("maximum", value):
            found.append(f"{path}: {value} out of range")
    elif kind == "boolean" and not isinstance(value, bool):
        found.append(f"{path}: {value!r} is not a boolean")
    return found


TRACE = "Time,gCO2e/kWh\n2026-03-10 11:00:00,41.0\n2026-03-10 11:30:00,43.0\n"


@pytest.fixture
def written(tmp_path: pathlib.Path) -> fakes.RecordingWriter:
    """The status bodies of three cycles over every kind the placement loop writes."""
    (tmp_path / "fr.csv").write_text(TRACE)
    writer = fakes.RecordingWriter()
    cache = cache_.Cache(signer=records.Signer(b"k" * 32))
    cache.put_pool(fakes.gpu_pool("fr", "FR"))
    cache.put_pool(fakes.gpu_pool("de", "DE"))  # no node: Ready False
    cache.put_node(fakes.node("n1", "fr", {"nvidia.com/gpu": 8}))
    cache.put_policy(fakes.policy("any", budgetRef={"name": "monthly"}))
    cache.put_policy(fakes.policy("fr", sovereignty={"allowedCountries": ["FR"]}))
    cache.put_budget({
        "metadata": {"namespace": "ml", "name": "monthly", "generation": 1},
        "spec": {"period": "Month", "limits": {"money": 3.0, "kWh": 100.0}},
    })  # fmt: skip
    cache.put_signal_source({
        "metadata": {"name": "grid", "generation": 1},
        "spec": {
            "zones": ["FR", "DE"],
            "sources": [
                {"name": "trace", "kind": "Trace", "trace": {"files": {"FR": "fr.csv"}}},
                {"name": "fixed", "kind": "Static", "static": {"values": {"FR": 300}}},
            ],
        },
    })  # fmt: skip
    signals = feeds.Feeds(memory=datetime.timedelta(0), trace_directories=[tmp_path])
    for name in ("a", "b"):  # b is deferred: the budget has room for one GPU-hour
        cache.put_pod(writer.add(fakes.pod(name, fakes.gpus(1))))
    recorder, state = status.StatusRecorder(writer), cycle.LoopState()
    for minute in range(3):
        at = NOW + datetime.timedelta(minutes=minute)
        asyncio.run(cycle.run_cycle(cache, writer, at, recorder, signals, state=state))
        for body in writer.pods.values():
            cache.put_pod(body)  # the watch
        if minute == 0:
            cache.remove("GpuPool", fakes.gpu_pool("de", "DE"))  # leaves allowedPools
    return writer


def test_every_status_written_is_valid_under_the_crd(written: fakes.RecordingWriter) -> None:
    stored: dict[tuple[str, str | None, str], Any] = {}
    for plural, namespace, name, body in written.statuses:
        key = (plural, namespace, name)
        stored[key] = merge_patch(stored.get(key, {}), body)
        applied = without_nulls(stored[key])
        assert problems(applied, SCHEMAS[plural], f"{plural} {namespace}/{name} status") == []
    assert {plural for plural, *_ in stored} == {
        "gpupools", "placementpolicies", "budgets", "signalsources"
    }  # fmt: skip
    # The bodies exercised what matters: deletions, a missing value, times, every condition.
    any_policy = stored[("placementpolicies", "ml", "any")]
    assert any_policy["allowedPools"] == ["fr"] and set(any_policy["poolResidency"]) == {"fr"}
    readings = stored[("signalsources", None, "grid")]["readings"]
    assert [(r["subject"], r["value"] is None) for r in readings] == [("FR", False), ("DE", True)]
    assert "observedAt" in readings[0]
    budget = stored[("budgets", "ml", "monthly")]
    assert "kgCO2e" not in budget["remaining"], "no kgCO2e limit: no remaining figure"
    assert {c["type"] for c in budget["conditions"]} == {"Ready", "Exceeded", "ThresholdReached"}
    assert budget["chargedThrough"].endswith("Z") and "." in budget["chargedThrough"]


def test_the_check_finds_a_field_the_schema_does_not_know() -> None:
    """The validator itself can fail: a field outside the schema, a wrong type, a bad time."""
    schema = SCHEMAS["budgets"]
    assert problems({"spentMoney": 1}, schema, "s") == [
        "s.spentMoney: not in the schema (the API server would prune it)"
    ]
    assert problems({"spent": {"money": "1"}}, schema, "s") == [
        "s.spent.money: '1' is not of type number"
    ]
    assert problems({"periodEnd": "2026-03-10 12:00"}, schema, "s") == [
        "s.periodEnd: '2026-03-10 12:00' is not an RFC 3339 time"
    ]
