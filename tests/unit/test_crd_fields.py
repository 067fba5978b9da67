"""No CRD field accepted and then ignored: every spec field is proven to change what the operator
does (issue 12 item 5).

Why this module exists: the API server accepts whatever the schema allows, so a field nothing
reads misleads every user who sets it (``alertThresholds`` was accepted and never read). This
module walks every spec field of every CRD itself, from the pydantic models that generate
``crds/`` (``api.crdgen.KINDS``): recursively, through nested objects and list items. Each leaf
field needs an entry in ``USES`` (field path -> where it is used, which is also the table of
docs/crd-fields.md), and each entry is proven by a differential probe: a valid object with the
field at one value and with it at another (its default, or absent, where it has one) goes
through the operator's real code for that kind, and the two results must differ:

- GpuPool: ``api.convert.pool_to_domain`` (the planner's pool);
- PlacementPolicy: ``api.convert.policy_to_domain`` (the planner's policy);
- Budget: ``controller.budgets.domain_budgets`` (the planner's budgets, period end included);
- SignalSource: behaviour probe ``observe_signal_source``: ``controller.feeds.Feeds.read`` over
  real trace files, mounted Secrets and a local HTTP peer on 127.0.0.1 that records every
  request (the readings, the forecasts and the requests must differ);
- EnergyReport: behaviour probe ``observe_report``: ``controller.reports.Reporter.run`` against a
  fake Prometheus (``tests.promfake``), the URLs it queried, the PromQL it asked and the status
  it wrote.

A field added to a model without an entry fails ``test_every_spec_field_has_an_entry``; an entry
whose probe shows no difference fails ``test_field_changes_what_the_operator_does``. Only the
fields of ``BEING_WIRED`` may lack an entry (work in progress on issue 12; the set must be empty
when the issue is resolved). ``FOUND_IGNORED`` lists fields this test found ignored and nobody is
wiring yet: each is a strict xfail, so it is visible in every run and the test fails the day the
field is wired without being moved into ``USES``.

Regenerate the docs page with ``.venv/bin/python -m tests.unit.test_crd_fields``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime
import http.server
import json
import pathlib
import threading
import types
import typing
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import prometheus_client
import pydantic
import pytest
from pyarrow import fs
from pydantic import alias_generators

from greenplace.accounting import focus, telemetry
from greenplace.api import convert, crdgen, models
from greenplace.audit import credentials as vc
from greenplace.controller import budgets, credentials, exports, feeds, reports, status, workers
from greenplace.controller import cache as cache_
from greenplace.domain import model
from tests import builders, hostile, promfake, providers
from tests import credentials as issuing

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "crd-fields.md"
NOW = providers.NOW
ABSENT = object()  # as a probe's other value: the field left out (its default applies)

# Fields other engineers are wiring right now (issue 12; the spot price was removed from the
# CRD, pod and Job time declarations are annotations, not CRD fields). An entry here may lack a
# USES entry and may be missing from the models. Must be empty when issue 12 is resolved.
BEING_WIRED: frozenset[str] = frozenset()
# Fields this test found accepted and ignored, with what ignores them; the fix is to wire or
# remove each. Strict xfails: visible in every run, failing once wired without an entry.
FOUND_IGNORED: dict[str, str] = {}


# ---------------------------------------------------------------- walking the models


def _models_in(annotation: Any) -> tuple[str, type[pydantic.BaseModel]] | None:
    """The model a field holds (``""`` itself, ``"[]"`` as list items), or None for a leaf."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return "", annotation
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        found = [m for a in typing.get_args(annotation) if (m := _models_in(a)) is not None]
        return found[0] if found else None
    if origin is list:
        inner = _models_in(typing.get_args(annotation)[0])
        return None if inner is None else ("[]" + inner[0], inner[1])
    if origin is dict:
        inner = _models_in(typing.get_args(annotation)[1])
        return None if inner is None else ("{}" + inner[0], inner[1])
    return None


def leaf_fields(model: type[pydantic.BaseModel], prefix: str) -> Iterator[str]:
    """Every leaf field of ``model`` and of the models nested in it, as wire paths."""
    for name, info in model.model_fields.items():
        # An alias set on the field, else the models' generator (camelCase), as on the wire.
        path = f"{prefix}.{info.alias or alias_generators.to_camel(name)}"
        nested = _models_in(info.annotation)
        if nested is None:
            yield path
        else:
            yield from leaf_fields(nested[1], path + nested[0])


def spec_fields() -> list[str]:
    return [f for kind in crdgen.KINDS for f in leaf_fields(kind.spec, f"{kind.kind}.spec")]


def status_fields() -> list[str]:
    return [f for kind in crdgen.KINDS for f in leaf_fields(kind.status, f"{kind.kind}.status")]


# ---------------------------------------------------------------- the probes' inputs

# Every spec field at a valid value (tests.hostile.FULL), other than its default where the
# probe removes them.
# Its first certification is backed by a credential (ConfigMap vc, key token: ``CREDENTIALS``).
VC_REF = {"configMapKeyRef": {"name": "vc", "key": "token"}}
POOL: dict[str, Any] = {
    **hostile.FULL["GpuPool"],
    "certifications": [
        {**hostile.FULL["GpuPool"]["certifications"][0], "credential": VC_REF},
        *hostile.FULL["GpuPool"]["certifications"][1:],
    ],
}
POLICY: dict[str, Any] = {
    **hostile.FULL["PlacementPolicy"],
    "carbon": {
        "maxGramsPerKwh": 100,
        "ceilingYieldsAtDeadline": False,
        "onMissingSignal": "CostOnly",
    },
    "deferral": {"maxDelay": "2h", "minSaving": 0.1},
}
BUDGET: dict[str, Any] = {
    "period": "Week",
    "currency": "USD",
    "limits": {"money": 100, "kgCO2e": 5, "kWh": 50},
    "alertThresholds": [0.5],
    "action": "Reject",
}
REPORT: dict[str, Any] = {
    "window": "2h",
    "windowEnd": "2026-03-01T11:00:00Z",
    "prometheus": {"url": "http://prom:9090"},
    "migSlicesTotal": 4,
    # Every row (a few Wh, tenths of a gCO2e per request) grades E on the default scales, A here.
    "grading": {"energyWhPerRequest": [10, 20, 30, 40], "carbonGCO2ePerRequest": [1, 2, 3, 4]},
    "scope": "Cluster",
}
# SignalSource specs: "PEER" is the local HTTP peer's URL, "TRACES" the trace directory.
STATIC: dict[str, Any] = {"name": "s", "kind": "Static", "static": {"values": {"FR": 10, "DE": 20}}}
TRACE: dict[str, Any] = {
    "name": "t",
    "kind": "Trace",
    "ttl": "10h",
    "trace": {"files": {"FR": "TRACES/a.csv"}},
}
PROMETHEUS: dict[str, Any] = {
    "name": "prom",
    "kind": "Prometheus",
    "timeout": "100ms",
    "prometheus": {"url": "PEER/slow", "query": 'carbon{zone="$subject"}'},
}
PROMETHEUS_FAST: dict[str, Any] = {
    **PROMETHEUS,
    "timeout": "1s",
    "prometheus": {**PROMETHEUS["prometheus"], "url": "PEER"},
}
EM: dict[str, Any] = {
    "name": "em",
    "kind": "ElectricityMaps",
    "electricityMaps": {"url": "PEER"},
    "zoneMapping": {"FR": "FR-COR"},
    "credentialsSecretRef": {"name": "em", "namespace": "gp", "key": "tok"},
}
WATTTIME: dict[str, Any] = {
    "name": "wt",
    "kind": "WattTime",
    "wattTime": {"url": "PEER"},
    "zoneMapping": {"FR": "FR-REGION"},
    "credentialsSecretRef": {"name": "wt", "namespace": "gp"},
}
WATTTIME_REF = WATTTIME["credentialsSecretRef"]
OWN_NAMESPACE = "gp"  # the operator's namespace, where its Secrets are


def source(*entries: Mapping[str, Any], **spec: Any) -> dict[str, Any]:
    return {"zones": ["FR"], "sources": [dict(e) for e in entries], **spec}


@dataclasses.dataclass(frozen=True)
class Use:
    """Where a field is used, and how its probe varies it.

    ``where``: the module:function reading it and what it does with it (documentation).
    ``other``: the second value of the probe (``ABSENT``: left out). ``at``: the path the
    probe changes in ``base`` (default: the field's own path, list items at index 0).
    ``base``: the spec both sides start from (default: the kind's full spec).
    """

    where: str
    other: Any = ABSENT
    at: tuple[str | int, ...] | None = None
    base: Mapping[str, Any] | None = None


P = "api.convert.pool_to_domain"
CR = "controller.credentials.Credentials.read"
# The certification credentials the pool probe serves: pool p's SecNumCloud 3.2, signed.
CERTIFIER = issuing.Certifier.ed25519()
_TOKEN = CERTIFIER.issue(
    "p",
    level="3.2",
    valid_from=NOW - datetime.timedelta(days=1),
    valid_until=NOW + datetime.timedelta(days=2000),
)
CREDENTIALS = {("ConfigMap", "vc"): {"token": _TOKEN}, ("Secret", "vc"): {"token": _TOKEN}}
SECRET_POOL = {
    **POOL,
    "certifications": [
        {
            **POOL["certifications"][0],
            "credential": {"secretKeyRef": {"name": "vc", "key": "token"}},
        }
    ],
}
POL = "api.convert.policy_to_domain"
B = "controller.budgets.domain_budgets -> api.convert.budget_to_domain"
F = "controller.feeds.Feeds._build"
R = "controller.reports.Reporter._one"
FO = "accounting.focus.PoolClaim.claims (greenplace finops reconcile)"
BE = "controller.exports.BillingExports"
# BillingExport specs: "FILES" is a directory of FOCUS files; the object store's buckets are
# directories of "STORE" (pyarrow's local filesystem behind the S3 filesystem's factory).
FOCUS_EXPORT = pathlib.Path(__file__).resolve().parents[1] / "data" / "focus" / "example-fleet.csv"
EXPORT_SECRETS = {
    "bills": {"id": "AK1", "secret": "SK1", "accessKeyId": "AK0", "secretAccessKey": "SK0"},
    "bills2": {"id": "AK2", "secret": "SK2"},
}
S3_BASE: dict[str, Any] = {**hostile.FULL["BillingExport"], "s3": {
    **hostile.FULL["BillingExport"]["s3"], "endpoint": "http://127.0.0.1:9000"}}  # fmt: skip
S3_PREFIX: dict[str, Any] = {**S3_BASE, "s3": {
    **{k: v for k, v in S3_BASE["s3"].items() if k != "keys"}, "prefix": "focus"}}  # fmt: skip
FILE_BASE: dict[str, Any] = {"interval": "10m", "file": {"paths": ["FILES/2026-12.csv"]}}


USES: dict[str, Use] = {
    # GpuPool
    "GpuPool.spec.nodeSelector": Use(
        f"{P} -> Pool.node_labels: the affinity a placed pod is narrowed to; "
        "controller.snapshot counts the matching nodes' GPUs",
        other={"greenplace.dev/pool": "p"},
    ),
    "GpuPool.spec.location.provider": Use(
        f"{P} -> Location.provider: descriptive (snapshot files, `kubectl get` column); no "
        "rule reads it",
        other="scaleway",
    ),
    "GpuPool.spec.location.region": Use(
        f"{P} -> Location.region: descriptive (snapshot files); no rule reads it", other="sbg"
    ),
    "GpuPool.spec.location.zone": Use(
        f"{P} -> Location.zone: descriptive (snapshot files); no rule reads it"
    ),
    "GpuPool.spec.location.country": Use(
        f"{P} -> Location.country: engine.rules country, regime and residency rules", other="DE"
    ),
    "GpuPool.spec.location.gridZone": Use(
        f"{P} -> Location.grid_zone: the zone whose SignalSource reading and forecast the pool "
        "gets (controller.snapshot), deferral per zone",
        other="DE",
    ),
    "GpuPool.spec.jurisdiction.legalHome": Use(
        f"{P} -> Jurisdiction.legal_home: engine.rules regime and extraterritorial rules",
        other="US",
    ),
    "GpuPool.spec.jurisdiction.exposures": Use(
        f"{P} -> Jurisdiction.exposures: engine.rules extraterritorial rule"
    ),
    "GpuPool.spec.certifications[].name": Use(
        f"{P} -> Certification.name: engine.rules.certificate_window", other="HDS"
    ),
    "GpuPool.spec.certifications[].level": Use(
        f"{P} -> Certification.level: engine.rules.certificate_window (minimum level)"
    ),
    "GpuPool.spec.certifications[].expires": Use(
        f"{P} -> Certification.valid_until (end of that day, UTC; with a credential, the "
        "earlier of it and the credential's exp): valid now and for the run",
        other="2028-01-31",
    ),
    "GpuPool.spec.certifications[].credential.configMapKeyRef.name": Use(
        f"{CR} -> ConfigMap read in the operator's namespace; verified or not: "
        "Certification.verified / unverified (engine.rules.certificate_window)",
        other="absent",
    ),
    "GpuPool.spec.certifications[].credential.configMapKeyRef.key": Use(
        f"{CR} -> the key of that ConfigMap holding the JWT", other="absent"
    ),
    "GpuPool.spec.certifications[].credential.secretKeyRef.name": Use(
        f"{CR} -> Secret read in the operator's namespace (listed in the chart value "
        "certificationCredentials.secrets); verified or not, as configMapKeyRef",
        other="absent",
        base=SECRET_POOL,
    ),
    "GpuPool.spec.certifications[].credential.secretKeyRef.key": Use(
        f"{CR} -> the key of that Secret holding the JWT", other="absent", base=SECRET_POOL
    ),
    "GpuPool.spec.gpu.model": Use(
        f"{P} -> Pool.gpu_model: descriptive (snapshot files, `kubectl get` column); pods pick "
        "GPU models by their own node constraints",
        other="A100",
    ),
    "GpuPool.spec.gpu.tdpWatts": Use(
        f"{P} -> Pool.gpu_watts: energy, carbon and kWh projections (engine.objective), the "
        "EnergyReport's modelled power",
        other=400,
    ),
    "GpuPool.spec.gpu.idleWatts": Use(
        f"{P} -> Pool.gpu_idle_watts: the EnergyReport's modelled power (tdp x utilisation + "
        "idle x (1 - utilisation)) when DCGM and Kepler give no energy",
        other=0,
    ),
    "GpuPool.spec.price.currency": Use(
        f"{P} -> Pool.currency: a Budget with a money limit refuses pools in another currency",
        other="USD",
    ),
    "GpuPool.spec.price.onDemandPerGpuHour": Use(
        f"{P} -> Pool.price_per_gpu_hour: ranking, budgets (unless a Price SignalSource answers)",
        other=5.0,
    ),
    "GpuPool.spec.pue": Use(f"{P} -> Pool.pue: effective intensity, energy, ceilings"),
    "GpuPool.spec.embodiedGramsPerGpuHour": Use(
        f"{P} -> Pool.embodied_gco2_per_gpu_hour: carbon projections and kgCO2e budgets"
    ),
    "GpuPool.spec.cluster": Use(
        "controller.workers.split_pools: a remote pool of that MultiKueue worker, planned only "
        "for Workloads greenplace dispatches (controller.dispatch), never for local pods "
        "(controller.snapshot.gather)",
        other="fr-secnumcloud",
    ),
    "GpuPool.spec.carbonIntensity.fallbackGramsPerKwh": Use(
        f"{P} -> Pool.gco2_per_kwh when no SignalSource answers for the grid zone",
        at=("carbonIntensity",),  # a required field of an optional block: the block goes
    ),
    "GpuPool.spec.billing.match.resourceIds": Use(
        f"{FO}: a charge is the pool's only if its ResourceId is one of these"
    ),
    "GpuPool.spec.billing.match.tags": Use(
        f"{FO}: a charge is the pool's only if it carries every one of these Tags"
    ),
    "GpuPool.spec.billing.match.regionIds": Use(
        f"{FO}: a charge is the pool's only if its RegionId is one of these"
    ),
    "GpuPool.spec.billing.match.skuIds": Use(
        f"{FO}: a charge is the pool's only if its SkuId is one of these"
    ),
    "GpuPool.spec.billing.match.subAccountIds": Use(
        f"{FO}: a charge is the pool's only if its SubAccountId is one of these"
    ),
    "GpuPool.spec.billing.gpusPerConsumedHour": Use(
        "accounting.focus.PoolClaim.gpu_hours: GPU-hours of a usage charge in hours, the "
        "denominator of the effective price per GPU-hour"
    ),
    # PlacementPolicy
    "PlacementPolicy.spec.podSelector.matchLabels": Use(
        f"{POL} -> Policy.match_labels: which pods the policy governs (Policy.selects)"
    ),
    "PlacementPolicy.spec.sovereignty.allowedCountries": Use(
        f"{POL} -> Policy.allowed_countries: engine.rules country rule"
    ),
    "PlacementPolicy.spec.sovereignty.allowedRegimes": Use(
        f"{POL} -> Policy.allowed_regimes: engine.rules regime rule"
    ),
    "PlacementPolicy.spec.sovereignty.forbidExtraterritorialExposure": Use(
        f"{POL} -> Policy.forbid_extraterritorial: engine.rules extraterritorial rule"
    ),
    "PlacementPolicy.spec.sovereignty.requiredCertifications[].name": Use(
        f"{POL} -> CertificationRequirement.name: engine.rules.certificate_window", other="HDS"
    ),
    "PlacementPolicy.spec.sovereignty.requiredCertifications[].verified": Use(
        f"{POL} -> CertificationRequirement.verified: engine.rules.certificate_window counts "
        "only certifications whose credential verified",
        other=True,
    ),
    "PlacementPolicy.spec.sovereignty.requiredCertifications[].minLevel": Use(
        f"{POL} -> CertificationRequirement.min_level: engine.rules.certificate_window"
    ),
    "PlacementPolicy.spec.carbon.maxGramsPerKwh": Use(
        f"{POL} -> Policy.max_gco2_per_kwh: engine.rules.ceiling_violation", other=200
    ),
    "PlacementPolicy.spec.carbon.ceilingYieldsAtDeadline": Use(
        f"{POL} -> Policy.carbon_ceiling_yields_at_deadline: the waived class at a latest start"
    ),
    "PlacementPolicy.spec.carbon.onMissingSignal": Use(
        f"{POL} -> Policy.on_missing_carbon: unknown intensity held or ranked on cost"
    ),
    "PlacementPolicy.spec.objective.carbonPricePerTonne": Use(
        f"{POL} -> Policy.carbon_price_per_tco2e: the ranking's objective", other=10
    ),
    "PlacementPolicy.spec.deferral.maxDelay": Use(
        f"{POL} -> Policy.max_delay: the deferral window of pods declaring none"
    ),
    "PlacementPolicy.spec.deferral.minSaving": Use(
        f"{POL} -> Policy.deferral_min_saving_fraction: the least saving worth waiting for"
    ),
    "PlacementPolicy.spec.budgetRef.name": Use(
        f"{POL} -> Policy.budget: the Budget charged and checked", other="other"
    ),
    # Budget
    "Budget.spec.period": Use(
        f"{B} -> Budget.period_end (api.convert.period_bounds); controller.budgets.Ledger "
        "restarts spending at each period",
        other="Month",
    ),
    "Budget.spec.currency": Use(f"{B} -> Budget.currency: pools priced otherwise are refused"),
    "Budget.spec.limits.money": Use(f"{B} -> Budget.money_limit"),
    "Budget.spec.limits.kgCO2e": Use(f"{B} -> Budget.kgco2e_limit"),
    "Budget.spec.limits.kWh": Use(f"{B} -> Budget.kwh_limit"),
    "Budget.spec.alertThresholds": Use(
        "controller.budgets.alerts: the ThresholdReached condition, one Warning Event per "
        "threshold and period, the alert metrics"
    ),
    "Budget.spec.action": Use(f"{B} -> Budget.action: Defer, Reject or Downgrade when exceeded"),
    # SignalSource
    "SignalSource.spec.signal": Use(
        "controller.feeds.Feeds.read: readings are grid zones' carbon or pools' prices",
        other="Price",
        base=source(STATIC),
    ),
    "SignalSource.spec.zones": Use(
        "controller.feeds.Feeds.read: the subjects read at each refresh",
        other=["FR"],
        base=source(STATIC, zones=["FR", "DE"]),
    ),
    "SignalSource.spec.fallbackOrder": Use(
        "controller.feeds.Feeds._chain: the order the chain tries its sources",
        base=source(STATIC, {**STATIC, "name": "s2"}, fallbackOrder=["s2", "s"]),
    ),
    "SignalSource.spec.sources[].name": Use(
        "controller.feeds.Feeds._build: the reading's source (status, metrics)",
        other="s3",
        base=source(STATIC),
    ),
    "SignalSource.spec.sources[].kind": Use(
        f"{F}: which client is built (an entry carries only its kind's block, so the probe "
        "switches between the two kinds whose block is optional: their vendors' own URLs)",
        other="ElectricityMaps",
        base=source({"name": "v", "kind": "WattTime", "credentialsSecretRef": WATTTIME_REF}),
    ),
    "SignalSource.spec.sources[].ttl": Use(
        f"{F} -> the source's ttl: older observations are stale (signals.chain)",
        base=source(TRACE),
    ),
    "SignalSource.spec.sources[].timeout": Use(
        f"{F} -> every network call's timeout (promql.Querier, signals.httpjson)",
        base=source(PROMETHEUS),
    ),
    "SignalSource.spec.sources[].static.values": Use(
        f"{F} -> signals.static.StaticSource values", other={"FR": 11}, base=source(STATIC)
    ),
    "SignalSource.spec.sources[].trace.files": Use(
        f"{F} -> signals.trace.from_csv_files (inside --trace-dir)",
        other={"FR": "TRACES/b.csv"},
        base=source(TRACE),
    ),
    "SignalSource.spec.sources[].trace.shift": Use(
        f"{F} -> signals.trace.TraceSource shift of every timestamp",
        base=source({**TRACE, "trace": {**TRACE["trace"], "shift": "1h"}}),
    ),
    "SignalSource.spec.sources[].prometheus.url": Use(
        f"{F} -> promql.Querier base URL (egress-checked)",
        other="PEER/other",
        base=source(PROMETHEUS_FAST),
    ),
    "SignalSource.spec.sources[].prometheus.query": Use(
        f"{F} -> promql.PrometheusSource query ($subject replaced)",
        other='other{zone="$subject"}',
        base=source(PROMETHEUS_FAST),
    ),
    "SignalSource.spec.sources[].electricityMaps.url": Use(
        f"{F} -> electricitymaps.ElectricityMapsSource base URL", other="PEER/v", base=source(EM)
    ),
    "SignalSource.spec.sources[].wattTime.url": Use(
        f"{F} -> watttime.WattTimeSource base URL", other="PEER/v", base=source(WATTTIME)
    ),
    "SignalSource.spec.sources[].zoneMapping": Use(
        f"{F} -> the provider's zone (Electricity Maps) or region (WattTime) per grid zone",
        base=source(EM),
    ),
    "SignalSource.spec.sources[].credentialsSecretRef.name": Use(
        f"{F} -> feeds.SecretFile: the mounted Secret read at each call",
        other="em2",
        base=source(EM),
    ),
    "SignalSource.spec.sources[].credentialsSecretRef.namespace": Use(
        "controller.feeds.SecretFile: refused unless the operator's own namespace",
        other="elsewhere",
        base=source(EM),
    ),
    "SignalSource.spec.sources[].credentialsSecretRef.key": Use(
        f"{F} -> the Secret key of the Electricity Maps token (WattTime reads username and "
        "password, as documented)",
        base=source(EM),
    ),
    # BillingExport
    "BillingExport.spec.format": Use(
        f"{BE}._Files.read / _S3.read -> accounting.focus.read_export: CSV or Parquet (Auto: "
        "by name)",
        other="Parquet",
    ),
    "BillingExport.spec.interval": Use(
        f"{BE}.refresh: when the export is listed again (status.nextReadTime)"
    ),
    "BillingExport.spec.file.paths": Use(
        f"{BE}._Files: the files stat'ed and read", other=["FILES/2026-11.csv"], base=FILE_BASE
    ),
    "BillingExport.spec.s3.endpoint": Use(
        f"{BE}._S3: the store's endpoint_override and scheme (default AWS S3)"
    ),
    "BillingExport.spec.s3.bucket": Use(f"{BE}._S3.list: the bucket listed", other="bills2"),
    "BillingExport.spec.s3.prefix": Use(
        f"{BE}._S3.list: every object under it", other="focus/nov", base=S3_PREFIX
    ),
    "BillingExport.spec.s3.keys": Use(f"{BE}._S3.list: these objects", other=["focus/2026-11.csv"]),
    "BillingExport.spec.s3.region": Use(f"{BE}._S3: the region requests are signed for"),
    "BillingExport.spec.s3.credentialsSecretRef.name": Use(
        f"{BE}._access_key: the Secret read (operator's namespace)", other="bills2"
    ),
    "BillingExport.spec.s3.credentialsSecretRef.accessKeyIdKey": Use(
        f"{BE}._access_key: the key holding the access key id"
    ),
    "BillingExport.spec.s3.credentialsSecretRef.secretAccessKeyKey": Use(
        f"{BE}._access_key: the key holding the secret access key"
    ),
    # EnergyReport
    "EnergyReport.spec.window": Use(f"{R} -> accounting.serving.measure window (PromQL range)"),
    "EnergyReport.spec.windowEnd": Use(f"{R}: the window's end (default: now)"),
    "EnergyReport.spec.prometheus.url": Use(
        f"{R}: the Prometheus queried (egress-checked)", other="http://prom2:9090"
    ),
    "EnergyReport.spec.serving": Use(
        f"{R} -> accounting.serving counters of vLLM, TGI or Triton", other="TGI"
    ),
    "EnergyReport.spec.migSlicesTotal": Use(
        f"{R} -> accounting.report.build: a MIG slice's share of its GPU"
    ),
    "EnergyReport.spec.grading.energyWhPerRequest": Use(f"{R} -> accounting.grading energy scale"),
    "EnergyReport.spec.grading.carbonGCO2ePerRequest": Use(
        f"{R} -> accounting.grading carbon scale"
    ),
    "EnergyReport.spec.scope": Use(
        f"{R}: Namespace reads its own pods, Cluster every namespace (own namespace only)"
    ),
}


# ---------------------------------------------------------------- observing the operator


def _billed(**columns: Any) -> focus.Charge:
    """A GPU usage charge of 2 instance-hours matching the full spec's billing rule, but for
    ``columns``."""
    fields: dict[str, Any] = {
        "where": f"probe {sorted(columns.items())}", "identity": repr(sorted(columns.items())),
        "billed": Decimal("10"), "effective": Decimal("8"), "listed": Decimal("12"),
        "currency": "EUR", "account": "acct", "period": focus.Period(
            datetime.datetime(2026, 11, 1, tzinfo=datetime.UTC),
            datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC),
        ),
        "category": "Usage", "charge_class": None, "service_name": "Compute",
        "service_subcategory": None, "commitment_id": None, "commitment_status": None,
        "consumed_quantity": Decimal(2), "consumed_unit": "Hours",
        "resource_id": "i-1", "region_id": "r", "sku_id": "sku", "sub_account_id": "sub",
        "tags": {"pool": hostile.NAME},
    }  # fmt: skip
    return focus.Charge(**(fields | columns))


# One charge the full rule claims, and one beside it for each criterion, differing there only.
BILL = focus.Export(
    charges=(
        _billed(),
        _billed(resource_id="i-2"),
        _billed(tags={"pool": "other"}),
        _billed(region_id="r2"),
        _billed(sku_id="sku2"),
        _billed(sub_account_id="sub2"),
    ),
    columns=frozenset(focus.REQUIRED_COLUMNS) | {"ResourceId", "Tags", "RegionId", "SkuId",
                                                 "SubAccountId"},
    duplicates=0,
    files=("probe",),
)  # fmt: skip


def observe_pool(spec: Mapping[str, Any], tmp: pathlib.Path) -> object:
    """The planner's pool (its certification credentials read from ``CREDENTIALS`` and verified
    by ``controller.credentials``), whether it is local or a remote pool of which worker, and
    what it claims of a FOCUS bill (``BILL``) at which price per GPU-hour."""
    parsed = models.GpuPoolSpec.model_validate(spec)
    cached = cache_.CachedPool("p", 1, parsed)
    local, remote = workers.split_pools([cached])
    trust = tmp / "issuers.yaml"
    trust.write_text(json.dumps([CERTIFIER.trust()]))
    reader = credentials.Credentials(
        None, "greenplace", trust, reader=lambda kind, _, name: _credential_object(kind, name)
    )
    checked = reader.read([cached], NOW).get("p")
    return (
        convert.pool_to_domain("p", parsed, gpus_total=8, gpus_free=8, checked=checked),
        [p.name for p in local],
        {cluster: [p.name for p in pools] for cluster, pools in remote.items()},
        _claimed(parsed),
    )


def _credential_object(kind: str, name: str) -> dict[str, str] | vc.Unverified:
    found = CREDENTIALS.get((kind, name))
    return vc.Unverified(vc.Problem.MISSING, "absent") if found is None else found


def _claimed(pool: models.GpuPoolSpec) -> object:
    """The pool's share of ``BILL``, or why the reconcile refuses it (a currency unlike the
    bill's)."""
    try:
        return focus.reconcile(BILL, focus.claims_of([("p", pool)])).pools
    except focus.FocusError as refused:
        return str(refused)


def observe_policy(spec: Mapping[str, Any], _: pathlib.Path) -> object:
    return convert.policy_to_domain("ml", "pol", models.PlacementPolicySpec.model_validate(spec))


def observe_budget(spec: Mapping[str, Any], _: pathlib.Path) -> object:
    """The planner's budgets and the alerts of a Budget 60 % spent (money limit 100)."""
    parsed = models.BudgetSpec.model_validate(spec)
    cached = cache_.CachedBudget("ml", "team", 1, parsed)
    planned = budgets.domain_budgets((cached,), {("ml", "team"): budgets.Spend(0, 0, 0)}, NOW)
    return planned, budgets.alerts(parsed, budgets.Spend(60, 0, 0), (), NOW)


# Team-a's llama serves 10 requests on GPU 0 (time-sliced with team-b) and on a MIG slice.
HISTORY = promfake.history(
    [
        *promfake.SHARED["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"],
        promfake.gpu("team-a", "mig", "3", mig="1g.10gb", wh=70.0),
    ],
    [
        *zip(
            promfake.SHARED["vllm:request_success_total"],
            promfake.SHARED["vllm:generation_tokens_total"],
            strict=True,
        ),
        (
            promfake.served("team-a", "mig", "llama", 10),
            promfake.served("team-a", "mig", "llama", 10),
        ),
    ],
)


def observe_report(spec: Mapping[str, Any], _: pathlib.Path) -> object:
    """Behaviour probe: one run of the report loop; the URLs queried, the PromQL asked and the
    status written."""
    models.EnergyReportSpec.model_validate(spec)  # the cache would drop an invalid one silently
    return run_report(spec, HISTORY, (builders.pool("p"),))


def run_report(
    spec: Mapping[str, Any], history: Mapping[str, list[promfake.S]], pools: Sequence[model.Pool]
) -> tuple[list[str], list[str], dict[tuple[str, str], dict[str, Any]]]:
    """One run of the report loop on ``history`` and the planned ``pools``: the URLs queried,
    the PromQL asked and the status written."""
    urls: list[str] = []
    prom = promfake.FakeProm(history)

    class Querier:
        def __init__(self, url: str, *, policy: object = None) -> None:
            urls.append(url)
            self.vector = prom

    writer = promfake.StatusWriter()
    reporter = reports.Reporter(
        status.StatusRecorder(writer, clock=lambda: NOW),  # type: ignore[arg-type]
        telemetry.AccountingMetrics(prometheus_client.CollectorRegistry()),
        None,
        querier=Querier,  # type: ignore[arg-type]
        allow_hosts=["prom", "prom2"],
        allow_insecure_http=True,
    )
    cache = cache_.Cache()
    cache.put_report(
        {"metadata": {"namespace": "team-a", "name": "r", "generation": 1}, "spec": spec}
    )
    asyncio.run(reporter.run(cache, NOW, pools=pools))
    return urls, prom.asked, writer.status


class Peer(http.server.ThreadingHTTPServer):
    """A local HTTP peer that records each request (path, query, credentials) and answers as
    Prometheus, Electricity Maps or WattTime would; under ``/slow`` it answers after 0.5 s."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PeerHandler)
        self.requests: list[tuple[str, str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _PeerHandler(http.server.BaseHTTPRequestHandler):
    server: Peer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        auth = self.headers.get("auth-token") or self.headers.get("authorization") or ""
        self.server.requests.append(("GET", self.path, auth))
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path.startswith("/slow"):
            threading.Event().wait(0.5)
        seen = NOW.timestamp() - 60
        if url.path.endswith("/api/v1/query"):
            promql = query.get("query", "")
            # timestamp(q) is when q was seen; q itself answers its own length (so a probe
            # sees which query was asked).
            value = seen if promql.startswith("timestamp(") else float(len(promql))
            result = [{"metric": {}, "value": [seen, str(value)]}]
            body: Any = {"status": "success", "data": {"resultType": "vector", "result": result}}
        elif url.path.endswith("/login"):
            body = {"token": "tok"}
        elif url.path.endswith("/latest"):
            body = {"zone": query.get("zone"), "carbonIntensity": 42, "datetime": _iso(seen)}
        elif url.path.endswith("/signal-index"):
            body = {"data": [{"point_time": _iso(seen), "value": 37.0}], "meta": {}}
        else:
            body = {}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_PEER: list[Peer] = []  # the peer of the running probe (one per test)


def _fill(value: Any, replacements: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for placeholder, text in replacements.items():
            value = value.replace(placeholder, text)
        return value
    if isinstance(value, list):
        return [_fill(v, replacements) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, replacements) for k, v in value.items()}
    return value


def observe_signal_source(spec: Mapping[str, Any], tmp: pathlib.Path) -> object:
    """Behaviour probe: one read of the SignalSource by the operator's feeds (real trace files,
    Secrets mounted as the kubelet mounts them, a local HTTP peer): the readings, forecasts and
    the requests the peer received."""
    server = _PEER[0]
    traces, secrets = tmp / "traces", tmp / "secrets"
    if not traces.exists():
        traces.mkdir()
        hours = [NOW - datetime.timedelta(hours=h) for h in range(8, 2, -1)]  # 3 h old
        for name, base in (("a", 100), ("b", 300)):
            rows = "".join(f"{t:%Y-%m-%d %H:%M:%S},{base + i}\n" for i, t in enumerate(hours))
            (traces / f"{name}.csv").write_text("Time,value\n" + rows)
        providers.mount_secret(secrets, "em", {"tok": "token-a", "token": "token-b"})
        providers.mount_secret(secrets, "em2", {"tok": "token-c"})
        providers.mount_secret(secrets, "wt", {"username": "user", "password": "secret"})
    filled = _fill(spec, {"PEER": server.url, "TRACES": str(traces)})
    parsed = models.SignalSourceSpec.model_validate(filled)
    reader = feeds.Feeds(
        credentials_dir=secrets,
        own_namespace=OWN_NAMESPACE,
        trace_directories=[traces],
        allow_hosts=["127.0.0.1"],
        allow_insecure_http=True,
    )
    server.requests.clear()
    observed = reader.read([cache_.CachedSignalSource("src", 1, parsed)], NOW)
    return observed.carbon, observed.prices, observed.forecasts, list(server.requests)


def _focus_files(directory: pathlib.Path) -> None:
    """The example fleet's export, whole and in parts, under ``directory``."""
    lines = FOCUS_EXPORT.read_text().splitlines(keepends=True)
    header, rows = lines[0], lines[1:]
    parts = {"2026-12.csv": rows, "2026-11.csv": [r for r in rows if ",2026-11-01T" in r]}
    for where in ("bills/focus", "bills/focus/nov", "bills2/focus", "files"):
        (directory / where).mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        (directory / "bills" / "focus" / name).write_text(header + "".join(part))
        (directory / "files" / name).write_text(header + "".join(part))
    (directory / "bills" / "focus" / "nov" / "2026-11.csv").write_text(
        header + "".join(parts["2026-11.csv"])
    )
    (directory / "bills2" / "focus" / "2026-12.csv").write_text(header + "".join(rows[:3]))


def observe_billing_export(spec: Mapping[str, Any], tmp: pathlib.Path) -> object:
    """Behaviour probe: one read of the BillingExport by ``controller.exports`` (real files; the
    S3 filesystem built from the spec's options, over pyarrow's local filesystem): the options
    the store was built with and the status (objects, rows, periods, next read, Ready)."""
    store = tmp / "store"
    if not store.exists():
        _focus_files(store)
    built: list[dict[str, Any]] = []

    def s3(**options: Any) -> Any:
        built.append({k: v for k, v in options.items() if k != "retry_strategy"})
        return fs.SubTreeFileSystem(str(store), fs.LocalFileSystem())

    def secret(kind: str, namespace: str, name: str) -> Any:
        assert (kind, namespace) == ("Secret", OWN_NAMESPACE)
        return EXPORT_SECRETS.get(name) or vc.Unverified(vc.Problem.MISSING, f"{name} not found")

    parsed = models.BillingExportSpec.model_validate(_fill(spec, {"FILES": str(store / "files")}))
    read = exports.BillingExports(secret, OWN_NAMESPACE, s3=s3)
    read.refresh([cache_.CachedBillingExport("bills", 1, parsed)], NOW)
    body, ready = read.status("bills")
    written = status.patch_body(body)
    for listed in written.get("objects") or ():
        listed.pop("version")  # a file's modification time: the same files either way
    return built, written, ready


OBSERVERS: dict[str, Callable[[Mapping[str, Any], pathlib.Path], object]] = {
    "BillingExport": observe_billing_export,
    "GpuPool": observe_pool,
    "PlacementPolicy": observe_policy,
    "Budget": observe_budget,
    "SignalSource": observe_signal_source,
    "EnergyReport": observe_report,
}
BASES: dict[str, Mapping[str, Any]] = {
    "BillingExport": S3_BASE,
    "GpuPool": POOL,
    "PlacementPolicy": POLICY,
    "Budget": BUDGET,
    "EnergyReport": REPORT,
}


def _concrete(path: str) -> tuple[str | int, ...]:
    """``Kind.spec.a[].b`` -> ``("a", 0, "b")``."""
    steps: list[str | int] = []
    for part in path.split(".")[2:]:
        name = part.removesuffix("[]")
        steps.append(name)
        if part.endswith("[]"):
            steps.append(0)
    return tuple(steps)


def _varied(base: Mapping[str, Any], at: tuple[str | int, ...], other: Any) -> dict[str, Any]:
    changed = copy.deepcopy(dict(base))
    node: Any = changed
    for step in at[:-1]:
        node = node[step]
    if other is ABSENT:
        del node[at[-1]]
    else:
        node[at[-1]] = copy.deepcopy(other)
    return changed


def _holds(base: Mapping[str, Any], at: tuple[str | int, ...], other: Any) -> bool:
    """Whether ``base`` has the place ``at`` names: the field itself when the probe removes
    it, its parent when the probe sets it (a base may leave a field at its default)."""
    node: Any = base
    for step in at if other is ABSENT else at[:-1]:
        if isinstance(step, int):
            if not isinstance(node, list) or len(node) <= step:
                return False
        elif not isinstance(node, dict) or step not in node:
            return False
        node = node[step]
    return True


# ---------------------------------------------------------------- the tests

SPEC_FIELDS = spec_fields()


def test_every_spec_field_has_an_entry() -> None:
    """The models are walked, not the table: a new field without an entry fails here."""
    missing = [
        f for f in SPEC_FIELDS if f not in USES and f not in BEING_WIRED | set(FOUND_IGNORED)
    ]
    assert not missing, f"give these fields a USES entry and a probe (or wire them): {missing}"
    stale = [f for f in USES if f not in SPEC_FIELDS and f not in BEING_WIRED]
    assert not stale, f"USES names fields the models do not have: {stale}"
    assert not set(FOUND_IGNORED) & set(USES), "a field is in FOUND_IGNORED and USES"
    assert len(SPEC_FIELDS) > 60  # the walk reaches nested objects and list items


def test_the_walk_reaches_nested_objects_and_list_items() -> None:
    assert "SignalSource.spec.sources[].credentialsSecretRef.key" in SPEC_FIELDS
    assert "PlacementPolicy.spec.sovereignty.requiredCertifications[].minLevel" in SPEC_FIELDS
    assert "GpuPool.spec.certifications[].expires" in SPEC_FIELDS
    assert "PlacementPolicy.spec.sovereignty" not in SPEC_FIELDS  # objects are walked into


def test_idle_watts_reach_the_energy_reports_modelled_power() -> None:
    """A GpuPool's idleWatts, converted as the operator converts it, changes the Wh an
    EnergyReport models from GPU utilisation (the only energy signal here): 50 % busy for 2 h."""
    labels = {"pool": "p", "Hostname": "n1", "gpu": "0", "namespace": "team-a", "pod": "a"}
    history = {
        "DCGM_FI_DEV_GPU_UTIL": [promfake.S(labels, 50.0)],
        "vllm:request_success_total": [promfake.served("team-a", "a", "llama", 10)],
        "vllm:generation_tokens_total": [promfake.served("team-a", "a", "llama", 10)],
    }

    def modelled_wh(idle_watts: float) -> float:
        spec = _varied(POOL, ("gpu", "idleWatts"), idle_watts)
        pool = convert.pool_to_domain(
            "p", models.GpuPoolSpec.model_validate(spec), gpus_total=8, gpus_free=8
        )
        _, _, written_by_report = run_report(REPORT, history, (pool,))
        (written,) = written_by_report.values()
        assert written["energySource"] == "Modelled"
        (row,) = written["rows"]
        return float(row["gpuWh"])

    assert modelled_wh(0) == 700.0  # 700 W x 0.5 x 2 h
    assert modelled_wh(80) == 780.0  # + 80 W x 0.5 x 2 h
    # Above the board power it is refused (the CEL rule's twin), not passed to the model.
    with pytest.raises(pydantic.ValidationError, match=r"idleWatts 701 exceeds gpu\.tdpWatts 700"):
        models.GpuPoolSpec.model_validate(_varied(POOL, ("gpu", "idleWatts"), 701))


# Entries carrying a field their kind does not read (accepted and ignored before): the field
# named in the refusal, and the entry.
IGNORED_BY_KIND = {
    "trace": {**STATIC, "trace": TRACE["trace"]},
    "static": {**PROMETHEUS, "static": STATIC["static"]},
    "ttl": {**STATIC, "ttl": "1h"},
    "timeout": {**TRACE, "timeout": "1s"},
    "credentialsSecretRef.key": {
        **WATTTIME,
        "credentialsSecretRef": {**WATTTIME_REF, "key": "token"},
    },
}


@pytest.mark.parametrize("field", IGNORED_BY_KIND)
def test_an_entry_may_carry_only_what_its_kind_reads(field: str) -> None:
    """The Python twin of the entry's CEL rules (tests/integration/test_validation.py)."""
    with pytest.raises(pydantic.ValidationError, match=rf"spec\.sources\[\]\.{field}\b"):
        spec = _fill(source(IGNORED_BY_KIND[field]), {"PEER": "http://127.0.0.1:1"})
        models.SignalSourceSpec.model_validate(spec)


def _cases() -> list[Any]:
    cases: list[Any] = [f for f in USES if f in SPEC_FIELDS]
    cases += [
        pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=f"ignored: {why}"))
        for f, why in FOUND_IGNORED.items()
    ]
    return cases


@pytest.mark.parametrize("field", _cases())
def test_field_changes_what_the_operator_does(field: str, tmp_path: pathlib.Path) -> None:
    kind = field.split(".", maxsplit=1)[0]
    use = USES.get(field, Use("", base=None))
    base = use.base if use.base is not None else BASES[kind]
    at = use.at or _concrete(field)
    assert _holds(base, at, use.other), f"the probe's base spec must set {field} (at {at})"
    observe = OBSERVERS[kind]
    serving = providers.running(Peer(), 0.01) if kind == "SignalSource" else None
    with serving or contextlib.nullcontext() as server:
        _PEER[:] = [server] if server else []
        first = observe(base, tmp_path)
        # The control: the same object twice is seen the same (no clock, no port, no order).
        assert observe(base, tmp_path) == first
        second = observe(_varied(base, at, use.other), tmp_path)
    assert first != second, (
        f"{field} set to {use.other!r} instead of its value in the probe's base changes nothing "
        f"the operator computes: wire it or remove it from the API (models.py)"
    )


def test_docs_page_is_in_sync() -> None:
    assert DOC.read_text() == render(), (
        f"{DOC.name} is stale: run .venv/bin/python -m tests.unit.test_crd_fields"
    )


# ---------------------------------------------------------------- the docs page

STATUS_WRITERS = {
    "GpuPool": "controller.status (the placement cycle's record phase)",
    "PlacementPolicy": "controller.status (allowed pools, residency, pod counts, conditions)",
    "SignalSource": "controller.status (readings of the last refresh, conditions)",
    "BillingExport": "controller.status, from controller.exports (what was read, conditions)",
    "Budget": "controller.budgets.status, written by controller.status",
    "EnergyReport": "controller.reports (the report loop)",
}


def render() -> str:
    lines = [
        "# CRD fields: where each is used",
        "",
        "Generated by `tests/unit/test_crd_fields.py` (`.venv/bin/python -m "
        "tests.unit.test_crd_fields`); the test fails when this page is stale. Every spec field "
        "of every CRD is listed, found by walking the API models (`api/models.py`), and each "
        "is proven used by a differential probe: the same object with the field at two values "
        "goes through the operator's code (the function named) and the results must differ. "
        "A field the API accepts and the operator ignores would mislead whoever sets it.",
        "",
    ]
    for kind in crdgen.KINDS:
        lines += [f"## {kind.kind}", "", "| field | where it is used |", "|---|---|"]
        for field in leaf_fields(kind.spec, f"{kind.kind}.spec"):
            if field in USES:
                where = USES[field].where
            elif field in FOUND_IGNORED:
                where = (
                    f"**ignored** (found by this test; to wire or remove): {FOUND_IGNORED[field]}"
                )
            else:
                where = "**being wired** (issue 12): accepted, not yet used"
            lines.append(f"| `{field.split('.', 2)[2]}` | {where} |")
        lines.append("")
    lines += [
        "## Status fields",
        "",
        "Written by the operator, never by users (out of the probes' scope).",
        "",
        "| kind | fields | written by |",
        "|---|---|---|",
    ]
    for kind in crdgen.KINDS:
        names = ", ".join(
            f"`{f.split('.', 2)[2]}`" for f in leaf_fields(kind.status, f"{kind.kind}.status")
        )
        lines.append(f"| {kind.kind} | {names} | {STATUS_WRITERS[kind.kind]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
