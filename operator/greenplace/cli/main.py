"""The ``greenplace`` command line: one entry point, one module per subcommand.

Why this module exists: users and the Makefile reach every tool (the operator, explain, simulate)
through one command. Each subcommand lives in its own module of this package exposing
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit code. Add a subcommand by adding its module to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Module names under greenplace.cli, imported lazily so `greenplace --help` stays fast.
SUBCOMMANDS: tuple[str, ...] = (
    "explain",
    "views",
    "operate",
    "placements",
    "simulate",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="greenplace",
        description="Place GPU workloads so that sovereignty, carbon and cost rules hold together.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"greenplace.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
