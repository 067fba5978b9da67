"""``greenplace audit``: the auditor's tools on the signed placement ledger (docs/audit.md).

Why this module exists: the ledger is only evidence if someone outside the operator can check
it. ``verify`` checks the chain and every signature and names the first record changed,
removed or reordered (exit 1); ``export`` writes the segments and the published public keys to
one JSON file, so the check can be repeated away from the cluster (``--file``); ``report``
renders one namespace's placements over a window as HTML and CSV, from a verified ledger only.

Which keys are trusted: ``--public-key`` files when given (an auditor pins the keys exported
earlier: someone able to rewrite the ledger ConfigMaps could also rewrite the published keys),
else those of the ConfigMap ``greenplace-ledger-keys`` (or of the export file).
"""

# Imports inside functions on purpose: a command loads only what it runs (start-up time).
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
from typing import Any

from greenplace.cli import main, output

__all__ = ["register"]

EXPORT_FORMAT = "greenplace.dev/ledger-export/v1"
DESCRIPTION = """\
Check and read greenplace's signed placement ledger (docs/audit.md).

verify: check the chain and every signature; name the first record changed, removed or
reordered (exit 1); with --since, an earlier export's last record must still be there. export:
write the ledger and its public keys to a file (verify --file repeats the check anywhere).
report: one namespace's placements over a window, as HTML and CSV, from a verified ledger only.
Pin the keys with --public-key: whoever can rewrite the ledger's ConfigMaps can rewrite the
published keys too."""
DEFAULT_LEDGER_NAMESPACE = "default"  # config.FALLBACK_LEASE_NAMESPACE: the operator's own


def register(subparsers: Any, names: set[str] | None = None) -> None:
    parser = subparsers.add_parser(
        "audit",
        help=main.help_of("audit"),
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify", help="check the chain and the signatures; name the first bad record"
    )
    _source_flags(verify)
    verify.add_argument(
        "--since",
        type=pathlib.Path,
        metavar="EXPORT",
        help="an earlier `greenplace audit export`: its last record must still be in the ledger, "
        "unchanged (a chain alone cannot show that its newest records were cut off)",
    )
    verify.set_defaults(func=run_verify)
    export = commands.add_parser("export", help="write the ledger and its public keys to a file")
    _cluster_flags(export)
    export.add_argument("-o", "--output", type=pathlib.Path, required=True, help="file to write")
    export.set_defaults(func=run_export)
    report = commands.add_parser(
        "report", help="one namespace's placements over a window, as HTML and CSV"
    )
    _source_flags(report)
    report.add_argument("-n", "--namespace", required=True, help="the tenant namespace")
    report.add_argument(
        "--from",
        dest="start",
        required=True,
        type=_time,
        metavar="TIME",
        help="start of the window (RFC 3339, e.g. 2026-01-01T00:00:00Z)",
    )
    report.add_argument("--to", dest="end", required=True, type=_time, metavar="TIME",
                        help="end of the window, excluded")  # fmt: skip
    report.add_argument("--html", type=pathlib.Path, help="write the HTML report here")
    report.add_argument("--csv", type=pathlib.Path, help="write the CSV report here")
    report.set_defaults(func=run_report)


def _cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ledger-namespace",
        default=DEFAULT_LEDGER_NAMESPACE,
        help="where the operator keeps the ledger: its --lease-namespace, else its namespace "
        "(the chart's release namespace) (default: %(default)s)",
    )
    parser.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)"
    )
    parser.add_argument("--context", help="the kubeconfig context to use (default: its current)")


def _source_flags(parser: argparse.ArgumentParser) -> None:
    _cluster_flags(parser)
    parser.add_argument(
        "--file", type=pathlib.Path, help="read a file `greenplace audit export` wrote instead"
    )
    parser.add_argument(
        "--public-key",
        action="append",
        type=pathlib.Path,
        metavar="PEM",
        help="trust only this Ed25519 public key (repeat; default: the published keys)",
    )


def _time(text: str) -> datetime.datetime:
    from greenplace.api import timestamps

    at = timestamps.parse_rfc3339(text)
    if at is None:
        raise argparse.ArgumentTypeError(f"{text!r}: not an RFC 3339 time (2026-01-01T00:00:00Z)")
    return at


def _read_cluster(args: argparse.Namespace) -> dict[str, Any]:
    """The ledger as an export document, read through the API server."""
    from greenplace.audit import store
    from greenplace.cli import kubeapi

    api = kubeapi.connect(args)
    ledger = store.Store(api, args.ledger_namespace)
    return {
        "format": EXPORT_FORMAT,
        "namespace": args.ledger_namespace,
        "publicKeys": store.published_keys(api, args.ledger_namespace),
        "segments": [{"name": s.name, "records": list(s.lines)} for s in ledger.segments()],
    }


def _read(args: argparse.Namespace) -> dict[str, Any]:
    if args.file is None:
        return _read_cluster(args)
    return _export(args.file)


def _export(path: pathlib.Path) -> dict[str, Any]:
    """The document of an export file, its shape checked."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise output.CliError(f"{path}: {error}") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise output.CliError(
            f"{path}: field 'format' is not {EXPORT_FORMAT!r}: not a file "
            "`greenplace audit export` wrote"
        )
    segments = document.get("segments")
    if not isinstance(segments, list) or not all(
        isinstance(s, dict) and isinstance(s.get("name"), str)
        and isinstance(s.get("records"), list) and all(isinstance(r, str) for r in s["records"])
        for s in segments
    ):  # fmt: skip
        raise output.CliError(
            f"{path}: field 'segments' must be a list of {{name, records: [text]}}"
        )
    return document


def _verified(args: argparse.Namespace) -> Any:
    from greenplace.audit import chain, store

    document = _read(args)
    try:
        if args.public_key:
            pems = {str(p): p.read_text() for p in args.public_key}
        else:
            pems = document.get("publicKeys") or {}
            if not isinstance(pems, dict):
                raise ValueError("field 'publicKeys' must map key ids to PEM texts")
        keys = store.trusted(pems)
    except (OSError, ValueError) as error:
        raise output.CliError(str(error)) from None
    segments = [(s["name"], s["records"]) for s in document["segments"]]
    return chain.verify(store.located(segments), keys)


def run_verify(args: argparse.Namespace) -> int:
    from greenplace.audit import chain

    result = _verified(args)
    if result.ok and args.since is not None:
        lines = [line for s in _export(args.since)["segments"] for line in s["records"]]
        try:
            last = json.loads(lines[-1]) if lines else None
        except ValueError:
            last = None
        if not isinstance(last, dict):
            raise output.CliError(f"{args.since}: its last record is missing or not JSON")
        problem = chain.holds(result, last)
        if problem is not None:
            print(f"ledger NOT verified: {problem} ({args.since})", file=sys.stderr)
            return 1
        print(f"{result.summary()}; continues {args.since} (record {last.get('seq')})")
        return 0
    print(result.summary(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def run_export(args: argparse.Namespace) -> int:
    document = _read_cluster(args)
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    count = sum(len(s["records"]) for s in document["segments"])
    print(f"exported {count} records in {len(document['segments'])} segments to {args.output}")
    return 0


def run_report(args: argparse.Namespace) -> int:
    from greenplace.audit import report

    if args.html is None and args.csv is None:
        raise output.CliError("nothing to write: pass --html FILE, --csv FILE or both")
    if args.end <= args.start:
        raise output.CliError("--to must be after --from")
    result = _verified(args)
    if not result.ok:
        print(result.summary(), file=sys.stderr)
        return 1
    built = report.build(result, args.namespace, args.start, args.end)
    if args.html is not None:
        args.html.write_text(report.to_html(built))
    if args.csv is not None:
        args.csv.write_text(report.to_csv(built))
    print(
        f"{len(built.placed)} placements and {len(built.waiting)} other decisions of "
        f"{args.namespace}; {result.summary()}"
    )
    return 0
