"""The Argo CD health check as the docs give it is the script the chart ships, for every kind.

Why this module exists: docs/install.md and the chart README tell users to copy the script into
argocd-cm under one key per kind; ``tests/integration/signals/test_advertised.py`` proves the
script itself on real objects. A copy that drifts from it, a kind left out, or a key Argo CD does
not read (``resource.customizations.health.<group>_<kind>``) would go unnoticed otherwise.
"""

from __future__ import annotations

import pathlib
import re

from greenplace.api import crdgen

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "charts" / "greenplace" / "argocd" / "health.lua"
KINDS = sorted(kind.kind for kind in crdgen.KINDS)


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_the_chart_readme_prints_the_shipped_script() -> None:
    readme = (ROOT / "charts" / "greenplace" / "README.md").read_text()
    assert fenced(readme, "lua") == [SCRIPT.read_text()]


def test_both_documents_register_the_script_for_every_kind_under_argo_cds_key() -> None:
    for document in (ROOT / "docs" / "install.md", ROOT / "charts" / "greenplace" / "README.md"):
        (loop,) = [b for b in fenced(document.read_text(), "sh") if "argocd-cm" in b]
        kinds = re.search(r"for kind in ([A-Za-z ]+); do", loop)
        assert kinds is not None, loop
        assert sorted(kinds.group(1).split()) == KINDS, document
        assert '"resource.customizations.health.greenplace.dev_$kind"' in loop, document
        assert "--rawfile lua charts/greenplace/argocd/health.lua" in loop, document
