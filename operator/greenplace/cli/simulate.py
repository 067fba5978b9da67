"""``greenplace simulate``: replay a fleet, policies, a workload trace and grid signals.

Why this module exists: it is the what-if a platform team runs before turning greenplace on, from
their own files: it prints a table (totals and per namespace, savings against carbon-blind
first-fit, gap to the exact oracle), and writes the same as JSON and as a self-contained HTML
report on request. Progress goes to stderr on long runs. Exit code 0, or 3 when a strategy that
respects policies broke a sovereignty rule (that would be a bug worth stopping a pipeline for).

Example (from the repository root)::

    greenplace simulate examples/simulate/scenario.yaml --html sim.html --json sim.json
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

from greenplace.cli import main
from greenplace.sim import loading, oracle, run, strategies, table

__all__ = ["register"]

EXIT_BAD_INPUT = 2
EXIT_VIOLATION = 3

DESCRIPTION = """\
Replay a GPU fleet, its policies and budgets, a workload trace and grid signals under
greenplace and under baseline strategies, before turning greenplace on. Prints the totals and
per-namespace results (money, kWh, kgCO2e, savings against carbon-blind first-fit, the gap to
the exact oracle); --json and --html write the same as data and as a self-contained report.
Progress goes to stderr (--quiet for none).

example (from the repository root):
  greenplace simulate examples/simulate/scenario.yaml --html sim.html --json sim.json

exit codes: 0 done, 2 unreadable inputs or an unknown strategy, 3 a strategy that respects
policies broke a sovereignty rule (a bug worth stopping a pipeline for)."""


def register(subparsers: Any, names: set[str] | None = None) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help=main.help_of("simulate"),
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "scenario", nargs="?", type=pathlib.Path, help="scenario YAML naming the other inputs"
    )
    parser.add_argument("--fleet", type=pathlib.Path, help="GpuPool YAML (overrides scenario)")
    parser.add_argument("--policies", type=pathlib.Path, help="PlacementPolicy and Budget YAML")
    parser.add_argument("--workload", type=pathlib.Path, help="workload trace, CSV or JSONL")
    parser.add_argument(
        "--carbon",
        action="append",
        default=[],
        metavar="ZONE=FILE|G",
        help="grid intensity of a zone: a trace CSV or a constant gCO2e/kWh (repeat)",
    )
    parser.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="POOL=FILE|P",
        help="price per GPU-hour of a pool: a trace CSV or a constant (repeat)",
    )
    parser.add_argument("--start", help="simulation start, ISO 8601 (UTC if no zone)")
    parser.add_argument("--end", help="simulation end, ISO 8601")
    parser.add_argument(
        "--strategies",
        default=",".join(run.DEFAULT_STRATEGIES),
        help="comma-separated: first-fit, cheapest, lowest-carbon, greenplace, oracle, unguarded",
    )
    parser.add_argument("--json", type=pathlib.Path, help="write the comparison as JSON here")
    parser.add_argument("--html", type=pathlib.Path, help="write the HTML report here")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--oracle-max-jobs", type=int, help="skip the oracle above this size")
    parser.add_argument("--oracle-slot-minutes", type=int, help="oracle time slot (default 60)")
    parser.add_argument("--oracle-seconds", type=float, help="oracle time limit (default 120)")
    parser.add_argument(
        "--oracle-objective", choices=[o.value for o in oracle.Objective], help="default carbon"
    )
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    try:
        for name in names:
            if name != "oracle":
                strategies.by_name(name)
    except KeyError as error:
        print(f"error: --strategies: {error.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not names:
        print("error: --strategies names none", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        # Only a report needs matplotlib (the sim extra); it is checked before a long run.
        report = importlib.import_module("greenplace.sim.report") if args.html else None
    except ModuleNotFoundError as error:
        print(f"error: --html needs {error.name}: pip install 'greenplace[sim]'", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        inputs = _inputs(args)
        scenario = loading.load(inputs)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot read the inputs: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    started = time.perf_counter()
    progress = None if args.quiet else Progress()
    comparison = run.compare(
        scenario,
        names,
        _oracle_settings(args, inputs.oracle),
        progress,
        None if progress is None else progress.oracle,
    )
    record = run.record(comparison)
    record["wall_s"] = round(time.perf_counter() - started, 3)
    print(table.render(record))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.html and report is not None:
        args.html.write_text(report.render(comparison, record))
        print(f"wrote {args.html}")
    return EXIT_VIOLATION if comparison.policy_violations else 0


def _inputs(args: argparse.Namespace) -> loading.Inputs:
    if args.scenario is not None:
        base = loading.Inputs.from_file(args.scenario)
    elif args.fleet and args.policies and args.workload:
        base = loading.Inputs(
            fleet=args.fleet, policies=args.policies, workload=args.workload, carbon={}
        )
    else:
        raise ValueError("give a scenario file, or --fleet, --policies and --workload")
    return loading.Inputs(
        fleet=args.fleet or base.fleet,
        policies=args.policies or base.policies,
        workload=args.workload or base.workload,
        carbon={**base.carbon, **_pairs(args.carbon, "--carbon")},
        prices={**base.prices, **_pairs(args.price, "--price")},
        capacity=base.capacity,
        start=_when(args.start) or base.start,
        end=_when(args.end) or base.end,
        base_dir=base.base_dir if args.scenario is not None else pathlib.Path(),
        oracle=base.oracle,
    )


def _pairs(values: list[str], flag: str) -> dict[str, str | float]:
    pairs: dict[str, str | float] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise ValueError(f"{flag} {value!r}: expected KEY=FILE or KEY=NUMBER")
        pairs[key] = rest
    return pairs


def _when(value: str | None) -> datetime.datetime | None:
    if value is None:
        return None
    when = datetime.datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _oracle_settings(args: argparse.Namespace, from_file: dict[str, Any] | Any) -> oracle.Settings:
    def pick(flag: Any, key: str, default: Any) -> Any:
        return flag if flag is not None else from_file.get(key, default)

    defaults = oracle.Settings()
    return oracle.Settings(
        objective=oracle.Objective(pick(args.oracle_objective, "objective", "carbon")),
        slot_minutes=int(pick(args.oracle_slot_minutes, "slotMinutes", defaults.slot_minutes)),
        max_jobs=int(pick(args.oracle_max_jobs, "maxJobs", defaults.max_jobs)),
        time_limit_s=float(pick(args.oracle_seconds, "timeLimitSeconds", defaults.time_limit_s)),
    )


class Progress:
    """Each strategy's progress with an estimate of the time left, on stderr.

    A replay reports the fraction of simulated time done, every 5 %; the time left is the time
    spent so far scaled by the fraction to go. The oracle reports HiGHS's seconds and its proven
    gap, every 10 % of its time limit; it ends at the time limit at the latest (earlier once the
    gap is closed), so the time left is given as an upper bound.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], object] = lambda line: print(line, file=sys.stderr),
    ) -> None:
        self._clock = clock
        self._write = write
        self._shown: dict[str, int] = {}
        self._started: dict[str, float] = {}

    def __call__(self, strategy: str, fraction: float) -> None:
        now = self._clock()
        started = self._started.setdefault(strategy, now)
        step = int(fraction * 20)
        if self._shown.get(strategy, -1) >= step:
            return
        self._shown[strategy] = step
        left = ""
        if 0 < fraction < 1 and now > started:
            left = f", about {_duration((now - started) * (1 - fraction) / fraction)} left"
        self._write(f"  {strategy}: {fraction * 100:3.0f}% of simulated time{left}")

    def oracle(self, elapsed_s: float, limit_s: float, gap: float | None, done: bool) -> None:
        step = 10 if done else min(9, int(elapsed_s / limit_s * 10)) if limit_s > 0 else 0
        if self._shown.get("oracle", -1) >= step:
            return
        self._shown["oracle"] = step
        proven = "no solution yet" if gap is None else f"proven gap {gap * 100:.3g}%"
        if done:
            self._write(f"  oracle: done in {_duration(elapsed_s)}, {proven}")
        else:
            self._write(
                f"  oracle: {_duration(elapsed_s)} of at most {_duration(limit_s)} (time limit), "
                f"{proven}, at most {_duration(max(0.0, limit_s - elapsed_s))} left"
            )


def _duration(seconds: float) -> str:
    """``7 s``, ``2 min 05 s``, ``1 h 03 min``."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
