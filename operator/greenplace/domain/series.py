"""A time series of one signal (grid carbon intensity, a price), as a pure value.

Why this module exists: the planner, the simulator and the signal sources all need "the value at
time t" and "the mean over [t0, t1)" of a step-wise signal, with the same semantics everywhere.
A value holds at its timestamp and until the next one; before the first point there is no value.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime

__all__ = ["Cumulative", "TimeSeries"]


@dataclasses.dataclass(frozen=True, slots=True)
class TimeSeries:
    """Step-wise values at strictly increasing, timezone-aware instants."""

    times: tuple[datetime.datetime, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.times) != len(self.values):
            raise ValueError(f"{len(self.times)} times but {len(self.values)} values")
        if any(t.tzinfo is None for t in self.times[:1]):
            raise ValueError("times must be timezone-aware")
        if any(a >= b for a, b in zip(self.times, self.times[1:], strict=False)):
            raise ValueError("times must be strictly increasing")

    @property
    def start(self) -> datetime.datetime:
        return self.times[0]

    @property
    def end(self) -> datetime.datetime:
        """The last timestamp (its value is taken to hold until then and no further)."""
        return self.times[-1]

    def at(self, when: datetime.datetime) -> float | None:
        """The value holding at ``when``, or None before the first point or after the last."""
        if not self.times or when < self.times[0] or when > self.times[-1]:
            return None
        return self.values[bisect.bisect_right(self.times, when) - 1]

    def mean(self, start: datetime.datetime, end: datetime.datetime) -> float | None:
        """Time-weighted mean over ``[start, end)``; None if the series does not cover it."""
        if end <= start:
            return self.at(start)
        if not self.times or start < self.times[0] or end > self.times[-1]:
            return None
        i = bisect.bisect_right(self.times, start) - 1
        total = 0.0
        cursor = start
        while cursor < end:
            step_end = self.times[i + 1] if i + 1 < len(self.times) else end
            segment_end = min(step_end, end)
            total += self.values[i] * (segment_end - cursor).total_seconds()
            cursor = segment_end
            i += 1
        return total / (end - start).total_seconds()


class Cumulative:
    """Running integral of a ``TimeSeries``, so that any mean is two lookups, not a loop.

    Same semantics as ``TimeSeries.mean``; built once per series by callers that ask for many
    means over one series (the planner's deferral search asks thousands per round).
    """

    __slots__ = ("_cum", "_times", "_values")

    def __init__(self, values: TimeSeries) -> None:
        self._times = [t.timestamp() for t in values.times]
        self._values = values.values
        cum = [0.0]
        for i in range(len(self._times) - 1):
            cum.append(cum[-1] + self._values[i] * (self._times[i + 1] - self._times[i]))
        self._cum = cum

    def mean(self, start: datetime.datetime, end: datetime.datetime) -> float | None:
        """Time-weighted mean over ``[start, end)``; None if the series does not cover it."""
        a, b = start.timestamp(), end.timestamp()
        times = self._times
        if not times or a < times[0] or b > times[-1]:
            return None
        if b <= a:
            return self._values[bisect.bisect_right(times, a) - 1]
        return (self._integral(b) - self._integral(a)) / (b - a)

    def _integral(self, x: float) -> float:
        i = bisect.bisect_right(self._times, x) - 1
        return self._cum[i] + self._values[i] * (x - self._times[i])
