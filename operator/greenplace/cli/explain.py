"""``greenplace explain``: replay the planner on a snapshot and say why, in plain words.

Why this module exists: a platform team, an auditor or a user whose pod waits asks "why there?",
"why not pool X?" or "why is it waiting?", and before applying a policy, "what would it do?".
The planner is pure, so the answer is exact: load the snapshot the operator planned on (a file,
``greenplace.engine.snapshot_file``, or the live cluster read with the operator's own code,
``cli.live``), plan again, and print the decision with every alternative it weighed and the
rule that excluded it. Nothing here writes to a cluster.

    greenplace explain snapshot.yaml                          # every decision, a line each
    greenplace explain snapshot.yaml -w ml/train              # one decision, every alternative
    greenplace explain snapshot.yaml -w ml/train --why-not aws-paris   # what-if: why not there?
    greenplace explain --from-cluster -f policy.yaml          # a policy tried before applying it
"""

# Imports inside functions on purpose: a command loads only what it runs (start-up time).
# ruff: noqa: PLC0415

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
from typing import TYPE_CHECKING, Any

from greenplace.cli import kubeapi, main, output
from greenplace.domain import model
from greenplace.engine import planner, snapshot_file

if TYPE_CHECKING:
    from greenplace.cli import live

__all__ = ["register", "render_decision", "render_plan", "run"]

DESCRIPTION = """\
Plan a snapshot again (the state greenplace planned on, see docs/planner.md) and say why each
workload went where it did, why it waits, or why it did not go to a given pool. The snapshot is
a file, or the live cluster (--from-cluster) read as the operator reads it; -f adds policies
not applied yet, to see what they would do to the pods that wait and to those already placed.
Nothing here writes to a cluster.

examples:
  greenplace explain snapshot.yaml                          # every decision, a line each
  greenplace explain snapshot.yaml -w ml/train              # one decision, every alternative
  greenplace explain snapshot.yaml -w ml/train --why-not aws-paris   # why not that pool?
  greenplace explain --from-cluster                         # the cluster's waiting pods, now
  greenplace explain --from-cluster -f policy.yaml -n ml    # what policy.yaml would change
  greenplace explain --from-cluster --save snapshot.yaml    # keep the snapshot for later

exit codes: 0 done, 1 no such workload or pool, or the cluster cannot be read,
2 unreadable input."""
EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2
# Where ``make run``'s operator keeps its record key (out of cluster: config's fallback).
DEFAULT_OPERATOR_NAMESPACE = "default"


def register(subparsers: Any, names: set[str] | None = None) -> None:
    parser = subparsers.add_parser(
        "explain",
        help=main.help_of("explain"),
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "snapshot", type=pathlib.Path, nargs="?", help="snapshot file (YAML or JSON)"
    )
    parser.add_argument(
        "--from-cluster",
        action="store_true",
        help="plan on the live cluster (pools, free GPUs, policies, budgets, the signals the "
        "operator last used) instead of a file",
    )
    parser.add_argument(
        "-f",
        "--filename",
        type=pathlib.Path,
        action="append",
        default=[],
        help="with --from-cluster: PlacementPolicy manifests to try as if applied (repeatable)",
    )
    parser.add_argument(
        "--save",
        type=pathlib.Path,
        metavar="FILE",
        help="with --from-cluster: write the "
        "snapshot (with -f's policies) to FILE, for `greenplace explain FILE` later",
    )
    parser.add_argument(
        "--operator-namespace",
        default=DEFAULT_OPERATOR_NAMESPACE,
        help="with --from-cluster: the namespace of the operator's record key Secret "
        f"(default: {DEFAULT_OPERATOR_NAMESPACE}, as `make run`; the chart's release namespace)",
    )
    parser.add_argument(
        "--record-key-file",
        type=pathlib.Path,
        help="with --from-cluster: the operator's record key file, when it runs with "
        "`greenplace operate --record-key-file` (then no Secret is read)",
    )
    parser.add_argument(
        "--accelerator-resource",
        action="append",
        metavar="NAME",
        help="with --from-cluster: as `greenplace operate --accelerator-resource`, when the "
        "operator runs with it (repeat; default: the operator's default)",
    )
    parser.add_argument(
        "--accelerator-prefix",
        action="append",
        metavar="PREFIX",
        help="with --from-cluster: as `greenplace operate --accelerator-prefix` (repeat)",
    )
    parser.add_argument(
        "--at", help="plan at this ISO 8601 time (default: the file's `now`)", default=None
    )
    parser.add_argument("--workload", "-w", help="namespace/name of one workload to explain")
    parser.add_argument("--why-not", metavar="POOL", help="with -w: why was POOL not chosen?")
    parser.add_argument("--json", action="store_true", help="the same as -o json")
    kubeapi.add_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    as_json = args.json or args.output == "json"
    if args.output == "wide":
        raise output.CliError("explain prints every column already: -o json or -o yaml", 2)
    if args.why_not and not args.workload:
        print("error: --why-not needs --workload", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.from_cluster == (args.snapshot is not None):
        raise output.CliError("give a snapshot file or --from-cluster, not both or neither", 2)
    if not args.from_cluster and (args.filename or args.save):
        raise output.CliError("-f and --save need --from-cluster", 2)
    source = "the cluster" if args.from_cluster else str(args.snapshot)
    placed: tuple[live.Live, str | None] | None = None
    now: datetime.datetime | None
    if args.from_cluster:
        try:
            now = _parse_time(args.at) if args.at else datetime.datetime.now(datetime.UTC)
        except ValueError as error:
            raise output.CliError(f"--at: {error}", EXIT_BAD_INPUT) from error
        found = _from_cluster(args, now)
        snapshot = found.pending
        placed = (found, kubeapi.namespace_of(args))
    else:
        try:
            snapshot, file_now = snapshot_file.loads(args.snapshot.read_text())
            now = _parse_time(args.at) if args.at else file_now
        except (OSError, ValueError) as error:
            print(f"error: {args.snapshot}: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if now is None:
        print(
            f"error: {args.snapshot} has no `now`; pass --at 2026-01-01T00:00:00Z",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if not args.workload:
        result = planner.plan(snapshot, now)
        shown = placed[1] if placed else None
        kept = tuple(d for d in result.decisions if shown is None or _in(d.workload, shown))
        result = model.Plan(at=result.at, decisions=kept) if shown else result
        checks = _placed_checks(*placed, now) if placed else None
        _print_plan(result, checks, args.output if not args.json else "json")
        return 0
    if placed is not None and args.workload in placed[0].placed_in:
        snapshot = placed[0].placed  # a placed pod: would it be placed where it is?
    return _explain_one(args, snapshot, now, source, "json" if as_json else args.output)


def _explain_one(
    args: argparse.Namespace,
    snapshot: model.Snapshot,
    now: datetime.datetime,
    source: str,
    form: str | None,
) -> int:
    """One workload's decision, or why not ``--why-not``'s pool."""
    if args.why_not and all(p.name != args.why_not for p in snapshot.pools):
        known = ", ".join(sorted(p.name for p in snapshot.pools)) or "none"
        print(f"error: no pool {args.why_not} in {source} (known: {known})", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.why_not:
        decision, rejection = planner.why_not(snapshot, now, args.workload, args.why_not)
    else:
        decision = planner.plan(snapshot, now, detail_for={args.workload}).decision(args.workload)
        rejection = None
    if decision is None:
        known = ", ".join(sorted(w.key for w in snapshot.workloads)) or "none"
        print(f"error: no workload {args.workload} (known: {known})", file=sys.stderr)
        return EXIT_NOT_FOUND
    if form in ("json", "yaml"):
        document = _decision_json(decision)
        if args.why_not:
            document["whyNot"] = {"pool": args.why_not, **_rejection_json(rejection)}
        _print_data(document, form)
    elif args.why_not:
        print(_render_why_not(decision, args.why_not, rejection))
    else:
        print(render_decision(decision))
    return 0


def _from_cluster(args: argparse.Namespace, now: datetime.datetime) -> live.Live:
    from greenplace.cli import live
    from greenplace.controller import resources

    namespace = None if args.all_namespaces else args.namespace
    policies = [body for path in args.filename for body in live.read_policies(path, namespace)]
    try:
        key = args.record_key_file.read_bytes().strip() if args.record_key_file else None
    except OSError as error:
        raise output.CliError(f"--record-key-file: {error.strerror or error}", 2) from error
    found = live.read(
        kubeapi.connect(args),
        now,
        key_namespace=args.operator_namespace,
        key=key,
        accelerators=resources.Accelerators.given(
            args.accelerator_resource, args.accelerator_prefix
        ),
        policies=policies,
    )
    for note in found.notes:
        print(f"warning: {note}", file=sys.stderr)
    if args.save:
        try:
            args.save.write_text(snapshot_file.dumps(found.pending, now))
        except OSError as error:
            raise output.CliError(f"--save {args.save}: {error.strerror or error}", 2) from error
    return found


def _in(workload: str, namespace: str) -> bool:
    return workload.split("/", 1)[0] == namespace


def _placed_checks(
    found: live.Live, namespace: str | None, now: datetime.datetime
) -> list[dict[str, Any]]:
    """For each pod greenplace placed: would it place it in the pool it is in, now, under the
    policies as given (``allowed``)? Else the rule that refuses that pool."""
    keys = {k for k in found.placed_in if namespace is None or _in(k, namespace)}
    result = planner.plan(found.placed, now, detail_for=keys)
    checks = []
    for key in sorted(keys):
        pool, decision = found.placed_in[key], result.decision(key)
        if decision is None:
            continue
        rejection = next((r for r in decision.alternatives if r.pool == pool), None)
        checks.append(
            {
                "workload": key,
                "pool": pool,
                "allowed": decision.pool == pool,
                "outcome": decision.outcome.value,
                "reason": decision.reason.value if rejection is None else rejection.reason.value,
                "message": decision.message if rejection is None else rejection.message,
            }
        )
    return checks


def _print_plan(result: model.Plan, checks: list[dict[str, Any]] | None, form: str | None) -> None:
    if form in ("json", "yaml"):
        document = _plan_json(result)
        if checks is not None:
            document["placed"] = checks
        _print_data(document, form)
        return
    print(render_plan(result))
    if checks:
        # greenplace never moves a running pod: "refused" says it would not place it there now.
        print("placed pods, would greenplace place them where they are now:")
        for check in checks:
            verdict = "allowed" if check["allowed"] else "refused"
            tail = "" if check["allowed"] else f": {check['message']}"
            print(f"  {verdict:<8} {check['workload']:<32} {check['pool']:<28} {check['reason']}"
                  f"{tail}")  # fmt: skip


def _print_data(document: dict[str, Any], form: str) -> None:
    if form == "json":
        print(json.dumps(document, indent=2))
        return
    import yaml

    print(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), end="")


def render_plan(plan: model.Plan) -> str:
    """One line per decision: outcome, workload, where or until when, reason."""
    lines = [f"plan at {plan.at.isoformat()}: {_tally(plan)}"]
    for d in plan.decisions:
        where = d.pool or (f"until {d.not_before.isoformat()}" if d.not_before else "-")
        lines.append(f"  {d.outcome.value:<8} {d.workload:<32} {where:<28} {d.reason.value}")
    return "\n".join(lines)


def render_decision(decision: model.Decision) -> str:
    """A decision with its projection, every rejected pool by reason, and the alternatives."""
    lines = [f"{decision.outcome.value}: {decision.message}", f"  reason: {decision.reason.value}"]
    if decision.policies:
        lines.append(f"  policies: {', '.join(decision.policies)}")
    if decision.cost is not None and decision.kgco2e is not None:
        lines.append(
            f"  projected: cost {decision.cost:.2f}, {decision.kgco2e:.3f} kgCO2e, "
            f"objective {decision.objective:.2f}"
        )
    if decision.not_before is not None:
        lines.append(f"  re-plan at: {decision.not_before.isoformat()}")
    if decision.rejected_by_reason:
        tally = ", ".join(f"{n} {r.value}" for r, n in decision.rejected_by_reason)
        lines.append(f"  pools not chosen: {tally}")
    for rejection in decision.alternatives:
        lines.append(f"    {rejection.pool}: {rejection.reason.value}: {rejection.message}")
    return "\n".join(lines)


def _render_why_not(decision: model.Decision, pool: str, rejection: model.Rejection | None) -> str:
    if rejection is None:
        return f"{pool} was chosen: {decision.message}"
    return (
        f"{decision.workload} not in {pool}: {rejection.reason.value}: {rejection.message}\n"
        f"  decision: {decision.outcome.value}: {decision.message}"
    )


def _tally(plan: model.Plan) -> str:
    counts = [(o, sum(1 for d in plan.decisions if d.outcome is o)) for o in model.Outcome]
    return ", ".join(f"{n} {o.value.lower()}" for o, n in counts if n)


def _parse_time(text: str) -> datetime.datetime:
    when = datetime.datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"--at {text!r} has no time zone; add Z or +00:00")
    return when


def _rejection_json(rejection: model.Rejection | None) -> dict[str, Any]:
    if rejection is None:
        return {"chosen": True}
    return {"reason": rejection.reason.value, "message": rejection.message}


def _decision_json(decision: model.Decision) -> dict[str, Any]:
    return {
        "workload": decision.workload,
        "outcome": decision.outcome.value,
        "reason": decision.reason.value,
        "message": decision.message,
        "pool": decision.pool,
        "policies": list(decision.policies),
        "notBefore": None if decision.not_before is None else decision.not_before.isoformat(),
        "cost": decision.cost,
        "kgco2e": decision.kgco2e,
        "objective": decision.objective,
        "rejectedByReason": {r.value: n for r, n in decision.rejected_by_reason},
        "alternatives": [{"pool": r.pool, **_rejection_json(r)} for r in decision.alternatives],
    }


def _plan_json(plan: model.Plan) -> dict[str, Any]:
    return {"at": plan.at.isoformat(), "decisions": [_decision_json(d) for d in plan.decisions]}
