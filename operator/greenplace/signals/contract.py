"""The one contract every signal source honours, and the values it hands back.

Why this module exists: the planner and the accounting need carbon intensity and prices from
many places (static values, trace files, Prometheus, Electricity Maps, WattTime), and must know
how fresh each value is and why it is missing when it is. Every source implements ``Source``;
the fallback chain (``greenplace.signals.chain``) turns its answers and failures into one
``Reading`` with a stable reason code. No source knows about Kubernetes, policies or
sovereignty: a signal can only change a pool's intensity or price, never where a pod may run.

The contract of a ``Source``:

- ``latest(key, now)`` returns an ``Observation`` (value in the key's unit, the instant the value
  was observed at — not the instant it was fetched). It does not judge freshness: the chain
  compares ``now - observed_at`` with the source's ``ttl``.
- ``forecast(key, start, end, now)`` returns a ``TimeSeries`` covering as much of
  ``[start, end)`` as the source knows.
- Either raises a ``SignalError`` subclass, never anything else on purpose (the chain still
  catches everything, as a last resort, under ``SourceCrashed``); each subclass stands for one
  stable ``SignalReason``, and the tree with what each means is drawn in ``greenplace.errors``.
- Every network call has a timeout (``timeout_s``), so one call is bounded.

Units: carbon intensity in gCO2e/kWh (``SignalKind.CARBON_INTENSITY``), price in the pool's
currency per GPU-hour (``SignalKind.PRICE``).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Protocol

from greenplace import errors
from greenplace.domain import series

__all__ = [
    "Attempt",
    "Observation",
    "Reading",
    "SignalCredentialsError",
    "SignalError",
    "SignalHttpError",
    "SignalKey",
    "SignalKind",
    "SignalMalformedError",
    "SignalMissingError",
    "SignalNotAllowedError",
    "SignalReason",
    "SignalStatus",
    "SignalTimeoutError",
    "SignalUnreachableError",
    "SignalUnsupportedError",
    "Source",
]


class SignalKind(enum.StrEnum):
    """What is measured; the subject of a key is a grid zone (carbon) or a pool name (price)."""

    CARBON_INTENSITY = "carbon_intensity"  # gCO2e/kWh, subject = grid zone
    PRICE = "price"  # currency per GPU-hour, subject = pool name

    @property
    def unit(self) -> str:
        return "gCO2e/kWh" if self is SignalKind.CARBON_INTENSITY else "currency/GPU-hour"


@dataclasses.dataclass(frozen=True, slots=True)
class SignalKey:
    """Which signal: its kind and its subject (a grid zone such as ``FR``, or a pool name)."""

    kind: SignalKind
    subject: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.subject}"


class SignalReason(enum.StrEnum):
    """Stable reason codes: they appear in conditions, Events and metric labels. Never rename."""

    FRESH = "Fresh"  # the first source in the chain answered within its TTL
    FALLBACK = "Fallback"  # a later source answered because earlier ones failed or were stale
    STALE = "Stale"  # the value is older than the source's TTL
    MISSING = "Missing"
    UNSUPPORTED = "Unsupported"
    UNREACHABLE = "Unreachable"
    TIMEOUT = "Timeout"
    HTTP_ERROR = "HttpError"
    CREDENTIALS = "Credentials"  # credentials missing or unreadable, or refused (HTTP 401/403)
    MALFORMED = "Malformed"
    NOT_ALLOWED = "SourceNotAllowed"  # a file or address the operator's configuration forbids
    SOURCE_CRASHED = "SourceCrashed"  # a bug in a source: it raised something else
    UNAVAILABLE = "Unavailable"  # every source of the chain failed: no value at all


class SignalError(errors.GreenplaceError):
    """A source could not give a value; ``reason`` says why in one stable word."""

    reason = SignalReason.MISSING


class SignalMissingError(SignalError):
    reason = SignalReason.MISSING


class SignalUnsupportedError(SignalError):
    reason = SignalReason.UNSUPPORTED


class SignalUnreachableError(SignalError):
    reason = SignalReason.UNREACHABLE


class SignalTimeoutError(SignalError):
    reason = SignalReason.TIMEOUT


class SignalHttpError(SignalError):
    reason = SignalReason.HTTP_ERROR


class SignalCredentialsError(SignalError):
    """No usable credentials: missing or unreadable, or refused by the peer (HTTP 401/403)."""

    reason = SignalReason.CREDENTIALS


class SignalMalformedError(SignalError):
    reason = SignalReason.MALFORMED


class SignalNotAllowedError(SignalError):
    """The spec names a file outside the trace directories, or an address the operator may not
    reach (plain http, credentials in the URL, a loopback, link-local or private address): the
    message says what was refused and which operator flag (chart value) allows it."""

    reason = SignalReason.NOT_ALLOWED


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    """One value as a source saw it: in the key's unit, observed at a timezone-aware instant."""

    value: float
    observed_at: datetime.datetime


class Source(Protocol):
    """A place signals come from. See the module docstring for the full contract."""

    @property
    def name(self) -> str:
        """Unique within a chain; used in metric labels and messages (e.g. ``emaps-eu``)."""
        ...

    @property
    def ttl(self) -> datetime.timedelta:
        """How old an observation may be and still be used."""
        ...

    def latest(self, key: SignalKey, now: datetime.datetime) -> Observation:
        """The most recent value of ``key`` known at ``now``; raises ``SignalError``."""
        ...

    def forecast(
        self,
        key: SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> series.TimeSeries:
        """Values of ``key`` over ``[start, end)`` forecast at ``now``; raises ``SignalError``."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Attempt:
    """What one source of a chain answered for one key."""

    source: str
    reason: SignalReason
    message: str


@dataclasses.dataclass(frozen=True, slots=True)
class SignalStatus:
    """Why a reading has the value it has: the final reason and every attempt made."""

    reason: SignalReason
    message: str
    attempts: tuple[Attempt, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reason in (SignalReason.FRESH, SignalReason.FALLBACK)


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """What the chain hands the planner: a value (or None), where it came from, and how old."""

    key: SignalKey
    value: float | None
    source: str | None
    observed_at: datetime.datetime | None
    age_s: float | None
    status: SignalStatus
