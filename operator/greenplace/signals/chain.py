"""The explicit fallback chain: try sources in order, keep the first fresh, valid answer.

Why this module exists: a feed that is down, slow, stale or talking nonsense must never crash
the operator nor silently pass a bad number to the planner. ``Chain.read`` asks each source in
the order of the ``SignalSource`` fallback list and returns a ``Reading`` that always says which
source answered, how old the value is and, when it is not the first source, why the ones before
it were skipped. When no source gives a usable value, the reading has ``value=None`` and reason
``Unavailable``; what the planner then does is the policy's choice (``signals.planning``).

Rules, in order, for each source:

1. a ``SignalError`` (or, as a last resort, any other exception) -> skipped with its reason;
2. a value that is not a finite number, or a naive timestamp -> skipped as ``Malformed``;
3. an observation older than the source's TTL -> skipped as ``Stale``;
4. otherwise used: reason ``Fresh`` for the first source, ``Fallback`` for any later one.

Forecasts follow the same order; a forecast is used when the source returns one.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from greenplace.domain import series
from greenplace.signals import contract, telemetry

__all__ = ["Chain", "ForecastReading"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class ForecastReading:
    """A forecast from the first source that had one, or ``series=None`` with the reasons."""

    key: contract.SignalKey
    series: series.TimeSeries | None
    source: str | None
    status: contract.SignalStatus


@dataclasses.dataclass(frozen=True, slots=True)
class Chain:
    """Sources in fallback order; ``metrics`` (optional) records every attempt and reading."""

    sources: Sequence[contract.Source]
    metrics: telemetry.SignalMetrics | None = None

    def read(self, key: contract.SignalKey, now: datetime.datetime) -> contract.Reading:
        """The first fresh, valid value of ``key`` at ``now``; never raises for a source fault."""
        attempts: list[contract.Attempt] = []
        reading: contract.Reading | None = None
        for position, source in enumerate(self.sources):
            observation = _attempt(source, attempts, lambda s: s.latest(key, now))
            if observation is None:
                continue
            problem = _judge(observation, source.ttl, now)
            if problem is not None:
                attempts.append(contract.Attempt(source.name, *problem))
                continue
            reason = _reason_at(position)
            reading = contract.Reading(
                key=key,
                value=observation.value,
                source=source.name,
                observed_at=observation.observed_at,
                age_s=max((now - observation.observed_at).total_seconds(), 0.0),
                status=contract.SignalStatus(
                    reason, _summary(key, source.name, attempts), tuple(attempts)
                ),
            )
            break
        if reading is None:
            reading = contract.Reading(
                key, None, None, None, None, _unavailable(key, "value", attempts)
            )
        if self.metrics is not None:
            self.metrics.record(reading)
        return reading

    def read_forecast(
        self,
        key: contract.SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> ForecastReading:
        """The forecast of the first source that has one over ``[start, end)``."""
        attempts: list[contract.Attempt] = []
        for position, source in enumerate(self.sources):
            forecast = _attempt(source, attempts, lambda s: s.forecast(key, start, end, now))
            if forecast is None:
                continue
            if not all(math.isfinite(v) for v in forecast.values):
                attempts.append(
                    contract.Attempt(
                        source.name, contract.SignalReason.MALFORMED, "non-finite forecast value"
                    )
                )
                continue
            reason = _reason_at(position)
            status = contract.SignalStatus(
                reason, _summary(key, source.name, attempts), tuple(attempts)
            )
            return ForecastReading(key, forecast, source.name, status)
        return ForecastReading(key, None, None, _unavailable(key, "forecast", attempts))


def _attempt(
    source: contract.Source,
    attempts: list[contract.Attempt],
    call: Callable[[contract.Source], T],
) -> T | None:
    """Run ``call`` on ``source``; on failure record why in ``attempts`` and return None."""
    try:
        return call(source)
    except contract.SignalError as error:
        attempts.append(contract.Attempt(source.name, error.reason, str(error)))
    except Exception as error:  # a faulty source must never crash the operator
        attempts.append(
            contract.Attempt(
                source.name,
                contract.SignalReason.SOURCE_CRASHED,
                f"{type(error).__name__}: {error} (a bug in source {source.name}: report it)",
            )
        )
    return None


def _reason_at(position: int) -> contract.SignalReason:
    return contract.SignalReason.FRESH if position == 0 else contract.SignalReason.FALLBACK


def _judge(
    observation: contract.Observation, ttl: datetime.timedelta, now: datetime.datetime
) -> tuple[contract.SignalReason, str] | None:
    value, observed_at = observation.value, observation.observed_at
    if not isinstance(value, int | float) or not math.isfinite(value):
        return contract.SignalReason.MALFORMED, f"value {value!r} is not a finite number"
    if observed_at.tzinfo is None:
        return contract.SignalReason.MALFORMED, f"observed_at {observed_at} has no time zone"
    age = now - observed_at
    if age > ttl:
        return (
            contract.SignalReason.STALE,
            f"observed at {observed_at.isoformat()}, {age.total_seconds():.0f} s old, "
            f"older than the TTL of {ttl.total_seconds():.0f} s",
        )
    return None


def _summary(key: contract.SignalKey, source: str, attempts: list[contract.Attempt]) -> str:
    if not attempts:
        return f"{key} from {source}"
    skipped = "; ".join(f"{a.source}: {a.reason} ({a.message})" for a in attempts)
    return f"{key} from {source} after falling back: {skipped}"


def _unavailable(
    key: contract.SignalKey, what: str, attempts: list[contract.Attempt]
) -> contract.SignalStatus:
    tried = "; ".join(f"{a.source}: {a.reason} ({a.message})" for a in attempts) or "no source"
    return contract.SignalStatus(
        contract.SignalReason.UNAVAILABLE,
        f"no {what} for {key}: {tried}; fix the first source or add a fallback "
        "(a static value never goes stale) to the SignalSource",
        tuple(attempts),
    )
