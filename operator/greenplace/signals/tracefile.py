"""Read a carbon-intensity (or price) trace from a CSV file into a ``TimeSeries``.

Why this module exists: recorded traces drive the simulator, the benchmarks and the ``trace``
signal source. The format is the one of ``shared/data/carbon-intensity/``: a header, then
``Time,<value>`` rows with ``YYYY-MM-DD HH:MM:SS`` timestamps. Timestamps without a zone are read
as UTC (those files have no daylight-saving jumps). Repeated timestamps keep the last row.

A trace SignalSource names its files in its spec, so whoever writes one chooses what the
operator opens. ``confine`` keeps that inside the directories the operator was given
(``--trace-dir``, chart value ``signals.traceDirectories``): the path is resolved (symlinks,
``..``) and refused with ``SignalNotAllowedError`` when it lands outside; with no directory
every trace file is refused. The file is opened without following a last symlink, must be a
regular file of at most ``MAX_BYTES``, and (on Linux) where it was really opened is checked
again, so swapping a link between the check and the open does not help.

Errors never carry what the file holds (it could be any file the operator can read): a bad row
is reported as ``<file>:<line>: <what is wrong>``, never with the row itself.
"""

from __future__ import annotations

import csv
import datetime
import io
import os
import pathlib
import stat
from collections.abc import Sequence
from typing import TextIO

from greenplace.domain import series
from greenplace.signals import contract

__all__ = [
    "MAX_BYTES",
    "SHARED_DATA_ENV",
    "TRACE_DIR_FLAG",
    "TRACE_DIR_VALUE",
    "confine",
    "load_csv",
    "reference_data_dir",
]

SHARED_DATA_ENV = "GREENPLACE_SHARED_DATA"
TRACE_DIR_FLAG = "--trace-dir"
TRACE_DIR_VALUE = "signals.traceDirectories"
MAX_BYTES = 64 * 2**20  # a year of 5-minute rows is about 3 MiB
_PROC_FD = pathlib.Path("/proc/self/fd")


def reference_data_dir() -> pathlib.Path:
    """The workspace's read-only reference data (the grid traces of 2020, among others).

    ``$GREENPLACE_SHARED_DATA`` when set (the Makefile sets it), else the ``shared/data`` folder
    beside the repository. Scenario files name it ``${GREENPLACE_SHARED_DATA}``.
    """
    configured = os.environ.get(SHARED_DATA_ENV)
    if configured:
        return pathlib.Path(configured)
    return pathlib.Path(__file__).resolve().parents[4] / "shared" / "data"


def confine(path: str | pathlib.Path, directories: Sequence[pathlib.Path]) -> pathlib.Path:
    """The real path of ``path`` when it lies inside one of ``directories``.

    A relative ``path`` is taken under the first directory. Raises ``SignalNotAllowedError``
    (naming the path as given, and the flag that allows more) when there is no directory or the
    resolved path is outside all of them.
    """
    if not directories:
        raise contract.SignalNotAllowedError(
            f"trace file {path}: trace sources are off, the operator has no {TRACE_DIR_FLAG} "
            f"(chart value {TRACE_DIR_VALUE}); mount the traces in a directory and list it there"
        )
    text = str(path)
    if "\x00" in text:
        raise contract.SignalNotAllowedError("trace file: the path contains a NUL character")
    roots = [pathlib.Path(os.path.realpath(d)) for d in directories]
    given = pathlib.Path(text)
    real = pathlib.Path(os.path.realpath(given if given.is_absolute() else roots[0] / given))
    if not _inside(real, roots):
        raise contract.SignalNotAllowedError(
            f"trace file {text} is outside the trace directories "
            f"({', '.join(str(d) for d in directories)}) once symlinks and .. are resolved: "
            f"put it in one of them, or start the operator with {TRACE_DIR_FLAG} for its "
            f"directory (chart value {TRACE_DIR_VALUE})"
        )
    return real


def _inside(real: pathlib.Path, roots: Sequence[pathlib.Path]) -> bool:
    return any(real != root and real.is_relative_to(root) for root in roots)


def load_csv(
    path: pathlib.Path,
    value_column: int = 1,
    *,
    within: Sequence[pathlib.Path] | None = None,
) -> series.TimeSeries:
    """Load ``path``; raise ValueError naming the file and line of any malformed row.

    With ``within`` (the trace directories), ``path`` is first confined to them (``confine``)
    and the opened file checked to still be there. OSError when the file cannot be opened.
    """
    if within is not None:
        path = confine(path, within)
    flags = os.O_RDONLY | os.O_NONBLOCK | (os.O_NOFOLLOW if within is not None else 0)
    descriptor = os.open(path, flags)  # O_NONBLOCK: a FIFO must not hang the operator
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ValueError(f"{path}: not a regular file")
        if within is not None and _PROC_FD.is_dir():
            opened = pathlib.Path(os.path.realpath(_PROC_FD / str(descriptor)))
            if not _inside(opened, [pathlib.Path(os.path.realpath(d)) for d in within]):
                raise contract.SignalNotAllowedError(
                    f"trace file {path} moved outside the trace directories while being opened"
                )
        handle = open(descriptor, "rb")  # noqa: SIM115  # closed below
    except BaseException:
        os.close(descriptor)
        raise
    with handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"{path}: larger than {MAX_BYTES // 2**20} MiB; split the trace")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text") from None
    return _read(path, io.StringIO(text, newline=""), value_column)


def _read(path: pathlib.Path, handle: TextIO, value_column: int) -> series.TimeSeries:
    points: dict[datetime.datetime, float] = {}
    rows = csv.reader(handle)
    try:
        next(rows, None)  # header
        for row in rows:
            if row:
                when, value = _point(row, value_column, f"{path}:{rows.line_num}")
                points[when] = value
    except csv.Error as error:
        # csv's messages say what is wrong ("field larger than field limit"), not the data.
        raise ValueError(f"{path}:{rows.line_num}: not CSV ({error})") from None
    times = tuple(sorted(points))
    return series.TimeSeries(times, tuple(points[t] for t in times))


def _point(row: list[str], value_column: int, where: str) -> tuple[datetime.datetime, float]:
    """One row as (time, value); ValueError saying what is wrong, without the row's text."""
    if len(row) <= value_column:
        raise ValueError(
            f"{where}: {len(row)} column(s), expected at least {value_column + 1} (Time,<value>)"
        )
    try:
        when = datetime.datetime.fromisoformat(row[0])
    except ValueError:
        raise ValueError(
            f"{where}: column 1 is not a time (YYYY-MM-DD HH:MM:SS, optionally with a zone)"
        ) from None
    try:
        value = float(row[value_column])
    except ValueError:
        raise ValueError(f"{where}: column {value_column + 1} is not a number") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when, value
