"""Dump the planner's decisions on generated cases, to prove a change to the planner changes nothing
(or exactly what it means to).

Why this exists: a refactor of ``engine/`` must keep every decision; a fix must change only the
decisions it is about. This plans the property tests' random snapshots
(``tests/strategies.py``), generated deterministically (hypothesis ``derandomize``), and
writes one JSON line per case: every decision with its reason, pool, message and figures. Run it
on two checkouts and diff the files:

    .venv/bin/python -m bench.planner_cases > after.jsonl
    git worktree add /tmp/before <rev>
    (cd /tmp/before && PYTHONPATH=operator:. /work/main/.venv/bin/python -m bench.planner_cases) \\
        > before.jsonl
    diff before.jsonl after.jsonl

Not a benchmark (``make bench`` runs ``bench_*`` only).
"""

from __future__ import annotations

import dataclasses
import json
import sys

from hypothesis import HealthCheck, given, settings

from greenplace.domain import model
from greenplace.engine import planner
from tests import builders
from tests import strategies as generated

CASES = 600


def dump(snapshot: model.Snapshot) -> str:
    plan = planner.plan(snapshot, builders.T0)
    return json.dumps([dataclasses.asdict(d) for d in plan.decisions], default=str, sort_keys=True)


def main() -> int:
    lines: list[str] = []

    @settings(
        max_examples=CASES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(generated.snapshots() | generated.budgeted_snapshots())
    def collect(snapshot: model.Snapshot) -> None:
        lines.append(dump(snapshot))

    collect()
    sys.stdout.write("\n".join(lines) + "\n")
    print(f"{len(lines)} cases", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
