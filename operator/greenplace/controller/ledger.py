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
- The ledger never stops placement, and never makes a cycle wait: a cycle's entries are
  queued behind the append in flight (one writer, one append at a time, in order), and the
  entries queued or in flight count as recorded when the next cycle works out its own, so none
  is worked out twice. An append that fails (API server down) is logged; its entries stay
  queued, in order, and are appended by the writer the next cycle starts, after the chain is
  read again (so a write that landed although it reported failure is not appended twice);
  if the chain grew meanwhile, only the placements are kept: another replica may have recorded
  a later state of a workload, and the next cycle works states out again against the chain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
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
        # (entry, record time) worked out and not in the chain yet: in flight, queued behind the
        # append in flight, or kept from a failed append; appended in this order.
        self._queued: list[tuple[dict[str, Any], str]] = []
        self._writer: asyncio.Task[None] | None = None  # appends the queue, batch after batch

    def _read(self) -> _Chain:
        """Read every segment: the tail, the placements and the last state of each workload."""
        segments = self.store.segments()
        read = _Chain(segments[-1] if segments else None)
        for segment in segments:
            for line in segment.lines:
                try:
                    record = json.loads(line)
                    _remember(record["entry"], read.placed, read.states)
                    read.tail = chain.Tail(int(record["seq"]), chain.digest(record))
                    read.horizon = read.horizon or str(record["at"])
                except (ValueError, KeyError, TypeError) as error:
                    # Not ours to repair: `greenplace audit verify` names it; appends go on.
                    logger.warning("ledger: %s is not a record (%s)", segment.name, error)
        return read

    async def _load(self) -> None:
        """Read the chain in a thread, then take it over at once, on the loop: ``new_entries``
        sees the old view or the new one, never half of one."""
        read = await asyncio.to_thread(self._read)
        self.head, self.tail, self.horizon = read.head, read.tail, read.horizon
        self.placed, self.states, self.loaded = read.placed, read.states, True

    @property
    def writing(self) -> bool:
        """Whether the writer is appending (or about to append) the queue."""
        return self._writer is not None and not self._writer.done()

    async def record(self, decided: snapshot.Decided) -> int:
        """Work out what this cycle decided and wrote, and queue it for the writer.

        The entries are worked out now, from the cache as this cycle's writes left it (a later
        cycle's writes must not turn this one's placements into ``recovered`` ones), counting
        the entries queued or in flight as recorded; the append, one API round trip or more,
        runs while the next cycles gather, plan and write, so the placement loop never waits on
        the store (bench_burst measured the ledger at 18-21% of a governed burst when it did).
        Returns how many entries this cycle queued.
        """
        if not self.loaded and not self.writing:  # a writer reads the chain itself
            try:
                await self._load()
            except Exception as error:  # never stop placement: the next cycle tries again
                logger.warning("ledger: reading the chain failed, retried next cycle: %s", error)
                return 0
        found = self.new_entries(decided)
        stamp = timestamps.rfc3339(decided.at, microseconds=True)
        self._queued += [(entry, stamp) for entry in found]
        if self._queued and not self.writing:  # also retries what a failed append left
            self._writer = asyncio.create_task(self._write())
        return len(found)

    async def drain(self, timeout: float | None = None) -> None:
        """Return once the writer (if any) is done, or after ``timeout`` seconds."""
        if self._writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout)
            except TimeoutError:
                logger.warning("ledger: an append still running after %s s was left", timeout)

    async def _write(self) -> None:
        """Append the queue, batch after batch, until it is empty or an append fails (its
        entries stay queued: the next cycle starts a writer again)."""
        while self._queued and await self._append(list(self._queued)):
            pass

    async def _append(self, batch: list[tuple[dict[str, Any], str]]) -> bool:
        """Seal and append the entries of ``batch`` (the head of the queue) that the chain lacks;
        on a conflict or another replica's write, read the chain again first. When the chain
        grew meanwhile, the batch's held, deferred and refused states are dropped, as another
        replica may have recorded a later decision: the next cycle works them out again against
        the chain (placements are facts and kept). Once appended, ``batch`` leaves the queue as
        the chain takes its keys over, in one step of the loop. Returns whether it did."""
        candidates = batch
        try:
            for _ in range(_ATTEMPTS):
                if not self.loaded or await asyncio.to_thread(self.store.stale, self.head):
                    known = self.tail
                    await self._load()
                    if self.tail != known:  # another writer appended: its states may be newer
                        candidates = [(e, at) for e, at in candidates if _placed(e)]
                fresh = _Known(self).fresh(candidates)
                tail, lines = self.tail, []
                for entry, stamp in fresh:
                    record, tail = chain.seal(entry, tail, self.key, stamp)
                    lines.append(chain.canonical(record))
                try:
                    if lines:
                        self.head = await asyncio.to_thread(self.store.append, self.head, lines)
                except store.ConflictError as conflict:
                    logger.info("ledger: %s; reading the tail again", conflict)
                    self.loaded = False
                    continue
                self.tail = tail
                for entry, stamp in fresh:
                    _remember(entry, self.placed, self.states)
                    self.horizon = self.horizon or stamp
                del self._queued[: len(batch)]
                return True
            logger.warning("ledger: still conflicting after %d attempts; next cycle", _ATTEMPTS)
        except Exception as error:  # never stop placement: the next cycle appends them
            logger.warning("ledger: append failed, retried next cycle: %s", error)
            self.loaded = False
        return False

    def new_entries(self, decided: snapshot.Decided) -> list[dict[str, Any]]:
        """The entries this cycle adds: placements written and not recorded, changed states,
        and placements found on pods that the ledger does not hold (``recovered``); what is
        queued or in flight counts as recorded."""
        built, cache = decided.built, decided.cache
        pools = {p.name: p for p in built.snapshot.pools}
        seen = _Seen(decided)
        known = _Known(self, (entry for entry, _ in self._queued))
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
                        and not known.holds((p.uid, str(r.get("at"))))
                    ]
                    if not written:
                        continue  # its writes failed: re-planned, recorded once placed
                    claimed.update(p.uid for p, _ in written)
                    pods = [(p.name, p.uid, str(r.get("at"))) for p, r in written]
                    charge = _charges(r for _, r in written)
                    out.append(self._decision(seen, decision, pool, pods, charge))
                    continue
            state = (decision.outcome.value, decision.reason.value, decision.pool)
            if known.state(decision.workload) == state:
                continue
            held: list[tuple[str, str, str | None]] = [(p.name, p.uid, None) for p in members]
            out.append(self._decision(seen, decision, pool, held, None))
        for pod in cache.pods.values():
            record = pod.record
            if record is None or pod.uid in claimed:
                continue
            when = str(record.get("at"))
            if known.holds((pod.uid, when)) or (self.horizon is not None and when < self.horizon):
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


@dataclasses.dataclass
class _Chain:
    """The chain as read: its head segment, tail, placements, states and first record's time."""

    head: store.Segment | None
    tail: chain.Tail = dataclasses.field(default_factory=chain.Tail)
    placed: set[tuple[str, str]] = dataclasses.field(default_factory=set)
    states: dict[str, State] = dataclasses.field(default_factory=dict)
    horizon: str | None = None


class _Known:
    """What counts as recorded: the chain as last read, and over it the entries not in it yet
    (queued or in flight, or earlier in a batch being appended)."""

    def __init__(self, ledger: Ledger, unwritten: Iterable[Mapping[str, Any]] = ()) -> None:
        self.ledger = ledger
        self.placed: set[tuple[str, str]] = set()
        self.states: dict[str, State] = {}
        for entry in unwritten:
            _remember(entry, self.placed, self.states)

    def holds(self, key: tuple[str, str]) -> bool:
        return key in self.placed or key in self.ledger.placed

    def state(self, workload: str) -> State | None:
        if workload in self.states:
            return self.states[workload]
        return self.ledger.states.get(workload)

    def is_new(self, entry: Mapping[str, Any]) -> bool:
        """Whether ``entry`` is not recorded: a placement whose pods are not all held, or a
        workload's state other than the last one recorded."""
        placed = _placed(entry)
        if placed:
            return not all(self.holds(key) for key in placed)
        return self.state(str(entry.get("workload"))) != _state(entry)

    def fresh(
        self, batch: Sequence[tuple[dict[str, Any], str]]
    ) -> list[tuple[dict[str, Any], str]]:
        """The entries of ``batch`` not recorded, in order, each judged after those before it
        (a workload Held, Placed elsewhere, Held again keeps all three)."""
        out = []
        for entry, stamp in batch:
            if self.is_new(entry):
                out.append((entry, stamp))
                _remember(entry, self.placed, self.states)
        return out


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


def _placed(entry: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (pod uid, record time) keys of the placements an entry records."""
    return [
        (str(pod["uid"]), str(pod["placedAt"]))
        for pod in entry.get("pods") or ()
        if pod.get("placedAt")
    ]


def _remember(
    entry: Mapping[str, Any], placed: set[tuple[str, str]], states: dict[str, State]
) -> None:
    """Count ``entry`` as recorded in ``placed`` and ``states``."""
    placed.update(_placed(entry))
    states[str(entry.get("workload"))] = _state(entry)


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
