"""What one ledger record says: a decision and the facts it was made on, as they stood.

Why this module exists: an auditor asks years later where a workload ran, under which legal
regime, which certification covered its run and why that pool. The GpuPool may have changed or
gone by then, so a record copies the facts the decision used when it was made: the pool's
location, jurisdiction (legal home, exposures, the regimes it belongs to) and certifications
(each with whether it covered the whole expected run), the governing policies' names,
generations and spec digests, the carbon signal with its source and age, the objective's
values, the budget charge and the operator's version. Pure (domain values in, plain JSON out),
so the wording is unit-tested and the report (``report``) reads the same field names.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from greenplace.api import timestamps
from greenplace.domain import model

__all__ = ["PolicyFacts", "SignalFacts", "decision_entry", "pool_facts", "recovered_entry"]

KIND_DECISION = "decision"
# A placement found on a pod (its signed record) that the ledger did not hold: the operator
# stopped between the pod's write and the ledger's append; copied from the pod's record.
KIND_RECOVERED = "recovered"


@dataclasses.dataclass(frozen=True)
class PolicyFacts:
    """A governing PlacementPolicy as it stood: ``ns/name``, generation, spec digest."""

    key: str
    generation: int
    spec_sha256: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.key, "generation": self.generation, "specSha256": self.spec_sha256}


@dataclasses.dataclass(frozen=True)
class SignalFacts:
    """The grid's carbon intensity a pool was judged with (before the pool's PUE, which the
    pool's facts hold), where it came from and how old it was."""

    gco2_per_kwh: float | None
    source: str | None
    age_seconds: float | None

    def as_json(self) -> dict[str, Any]:
        return {
            "gco2PerKwh": self.gco2_per_kwh,
            "source": self.source,
            "ageSeconds": None if self.age_seconds is None else round(self.age_seconds, 3),
        }


def _at(value: datetime.datetime | None) -> str | None:
    return None if value is None else timestamps.rfc3339(value)


def regimes_of(pool: model.Pool) -> list[str]:
    """The legal regimes (``model.REGIMES``) holding both the pool's country and its provider's
    legal home: what a regime rule would have accepted."""
    if pool.jurisdiction is None:
        return []
    home, country = pool.jurisdiction.legal_home, pool.location.country
    return sorted(name for name, members in model.REGIMES.items() if {home, country} <= members)


def pool_facts(pool: model.Pool, start: datetime.datetime, hours: float | None) -> dict[str, Any]:
    """A pool's location, jurisdiction and certifications as they stand; each certification
    says whether it covers ``start`` to ``start + hours`` (None: the run's length unknown)."""
    end = None if hours is None else start + datetime.timedelta(hours=hours)
    jurisdiction = pool.jurisdiction
    return {
        "name": pool.name,
        "provider": pool.location.provider,
        "region": pool.location.region,
        "zone": pool.location.zone,
        "country": pool.location.country,
        "gridZone": pool.location.grid_zone,
        "gpuModel": pool.gpu_model,
        "jurisdiction": None
        if jurisdiction is None
        else {
            "legalHome": jurisdiction.legal_home,
            "exposures": sorted(jurisdiction.all_exposures),
            "regimes": regimes_of(pool),
        },
        "certifications": [
            {
                "name": c.name,
                "level": c.level,
                "validFrom": _at(c.valid_from),
                "validUntil": _at(c.valid_until),
                "coversRun": None if end is None else c.valid_over(start, end),
                # backed by a credential that verified (why one did not is on the GpuPool's
                # status and the decision's message: a record stays within its 2 KiB)
                "verified": c.verified,
            }
            for c in pool.certifications
        ],
        "pricePerGpuHour": pool.price_per_gpu_hour,
        "currency": pool.currency,
        "pue": pool.pue,
    }


def decision_entry(
    decision: model.Decision,
    *,
    at: datetime.datetime,
    workload: model.Workload | None,
    pods: Sequence[tuple[str, str, str | None]],
    pool: model.Pool | None,
    policies: Sequence[PolicyFacts],
    carbon: SignalFacts | None,
    charge: Mapping[str, Any] | None,
    version: str,
) -> dict[str, Any]:
    """The entry for one decision of a cycle: ``pods`` are (name, uid, time of its signed
    placement record or None) of the pods it concerns (for a placement: those whose write
    succeeded), ``charge`` what their records charged."""
    namespace, _, name = decision.workload.partition("/")
    hours = workload.duration_hours if workload is not None else None
    return {
        "kind": KIND_DECISION,
        "workload": decision.workload,
        "namespace": namespace,
        "name": name,
        "pods": [{"name": n, "uid": u, "placedAt": t} for n, u, t in pods],
        "gpus": workload.gpus if workload is not None else None,
        "durationHours": hours,
        "outcome": decision.outcome.value,
        "reason": decision.reason.value,
        "message": decision.message,
        "notBefore": _at(decision.not_before),
        "pool": None if pool is None else pool_facts(pool, at, hours),
        "policies": [p.as_json() for p in policies],
        "signals": {"carbon": None if carbon is None else carbon.as_json()},
        "objective": {
            "cost": decision.cost,
            "kgCO2e": decision.kgco2e,
            "objective": decision.objective,
        },
        "charge": None if charge is None else dict(charge),
        "operatorVersion": version,
    }


def recovered_entry(
    namespace: str,
    pod: tuple[str, str],
    record: Mapping[str, Any],
    *,
    pool: model.Pool | None,
    version: str,
) -> dict[str, Any]:
    """The entry for a placement read back from a pod's signed record (``KIND_RECOVERED``):
    the record's own words (pool, reason, policies, charge, time), and the pool's facts as
    they stand when recovered (said so by ``kind``)."""
    placed_at = timestamps.parse_rfc3339(record.get("at"))
    return {
        "kind": KIND_RECOVERED,
        "workload": f"{namespace}/{pod[0]}",
        "namespace": namespace,
        "name": pod[0],
        "pods": [{"name": pod[0], "uid": pod[1], "placedAt": record.get("at")}],
        "placedAt": record.get("at"),
        "outcome": model.Outcome.PLACED.value,
        "reason": record.get("reason"),
        "message": record.get("message"),
        "pool": None if pool is None or placed_at is None else pool_facts(pool, placed_at, None),
        "poolName": record.get("pool"),
        "policies": [{"name": p} for p in record.get("policies") or ()],
        "signals": {"carbon": {"gco2PerKwh": record.get("gco2PerKwh"), "source": None}},
        "charge": {"budgets": record.get("budgets") or [], **(record.get("charge") or {})},
        "operatorVersion": version,
    }
