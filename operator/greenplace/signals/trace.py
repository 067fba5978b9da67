"""A signal source that replays a recorded trace (CSV), optionally shifted in time.

Why this module exists: the simulator, the benchmarks and air-gapped clusters need real,
time-varying carbon intensity without a network feed. A trace file such as
``shared/data/carbon-intensity/fr_ci.csv`` is loaded with ``tracefile.load_csv`` and replayed
with a fixed ``shift`` (e.g. play 2020 as if it were now). The observation time is the
timestamp of the trace row in force, so a trace that has run out is seen as stale, not as fresh.

The operator loads a SignalSource's files with ``within`` (its ``--trace-dir`` directories):
files outside them are refused (``tracefile.confine``).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import pathlib
from collections.abc import Mapping, Sequence

from greenplace.domain import series
from greenplace.signals import contract, tracefile

__all__ = ["TraceSource", "from_csv_files"]


@dataclasses.dataclass(frozen=True, slots=True)
class TraceSource:
    """Replays one ``TimeSeries`` per key; ``shift`` is added to every trace timestamp."""

    name: str
    traces: Mapping[contract.SignalKey, series.TimeSeries]
    ttl: datetime.timedelta
    shift: datetime.timedelta = datetime.timedelta(0)

    def latest(self, key: contract.SignalKey, now: datetime.datetime) -> contract.Observation:
        trace = self._trace(key)
        index = bisect.bisect_right(trace.times, now - self.shift) - 1
        if index < 0:
            raise contract.SignalMissingError(
                f"trace source {self.name}: {key} starts at {trace.start + self.shift}, after "
                f"{now}; set the source's shift so the trace covers the present"
            )
        return contract.Observation(trace.values[index], trace.times[index] + self.shift)

    def forecast(
        self,
        key: contract.SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> series.TimeSeries:
        """The recorded future as a perfect forecast: the rows in force over ``[start, end)``."""
        trace = self._trace(key)
        first = max(bisect.bisect_right(trace.times, start - self.shift) - 1, 0)
        last = bisect.bisect_left(trace.times, end - self.shift)
        times = [t + self.shift for t in trace.times[first:last]]
        values = list(trace.values[first:last])
        if not times or trace.end + self.shift < start:
            raise contract.SignalMissingError(
                f"trace source {self.name}: {key} has no rows over [{start}, {end}); the trace "
                f"covers [{trace.start + self.shift}, {trace.end + self.shift}]"
            )
        if times[-1] < end <= trace.end + self.shift:
            # Close the last step at ``end`` so that ``mean(start, end)`` is defined.
            times.append(end)
            values.append(values[-1])
        return series.TimeSeries(tuple(times), tuple(values))

    def _trace(self, key: contract.SignalKey) -> series.TimeSeries:
        trace = self.traces.get(key)
        if trace is None or not trace.times:
            raise contract.SignalMissingError(
                f"trace source {self.name}: no trace for {key}; map a CSV file to it"
            )
        return trace


def from_csv_files(
    name: str,
    files: Mapping[contract.SignalKey, pathlib.Path],
    ttl: datetime.timedelta,
    shift: datetime.timedelta = datetime.timedelta(0),
    *,
    within: Sequence[pathlib.Path] | None = None,
) -> TraceSource:
    """Load one CSV per key (``Time,<value>`` rows); raise ValueError naming a bad file/line.

    With ``within``, a file outside those directories raises ``SignalNotAllowedError``.
    """
    traces = {key: tracefile.load_csv(path, within=within) for key, path in files.items()}
    return TraceSource(name, traces, ttl, shift)
