"""The ``greenplace`` command line: one entry point, one module per subcommand.

Why this module exists: users and the Makefile reach every tool (the read commands, the
operator, explain, simulate) through one command, also installed as the kubectl plugin
``kubectl-greenplace``. Each subcommand lives in its own module of this package exposing
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code. Add a subcommand by adding it to ``SUBCOMMANDS``.

Start-up time: ``main`` imports only the module of the subcommand it runs (the others get a
parser that only carries their one-line help), and the read commands import the Kubernetes client
only when they connect, so ``greenplace pools --help`` does not load kopf or the operator.
``build_parser()`` without arguments builds every subcommand (tests, shell completion).

Errors a user can act on (any ``errors.GreenplaceError``, ``output.CliError`` among them, an
unreachable or refusing API server, a missing kubeconfig) print one line on stderr and exit
1; argparse's usage errors exit 2.
"""

# Imports inside functions on purpose: a command loads only what it runs (start-up time).
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["build_parser", "help_of", "main"]

# Name, module under greenplace.cli, one-line help (shown by `greenplace --help`).
SUBCOMMANDS: tuple[tuple[str, str, str], ...] = (
    ("placements", "placements", "where governed pods and Kueue Workloads went, or why they wait"),
    ("why", "views", "why one pod or Kueue Workload was placed where it is, or waits"),
    ("pools", "views", "GPU pools: free GPUs, grid carbon intensity and its source"),
    ("budgets", "views", "Budgets: spent and limit in money, kgCO2e and kWh, exceeded or not"),
    ("reports", "views", "EnergyReports: Wh, gCO2e and cost per request, and grades"),
    ("explain", "explain", "explain decisions from a snapshot file (why here, why not there)"),
    ("simulate", "simulate", "replay a workload trace under greenplace and baseline strategies"),
    ("operate", "operate", "run the greenplace operator"),
    ("audit", "audit", "the signed placement ledger: verify it, export it, report for auditors"),
    ("finops", "finops", "reconcile FOCUS billing exports: pools' effective price per GPU-hour"),
    ("completion", "completion", "print a bash or zsh completion script"),
)

DESCRIPTION = """\
Place GPU workloads so that sovereignty, carbon and cost rules hold together.

The read commands (placements, why, pools, budgets, reports) take kubectl's flags:
-n/--namespace, -A/--all-namespaces, -o wide|json|yaml, --kubeconfig, --context.
Also a kubectl plugin: kubectl greenplace placements -n ml."""


def help_of(name: str) -> str:
    """The one-line help of subcommand ``name`` (``SUBCOMMANDS``, said once for both parsers)."""
    return next(text for known, _, text in SUBCOMMANDS if known == name)


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version("greenplace")
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


class _Version(argparse.Action):
    """``--version``, reading the installed package's metadata only when asked (it costs
    about 0.1 s of start-up)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"greenplace {version()}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, the other subcommands are names and help lines only."""
    parser = argparse.ArgumentParser(
        prog="greenplace",
        description=DESCRIPTION,
        formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
            prog, max_help_position=16
        ),
    )
    parser.add_argument("--version", action=_Version, help="print greenplace's version")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, help_text in SUBCOMMANDS:
        if only is not None and name != only:
            subparsers.add_parser(name, help=help_text, add_help=False)
        else:  # each module's register(subparsers, names) adds the named of its subcommands
            importlib.import_module(f"greenplace.cli.{module}").register(subparsers, {name})
    return parser


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), if known."""
    names = {name for name, _, _ in SUBCOMMANDS}
    for word in argv:
        if not word.startswith("-"):
            return word if word in names else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    chosen = _chosen(words)
    args = build_parser(chosen or "").parse_args(words)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        from greenplace import errors
        from greenplace.cli import kubeapi, output

        if isinstance(error, errors.GreenplaceError):  # greenplace's own refusal: its message
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code if isinstance(error, output.CliError) else 1
        line = kubeapi.describe(error)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
