"""Static signal values, the last link of most fallback chains.

Why this module exists: a pool's spec already carries a list price, and an operator may pin a
zone's carbon intensity to a yearly average (for instance from codecarbon's per-region table).
Such values never go stale, so they are what a chain falls back on when every live feed is
down. They are reported under their own source name, so a dashboard shows when they are used.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping

from greenplace.domain import series
from greenplace.signals import contract

__all__ = ["NEVER_STALE", "StaticSource"]

# A static value is as true now as when it was written down: its age is always zero.
NEVER_STALE = datetime.timedelta(days=36500)


@dataclasses.dataclass(frozen=True, slots=True)
class StaticSource:
    """Fixed values per key; observed "now" at every call, so never stale."""

    name: str
    values: Mapping[contract.SignalKey, float]
    ttl: datetime.timedelta = NEVER_STALE

    def latest(self, key: contract.SignalKey, now: datetime.datetime) -> contract.Observation:
        return contract.Observation(self._value(key), now)

    def forecast(
        self,
        key: contract.SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> series.TimeSeries:
        """A flat forecast: the static value holds over the whole of ``[start, end)``."""
        value = self._value(key)
        if end <= start:
            return series.TimeSeries((start,), (value,))
        return series.TimeSeries((start, end), (value, value))

    def _value(self, key: contract.SignalKey) -> float:
        try:
            return self.values[key]
        except KeyError:
            raise contract.SignalMissingError(
                f"static source {self.name}: no value for {key}; add it to the source's "
                "values (SignalSource spec.static)"
            ) from None
