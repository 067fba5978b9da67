"""A snapshot as a file (YAML or JSON): what ``greenplace explain`` reads and bug reports carry.

Why this module exists: a placement must be explainable after the fact and reproducible outside
the cluster. The operator (or a person) writes the planner's input to a file; ``explain`` and the
tests read it back into the same frozen values. Parsing is pure (text in, values out, no I/O) and
every error names the field path, e.g. ``pools[2].gpusFree: expected an integer, got 'eight'``.

What a person types is checked as the API server checks it, by the same rules: countries
(``location.country``, ``jurisdiction.legalHome``, ``allowedCountries``) with
``domain.countries.problem``, regimes against ``model.REGIMES``, and the data-residency label of a
workload with ``domain.countries.residency_problem``; so ``fr``, ``FRA`` or ``France`` is refused
here too, with the field and the fix. A key left out takes the domain model's default, never
one restated here.

Format (keys in camelCase, as in the CRDs; times in ISO 8601 with a zone; YAML is a superset of
JSON, so either works)::

    now: "2026-01-01T00:00:00Z"            # optional: the instant to plan at
    pools:
      - name: ovh-gra-h100
        location: {provider: ovhcloud, region: gra, country: FR, gridZone: FR, zone: gra-11}
        jurisdiction: {legalHome: FR, exposures: []}      # omit when unknown (fails closed)
        certifications: [{name: SecNumCloud, level: "3.2", validUntil: "2027-12-31T00:00:00Z"}]
        gpuModel: H100
        gpusTotal: 16
        gpusFree: 8
        pricePerGpuHour: 2.99
        spotPricePerGpuHour: 1.2         # optional
        currency: EUR
        pue: 1.26
        gco2PerKwh: 56                   # optional: unknown when absent
        gpuWatts: 700
        embodiedGco2PerGpuHour: 25
        gpusPerNode: 8
        nodeLabels: {greenplace.dev/pool: ovh-gra-h100}
    policies:
      - {namespace: ml, name: eu, matchLabels: {}, allowedCountries: [FR, DE],
         allowedRegimes: [EU], forbidExtraterritorial: true,
         requiredCertifications: [{name: SecNumCloud, minLevel: "3.2"}],
         maxGco2PerKwh: 200, carbonPricePerTco2e: 100, maxDelayHours: 8,
         deferralMinSavingFraction: 0.02, budget: team, carbonCeilingYieldsAtDeadline: true,
         onMissingCarbon: Hold}
    budgets:
      - {namespace: ml, name: team, currency: EUR, moneyLimit: 1000, moneySpent: 200,
         kgco2eLimit: 50, kgco2eSpent: 3, kwhLimit: 900, kwhSpent: 40,
         periodEnd: "2026-02-01T00:00:00Z", action: Defer}
    workloads:
      - {namespace: ml, name: train, gpus: 8, created: "2026-01-01T00:00:00Z",
         labels: {}, pods: [train-0], gpusPerPod: [8], durationHours: 4,
         maxDelayHours: 6, deadline: "2026-01-02T00:00:00Z", spot: false}
    forecasts:
      FR: {times: ["2026-01-01T00:00:00Z", ...], values: [56, ...]}
"""

from __future__ import annotations

import datetime
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import yaml

from greenplace import errors
from greenplace.domain import countries, model, series

__all__ = ["SnapshotFileError", "dumps", "loads"]

T = TypeVar("T")


class SnapshotFileError(errors.GreenplaceError, ValueError):
    """The file is not a valid snapshot; the message names the field and what was expected."""


def loads(text: str) -> tuple[model.Snapshot, datetime.datetime | None]:
    """Parse a snapshot file's text; return the snapshot and its ``now`` (None if absent)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SnapshotFileError(f"not YAML or JSON: {error}") from error
    root = _Node(document if document is not None else {}, "")
    snapshot = model.Snapshot(
        pools=tuple(_pool(n) for n in root.items("pools")),
        policies=tuple(_policy(n) for n in root.items("policies")),
        workloads=tuple(_workload(n) for n in root.items("workloads")),
        budgets=tuple(_budget(n) for n in root.items("budgets")),
        forecasts={zone: _series(n) for zone, n in root.entries("forecasts")},
    )
    return snapshot, root.opt("now", _time)


def dumps(snapshot: model.Snapshot, now: datetime.datetime | None = None) -> str:
    """The text of a snapshot file that ``loads`` reads back into an equal snapshot."""
    document: dict[str, Any] = {} if now is None else {"now": _iso(now)}
    document["pools"] = [_pool_doc(p) for p in snapshot.pools]
    document["policies"] = [_policy_doc(p) for p in snapshot.policies]
    document["budgets"] = [_budget_doc(b) for b in snapshot.budgets]
    document["workloads"] = [_workload_doc(w) for w in snapshot.workloads]
    document["forecasts"] = {
        zone: {"times": [_iso(t) for t in s.times], "values": list(s.values)}
        for zone, s in snapshot.forecasts.items()
    }
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


class _Node:
    """One mapping of the document, with its path for error messages."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, Mapping):
            raise SnapshotFileError(f"{path or 'the file'}: expected a mapping, got {value!r}")
        self.value: Mapping[str, Any] = value
        self.path = path

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def req(self, key: str, convert: Callable[[object, str], T]) -> T:
        if key not in self.value:
            raise SnapshotFileError(f"{self._where(key)}: required")
        return convert(self.value[key], self._where(key))

    def opt(self, key: str, convert: Callable[[object, str], T]) -> T | None:
        value = self.value.get(key)
        return None if value is None else convert(value, self._where(key))

    def get(self, key: str, convert: Callable[[object, str], T], default: T) -> T:
        value = self.opt(key, convert)
        return default if value is None else value

    def items(self, key: str) -> list[_Node]:
        values = self.value.get(key) or []
        if not isinstance(values, list):
            raise SnapshotFileError(f"{self._where(key)}: expected a list")
        return [_Node(v, f"{self._where(key)}[{i}]") for i, v in enumerate(values)]

    def entries(self, key: str) -> list[tuple[str, _Node]]:
        node = _Node(self.value.get(key) or {}, self._where(key))
        return [(str(k), _Node(v, node._where(str(k)))) for k, v in node.value.items()]

    def node(self, key: str) -> _Node | None:
        value = self.value.get(key)
        return None if value is None else _Node(value, self._where(key))


def _str(value: object, path: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise SnapshotFileError(f"{path}: expected a string, got {value!r}")
    return str(value)


def _int(value: object, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SnapshotFileError(f"{path}: expected an integer, got {value!r}")
    return value


def _float(value: object, path: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise SnapshotFileError(f"{path}: expected a number, got {value!r}")
    return float(value)


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise SnapshotFileError(f"{path}: expected true or false, got {value!r}")
    return value


def _time(value: object, path: str) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        when = value
    elif isinstance(value, datetime.date):
        when = datetime.datetime.combine(value, datetime.time(), datetime.UTC)
    else:
        try:
            when = datetime.datetime.fromisoformat(_str(value, path))
        except ValueError as error:
            raise SnapshotFileError(f"{path}: expected an ISO 8601 time, got {value!r}") from error
    if when.tzinfo is None:
        raise SnapshotFileError(f"{path}: {value!r} has no time zone; add Z or +00:00")
    return when


def _hours(value: object, path: str) -> datetime.timedelta:
    return datetime.timedelta(hours=_float(value, path))


def _strings(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SnapshotFileError(f"{path}: expected a list of strings")
    return tuple(_str(v, f"{path}[{i}]") for i, v in enumerate(value))


def _ints(value: object, path: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise SnapshotFileError(f"{path}: expected a list of integers")
    return tuple(_int(v, f"{path}[{i}]") for i, v in enumerate(value))


def _labels(value: object, path: str) -> dict[str, str]:
    node = _Node(value, path)
    return {str(k): _str(v, node._where(str(k))) for k, v in node.value.items()}


# The domain model's defaults, read from values built with only their required fields: a key
# left out of the file means what it means everywhere else (one place for each default).
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_LOCATION = model.Location(provider="", region="", country="", grid_zone="")
_POOL = model.Pool("", _LOCATION, "", gpus_total=0, gpus_free=0, price_per_gpu_hour=0, currency="")
_CERTIFICATION = model.Certification("", valid_until=_EPOCH)
_REQUIREMENT = model.CertificationRequirement("")
_POLICY = model.Policy(namespace="", name="")
_BUDGET = model.Budget(namespace="", name="")
_WORKLOAD = model.Workload(namespace="", name="", gpus=0, created=_EPOCH)


def _country(value: object, path: str) -> str:
    code = _str(value, path)
    wrong = countries.problem(code)
    if wrong is not None:
        raise SnapshotFileError(f"{path}: {wrong}")
    return code


def _country_or_unknown(value: object, path: str) -> str:
    """A country, or the empty string: a location not known (every country rule fails)."""
    return "" if value == "" else _country(value, path)


def _countries(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise SnapshotFileError(f"{path}: expected a list of country codes")
    return tuple(_country(v, f"{path}[{i}]") for i, v in enumerate(value))


def _regimes(value: object, path: str) -> tuple[str, ...]:
    found = _strings(value, path)
    for i, regime in enumerate(found):
        if regime not in model.REGIMES:
            allowed = ", ".join(sorted(model.REGIMES))
            raise SnapshotFileError(f"{path}[{i}]: expected one of {allowed}, got {regime!r}")
    return found


def _workload_labels(value: object, path: str) -> dict[str, str]:
    labels = _labels(value, path)
    residency = labels.get(model.DATA_RESIDENCY_LABEL)
    wrong = None if residency is None else countries.residency_problem(residency)
    if wrong is not None:
        raise SnapshotFileError(f"{path}.{model.DATA_RESIDENCY_LABEL}: {wrong}")
    return labels


def _action(value: object, path: str) -> model.BudgetAction:
    try:
        return model.BudgetAction(_str(value, path))
    except ValueError as error:
        allowed = ", ".join(a.value for a in model.BudgetAction)
        raise SnapshotFileError(f"{path}: expected one of {allowed}, got {value!r}") from error


def _on_missing(value: object, path: str) -> typing.Literal["Hold", "CostOnly"]:
    text = _str(value, path)
    if text == "Hold":
        return "Hold"
    if text == "CostOnly":
        return "CostOnly"
    raise SnapshotFileError(f"{path}: expected one of Hold, CostOnly, got {value!r}")


def _pool(node: _Node) -> model.Pool:
    location = node.node("location") or _Node({}, node._where("location"))
    jurisdiction = node.node("jurisdiction")
    return model.Pool(
        name=node.req("name", _str),
        location=model.Location(
            provider=location.get("provider", _str, ""),
            region=location.get("region", _str, ""),
            country=location.get("country", _country_or_unknown, ""),
            grid_zone=location.get("gridZone", _str, ""),
            zone=location.get("zone", _str, _LOCATION.zone),
        ),
        gpu_model=node.get("gpuModel", _str, ""),
        gpus_total=node.req("gpusTotal", _int),
        gpus_free=node.req("gpusFree", _int),
        price_per_gpu_hour=node.req("pricePerGpuHour", _float),
        # A pool that names no currency is priced in the one budgets default to.
        currency=node.get("currency", _str, _BUDGET.currency),
        pue=node.get("pue", _float, _POOL.pue),
        gco2_per_kwh=node.opt("gco2PerKwh", _float),
        node_labels=node.get("nodeLabels", _labels, dict(_POOL.node_labels)),
        jurisdiction=None
        if jurisdiction is None
        else model.Jurisdiction(
            legal_home=jurisdiction.req("legalHome", _country),
            exposures=frozenset(jurisdiction.opt("exposures", _strings) or ()),
        ),
        certifications=tuple(
            model.Certification(
                name=c.req("name", _str),
                level=c.get("level", _str, _CERTIFICATION.level),
                valid_until=c.req("validUntil", _time),
                valid_from=c.opt("validFrom", _time),
                verified=c.get("verified", _bool, _CERTIFICATION.verified),
                unverified=c.opt("unverified", _str),
            )
            for c in node.items("certifications")
        ),
        spot_price_per_gpu_hour=node.opt("spotPricePerGpuHour", _float),
        gpu_watts=node.get("gpuWatts", _float, _POOL.gpu_watts),
        embodied_gco2_per_gpu_hour=node.get(
            "embodiedGco2PerGpuHour", _float, _POOL.embodied_gco2_per_gpu_hour
        ),
        gpus_per_node=node.opt("gpusPerNode", _int),
    )


def _policy(node: _Node) -> model.Policy:
    allowed = node.opt("allowedCountries", _countries)
    regimes = node.opt("allowedRegimes", _regimes)
    return model.Policy(
        namespace=node.req("namespace", _str),
        name=node.req("name", _str),
        match_labels=node.get("matchLabels", _labels, dict(_POLICY.match_labels)),
        allowed_countries=None if allowed is None else frozenset(allowed),
        max_gco2_per_kwh=node.opt("maxGco2PerKwh", _float),
        allowed_regimes=None if regimes is None else frozenset(regimes),
        forbid_extraterritorial=node.get(
            "forbidExtraterritorial", _bool, _POLICY.forbid_extraterritorial
        ),
        required_certifications=tuple(
            model.CertificationRequirement(
                r.req("name", _str),
                r.get("minLevel", _str, _REQUIREMENT.min_level),
                r.get("verified", _bool, _REQUIREMENT.verified),
            )
            for r in node.items("requiredCertifications")
        ),
        carbon_price_per_tco2e=node.get(
            "carbonPricePerTco2e", _float, _POLICY.carbon_price_per_tco2e
        ),
        max_delay=node.opt("maxDelayHours", _hours),
        deferral_min_saving_fraction=node.get(
            "deferralMinSavingFraction",
            _float,
            _POLICY.deferral_min_saving_fraction,
        ),
        budget=node.opt("budget", _str),
        carbon_ceiling_yields_at_deadline=node.get(
            "carbonCeilingYieldsAtDeadline",
            _bool,
            _POLICY.carbon_ceiling_yields_at_deadline,
        ),
        on_missing_carbon=node.get("onMissingCarbon", _on_missing, _POLICY.on_missing_carbon),
    )


def _budget(node: _Node) -> model.Budget:
    action = node.get("action", _action, _BUDGET.action)
    if action == model.BudgetAction.DEFER and node.opt("periodEnd", _time) is None:
        # A deferral to the next period needs the period's end, or it would defer to no time.
        raise SnapshotFileError(
            f"{node._where('periodEnd')}: required when action is Defer (the budget defers work "
            "to this instant); fix: give the period's end, or action Reject or Downgrade"
        )
    return model.Budget(
        namespace=node.req("namespace", _str),
        name=node.req("name", _str),
        currency=node.get("currency", _str, _BUDGET.currency),
        money_limit=node.opt("moneyLimit", _float),
        money_spent=node.get("moneySpent", _float, _BUDGET.money_spent),
        kgco2e_limit=node.opt("kgco2eLimit", _float),
        kgco2e_spent=node.get("kgco2eSpent", _float, _BUDGET.kgco2e_spent),
        kwh_limit=node.opt("kwhLimit", _float),
        kwh_spent=node.get("kwhSpent", _float, _BUDGET.kwh_spent),
        period_end=node.opt("periodEnd", _time),
        action=action,
    )


def _workload(node: _Node) -> model.Workload:
    name = node.req("name", _str)
    return model.Workload(
        namespace=node.req("namespace", _str),
        name=name,
        gpus=node.req("gpus", _int),
        created=node.req("created", _time),
        labels=node.get("labels", _workload_labels, dict(_WORKLOAD.labels)),
        pods=node.get("pods", _strings, (name,)),  # the file's own default: one pod, its name
        duration_hours=node.get("durationHours", _float, _WORKLOAD.duration_hours),
        max_delay=node.opt("maxDelayHours", _hours),
        deadline=node.opt("deadline", _time),
        spot=node.get("spot", _bool, _WORKLOAD.spot),
        gpus_per_pod=node.get("gpusPerPod", _ints, _WORKLOAD.gpus_per_pod),
    )


def _series(node: _Node) -> series.TimeSeries:
    empty: list[object] = []
    raw_times = node.get("times", _list, empty)
    raw_values = node.get("values", _list, empty)
    times = [_time(t, f"{node.path}.times[{i}]") for i, t in enumerate(raw_times)]
    values = [_float(v, f"{node.path}.values[{i}]") for i, v in enumerate(raw_values)]
    try:
        return series.TimeSeries(tuple(times), tuple(values))
    except ValueError as error:
        raise SnapshotFileError(f"{node.path}: {error}") from error


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise SnapshotFileError(f"{path}: expected a list")
    return value


def _iso(when: datetime.datetime) -> str:
    return when.isoformat()


def _hours_doc(delay: datetime.timedelta | None) -> float | None:
    return None if delay is None else delay.total_seconds() / 3600


def _pool_doc(pool: model.Pool) -> dict[str, Any]:
    location = pool.location
    return {
        "name": pool.name,
        "location": {
            "provider": location.provider,
            "region": location.region,
            "country": location.country,
            "gridZone": location.grid_zone,
            "zone": location.zone,
        },
        "jurisdiction": None
        if pool.jurisdiction is None
        else {
            "legalHome": pool.jurisdiction.legal_home,
            "exposures": sorted(pool.jurisdiction.exposures),
        },
        "certifications": [
            {
                "name": c.name,
                "level": c.level,
                "validUntil": _iso(c.valid_until),
                "validFrom": None if c.valid_from is None else _iso(c.valid_from),
                "verified": c.verified,
                "unverified": c.unverified,
            }
            for c in pool.certifications
        ],
        "gpuModel": pool.gpu_model,
        "gpusTotal": pool.gpus_total,
        "gpusFree": pool.gpus_free,
        "pricePerGpuHour": pool.price_per_gpu_hour,
        "spotPricePerGpuHour": pool.spot_price_per_gpu_hour,
        "currency": pool.currency,
        "pue": pool.pue,
        "gco2PerKwh": pool.gco2_per_kwh,
        "gpuWatts": pool.gpu_watts,
        "embodiedGco2PerGpuHour": pool.embodied_gco2_per_gpu_hour,
        "gpusPerNode": pool.gpus_per_node,
        "nodeLabels": dict(pool.node_labels),
    }


def _policy_doc(policy: model.Policy) -> dict[str, Any]:
    return {
        "namespace": policy.namespace,
        "name": policy.name,
        "matchLabels": dict(policy.match_labels),
        "allowedCountries": None
        if policy.allowed_countries is None
        else sorted(policy.allowed_countries),
        "allowedRegimes": None
        if policy.allowed_regimes is None
        else sorted(policy.allowed_regimes),
        "forbidExtraterritorial": policy.forbid_extraterritorial,
        "requiredCertifications": [
            {"name": r.name, "minLevel": r.min_level, "verified": r.verified}
            for r in policy.required_certifications
        ],
        "maxGco2PerKwh": policy.max_gco2_per_kwh,
        "carbonPricePerTco2e": policy.carbon_price_per_tco2e,
        "maxDelayHours": _hours_doc(policy.max_delay),
        "deferralMinSavingFraction": policy.deferral_min_saving_fraction,
        "budget": policy.budget,
        "carbonCeilingYieldsAtDeadline": policy.carbon_ceiling_yields_at_deadline,
        "onMissingCarbon": policy.on_missing_carbon,
    }


def _budget_doc(budget: model.Budget) -> dict[str, Any]:
    return {
        "namespace": budget.namespace,
        "name": budget.name,
        "currency": budget.currency,
        "moneyLimit": budget.money_limit,
        "moneySpent": budget.money_spent,
        "kgco2eLimit": budget.kgco2e_limit,
        "kgco2eSpent": budget.kgco2e_spent,
        "kwhLimit": budget.kwh_limit,
        "kwhSpent": budget.kwh_spent,
        "periodEnd": None if budget.period_end is None else _iso(budget.period_end),
        "action": budget.action.value,
    }


def _workload_doc(workload: model.Workload) -> dict[str, Any]:
    return {
        "namespace": workload.namespace,
        "name": workload.name,
        "gpus": workload.gpus,
        "created": _iso(workload.created),
        "labels": dict(workload.labels),
        "pods": list(workload.pods),
        "gpusPerPod": list(workload.gpus_per_pod),
        "durationHours": workload.duration_hours,
        "maxDelayHours": _hours_doc(workload.max_delay),
        "deadline": None if workload.deadline is None else _iso(workload.deadline),
        "spot": workload.spot,
    }
