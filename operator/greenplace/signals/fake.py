"""A signal source for tests that answers what it is told and fails on demand.

Why this module exists: the fallback chain, the planner inputs and the controller must be tested
against every way a feed fails (timeouts, HTTP 500, garbage, stale data, a crashing client)
without a network. Like Karpenter's fake cloud provider, it records every call it receives.
"""

from __future__ import annotations

import dataclasses
import datetime

from greenplace.domain import series
from greenplace.signals import contract

__all__ = ["FakeSource"]


@dataclasses.dataclass
class FakeSource:
    """Mutable on purpose: a test changes ``values``, ``age`` or ``failure`` between calls.

    - ``values``: what ``latest`` answers per key (missing key -> ``SignalMissingError``);
    - ``age``: how old each observation is at ``now`` (beyond ``ttl`` it is stale);
    - ``failure``: when set, every call raises it (a ``SignalError``, or any exception to
      simulate a bug); ``garbage`` answers NaN, as a feed that sends nonsense would.
    """

    name: str
    values: dict[contract.SignalKey, float] = dataclasses.field(default_factory=dict)
    ttl: datetime.timedelta = datetime.timedelta(minutes=15)
    age: datetime.timedelta = datetime.timedelta(0)
    failure: BaseException | None = None
    garbage: bool = False
    calls: list[tuple[str, contract.SignalKey]] = dataclasses.field(default_factory=list)

    def latest(self, key: contract.SignalKey, now: datetime.datetime) -> contract.Observation:
        self.calls.append(("latest", key))
        return contract.Observation(self._value(key), now - self.age)

    def forecast(
        self,
        key: contract.SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> series.TimeSeries:
        self.calls.append(("forecast", key))
        value = self._value(key)
        stop = max(end, start + datetime.timedelta(hours=1))
        return series.TimeSeries((start, stop), (value, value))

    def _value(self, key: contract.SignalKey) -> float:
        if self.failure is not None:
            raise self.failure
        if self.garbage:
            return float("nan")
        if key not in self.values:
            raise contract.SignalMissingError(f"fake source {self.name}: no value for {key}")
        return self.values[key]
