"""Leader election over a ``coordination.k8s.io`` Lease: one replica places, the others stand by.

Why this module exists: the operator runs as several replicas so that its admission webhook
(``failurePolicy: Fail``) stays up through a crash or an upgrade, but only one replica may place
pods, spend budgets and write status. Every replica watches and keeps its cache warm; the one
holding the Lease runs the placement and report loops. A standby takes over when the holder
releases the Lease (graceful stop: at once) or stops renewing it (crash, partition: after
``lease_seconds``).

Why a Lease and not kopf peering: kopf's peering is priority-based, and replicas of one
Deployment share a priority, in which case kopf freezes all of them; peering also pauses the
watches, so a standby would take over with a cold cache. A Lease is what Kubernetes components
and controller-runtime use, and ``kubectl get lease`` shows who leads.

Fencing is by time: a leader that has not renewed for ``renew_deadline`` (two thirds of the
lease) stops acting even if its renew call is still hanging, so it has stopped before anyone
else may acquire the Lease. A placement patch is also guarded by the pod's resourceVersion, so
even a late write by a deposed leader cannot place a pod twice.

Expiry is judged on this replica's monotonic clock (as client-go does): a Lease is expired when
its record has not changed for its duration since we first saw that record, so clock skew
between replicas or with the API server does not matter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from greenplace.api import timestamps

__all__ = ["LEASE_LABEL", "Leadership", "LeaseRecord", "LeaseSettings", "decide"]

logger = logging.getLogger("greenplace.leadership")

LEASE_LABEL = "greenplace.dev/leader-election"  # the operator watches Leases with this label


@dataclasses.dataclass(frozen=True)
class LeaseSettings:
    namespace: str
    identity: str
    name: str = "greenplace-placement"
    lease_seconds: float = 15.0

    @property
    def renew_deadline(self) -> float:
        return self.lease_seconds * 2 / 3

    @property
    def retry_seconds(self) -> float:
        return self.lease_seconds * 2 / 15


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """The parts of a Lease's spec that election reads."""

    holder: str | None
    renew_time: str | None
    transitions: int


def decide(
    record: LeaseRecord | None,
    me: str,
    unchanged_for: float,
    lease_seconds: float,
) -> str:
    """What to do with the Lease as seen now: ``create``, ``renew``, ``take`` or ``wait``.

    ``unchanged_for`` is how long (on our clock) the record has looked exactly like this.
    """
    if record is None:
        return "create"
    if record.holder == me:
        return "renew"
    if not record.holder or unchanged_for >= lease_seconds:
        return "take"
    return "wait"


class Leadership:
    """Acquire and renew the Lease in the background; ``leading`` says whether we may act."""

    def __init__(
        self,
        api: client.ApiClient,
        settings: LeaseSettings,
        on_change: Callable[[bool], None] = lambda leading: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = client.CoordinationV1Api(api)
        self.settings = settings
        self._on_change = on_change
        self._clock = clock
        self._renewed_at: float | None = None  # our clock, last successful create/renew/take
        self._seen: tuple[LeaseRecord, float] | None = None  # a foreign record, first seen at
        self._was_leading = False

    @property
    def leading(self) -> bool:
        """True while our last renewal is younger than the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.settings.renew_deadline

    async def run(self) -> None:
        """Try to acquire or renew every ``retry_seconds``, forever."""
        while True:
            try:
                if await asyncio.to_thread(self._attempt):
                    self._renewed_at = self._clock()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the API server may be down: keep trying
                logger.warning("lease %s: %s", self.settings.name, _short(error))
            self._notify()
            jitter = random.uniform(0, self.settings.retry_seconds * 0.2)
            await asyncio.sleep(self.settings.retry_seconds + jitter)

    def _notify(self) -> None:
        leading = self.leading
        if leading != self._was_leading:
            self._was_leading = leading
            logger.info(
                "%s %s lease %s/%s",
                self.settings.identity,
                "acquired" if leading else "lost",
                self.settings.namespace,
                self.settings.name,
            )
            self._on_change(leading)

    async def release(self) -> None:
        """Give the Lease up on a graceful stop, so a standby takes over at once."""
        if self._renewed_at is None:
            return
        self._renewed_at = None
        self._notify()
        try:
            await asyncio.to_thread(self._release)
        except Exception as error:  # best effort: otherwise it expires
            logger.warning("could not release lease %s: %s", self.settings.name, _short(error))

    # --- blocking calls, run in a thread ------------------------------------------------
    def _attempt(self) -> bool:
        s = self.settings
        try:
            lease = self._api.read_namespaced_lease(s.name, s.namespace, _request_timeout=5)
        except client.ApiException as error:
            if error.status != 404:
                raise
            lease = None
        record = _record(lease)
        action = decide(record, s.identity, self._unchanged_for(record), s.lease_seconds)
        if action == "wait":
            return False
        now = datetime.datetime.now(datetime.UTC)
        if action == "create":
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=s.name, labels={LEASE_LABEL: "true"}),
                spec=_spec(s, acquire=now, renew=now, transitions=0),
            )
            return _conflict_is_false(
                lambda: self._api.create_namespaced_lease(s.namespace, body, _request_timeout=5)
            )
        assert lease is not None and record is not None
        if action == "take":
            logger.info(
                "%s takes lease %s/%s: %s",
                s.identity,
                s.namespace,
                s.name,
                f"{record.holder} did not renew it for {s.lease_seconds:g} s"
                if record.holder
                else "released by its holder",
            )
            lease.spec = _spec(s, acquire=now, renew=now, transitions=record.transitions + 1)
        else:
            acquired = lease.spec.acquire_time or now
            lease.spec = _spec(s, acquire=acquired, renew=now, transitions=record.transitions)
        return _conflict_is_false(  # the resourceVersion read above guards the update
            lambda: self._api.replace_namespaced_lease(
                s.name, s.namespace, lease, _request_timeout=5
            )
        )

    def _unchanged_for(self, record: LeaseRecord | None) -> float:
        now = self._clock()
        if record is None or self._seen is None or self._seen[0] != record:
            self._seen = (record, now) if record is not None else None
            return 0.0
        return now - self._seen[1]

    def _release(self) -> None:
        s = self.settings
        lease = self._api.read_namespaced_lease(s.name, s.namespace, _request_timeout=5)
        if lease.spec is None or lease.spec.holder_identity != s.identity:
            return
        lease.spec = client.V1LeaseSpec(
            lease_duration_seconds=1,
            renew_time=timestamps.rfc3339(datetime.datetime.now(datetime.UTC), microseconds=True),
            lease_transitions=lease.spec.lease_transitions,
        )
        _conflict_is_false(
            lambda: self._api.replace_namespaced_lease(
                s.name, s.namespace, lease, _request_timeout=5
            )
        )


def _spec(
    s: LeaseSettings, *, acquire: datetime.datetime, renew: datetime.datetime, transitions: int
) -> client.V1LeaseSpec:
    return client.V1LeaseSpec(
        holder_identity=s.identity,
        lease_duration_seconds=int(s.lease_seconds),
        acquire_time=timestamps.rfc3339(acquire, microseconds=True),
        renew_time=timestamps.rfc3339(renew, microseconds=True),
        lease_transitions=transitions,
    )


def _record(lease: client.V1Lease | None) -> LeaseRecord | None:
    if lease is None:
        return None
    spec = lease.spec or client.V1LeaseSpec()
    renew = spec.renew_time.isoformat() if spec.renew_time else None
    return LeaseRecord(spec.holder_identity, renew, spec.lease_transitions or 0)


def _conflict_is_false(call: Callable[[], Any]) -> bool:
    """Run a write; another replica winning the race (409) is a plain ``False``."""
    try:
        call()
    except client.ApiException as error:
        if error.status == 409:
            return False
        raise
    return True


def _short(error: Exception) -> str:
    if isinstance(error, client.ApiException):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
