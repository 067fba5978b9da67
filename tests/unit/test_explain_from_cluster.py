"""The pure parts of ``explain --from-cluster``: signals from SignalSource status, policy files,
and the flags that cannot go together (the cluster part: tests/integration).

Why this module exists: what the command plans with must be what the operator planned with,
and what a user hands it (a policy file) is untrusted input: each fault is one line, exit 2.
"""

from __future__ import annotations

import pathlib

import pytest

from greenplace.cli import live, output
from greenplace.cli import main as cli
from greenplace.controller import feeds
from greenplace.signals import contract


def source(name: str, signal: str, readings: list[dict[str, object]]) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {
            "signal": signal,
            "zones": [str(r["subject"]) for r in readings],
            "sources": [{"name": "s", "kind": "Static", "static": {"values": {"FR": 1}}}],
        },
        "status": {"readings": readings},
    }


def test_recorded_signals_are_the_status_readings_first_source_by_name_winning() -> None:
    observed = feeds.recorded([
        source("b-grid", "CarbonIntensity", [
            {"subject": "FR", "value": 99.0, "source": "s", "reason": "Fresh"}]),
        source("a-grid", "CarbonIntensity", [
            {"subject": "FR", "value": 56.0, "source": "s", "reason": "Fallback"},
            {"subject": "DE", "value": None, "reason": "Unavailable", "message": "down"}]),
        source("prices", "Price", [
            {"subject": "ovh-gra-h100", "value": 2.5, "source": "s", "reason": "Fresh"}]),
        {"metadata": {"name": "broken"}, "spec": {"signal": "Nonsense"}},
    ])  # fmt: skip
    assert observed.carbon["FR"].value == 56.0
    assert observed.carbon["FR"].status.reason is contract.SignalReason.FALLBACK
    assert observed.carbon["DE"].value is None and observed.carbon["DE"].status.message == "down"
    assert observed.owner[observed.carbon["FR"].key] == "a-grid"
    assert observed.prices["ovh-gra-h100"].value == 2.5
    assert observed.forecasts == {} and "broken" not in observed.by_source
    assert ("a-grid", "s") in observed.static_sources


POLICY = """apiVersion: greenplace.dev/v1alpha1
kind: PlacementPolicy
metadata: {name: eu%s}
spec: {sovereignty: {allowedCountries: [FR]}}
"""


@pytest.mark.parametrize(
    ("text", "namespace", "words"),
    [
        ("a: [", "ml", "while parsing"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n", "ml", "only PlacementPolicy"),
        (POLICY.replace("v1alpha1", "v9") % "", "ml", "expected greenplace.dev/v1alpha1"),
        (POLICY % "", None, "pass -n NAMESPACE"),
        (POLICY % ", namespace: ml", "other", "does not match the namespace"),
        ("kind: PlacementPolicy\napiVersion: greenplace.dev/v1alpha1\n", "ml", "metadata.name"),
        ("", "ml", "no PlacementPolicy"),
    ],
)
def test_policy_files_are_refused_in_one_line(
    tmp_path: pathlib.Path, text: str, namespace: str | None, words: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(output.CliError) as refused:
        live.read_policies(path, namespace)
    assert words in str(refused.value) and "\n" not in str(refused.value)
    assert refused.value.exit_code == 2


def test_policy_files_take_the_namespace_given(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY % "" + "---\n" + POLICY % "2, namespace: ml")
    first, second = live.read_policies(path, "ml")
    assert first["metadata"] == {"name": "eu", "namespace": "ml", "generation": 0}
    assert second["metadata"]["namespace"] == "ml"


@pytest.mark.parametrize(
    "argv",
    [
        ["explain"],
        ["explain", "snap.yaml", "--from-cluster"],
        ["explain", "snap.yaml", "-f", "policy.yaml"],
        ["explain", "--from-cluster", "-o", "wide"],
    ],
)
def test_flags_that_do_not_go_together(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
