"""The placement ledger's writer: what each cycle appends, once, after its writes.

Why this module exists: the cycle decides and writes (``cycle``); this module turns the
cycle's final decisions into ledger records (``audit.entries``), seals them (``audit.chain``)
and appends them (``audit.store``), so that every placement is recorded exactly once, across
crashes and leader changes, and the planner's other decisions each time they change:

- A placement is recorded from what was written, not from what was planned: after the apply
  phase, each placed pod whose signed placement record (``controller.records``) the ledger
  does not hold yet is recorded, keyed by (pod uid, record time). A pod whose write failed has
  no new record, so nothing is recorded for it. An operator killed between a pod's write and the
  ledger's append leaves that pod placed with its signed record: the next cycle (of this or any
  replica) finds it missing from the ledger and records it as ``recovered`` (from the pod's own
  record): no gap. Keys already in the ledger are read back from it at start and after any
  conflict: no duplicate.
- Held, deferred and refused decisions are re-planned every cycle; each is recorded when the
  workload's (outcome, reason, pool) differs from the last one the ledger holds for it, so a
  workload held for a week adds one record, not one per cycle.
- One chain across replicas: an append conditioned on the head segment's resourceVersion fails
  if another replica wrote first (``store.ConflictError``); the ledger reads the tail again and
  works the entries out anew (what the other wrote is then deduplicated). Before each cycle's
  entries are worked out, one small read (the head segment's metadata, ``store.Store.stale``)
  tells whether another replica wrote since: then the chain is read again, so a replica that
  gains the lead never judges "changed since last recorded" from an old view.
- The ledger never stops placement: an append that fails (API server down) is logged and
  retried at the next cycle, from the same rules.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

from kubernetes import client

from greenplace.api import timestamps
from greenplace.audit import chain, entries, store
from greenplace.controller import cache as cache_
from greenplace.controller import config as config_
from greenplace.controller import snapshot
from greenplace.domain import model

__all__ = ["Ledger", "open_ledger"]

logger = logging.getLogger("greenplace.ledger")
_ATTEMPTS = 3
State = tuple[str, str, str | None]  # (outcome, reason, pool) last recorded for a workload


def _version() -> str:
    try:
        return metadata.version("greenplace")
    except metadata.PackageNotFoundError:
        return "unknown"


def spec_digest(spec: Any) -> str:
    """The SHA-256 of a policy spec's canonical JSON: which rules exactly were applied."""
    as_json = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return hashlib.sha256(chain.canonical(as_json).encode()).hexdigest()


class Ledger:
    """Appends the cycles' decisions to the chain in ``store``, signed by ``key``."""

    def __init__(self, ledger_store: store.Store, key: chain.SigningKey) -> None:
        self.store = ledger_store
        self.key = key
        self.version = _version()
        self.loaded = False
        self.tail = chain.Tail()
        self.head: store.Segment | None = None
        self.placed: set[tuple[str, str]] = set()  # (pod uid, record time) recorded
        self.states: dict[str, State] = {}
        self.horizon: str | None = None  # the time of the first record kept
        self._pending: asyncio.Task[int] | None = None  # the append in flight

    def load(self) -> None:
        """Read every segment: the tail, the placements and the last state of each workload."""
        segments = self.store.segments()
        self.head = segments[-1] if segments else None
        self.tail, self.placed, self.states, self.horizon = chain.Tail(), set(), {}, None
        for segment in segments:
            for line in segment.lines:
                try:
                    record = json.loads(line)
                    self._remember(record["entry"])
                    self.tail = chain.Tail(int(record["seq"]), chain.digest(record))
                    self.horizon = self.horizon or str(record["at"])
                except (ValueError, KeyError, TypeError) as error:
                    # Not ours to repair: `greenplace audit verify` names it; appends go on.
                    logger.warning("ledger: %s is not a record (%s)", segment.name, error)
        self.loaded = True

    def _remember(self, entry: Mapping[str, Any]) -> None:
        for pod in entry.get("pods") or ():
            if pod.get("placedAt"):
                self.placed.add((str(pod["uid"]), str(pod["placedAt"])))
        self.states[str(entry.get("workload"))] = _state(entry)

    async def record(self, decided: snapshot.Decided) -> int:
        """Work out what this cycle decided and wrote, and append it in the background.

        The entries are worked out now, from the cache as this cycle's writes left it (a later
        cycle's writes must not turn this one's placements into ``recovered`` ones); the
        append, one API round trip or more, runs while the next cycle gathers, plans and
        writes, so the placement loop never waits on the store (bench_burst measured the
        ledger at 18-21% of a governed burst when it did). One append at a time: the previous
        one is awaited first. Returns how many entries were handed to the append.
        """
        await self.drain()
        try:
            if not self.loaded:
                await asyncio.to_thread(self.load)
        except Exception as error:  # never stop placement: the next cycle tries again
            logger.warning("ledger: reading the chain failed, retried next cycle: %s", error)
            return 0
        found = self.new_entries(decided)
        if found:
            self._pending = asyncio.create_task(self._append(found, decided.at))
        return len(found)

    async def drain(self, timeout: float | None = None) -> None:
        """Return once the append in flight (if any) is done, or after ``timeout`` seconds."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await asyncio.wait_for(asyncio.shield(pending), timeout)
            except TimeoutError:
                logger.warning("ledger: an append still running after %s s was left", timeout)

    async def _append(self, found: list[dict[str, Any]], at: datetime.datetime) -> int:
        """Seal and append ``found``; on a conflict or another replica's write, read the chain
        again and append what it does not hold yet. Returns how many records were added."""
        try:
            for _ in range(_ATTEMPTS):
                if not self.loaded or await asyncio.to_thread(self.store.stale, self.head):
                    await asyncio.to_thread(self.load)
                    found = [entry for entry in found if self._is_new(entry)]
                if not found:
                    return 0
                stamp = timestamps.rfc3339(at, microseconds=True)
                tail, lines = self.tail, []
                for entry in found:
                    record, tail = chain.seal(entry, tail, self.key, stamp)
                    lines.append(chain.canonical(record))
                try:
                    self.head = await asyncio.to_thread(self.store.append, self.head, lines)
                except store.ConflictError as conflict:
                    logger.info("ledger: %s; reading the tail again", conflict)
                    self.loaded = False
                    continue
                self.tail = tail
                for entry in found:
                    self._remember(entry)
                self.horizon = self.horizon or stamp
                return len(lines)
            logger.warning("ledger: still conflicting after %d attempts; next cycle", _ATTEMPTS)
        except Exception as error:  # never stop placement: the next cycle appends them
            logger.warning("ledger: append failed, retried next cycle: %s", error)
            self.loaded = False
        return 0

    def _is_new(self, entry: Mapping[str, Any]) -> bool:
        """Whether the chain as last read lacks ``entry``: a placement whose pods it does not
        all hold, or a workload's state other than the last one it recorded."""
        placed = [
            (str(pod["uid"]), str(pod["placedAt"]))
            for pod in entry.get("pods") or ()
            if pod.get("placedAt")
        ]
        if placed:
            return not all(key in self.placed for key in placed)
        return self.states.get(str(entry.get("workload"))) != _state(entry)

    def new_entries(self, decided: snapshot.Decided) -> list[dict[str, Any]]:
        """The entries this cycle adds: placements written and not recorded, changed states,
        and placements found on pods that the ledger does not hold (``recovered``)."""
        built, cache = decided.built, decided.cache
        pools = {p.name: p for p in built.snapshot.pools}
        seen = _Seen(decided)
        out: list[dict[str, Any]] = []
        claimed: set[str] = set()
        for decision in decided.plan.decisions:
            members = built.members.get(decision.workload, ())
            pool = pools.get(decision.pool) if decision.pool else None
            if decision.outcome is model.Outcome.PLACED:
                if decision.workload in built.kueue:  # answered on the Workload: by its state
                    members = ()
                else:
                    written = [
                        (p, r)
                        for p in members
                        if (r := _record(cache, p.uid)) is not None
                        and (p.uid, str(r.get("at"))) not in self.placed
                    ]
                    if not written:
                        continue  # its writes failed: re-planned, recorded once placed
                    claimed.update(p.uid for p, _ in written)
                    pods = [(p.name, p.uid, str(r.get("at"))) for p, r in written]
                    charge = _charges(r for _, r in written)
                    out.append(self._decision(seen, decision, pool, pods, charge))
                    continue
            state = (decision.outcome.value, decision.reason.value, decision.pool)
            if self.states.get(decision.workload) == state:
                continue
            held: list[tuple[str, str, str | None]] = [(p.name, p.uid, None) for p in members]
            out.append(self._decision(seen, decision, pool, held, None))
        for pod in cache.pods.values():
            record = pod.record
            if record is None or pod.uid in claimed:
                continue
            when = str(record.get("at"))
            if (pod.uid, when) in self.placed or (self.horizon is not None and when < self.horizon):
                continue
            pool = pools.get(str(record.get("pool")))
            out.append(
                entries.recovered_entry(
                    pod.namespace, (pod.name, pod.uid), record, pool=pool, version=self.version
                )
            )
        return out

    def _decision(
        self,
        seen: _Seen,
        decision: model.Decision,
        pool: model.Pool | None,
        pods: Sequence[tuple[str, str, str | None]],
        charge: dict[str, Any] | None,
    ) -> dict[str, Any]:
        carbon = None
        if pool is not None:
            reading = seen.gathered.observed.carbon.get(pool.location.grid_zone)
            carbon = entries.SignalFacts(  # the grid's value; the pool's PUE is in its facts
                pool.gco2_per_kwh,
                seen.built.carbon_sources.get(pool.name),
                None if reading is None else reading.age_s,
            )
        return entries.decision_entry(
            decision,
            at=seen.at,
            workload=seen.workloads.get(decision.workload),
            pods=pods,
            pool=pool,
            policies=[seen.policies[k] for k in decision.policies if k in seen.policies],
            carbon=carbon,
            charge=charge,
            version=self.version,
        )


class _Seen:
    """What a cycle's records cite: its time, workloads and governing policies' facts."""

    def __init__(self, decided: snapshot.Decided) -> None:
        self.at, self.gathered, self.built = decided.at, decided.gathered, decided.built
        self.workloads = {w.key: w for w in decided.built.snapshot.workloads}
        self.policies = {
            f"{p.namespace}/{p.name}": entries.PolicyFacts(
                f"{p.namespace}/{p.name}", p.generation, spec_digest(p.spec)
            )
            for p in decided.gathered.policies
        }


async def open_ledger(config: config_.OperatorConfig, api: client.ApiClient) -> Ledger:
    """The ledger of ``config``: its key loaded (or made) and published, its store bound."""
    namespace = config.lease_namespace_in_use
    key = await asyncio.to_thread(store.load_signing_key, api, namespace, config.ledger_key_file)
    await asyncio.to_thread(store.publish_key, api, namespace, key)
    segments = store.Store(api, namespace, retention_segments=config.ledger_retention_segments)
    logger.info("ledger: appending to %s/%s* signed by %s", namespace, store.PREFIX, key.kid)
    return Ledger(segments, key)


def _state(entry: Mapping[str, Any]) -> State:
    """The (outcome, reason, pool) an entry records for its workload."""
    pool = entry.get("pool")
    name = pool.get("name") if isinstance(pool, Mapping) else entry.get("poolName")
    return (str(entry.get("outcome")), str(entry.get("reason")), name)


def _record(cache: cache_.Cache, uid: str) -> Mapping[str, Any] | None:
    """The signed placement record of pod ``uid`` as the cache holds it (after the writes)."""
    pod = cache.pods.get(uid)
    return None if pod is None else pod.record


def _charges(records: Any) -> dict[str, Any]:
    """What the pods' records charged together: budgets, money, kgCO2e, kWh."""
    total = {"money": 0.0, "kgCO2e": 0.0, "kWh": 0.0}
    budgets: set[str] = set()
    for record in records:
        budgets.update(str(b) for b in record.get("budgets") or ())
        for field in total:
            value = (record.get("charge") or {}).get(field)
            if isinstance(value, int | float):
                total[field] += float(value)
    return {"budgets": sorted(budgets), **total}
