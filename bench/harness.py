"""Shared plumbing for benchmarks: results as JSON and thresholds kept in the repository.

Why this module exists: speed and quality claims are measured here, never in timed tests. Every
benchmark measures a baseline in the same run, prints ratios against it, writes its figures to
``bench/results/<name>.json`` and checks them against ``bench/thresholds.json``, where each
threshold sits next to the value measured when it was set and the margin allowed.
"""

from __future__ import annotations

import json
import math
import pathlib
import platform
import sys
from collections.abc import Mapping, Sequence
from typing import Any

BENCH_DIR = pathlib.Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
THRESHOLDS_FILE = BENCH_DIR / "thresholds.json"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``values``, nearest rank."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def write_results(name: str, figures: Mapping[str, Any]) -> pathlib.Path:
    """Write ``figures`` (plus the machine they were measured on) to bench/results/NAME.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    record = {"benchmark": name, "machine": _machine(), **figures}
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(BENCH_DIR.parent)}")
    return path


def check_thresholds(name: str, measured: Mapping[str, float]) -> list[str]:
    """Compare ``measured`` with the thresholds of benchmark ``name``; return the failures.

    thresholds.json holds, per benchmark and metric: ``{"min": x}`` or ``{"max": x}``, the
    ``measured`` value when the threshold was set, and a ``note`` saying why this margin.
    """
    table = json.loads(THRESHOLDS_FILE.read_text()) if THRESHOLDS_FILE.exists() else {}
    failures = []
    for metric, rule in table.get(name, {}).items():
        if metric not in measured:
            failures.append(f"{name}.{metric}: not measured")
            continue
        value = measured[metric]
        if "min" in rule and value < rule["min"]:
            failures.append(f"{name}.{metric} = {value:.4g} < min {rule['min']}")
        if "max" in rule and value > rule["max"]:
            failures.append(f"{name}.{metric} = {value:.4g} > max {rule['max']}")
    return failures


def finish(name: str, figures: Mapping[str, Any], measured: Mapping[str, float]) -> None:
    """Write results, check thresholds, print the verdict and exit non-zero on a breach."""
    write_results(name, {**figures, "thresholded": dict(measured)})
    failures = check_thresholds(name, measured)
    for failure in failures:
        print(f"THRESHOLD BROKEN: {failure}", file=sys.stderr)
    if failures:
        raise SystemExit(1)
    print(f"{name}: all thresholds hold")


def _machine() -> dict[str, str]:
    return {"python": platform.python_version(), "machine": platform.machine()}
