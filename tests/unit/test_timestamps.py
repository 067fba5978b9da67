"""The one wire-time formatter and parser: the shapes the API server accepts, round trips."""

from __future__ import annotations

import datetime

import pytest

from greenplace.api import timestamps

PARIS = datetime.timezone(datetime.timedelta(hours=2))


@pytest.mark.parametrize(
    ("at", "microseconds", "expected"),
    [
        (datetime.datetime(2026, 1, 31, 9, 30, tzinfo=datetime.UTC), False, "2026-01-31T09:30:00Z"),
        (
            datetime.datetime(2026, 1, 31, 9, 30, tzinfo=datetime.UTC),
            True,
            "2026-01-31T09:30:00.000000Z",
        ),
        # Another zone is converted, not relabelled.
        (datetime.datetime(2026, 1, 31, 11, 30, 5, 999999, PARIS), False, "2026-01-31T09:30:05Z"),
        (
            datetime.datetime(2026, 1, 31, 11, 30, 5, 42, PARIS),
            True,
            "2026-01-31T09:30:05.000042Z",
        ),
        # No zone: UTC, as the parser reads it.
        (datetime.datetime(2026, 1, 31, 9, 30), False, "2026-01-31T09:30:00Z"),
    ],
)
def test_rfc3339_shapes(at: datetime.datetime, microseconds: bool, expected: str) -> None:
    assert timestamps.rfc3339(at, microseconds=microseconds) == expected


def test_round_trip_keeps_the_instant() -> None:
    at = datetime.datetime(2026, 3, 1, 23, 59, 59, 123456, PARIS)
    assert timestamps.parse_rfc3339(timestamps.rfc3339(at, microseconds=True)) == at
    assert timestamps.parse_rfc3339(timestamps.rfc3339(at)) == at.replace(microsecond=0)


@pytest.mark.parametrize("value", [None, 3, "", "yesterday", "2026-13-01T00:00:00Z"])
def test_parse_rejects_what_is_not_a_time(value: object) -> None:
    assert timestamps.parse_rfc3339(value) is None


def test_parse_takes_a_zoneless_time_as_utc() -> None:
    assert timestamps.parse_rfc3339("2026-01-31T09:30:00") == datetime.datetime(
        2026, 1, 31, 9, 30, tzinfo=datetime.UTC
    )
