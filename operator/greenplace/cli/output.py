"""What the read commands print: a table, a wide table, or the rows as JSON or YAML.

Why this module exists: every read command (``placements``, ``pools``, ``budgets``, ``reports``,
``why``) shares kubectl's output manners: ``-o wide`` adds the long columns, ``-o json`` and
``-o yaml`` print the same rows as data (``{"items": [...]}``, each item with its ``kind``), an
empty answer says "No resources found" on stderr, and a failure is one line on stderr with a
non-zero exit (``CliError``). Rows are plain dicts of JSON values; a ``Column`` says how one
is shown in a table. Nothing here imports the Kubernetes client, so ``--help`` stays fast.
"""

# Imports inside functions on purpose: a command loads only what it runs (start-up time).
# ruff: noqa: PLC0415

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from greenplace import errors

__all__ = [
    "FORMATS",
    "CliError",
    "Column",
    "amount",
    "emit",
    "nothing_found",
    "number",
    "render",
    "short_reason",
    "strip_subject",
    "strip_verb",
    "table",
]

FORMATS = ("wide", "json", "yaml")
Record = Mapping[str, Any]
Shown = Literal["always", "narrow", "wide"]


class CliError(errors.GreenplaceError):
    """A failure the user can act on: printed as one line ``error: ...``, exit ``exit_code``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclasses.dataclass(frozen=True)
class Column:
    """One table column: its header, how a row gives its cell, and in which tables it shows
    (``narrow``: the default table only; ``wide``: ``-o wide`` only)."""

    header: str
    cell: Callable[[Record], str]
    shown: Shown = "always"


def table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Aligned columns; the last one (a reason, a message) is left unpadded."""
    everything = [tuple(header), *(tuple(r) for r in body)]
    widths = [max(len(r[i]) for r in everything) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in everything
    ]
    return "\n".join(line.rstrip() for line in lines)


def render(records: Sequence[Record], columns: Sequence[Column], wide: bool = False) -> str:
    """``records`` as a table of the columns that show in the default (or the wide) table."""
    picked = [c for c in columns if c.shown in ("always", "wide" if wide else "narrow")]
    return table([c.header for c in picked], [[c.cell(r) for c in picked] for r in records])


def emit(
    records: Sequence[Record],
    output: str | None,
    tables: Sequence[tuple[Sequence[Record], Sequence[Column]]],
    empty: str,
) -> None:
    """Print ``records`` as ``output`` asks: data (json, yaml) or ``tables`` (each a part of
    the records and its columns; a part without rows prints nothing), else ``empty`` on stderr.
    """
    if output in ("json", "yaml"):
        document = {"items": [dict(r) for r in records]}
        if output == "json":
            print(json.dumps(document, indent=2))
        else:
            import yaml  # only -o yaml pays for it

            print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")
        return
    shown = [render(part, columns, wide=output == "wide") for part, columns in tables if part]
    if not shown:
        print(empty, file=sys.stderr)
        return
    print("\n\n".join(shown))


def nothing_found(namespace: str | None) -> str:
    """kubectl's words for an empty list (``None``: every namespace, or a cluster-scoped kind)."""
    return f"No resources found in {namespace} namespace." if namespace else "No resources found"


# The subject greenplace's messages start with (``engine.decisions``: "ns/name placed in pool
# (country, intensity, cost): why", "ns/name held: why"), which a row has already named, and
# the verb and place a table's DECISION and POOL columns already say.
_SUBJECT = re.compile(r"^[^\s/]+/\S+ ")
_VERB = re.compile(r"^(?:placed in [^:]+|held): ")
_SHORT = 60


def strip_subject(message: str) -> str:
    """``message`` without the leading "ns/name " of the object it is about."""
    return _SUBJECT.sub("", message, count=1)


def strip_verb(message: str) -> str:
    """``message`` (without its subject) without a leading "placed in POOL (...): " or
    "held: ": the why alone."""
    return _VERB.sub("", strip_subject(message), count=1)


def short_reason(message: str, limit: int = _SHORT) -> str:
    """The head of a reason for a table cell: the why alone, up to its first parenthesis or
    semicolon, at most ``limit`` characters (``-o wide`` and ``why`` give it all)."""
    text = strip_verb(message)
    for stop in (" (", "; "):
        if stop in text:
            text = text[: text.index(stop)] + " ..."
    if len(text) > limit:
        text = text[: limit - 4].rstrip() + " ..."
    return text


def _plain(value: object) -> str | None:
    """How ``number`` and ``amount`` write what is not a non-zero number: "-" for none, "0",
    anything else as text; None for a number they format."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return "0" if value == 0 else None


def number(value: object, digits: int = 3) -> str:
    """A measurement to ``digits`` significant digits, never in exponent form; "-" for none."""
    plain = _plain(value)
    if plain is not None or not isinstance(value, int | float):
        return plain or str(value)
    text = f"{value:.{digits}g}"
    if "e" in text:  # large or tiny: write it out
        text = f"{value:,.0f}" if abs(value) >= 1 else f"{value:.{digits + 6}f}".rstrip("0")
    return text


def amount(value: object) -> str:
    """Money, kgCO2e or kWh: thousands separated, two decimals below 100, "-" for none."""
    plain = _plain(value)
    if plain is not None or not isinstance(value, int | float):
        return plain or str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")
