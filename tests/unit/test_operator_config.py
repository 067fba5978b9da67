"""One set of operator defaults: the flags, their --help and the docs say what OperatorConfig says.

``controller.config.OperatorConfig`` is the one place each default is written. These tests fail
when ``greenplace operate`` restates one differently, when ``docs/operator.md`` carries an old
``--help``, or when its prose names a default the config does not have.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import re

import pytest

from greenplace.cli import main as cli
from greenplace.cli import operate
from greenplace.controller import config as config_

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
HELP_BLOCK = re.compile(
    r"<!-- operate-help: begin -->\n```text\n(.*?)```\n<!-- operate-help: end -->", re.S
)


def operate_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found: argparse.ArgumentParser = subparsers.choices["operate"]
    return found


def parsed(*flags: str) -> config_.OperatorConfig:
    return operate.config_from(cli.build_parser().parse_args(["operate", *flags]))


def prose(page: str) -> str:
    """A docs page with its lines joined, so a phrase may wrap anywhere."""
    return " ".join((DOCS / page).read_text().split())


def test_no_flag_gives_every_default_of_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    got = parsed()
    assert got == config_.OperatorConfig(identity=got.identity)  # the identity is random


def test_the_lease_follows_the_operator_namespace_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert parsed().lease_namespace_in_use == config_.FALLBACK_LEASE_NAMESPACE == "default"
    assert parsed("--namespace=gp").lease_namespace_in_use == "gp"
    assert parsed("--namespace=gp", "--lease-namespace=ha").lease_namespace_in_use == "ha"
    # The same rule for an operator built without the CLI (the tests, an embedding program).
    assert config_.OperatorConfig(namespace="gp").lease_namespace_in_use == "gp"
    monkeypatch.setenv("POD_NAMESPACE", "from-the-pod")  # as the chart sets it
    assert parsed().lease_namespace_in_use == "from-the-pod"


def test_the_webhook_listens_on_its_host_unless_told() -> None:
    assert parsed("--webhook-host=10.0.0.5").listen_address == "10.0.0.5"
    given = parsed("--webhook-host=10.0.0.5", "--webhook-listen=0.0.0.0")
    assert given.listen_address == "0.0.0.0"


def test_each_setting_flag_shows_the_config_default_in_its_help() -> None:
    default = config_.OperatorConfig()
    actions = {a.dest: a for a in operate_parser()._actions}
    for field in ("report_seconds", "lease_seconds", "watch_inactivity_seconds", "relist_seconds"):
        assert f"default: {getattr(default, field):g})" in str(actions[field].help) % {
            "default": actions[field].default
        }, field
    for flag, names in (
        ("accelerator_resource", default.accelerators.resources),
        ("accelerator_prefix", default.accelerators.prefixes),
    ):
        assert f"default: {', '.join(names)})" in str(actions[flag].help), flag


def test_the_docs_carry_the_help_as_the_cli_prints_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")  # argparse wraps to the terminal's width
    printed = operate_parser().format_help()
    (documented,) = HELP_BLOCK.findall((DOCS / "operator.md").read_text())
    assert documented == printed, (
        "docs/operator.md's flags are not what the CLI prints: replace the block between the "
        "operate-help markers with the output of `COLUMNS=100 greenplace operate --help`"
    )


def test_the_defaults_the_docs_name_are_the_configs() -> None:
    config = config_.OperatorConfig()
    text = prose("operator.md")
    actions = {a.option_strings[0]: a for a in operate_parser()._actions if a.option_strings}
    # Every "`--flag` (N s)" of the page is that flag's default.
    named = re.findall(r"`(--[a-z-]+)` \((\d+(?:\.\d+)?) s\)", text)
    assert {flag for flag, _ in named} >= {
        "--relist-seconds",
        "--report-seconds",
        "--watch-inactivity-seconds",
    }
    for flag, seconds in named:
        assert float(seconds) == actions[flag].default, flag
    # Figures that are no flag, and the rules that combine settings.
    for phrase in (
        f"until {config.debounce_seconds:g} s pass without another change, "
        f"at most {config.settle_max_seconds:g} s",
        f"or for the periodic resync ({config.resync_seconds:g} s)",
        f"({config.watch_stale_seconds:g} s by default)",
        f"read at most once per {config.signal_memory_seconds:g} s",
        "`--lease-namespace`, default the operator's `--namespace`, else "
        f"`{config_.FALLBACK_LEASE_NAMESPACE}`",
    ):
        assert phrase in text, phrase
    assert f"(at most every {config.signal_memory_seconds:g} s per zone)" in prose("install.md")


def test_every_config_field_is_a_flag_or_said_not_to_be() -> None:
    """A new setting is either a flag (with the config's default) or named here on purpose."""
    not_flags = {  # set by the tests or fixed in the operator, never by an operator's user
        "resync_seconds",
        "debounce_seconds",
        "settle_max_seconds",
        "signal_memory_seconds",
        "webhook_certs",  # --webhook-cert-dir names the directory of the three files
        "accelerators",  # --accelerator-resource and --accelerator-prefix
    }
    dests = {a.dest for a in operate_parser()._actions}
    fields = {f.name for f in dataclasses.fields(config_.OperatorConfig)}
    assert fields - not_flags <= dests, fields - not_flags - dests


def test_every_flag_reaches_the_config() -> None:
    """A flag parsed and then dropped by ``config_from`` is a setting accepted and ignored."""
    args = operate_parser().parse_args([])
    fields = {f.name for f in dataclasses.fields(config_.OperatorConfig)}
    transformed = {"webhook_certs", "accelerators"}  # built from other flags (tested above)
    for dest in sorted((fields & set(vars(args))) - transformed):
        marker = object()
        changed = argparse.Namespace(**{**vars(args), dest: marker})
        try:
            got = getattr(operate.config_from(changed), dest)
        except TypeError:  # a tuple field: config_from copies the list the flag collected
            changed = argparse.Namespace(**{**vars(args), dest: [marker]})
            got = getattr(operate.config_from(changed), dest)[0]
        assert got is marker, f"--{dest.replace('_', '-')} does not reach OperatorConfig.{dest}"


def test_too_many_focus_exports_are_one_error_line_before_anything_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = [f"--focus-export=/exports/{n}.csv" for n in range(65)]
    assert cli.main(["operate", *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --focus-export is given 65 times, at most 64 files"), err
    assert "Traceback" not in err
