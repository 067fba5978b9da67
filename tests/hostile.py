"""Hostile values for every bounded spec field, shared by the API-server and the model tests.

Why this module exists: the same value must be refused twice, by the API server at ``kubectl
apply`` (tests/integration/test_validation.py) and by the pydantic models the operator parses
what it watches with (tests/unit/test_hostile_values.py), so that an object stored before a bound
existed is reported invalid instead of crashing the operator later. One table feeds both.

``FULL`` holds a valid spec of each kind that sets every optional field, so that every field has
a place for a hostile value. The cases: every number with 1e308, -1 and the YAML infinities and
NaN (through kubectl, as a user's file would carry them); every duration with 99999999999999h
and just outside its range; and, generated from the CRD schema, every string with 100000
characters, every list and map one entry past its cap, every map with a 100000-character key.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

import pydantic
import yaml

from greenplace.api import crdgen, models

# Floats JSON cannot carry; YAML can (.inf, -.inf, .nan), so a user's file may hold them.
PYTHON_SPECIALS = {"__INF__": float("inf"), "__NEG_INF__": float("-inf"), "__NAN__": float("nan")}
HUGE = "x" * 100_000
HUGE_DURATION = "99999999999999h"  # the audit's value: 3.6e17 s, past any timedelta or Go time

MODELS: dict[str, type[pydantic.BaseModel]] = {
    "GpuPool": models.GpuPoolSpec,
    "PlacementPolicy": models.PlacementPolicySpec,
    "SignalSource": models.SignalSourceSpec,
    "Budget": models.BudgetSpec,
    "EnergyReport": models.EnergyReportSpec,
    "BillingExport": models.BillingExportSpec,
}
NAMESPACED = {"PlacementPolicy", "Budget", "EnergyReport"}
NAME = "hostile"  # also the GpuPool's pool label, which the CRD requires to equal its name

FULL: dict[str, dict[str, Any]] = {
    # file and s3 are exclusive, as prefix and keys: the store, read by keys.
    "BillingExport": {
        "format": "CSV",
        "interval": "10m",
        "s3": {
            "endpoint": "https://s3.gra.io.cloud.ovh.net",
            "bucket": "bills",
            "keys": ["focus/2026-12.csv"],
            "region": "gra",
            "credentialsSecretRef": {
                "name": "bills",
                "accessKeyIdKey": "id",
                "secretAccessKeyKey": "secret",
            },
        },
    },
    "GpuPool": {
        "nodeSelector": {models.POOL_LABEL: NAME},
        "location": {
            "provider": "p", "region": "r", "zone": "a", "country": "FR", "gridZone": "FR",
        },
        "jurisdiction": {"legalHome": "FR", "exposures": ["none"]},
        "certifications": [{"name": "SecNumCloud", "level": "3.2", "expires": "2030-01-01"}],
        "gpu": {"model": "H100", "tdpWatts": 700, "idleWatts": 80},
        "price": {"currency": "EUR", "onDemandPerGpuHour": 2.5},
        "pue": 1.2,
        "embodiedGramsPerGpuHour": 20,
        "carbonIntensity": {"fallbackGramsPerKwh": 56},
        "billing": {
            "match": {
                "resourceIds": ["i-1"], "tags": {"pool": NAME}, "regionIds": ["r"],
                "skuIds": ["sku"], "subAccountIds": ["sub"],
            },
            "gpusPerConsumedHour": 8,
        },
    },
    "PlacementPolicy": {
        "podSelector": {"matchLabels": {"app": "llm"}},
        "sovereignty": {
            "allowedCountries": ["FR"],
            "allowedRegimes": ["EU"],
            "forbidExtraterritorialExposure": True,
            "requiredCertifications": [{"name": "SecNumCloud", "minLevel": "3.2"}],
        },
        "carbon": {
            "maxGramsPerKwh": 100, "ceilingYieldsAtDeadline": True, "onMissingSignal": "Hold",
        },
        "objective": {"carbonPricePerTonne": 100},
        "budgetRef": {"name": "b"},
    },
    "SignalSource": {
        "signal": "CarbonIntensity",
        "zones": ["FR"],
        "fallbackOrder": ["static", "trace"],
        "sources": [
            {"name": "static", "kind": "Static", "static": {"values": {"FR": 56}}},
            {"name": "trace", "kind": "Trace",
             "trace": {"files": {"FR": "/data/fr.csv"}, "shift": "52608h"}},
            {"name": "prom", "kind": "Prometheus", "ttl": "1h", "timeout": "5s",
             "prometheus": {"url": "http://prom:9090", "query": "carbon"}},
            {"name": "emaps", "kind": "ElectricityMaps", "electricityMaps": {"url": "http://e"},
             "zoneMapping": {"FR": "FR"},
             "credentialsSecretRef": {"name": "s", "namespace": "greenplace", "key": "token"}},
            {"name": "wt", "kind": "WattTime", "wattTime": {"url": "http://w"}},
        ],
    },
    "Budget": {
        "period": "Month",
        "currency": "EUR",
        "limits": {"money": 100, "kgCO2e": 10, "kWh": 100},
        "alertThresholds": [0.5, 0.8],
        "action": "Defer",
    },
    "EnergyReport": {
        "window": "1h",
        "windowEnd": "2026-01-01T00:00:00Z",
        "prometheus": {"url": "http://prom:9090"},
        "serving": "vLLM",
        "migSlicesTotal": 7,
        "grading": {
            "energyWhPerRequest": [0.03, 0.1, 0.3, 1.0],
            "carbonGCO2ePerRequest": [0.003, 0.01, 0.03, 0.1],
        },
        "scope": "Namespace",
    },
}  # fmt: skip

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class Case:
    """One hostile value at ``path`` of a full spec of ``kind``."""

    kind: str
    path: Path
    value: Any
    # Fragments of the API server's refusal, besides the field's path.
    expected: tuple[str, ...]
    # The value is a new key of the map at ``path`` (its value copied from an existing key).
    as_key: bool = False
    # Where the refusal is reported, when not at ``path`` (a rule on a parent).
    reported_at: Path | None = None

    @property
    def special(self) -> bool:
        """Infinity or NaN: no JSON carries them, so they are refused before any schema."""
        return isinstance(self.value, str) and self.value in PYTHON_SPECIALS

    @property
    def id(self) -> str:
        shown = str(self.value)
        if isinstance(self.value, list | dict):
            shown = f"{len(self.value)}-entries"
        elif len(shown) > 24:
            shown = f"{len(shown)}-chars"
        return f"{self.kind}.{self.field(spec=False)}{'[key]' if self.as_key else ''}={shown}"

    def field(self, spec: bool = True) -> str:
        """The path as the API server writes it, e.g. spec.sources[0].ttl."""
        text, path = ("spec", self.reported_at or self.path) if spec else ("", self.path)
        for part in path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text.lstrip(".")

    def spec(self, specials: dict[str, Any] | None = None) -> dict[str, Any]:
        """The full spec with the hostile value (``specials``: how to spell the sentinels)."""
        spec = copy.deepcopy(FULL[self.kind])
        value = self.value
        if isinstance(value, str):
            value = (specials or {}).get(value, value)
        parent: Any = spec
        for part in self.path[:-1]:
            parent = parent[part]
        leaf = self.path[-1]
        if self.as_key:
            target = parent[leaf]
            target[value] = next(iter(target.values()))
        else:
            parent[leaf] = value
        return spec

    def manifest(self) -> str:
        """The object as a user's YAML file carries it (.inf, -.inf and .nan included)."""
        return manifest(self.kind, self.spec(PYTHON_SPECIALS))


def resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The custom resource named ``NAME`` of ``kind`` with ``spec``."""
    metadata = {"name": NAME, **({"namespace": "default"} if kind in NAMESPACED else {})}
    return {
        "apiVersion": f"{models.GROUP}/{models.VERSION}", "kind": kind,
        "metadata": metadata, "spec": spec,
    }  # fmt: skip


def manifest(kind: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(resource(kind, spec), width=1_000_000)


LESS = "should be less than or equal to"
GREATER = "should be greater than"  # "or equal to" for minimum, alone for exclusiveMinimum
DURATION = "must be a duration from"

# Every number of every spec: (kind, path, what 1e308 gets besides LESS).
NUMBERS: tuple[tuple[str, Path], ...] = (
    ("GpuPool", ("gpu", "tdpWatts")),
    ("GpuPool", ("gpu", "idleWatts")),
    ("GpuPool", ("price", "onDemandPerGpuHour")),
    ("GpuPool", ("pue",)),
    ("GpuPool", ("embodiedGramsPerGpuHour",)),
    ("GpuPool", ("carbonIntensity", "fallbackGramsPerKwh")),
    ("GpuPool", ("billing", "gpusPerConsumedHour")),
    ("PlacementPolicy", ("carbon", "maxGramsPerKwh")),
    ("PlacementPolicy", ("objective", "carbonPricePerTonne")),
    ("SignalSource", ("sources", 0, "static", "values", "FR")),
    ("Budget", ("limits", "money")),
    ("Budget", ("limits", "kgCO2e")),
    ("Budget", ("limits", "kWh")),
    ("Budget", ("alertThresholds", 1)),
    ("EnergyReport", ("migSlicesTotal",)),
    ("EnergyReport", ("grading", "energyWhPerRequest", 3)),
    ("EnergyReport", ("grading", "carbonGCO2ePerRequest", 3)),
)
INTEGERS = {("EnergyReport", ("migSlicesTotal",))}

# Every duration and time: (kind, path, below its range or None, above its range).
DURATIONS: tuple[tuple[str, Path, str | None, str], ...] = (
    ("EnergyReport", ("window",), "30s", "8785h"),
    ("BillingExport", ("interval",), "9s", "24h1ms"),
    ("SignalSource", ("sources", 2, "ttl"), "0s", "8784h1ms"),
    ("SignalSource", ("sources", 2, "timeout"), "99ms", "61s"),
    ("SignalSource", ("sources", 1, "trace", "shift"), None, "876001h"),
)


def number_cases() -> Iterator[Case]:
    for kind, path in NUMBERS:
        integer = (kind, path) in INTEGERS
        # An integer field refuses a float's type before its range.
        yield Case(kind, path, 1e308, ("must be of type integer",) if integer else (LESS,))
        yield Case(kind, path, -1, (GREATER,))
        yield Case(kind, path, "__INF__", ())
        yield Case(kind, path, "__NEG_INF__", ())
        yield Case(kind, path, "__NAN__", ())


def duration_cases() -> Iterator[Case]:
    for kind, path, below, above in DURATIONS:
        for value in (HUGE_DURATION, "1000000h", above, *([below] if below else [])):
            yield Case(kind, path, value, (DURATION,))
    for value in ("0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"):
        yield Case("EnergyReport", ("windowEnd",), value, ("must be on or after 1970",))


def other_cases() -> Iterator[Case]:
    """Bounds that are CEL rules of the whole spec rather than of one field."""
    static = ("sources", 0, "static", "values", "FR")
    yield Case(
        "SignalSource", static, 2001, ("static values of a CarbonIntensity source",),
        reported_at=("sources",),
    )  # fmt: skip


def generated_cases() -> Iterator[Case]:
    """Every string too long, list and map too big, map key too long, found in the schema."""
    for kind, spec in FULL.items():
        schema = crdgen.structural_schema(MODELS[kind])
        yield from _walk(kind, spec, schema, ())


_UNCAPPED = 1000


def _walk(kind: str, value: Any, schema: dict[str, Any], path: Path) -> Iterator[Case]:
    if isinstance(value, str):
        if "enum" in schema:
            yield Case(kind, path, HUGE, ("Unsupported value",))
        elif "format" in schema:  # a date or a time: its format refuses it
            yield Case(kind, path, HUGE, (f"must be of type {schema['format']}",))
        else:
            yield Case(kind, path, HUGE, ("Too long",))
    elif isinstance(value, list):
        # Without a cap (tests/unit/test_crds.py requires one), a thousand: accepted, so failing.
        too_many = [value[0]] * (schema.get("maxItems", _UNCAPPED) + 1)
        yield Case(kind, path, too_many, ("Too many",))
        for i, item in enumerate(value):
            yield from _walk(kind, item, schema["items"], (*path, i))
    elif isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            yield from _walk(kind, item, schema["properties"][key], (*path, key))
    elif isinstance(value, dict):  # a map
        first = next(iter(value.values()))
        too_many = {f"k{i}": first for i in range(schema.get("maxProperties", _UNCAPPED) + 1)}
        yield Case(kind, path, too_many, ("Too many",))
        yield Case(kind, path, HUGE, ("every key must be",), as_key=True)
        for key, item in value.items():
            yield from _walk(kind, item, schema["additionalProperties"], (*path, key))


def all_cases() -> list[Case]:
    return [*number_cases(), *duration_cases(), *other_cases(), *generated_cases()]


# BillingExport specs the API server and the operator's model both refuse, by case: (spec, the
# message both carry; the pattern's wording differs, "should match" is common to both).
_S3 = {"bucket": "bills", "credentialsSecretRef": {"name": "b"}}
_FILE = {"paths": ["/bills/a.csv"]}
BAD_BILLING_EXPORTS: dict[str, tuple[dict[str, Any], str]] = {
    "two sources": ({"file": _FILE, "s3": {**_S3, "prefix": "f"}},
                    "spec: set exactly one of file or s3"),
    "none": ({"interval": "1h"}, "spec: set exactly one of file or s3"),
    "interval too short": ({"interval": "9s", "file": _FILE}, "must be a duration from 10s to 24h"),
    "interval too long": ({"interval": "24h1s", "file": _FILE}, "must be a duration from 10s"),
    "no selection": ({"s3": _S3}, "spec.s3: set exactly one of prefix or keys"),
    "two selections": ({"s3": {**_S3, "prefix": "f", "keys": ["k"]}},
                       "spec.s3: set exactly one of prefix or keys"),
    "relative path": ({"file": {"paths": ["bills/a.csv"]}}, "should match"),
}  # fmt: skip
