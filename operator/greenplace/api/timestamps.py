"""Times as the Kubernetes API writes them: RFC 3339 in UTC with a ``Z``, one formatter, one parser.

Why this module exists: Events, Leases, status fields and placement records all carry times,
and the API server is strict about their shape (``metav1.Time`` has whole seconds,
``metav1.MicroTime`` exactly six fractional digits). Formatting them in one place keeps every
writer in the same shape, and makes status bodies comparable from one cycle to the next (a
time written as ``+00:00`` in one place and ``Z`` in another would rewrite status for nothing).
It sits in ``greenplace.api`` so that the controller, the CLI and the simulator may all use it.
"""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["parse_rfc3339", "rfc3339"]


def rfc3339(at: datetime.datetime, *, microseconds: bool = False) -> str:
    """``at`` in UTC as ``2026-01-31T09:30:00Z`` (a ``metav1.Time``), or with
    ``microseconds=True`` as ``2026-01-31T09:30:00.123456Z`` (a ``metav1.MicroTime``, always six
    digits). A time without a zone is taken as UTC; a finer fraction is truncated, never rounded
    up into the next second."""
    utc = at.replace(tzinfo=datetime.UTC) if at.tzinfo is None else at.astimezone(datetime.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if microseconds else "%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: Any) -> datetime.datetime | None:
    """An RFC 3339 time as written in status and records (UTC when it has no zone); None when
    ``value`` is not one (status and records may hold anything a client wrote)."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=datetime.UTC)
