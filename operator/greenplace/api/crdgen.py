"""Generate the CustomResourceDefinitions in ``crds/`` from the pydantic models.

Why this module exists: the API server must refuse what the operator would refuse. Rather than
keeping a YAML schema and a Python model in step by hand, the CRDs are derived from
``greenplace.api.models``: pydantic's JSON Schema is turned into a Kubernetes *structural* schema
(references inlined, ``null`` alternatives dropped, ``uniqueItems`` and ``exclusiveMinimum``
rewritten, titles removed, descriptions put on one line) and wrapped in a CRD with printer columns
and the status subresource. Kubernetes has no ``propertyNames``: the bounds pydantic puts there
(a map's keys) become a CEL rule on the map, so the API server enforces them too.

Run ``python -m greenplace.api.crdgen crds`` (``make crds``) after changing a model. It also
writes the Helm chart's copies (``charts/greenplace/templates/crds/``, beside ``crds/``): the same
CRDs, annotated ``helm.sh/resource-policy: keep`` so ``helm uninstall`` never deletes them, and
installed unless ``crds.install`` is false.

Every CRD carries the recommended ``app.kubernetes.io`` labels (``CRD_LABELS``, as
cert-manager's and Kueue's do), so ``kubectl get crd -l app.kubernetes.io/part-of=greenplace``
finds all five; the chart's copies add the release's labels (``greenplace.labels``).
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
from typing import Any

import pydantic
import yaml

from greenplace.api import models

__all__ = [
    "CHART_CRDS",
    "CRD_LABELS",
    "KINDS",
    "Kind",
    "crd",
    "main",
    "render_chart",
    "structural_schema",
]


@dataclasses.dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    scope: str
    spec: type[pydantic.BaseModel]
    status: type[pydantic.BaseModel]
    short_names: tuple[str, ...] = ()
    columns: tuple[dict[str, str], ...] = ()
    # CEL rules that need metadata (only name and generateName are visible), on the whole object.
    object_rules: tuple[dict[str, str], ...] = ()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{models.GROUP}"


# The labels of every CRD (crds/ and the chart's copies).
CRD_LABELS = {
    "app.kubernetes.io/name": "greenplace",
    "app.kubernetes.io/part-of": "greenplace",
    "app.kubernetes.io/component": "crds",
}

_READY = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
}


def _condition(kind: str) -> dict[str, str]:
    return {
        "name": kind,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{kind}")].status',
    }


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS: tuple[Kind, ...] = (
    Kind(
        kind="GpuPool",
        plural="gpupools",
        scope="Cluster",
        spec=models.GpuPoolSpec,
        status=models.GpuPoolStatus,
        short_names=("gpool",),
        object_rules=(
            models.cel(
                f"'{models.POOL_LABEL}' in self.spec.nodeSelector && "
                f"self.spec.nodeSelector['{models.POOL_LABEL}'] == self.metadata.name",
                f"spec.nodeSelector must contain {models.POOL_LABEL}: <this GpuPool's name>; "
                "label the pool's nodes with it (placements and the admission policy use it)",
                ".spec.nodeSelector",
            ),
        ),
        columns=(
            {"name": "Country", "type": "string", "jsonPath": ".spec.location.country"},
            {"name": "Provider", "type": "string", "jsonPath": ".spec.location.provider"},
            {"name": "GPU", "type": "string", "jsonPath": ".spec.gpu.model"},
            {"name": "Free", "type": "integer", "jsonPath": ".status.gpusFree"},
            {"name": "Total", "type": "integer", "jsonPath": ".status.gpusTotal"},
            {"name": "gCO2/kWh", "type": "number", "jsonPath": ".status.carbonGramsPerKwh"},
            _READY,
            _AGE,
        ),
    ),
    Kind(
        kind="PlacementPolicy",
        plural="placementpolicies",
        scope="Namespaced",
        spec=models.PlacementPolicySpec,
        status=models.PlacementPolicyStatus,
        short_names=("gpp",),
        columns=(
            {"name": "Placed", "type": "integer", "jsonPath": ".status.placed"},
            {"name": "Held", "type": "integer", "jsonPath": ".status.held"},
            {"name": "Deferred", "type": "integer", "jsonPath": ".status.deferred"},
            {"name": "Refused", "type": "integer", "jsonPath": ".status.refused"},
            _READY,
            _AGE,
        ),
    ),
    Kind(
        kind="SignalSource",
        plural="signalsources",
        scope="Cluster",
        spec=models.SignalSourceSpec,
        status=models.SignalSourceStatus,
        short_names=("gsig",),
        columns=(
            {"name": "Signal", "type": "string", "jsonPath": ".spec.signal"},
            _READY,
            _condition("Degraded"),
            _AGE,
        ),
    ),
    Kind(
        kind="BillingExport",
        plural="billingexports",
        scope="Cluster",
        spec=models.BillingExportSpec,
        status=models.BillingExportStatus,
        short_names=("gbill",),
        columns=(
            {"name": "Rows", "type": "integer", "jsonPath": ".status.rows"},
            {"name": "Read", "type": "date", "jsonPath": ".status.lastReadTime"},
            _READY,
            _AGE,
        ),
    ),
    Kind(
        kind="Budget",
        plural="budgets",
        scope="Namespaced",
        spec=models.BudgetSpec,
        status=models.BudgetStatus,
        short_names=("gbudget",),
        columns=(
            {"name": "Period", "type": "string", "jsonPath": ".spec.period"},
            {"name": "Money", "type": "number", "jsonPath": ".spec.limits.money"},
            {"name": "Spent", "type": "number", "jsonPath": ".status.spent.money"},
            _condition("Exceeded"),
            _READY,
            _AGE,
        ),
    ),
    Kind(
        kind="EnergyReport",
        plural="energyreports",
        scope="Namespaced",
        spec=models.EnergyReportSpec,
        status=models.EnergyReportStatus,
        short_names=("gereport",),
        columns=(
            {"name": "Window", "type": "string", "jsonPath": ".spec.window"},
            {"name": "Energy", "type": "string", "jsonPath": ".status.energySource"},
            {"name": "End", "type": "date", "jsonPath": ".status.windowEnd"},
            _READY,
            _AGE,
        ),
    ),
)


def structural_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The Kubernetes structural OpenAPI v3 schema of ``model`` (wire names)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    definitions = schema.pop("$defs", {})
    converted: dict[str, Any] = _convert(schema, definitions)
    return converted


def _convert(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = definitions[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, definitions)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        return _convert({**options[0], **rest}, definitions)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "additionalProperties" and value is False):
            continue
        if key == "default" and value is None:
            continue
        if key == "description":
            out[key] = _one_line(value)
        elif key == "propertyNames":
            rules = [*node.get("x-kubernetes-validations", []), _key_rule(value)]
            out["x-kubernetes-validations"] = _convert(rules, definitions)
        elif key == "x-kubernetes-validations" and "propertyNames" in node:
            continue  # merged with the key rule above
        elif key == "properties":
            out[key] = {name: _convert(sub, definitions) for name, sub in value.items()}
        elif key == "uniqueItems":
            out["x-kubernetes-list-type"] = "set"
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        else:
            out[key] = _convert(value, definitions)
    return out


def _one_line(text: str) -> str:
    """A docstring's line breaks and indentation are no part of ``kubectl explain`` text."""
    return " ".join(text.split())


def _key_rule(names: dict[str, Any]) -> dict[str, str]:
    """The CEL rule of a map whose keys have ``names`` (a JSON Schema ``propertyNames``)."""
    low, high = names.get("minLength", 0), names.get("maxLength")
    if set(names) - {"minLength", "maxLength"} or high is None:
        raise ValueError(f"cannot express propertyNames {names} in CEL: bound maxLength only")
    return models.cel(
        f"self.all(k, size(k) >= {low} && size(k) <= {high})",
        f"every key must be {low} to {high} characters long",
    )


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of ``kind``."""
    spec_schema = structural_schema(kind.spec)
    status_schema = structural_schema(kind.status)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.crd_name, "labels": dict(CRD_LABELS)},
        "spec": {
            "group": models.GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": ["greenplace"],
            },
            "scope": kind.scope,
            "versions": [
                {
                    "name": models.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": list(kind.columns),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": _one_line(kind.spec.__doc__ or kind.kind),
                            **(
                                {"x-kubernetes-validations": list(kind.object_rules)}
                                if kind.object_rules
                                else {}
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


_HEADER = (
    "# Generated by `make crds` (python -m greenplace.api.crdgen) from "
    "operator/greenplace/api/models.py. Do not edit.\n"
)


def render(kind: Kind) -> str:
    return _HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=100)


def render_chart(kind: Kind) -> str:
    """The chart's copy of ``render(kind)``: kept on uninstall, behind ``crds.install``."""
    body = crd(kind)
    # The release's labels (greenplace.labels: name, instance, version, managed-by, part-of,
    # helm.sh/chart) and the component; helm renders the include in place of the marker.
    body["metadata"]["labels"] = {_RELEASE_LABELS: "", "app.kubernetes.io/component": "crds"}
    body["metadata"]["annotations"] = {"helm.sh/resource-policy": "keep"}
    text = yaml.safe_dump(body, sort_keys=False, width=100)
    marker = f"    {_RELEASE_LABELS}: ''\n"
    assert text.count(marker) == 1, "the labels marker must appear once"
    text = text.replace(marker, '    {{- include "greenplace.labels" . | nindent 4 }}\n')
    return _HEADER + "{{- if .Values.crds.install }}\n" + text + "{{- end }}\n"


_RELEASE_LABELS = "__greenplace_labels__"


# The chart's copies, relative to the directory holding crds/ (the repository root).
CHART_CRDS = pathlib.Path("charts/greenplace/templates/crds")


def main(argv: list[str]) -> int:
    out_dir = pathlib.Path(argv[0] if argv else "crds")
    chart_dir = out_dir.parent / CHART_CRDS
    out_dir.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        path = out_dir / f"{kind.crd_name}.yaml"
        path.write_text(render(kind))
        print(f"wrote {path}")
        if chart_dir.is_dir():
            chart_path = chart_dir / f"{kind.crd_name}.yaml"
            chart_path.write_text(render_chart(kind))
            print(f"wrote {chart_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
