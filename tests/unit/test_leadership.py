"""Leader election's pure rules: when to create, renew, take over or wait; fencing by time."""

from __future__ import annotations

import pytest
from kubernetes import client

from greenplace.controller.leadership import Leadership, LeaseRecord, LeaseSettings, decide

A = LeaseRecord(holder="a", renew_time="2026-11-26T00:00:00.000000Z", transitions=3)


@pytest.mark.parametrize(
    ("record", "me", "unchanged_for", "expected"),
    [
        (None, "b", 0.0, "create"),  # no Lease yet
        (A, "a", 0.0, "renew"),  # ours
        (A, "a", 99.0, "renew"),  # ours, even if we were slow: renewing is always allowed
        (A, "b", 0.0, "wait"),  # someone else's, just seen
        (A, "b", 14.9, "wait"),  # someone else's, not yet expired on our clock
        (A, "b", 15.0, "take"),  # unchanged for a whole lease: its holder is gone
        (LeaseRecord(None, None, 3), "b", 0.0, "take"),  # released on a graceful stop
        (LeaseRecord("", None, 3), "b", 0.0, "take"),
    ],
)
def test_decide(record: LeaseRecord | None, me: str, unchanged_for: float, expected: str) -> None:
    assert decide(record, me, unchanged_for, lease_seconds=15.0) == expected


def test_a_leader_stops_acting_at_the_renew_deadline_even_if_its_renewal_hangs() -> None:
    now = [100.0]
    elected = Leadership(
        client.ApiClient(), LeaseSettings("ns", "a", lease_seconds=15.0), clock=lambda: now[0]
    )
    assert not elected.leading  # never renewed
    elected._renewed_at = 100.0  # a successful renewal at t=100
    now[0] = 109.9
    assert elected.leading
    now[0] = 110.0  # renew deadline: two thirds of the lease, before anyone may take it at 115
    assert not elected.leading
    assert elected.settings.renew_deadline < elected.settings.lease_seconds


def test_expiry_is_measured_on_our_clock_from_when_the_record_last_changed() -> None:
    now = [0.0]
    elected = Leadership(
        client.ApiClient(), LeaseSettings("ns", "b", lease_seconds=15.0), clock=lambda: now[0]
    )
    assert elected._unchanged_for(A) == 0.0
    now[0] = 10.0
    assert elected._unchanged_for(A) == 10.0
    renewed = LeaseRecord("a", "2026-11-26T00:00:10.000000Z", 3)  # the holder renewed
    assert elected._unchanged_for(renewed) == 0.0
    now[0] = 30.0
    assert elected._unchanged_for(renewed) == 20.0
