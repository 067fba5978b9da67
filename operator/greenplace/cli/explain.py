"""``greenplace explain``: replay the planner on a snapshot file and say why, in plain words.

Why this module exists: a platform team, an auditor or a user whose pod waits asks "why there?",
"why not pool X?" or "why is it waiting?". The planner is pure, so the answer is exact: load the
snapshot the operator planned on (``greenplace.engine.snapshot_file``), plan again, and print the
decision with every alternative it weighed and the rule that excluded it. Nothing here touches a
cluster.

    greenplace explain snapshot.yaml                          # every decision, a line each
    greenplace explain snapshot.yaml -w ml/train              # one decision, every alternative
    greenplace explain snapshot.yaml -w ml/train --why-not aws-paris   # what-if: why not there?
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
from typing import Any

from greenplace.cli import main
from greenplace.domain import model
from greenplace.engine import planner, snapshot_file

__all__ = ["register", "render_decision", "render_plan", "run"]

DESCRIPTION = """\
Plan a snapshot file again (the state greenplace planned on, see docs/planner.md) and say
why each workload went where it did, why it waits, or why it did not go to a given pool.
Nothing here touches a cluster.

examples:
  greenplace explain snapshot.yaml                          # every decision, a line each
  greenplace explain snapshot.yaml -w ml/train              # one decision, every alternative
  greenplace explain snapshot.yaml -w ml/train --why-not aws-paris   # why not that pool?

exit codes: 0 done, 1 no such workload or pool in the snapshot, 2 unreadable input."""
EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2


def register(subparsers: Any, names: set[str] | None = None) -> None:
    parser = subparsers.add_parser(
        "explain",
        help=main.help_of("explain"),
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("snapshot", type=pathlib.Path, help="snapshot file (YAML or JSON)")
    parser.add_argument(
        "--at", help="plan at this ISO 8601 time (default: the file's `now`)", default=None
    )
    parser.add_argument("--workload", "-w", help="namespace/name of one workload to explain")
    parser.add_argument("--why-not", metavar="POOL", help="with -w: why was POOL not chosen?")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    if args.why_not and not args.workload:
        print("error: --why-not needs --workload", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.workload:
        result = planner.plan(snapshot, now)
        print(json.dumps(_plan_json(result), indent=2) if args.json else render_plan(result))
        return 0
    if args.why_not and all(p.name != args.why_not for p in snapshot.pools):
        known = ", ".join(sorted(p.name for p in snapshot.pools)) or "none"
        print(f"error: no pool {args.why_not} in {args.snapshot} (known: {known})", file=sys.stderr)
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
    if args.json:
        document = _decision_json(decision)
        if args.why_not:
            document["whyNot"] = {"pool": args.why_not, **_rejection_json(rejection)}
        print(json.dumps(document, indent=2))
    elif args.why_not:
        print(_render_why_not(decision, args.why_not, rejection))
    else:
        print(render_decision(decision))
    return 0


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
