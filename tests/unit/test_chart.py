"""The Helm chart's files that are checked without helm: generated CRDs, documented values.

Why this module exists: the chart's CRDs are generated from the same models as ``crds/``
(``make crds``) and must never drift from them; every value of ``values.yaml`` carries a
comment, because the values file is the chart's user documentation. Rendering with the real
helm is tested in ``tests/e2e/test_chart.py``.
"""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from greenplace.api import crdgen

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "greenplace"


@pytest.mark.parametrize("kind", crdgen.KINDS, ids=lambda k: k.kind)
def test_chart_crds_match_the_models(kind: crdgen.Kind) -> None:
    committed = (ROOT / crdgen.CHART_CRDS / f"{kind.crd_name}.yaml").read_text()
    assert committed == crdgen.render_chart(kind), "chart CRDs drifted: run `make crds`"


def test_chart_crds_are_crds_kept_on_uninstall() -> None:
    for kind in crdgen.KINDS:
        text = crdgen.render_chart(kind)
        assert text.count("{{") == 2, "only the crds.install guard may be template syntax"
        body = yaml.safe_load("\n".join(text.splitlines()[2:-1]))
        assert body == {
            **crdgen.crd(kind),
            "metadata": {
                "name": kind.crd_name,
                "annotations": {"helm.sh/resource-policy": "keep"},
            },
        }


def test_make_crds_writes_both_copies(tmp_path: pathlib.Path) -> None:
    (tmp_path / crdgen.CHART_CRDS).mkdir(parents=True)
    assert crdgen.main([str(tmp_path / "crds")]) == 0
    for kind in crdgen.KINDS:
        assert (tmp_path / "crds" / f"{kind.crd_name}.yaml").is_file()
        assert (tmp_path / crdgen.CHART_CRDS / f"{kind.crd_name}.yaml").is_file()


def _undocumented(lines: list[str]) -> list[str]:
    """Keys with no comment above them nor above any enclosing key."""
    missing = []
    documented: list[tuple[int, bool]] = []  # (indent, documented) of enclosing keys
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        documented = [(d, ok) for d, ok in documented if d < indent]
        ok = lines[i - 1].strip().startswith("#") or any(ok for _, ok in documented)
        if not ok and not stripped.endswith(":"):
            missing.append(f"line {i + 1}: {stripped}")
        documented.append((indent, ok))
    return missing


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    assert _undocumented(lines) == []
    assert _undocumented(["a:", "  b: 1"]) == ["line 2: b: 1"]  # the check itself bites


def test_values_schema_is_strict_everywhere() -> None:
    """Every object of values.schema.json closes its keys (maps of strings say so)."""

    def walk(node: object, path: str) -> list[str]:
        open_objects = []
        if isinstance(node, dict):
            closed = node.get("additionalProperties") is False
            if node.get("type") == "object" and "properties" in node and not closed:
                open_objects.append(path)
            for key, value in node.items():
                open_objects += walk(value, f"{path}.{key}")
        return open_objects

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert walk(schema, "$") == []
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"]), "values.yaml and the schema disagree"
