"""Step-wise signals (carbon intensity, price): values, fast means, and forecast windows.

Why this module exists: a year of half-hourly data has 17,568 points per zone, and the simulator
(accounting, the oracle's coefficients) asks for means over job runs hundreds of thousands of
times, so means go through ``domain.series.Cumulative`` (two lookups, same semantics as
``TimeSeries.mean``). The planner gets forecasts through ``Snapshot.forecasts``; a real source
forecasts a few days ahead, not a year, so ``Signal.forecast`` hands it the recorded values over
``[now, now + horizon]`` only (cached per signal step), which also keeps each planning round's
cost independent of the trace's length. A ``Signal`` is either a recorded series or a constant.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime

from greenplace.domain import series

__all__ = ["Signal", "constant", "from_series"]


@dataclasses.dataclass(frozen=True, slots=True)
class Signal:
    """A recorded series, or a constant when ``trace`` is None."""

    source: str
    trace: series.TimeSeries | None = None
    constant_value: float = 0.0
    times_s: tuple[float, ...] = ()  # epoch seconds of trace.times
    cumulative: series.Cumulative | None = None
    # Forecast windows already cut, by (first step index, horizon in seconds).
    _windows: dict[tuple[int, float], series.TimeSeries | None] = dataclasses.field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def is_constant(self) -> bool:
        return self.trace is None

    def at(self, when: datetime.datetime) -> float | None:
        return self.constant_value if self.trace is None else self.trace.at(when)

    def mean(self, start: datetime.datetime, end: datetime.datetime) -> float | None:
        if self.cumulative is None:
            return self.constant_value
        return self.cumulative.mean(start, end)

    def change_times(self, start: datetime.datetime, end: datetime.datetime) -> list[float]:
        """Epoch seconds in ``(start, end]`` at which the value may change."""
        lo = bisect.bisect_right(self.times_s, start.timestamp())
        hi = bisect.bisect_right(self.times_s, end.timestamp())
        return list(self.times_s[lo:hi])

    def points(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(epoch seconds, values); empty for a constant."""
        return ((), ()) if self.trace is None else (self.times_s, self.trace.values)

    def forecast(
        self, now: datetime.datetime, horizon: datetime.timedelta
    ) -> series.TimeSeries | None:
        """The recorded values from the step holding ``now`` to ``now + horizon`` (perfect
        foresight over a bounded horizon); None for a constant or outside the trace."""
        if self.trace is None:
            return None
        first = bisect.bisect_right(self.times_s, now.timestamp()) - 1
        if first < 0:
            return None
        key = (first, horizon.total_seconds())
        if key not in self._windows:
            # one point past the horizon, so the window covers all of it
            last = min(
                bisect.bisect_right(self.times_s, now.timestamp() + key[1]) + 1, len(self.times_s)
            )
            times, values = self.trace.times[first:last], self.trace.values[first:last]
            self._windows[key] = series.TimeSeries(times, values) if len(times) > 1 else None
        return self._windows[key]


def constant(value: float, source: str = "static") -> Signal:
    return Signal(source=source, constant_value=value)


def from_series(values: series.TimeSeries, source: str) -> Signal:
    return Signal(
        source=source,
        trace=values,
        times_s=tuple(t.timestamp() for t in values.times),
        cumulative=series.Cumulative(values),
    )
