"""Read a carbon-intensity (or price) trace from a CSV file into a ``TimeSeries``.

Why this module exists: recorded traces drive the simulator, the benchmarks and the ``trace``
signal source. The format is the one of ``shared/data/carbon-intensity/``: a header, then
``Time,<value>`` rows with ``YYYY-MM-DD HH:MM:SS`` timestamps. Timestamps without a zone are read
as UTC (those files have no daylight-saving jumps). Repeated timestamps keep the last row.
"""

from __future__ import annotations

import csv
import datetime
import os
import pathlib

from greenplace.domain import series

__all__ = ["SHARED_DATA_ENV", "load_csv", "reference_data_dir"]

SHARED_DATA_ENV = "GREENPLACE_SHARED_DATA"


def reference_data_dir() -> pathlib.Path:
    """The workspace's read-only reference data (the grid traces of 2020, among others).

    ``$GREENPLACE_SHARED_DATA`` when set (the Makefile sets it), else the ``shared/data`` folder
    beside the repository. Scenario files name it ``${GREENPLACE_SHARED_DATA}``.
    """
    configured = os.environ.get(SHARED_DATA_ENV)
    if configured:
        return pathlib.Path(configured)
    return pathlib.Path(__file__).resolve().parents[4] / "shared" / "data"


def load_csv(path: pathlib.Path, value_column: int = 1) -> series.TimeSeries:
    """Load ``path``; raise ValueError naming the file and line of any malformed row."""
    points: dict[datetime.datetime, float] = {}
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        next(rows, None)  # header
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                when = datetime.datetime.fromisoformat(row[0])
                value = float(row[value_column])
            except (ValueError, IndexError) as error:
                raise ValueError(f"{path}:{line}: cannot read {row!r}: {error}") from error
            if when.tzinfo is None:
                when = when.replace(tzinfo=datetime.UTC)
            points[when] = value
    times = tuple(sorted(points))
    return series.TimeSeries(times, tuple(points[t] for t in times))
