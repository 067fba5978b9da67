"""SignalSource objects turned into fallback chains, read once per cycle with a short memory.

Why this module exists: the placement cycle needs each grid zone's carbon intensity (and each
pool's price) without knowing where it comes from. This module builds one ``signals.chain.Chain``
per ``SignalSource`` (rebuilt only when its generation changes), reads every subject the source
names at most once per ``memory`` (default 30 s, so a slow feed costs one timeout, not one per
cycle) and hands back the readings. It never raises for a feed fault: the chain turns faults
into reasons, and a spec the chain cannot be built from (a trace file missing) becomes a source
that always answers ``Missing`` with the error, so the SignalSource shows it.

Credentials (Electricity Maps token, WattTime username/password) are read from files under
``credentials_dir/<secret name>/<key>`` (the Secret mounted as a volume, chart value
``signalCredentials.secrets``); the operator never reads Secrets through the API. The file is
read again at every fetch, so a rotated Secret (the kubelet rewrites the mounted files) is used
without a restart. A missing, empty or unreadable file, or a Secret of another namespace than
the operator's own (a pod can only mount Secrets of its namespace), makes that source answer
``Credentials`` with a message naming the Secret, the key, the path and the value to set; the
chain then falls back like for any other fault.

Whoever writes a SignalSource chooses files and URLs the operator opens, so both are bounded by
the operator's configuration, never by the spec: trace files must resolve inside
``trace_directories`` (``--trace-dir``; none: every trace source is refused), HTTP sources
(Prometheus, Electricity Maps, WattTime, any ``url`` override) go through an
``egress.EgressPolicy`` built from ``allow_hosts`` and ``allow_insecure_http``
(``--allow-signal-hosts``, ``--allow-insecure-signal-http``): https to public addresses only
unless allowed. Credentials go only to the provider's own https origin
(``electricitymaps.DEFAULT_URL``, ``watttime.DEFAULT_URL``) or to a ``url`` override whose host
``allow_hosts`` lists exactly (``EgressPolicy.check_credentials``): otherwise a SignalSource
author could name a mounted Secret and have its token sent to their own host. A refused source
answers ``SourceNotAllowed`` with what was refused and the flag that allows it (logged once per
generation of its SignalSource), before any Secret is read or request made; the other sources of
the chain and the other SignalSources are read as usual.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pydantic

from greenplace.api import convert, models
from greenplace.controller import cache as cache_
from greenplace.domain import series
from greenplace.signals import (
    chain,
    contract,
    egress,
    electricitymaps,
    httpjson,
    promql,
    static,
    telemetry,
    trace,
    watttime,
)

__all__ = ["CHART_VALUE", "Feeds", "Observed", "SecretFile", "recorded"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TTL = {
    "Prometheus": datetime.timedelta(minutes=10),
    "Trace": datetime.timedelta(hours=1),
    "ElectricityMaps": datetime.timedelta(hours=2),
    "WattTime": datetime.timedelta(minutes=15),
    "Static": static.NEVER_STALE,
}
DEFAULT_TIMEOUT = "5s"
FORECAST_HORIZON = datetime.timedelta(hours=24)
CHART_VALUE = "signalCredentials.secrets"  # the Helm value listing the Secrets to mount
_KINDS = {
    "CarbonIntensity": contract.SignalKind.CARBON_INTENSITY,
    "Price": contract.SignalKind.PRICE,
}


@dataclasses.dataclass(frozen=True)
class Observed:
    """What the SignalSources said this cycle."""

    carbon: Mapping[str, contract.Reading]  # grid zone -> reading (zones some source names)
    prices: Mapping[str, contract.Reading]  # pool -> reading
    forecasts: Mapping[str, series.TimeSeries]  # grid zone -> forecast, when a source had one
    by_source: Mapping[str, tuple[contract.Reading, ...]]  # SignalSource -> its readings
    owner: Mapping[contract.SignalKey, str]  # which SignalSource answers for a key
    static_sources: frozenset[tuple[str, str]]  # (SignalSource, source) pairs of kind Static

    @classmethod
    def empty(cls) -> Observed:
        return cls({}, {}, {}, {}, {}, frozenset())


def recorded(bodies: Sequence[Mapping[str, Any]]) -> Observed:
    """What the operator last read, from the SignalSources' ``status.readings`` (the values it
    planned with, each with its source and reason), keyed as ``Feeds.read`` keys them (first
    SignalSource by name wins a key).

    ``greenplace explain --from-cluster`` plans with these instead of reading the feeds
    itself: the feeds' credentials and egress rules are the operator's. Forecasts are not
    written to status, so there are none: a deferral the operator would weigh against a
    forecast is planned as if no forecast were known.
    """
    carbon: dict[str, contract.Reading] = {}
    prices: dict[str, contract.Reading] = {}
    by_source: dict[str, tuple[contract.Reading, ...]] = {}
    owner: dict[contract.SignalKey, str] = {}
    statics: set[tuple[str, str]] = set()
    known = {str(r) for r in contract.SignalReason}
    for body in sorted(bodies, key=lambda b: str(b["metadata"]["name"])):
        name = str(body["metadata"]["name"])
        try:
            spec = models.SignalSourceSpec.model_validate(body.get("spec") or {})
            status = models.SignalSourceStatus.model_validate(body.get("status") or {})
        except pydantic.ValidationError:
            continue  # the operator ignores it too (``cache.Cache.invalid``)
        kind = _KINDS[spec.signal]
        statics.update((name, s.name) for s in spec.sources if s.kind == "Static")
        readings = []
        for row in status.readings:
            reason = contract.SignalReason(row.reason if row.reason in known else "Unavailable")
            reading = contract.Reading(
                key=contract.SignalKey(kind, row.subject),
                value=row.value,
                source=row.source,
                observed_at=row.observed_at,
                age_s=row.age_seconds,
                status=contract.SignalStatus(reason, row.message),
            )
            readings.append(reading)
            if reading.key in owner:
                continue
            owner[reading.key] = name
            (carbon if kind is contract.SignalKind.CARBON_INTENSITY else prices)[row.subject] = (
                reading
            )
        by_source[name] = tuple(readings)
    return Observed(carbon, prices, {}, by_source, owner, frozenset(statics))


@dataclasses.dataclass(frozen=True)
class _Broken:
    """A source whose spec could not be turned into a client: always fails, saying why.

    ``Missing`` for a spec that cannot be built (a trace file missing or malformed),
    ``SourceNotAllowed`` for one the operator's configuration refuses.
    """

    name: str
    error: str
    ttl: datetime.timedelta = static.NEVER_STALE
    failure: type[contract.SignalError] = contract.SignalMissingError

    def latest(self, key: contract.SignalKey, now: datetime.datetime) -> contract.Observation:
        raise self.failure(f"source {self.name}: {self.error}")

    def forecast(
        self,
        key: contract.SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> series.TimeSeries:
        raise self.failure(f"source {self.name}: {self.error}")


@dataclasses.dataclass(frozen=True)
class SecretFile:
    """One key of a mounted Secret, read at every call (a ``httpjson.Credential``).

    ``directory`` is ``--credentials-dir`` (None: not given); ``own_namespace`` is the
    operator's namespace when known (None: not checked). Raises ``SignalCredentialsError``
    saying what to fix instead of returning nothing.
    """

    ref: models.SecretKeyRef
    key: str
    directory: pathlib.Path | None
    own_namespace: str | None = None

    @property
    def secret(self) -> str:
        return f"Secret {self.ref.namespace}/{self.ref.name} (key {self.key})"

    def __call__(self) -> str:
        name = self.ref.name
        own = self.own_namespace
        if own is not None and self.ref.namespace != own:
            raise contract.SignalCredentialsError(
                f"credentials {self.secret}: Secrets must be in the operator's own namespace "
                f"{own} (a pod mounts Secrets of its namespace only); create the Secret in {own}, "
                f"set credentialsSecretRef.namespace to {own} and list {name} in the chart value "
                f"{CHART_VALUE}"
            )
        if self.directory is None:
            raise contract.SignalCredentialsError(
                f"credentials {self.secret} are not mounted: the operator runs without "
                f"--credentials-dir; list {name} in the chart value {CHART_VALUE} (or mount the "
                f"Secret at <dir>/{name}/ and pass --credentials-dir <dir>)"
            )
        path = self.directory / name / self.key
        if not path.parent.is_dir():
            raise contract.SignalCredentialsError(
                f"credentials {self.secret}: expected at {path}, but {path.parent} is not "
                f"mounted; list {name} in the chart value {CHART_VALUE}"
            )
        try:
            value = path.read_text().strip()
        except FileNotFoundError:
            raise contract.SignalCredentialsError(
                f"credentials {self.secret}: no file {path}; the Secret does not exist or has "
                f"no key {self.key}: create it (kubectl create secret generic {name} "
                f"--from-literal={self.key}=...) or set credentialsSecretRef.key"
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise contract.SignalCredentialsError(
                f"credentials {self.secret}: cannot read {path} ({type(error).__name__}: "
                f"{error}); check the volume's defaultMode and the pod's fsGroup"
            ) from None
        if not value:
            raise contract.SignalCredentialsError(f"credentials {self.secret}: {path} is empty")
        return value


class Feeds:
    """Chains per SignalSource, and a memory of recent readings."""

    def __init__(
        self,
        metrics: telemetry.SignalMetrics | None = None,
        memory: datetime.timedelta = datetime.timedelta(seconds=30),
        credentials_dir: pathlib.Path | None = None,
        own_namespace: str | None = None,
        *,
        trace_directories: Sequence[pathlib.Path] = (),
        allow_hosts: Sequence[str] = (),
        allow_insecure_http: bool = False,
    ) -> None:
        self._metrics = metrics
        self._memory = memory
        self._credentials = credentials_dir
        self._namespace = own_namespace
        self._trace_dirs = tuple(trace_directories)
        # ValueError on a bad entry; the CLI checks them first (parse_entry) with a clear error.
        self._egress = egress.EgressPolicy.parse(allow_hosts, allow_http=allow_insecure_http)
        self._chains: dict[str, tuple[int, chain.Chain]] = {}
        self._read: dict[tuple[str, contract.SignalKey], tuple[datetime.datetime, object]] = {}

    def read(
        self, sources: Sequence[cache_.CachedSignalSource], now: datetime.datetime
    ) -> Observed:
        """Read every subject of every SignalSource (first SignalSource by name wins a key)."""
        carbon: dict[str, contract.Reading] = {}
        prices: dict[str, contract.Reading] = {}
        forecasts: dict[str, series.TimeSeries] = {}
        by_source: dict[str, tuple[contract.Reading, ...]] = {}
        owner: dict[contract.SignalKey, str] = {}
        statics: set[tuple[str, str]] = set()
        for cached in sorted(sources, key=lambda s: s.name):
            signals = self._chain(cached)
            kind = _KINDS[cached.spec.signal]
            statics.update((cached.name, s.name) for s in cached.spec.sources if s.kind == "Static")
            readings = []
            for subject in cached.spec.zones:
                key = contract.SignalKey(kind, subject)
                reading = self._remember(
                    cached.name, key, now, functools.partial(signals.read, key, now)
                )
                readings.append(reading)
                if key in owner:
                    continue
                owner[key] = cached.name
                (carbon if kind is contract.SignalKind.CARBON_INTENSITY else prices)[subject] = (
                    reading
                )
                if kind is contract.SignalKind.CARBON_INTENSITY:
                    forecast = self._remember(
                        f"{cached.name}/forecast",
                        key,
                        now,
                        functools.partial(
                            signals.read_forecast, key, now, now + FORECAST_HORIZON, now
                        ),
                    )
                    if forecast.series is not None:
                        forecasts[subject] = forecast.series
            by_source[cached.name] = tuple(readings)
        names = {s.name for s in sources}
        self._chains = {k: v for k, v in self._chains.items() if k in names}
        return Observed(carbon, prices, forecasts, by_source, owner, frozenset(statics))

    def _remember(
        self, scope: str, key: contract.SignalKey, now: datetime.datetime, read: Callable[[], T]
    ) -> T:
        memo = self._read.get((scope, key))
        if memo is not None and now - memo[0] < self._memory:
            return memo[1]  # type: ignore[return-value]  # stored by this method for this T
        value = read()
        self._read[(scope, key)] = (now, value)
        return value

    def _chain(self, cached: cache_.CachedSignalSource) -> chain.Chain:
        known = self._chains.get(cached.name)
        if known is not None and known[0] == cached.generation:
            return known[1]
        spec = cached.spec
        entries = {s.name: s for s in spec.sources}
        order = spec.fallback_order or [s.name for s in spec.sources]
        built = chain.Chain(
            [self._source(cached.name, entries[n], _KINDS[spec.signal]) for n in order],
            self._metrics,
        )
        self._chains[cached.name] = (cached.generation, built)
        # A new spec must be read afresh, not from the memory of the old one.
        scopes = (cached.name, f"{cached.name}/forecast")
        self._read = {k: v for k, v in self._read.items() if k[0] not in scopes}
        return built

    def _source(
        self, owner: str, entry: models.SignalSourceEntry, kind: contract.SignalKind
    ) -> contract.Source:
        try:
            return self._build(entry, kind)
        except contract.SignalNotAllowedError as error:
            logger.warning("SignalSource %s: source %s refused: %s", owner, entry.name, error)
            return _Broken(entry.name, str(error), failure=contract.SignalNotAllowedError)
        except (OSError, ValueError) as error:
            return _Broken(entry.name, _os_error(error))
        except Exception as error:  # a bug in a builder must not stop placement for everyone
            logger.exception("cannot build signal source %s", entry.name)
            return _Broken(entry.name, f"{type(error).__name__}: {error}")

    def _build(self, entry: models.SignalSourceEntry, kind: contract.SignalKind) -> contract.Source:
        ttl = convert.duration(entry.ttl) if entry.ttl else DEFAULT_TTL[entry.kind]
        timeout = convert.duration(entry.timeout or DEFAULT_TIMEOUT).total_seconds()
        if entry.kind == "Static" and entry.static is not None:
            values = {contract.SignalKey(kind, z): v for z, v in entry.static.values.items()}
            return static.StaticSource(entry.name, values, ttl)
        if entry.kind == "Trace" and entry.trace is not None:
            shift = (
                convert.duration(entry.trace.shift) if entry.trace.shift else datetime.timedelta()
            )
            files = {
                contract.SignalKey(kind, z): pathlib.Path(p) for z, p in entry.trace.files.items()
            }
            return trace.from_csv_files(entry.name, files, ttl, shift, within=self._trace_dirs)
        if entry.kind == "Prometheus" and entry.prometheus is not None:
            url = self._checked(entry.prometheus.url)
            querier = promql.Querier(url, timeout_s=timeout, policy=self._egress)
            return promql.PrometheusSource(entry.name, querier, {kind: entry.prometheus.query}, ttl)
        ref = entry.credentials_secret_ref
        if entry.kind == "ElectricityMaps":
            url = (entry.electricity_maps.url if entry.electricity_maps else None) or (
                electricitymaps.DEFAULT_URL
            )
            return electricitymaps.ElectricityMapsSource(
                entry.name,
                self._secret(entry, (ref.key if ref else None) or "token"),
                ttl=ttl,
                base_url=self._checked(url, ref, electricitymaps.DEFAULT_URL),
                zone_map=entry.zone_mapping,
                timeout_s=timeout,
                policy=self._egress,
            )
        if entry.kind == "WattTime":
            url = (entry.watt_time.url if entry.watt_time else None) or watttime.DEFAULT_URL
            return watttime.WattTimeSource(
                entry.name,
                self._secret(entry, "username"),
                self._secret(entry, "password"),
                ttl=ttl,
                base_url=self._checked(url, ref, watttime.DEFAULT_URL),
                region_map=entry.zone_mapping,
                timeout_s=timeout,
                policy=self._egress,
            )
        raise ValueError(f"kind {entry.kind} without its block")  # the CRD refuses this

    def _checked(
        self, url: str, credentials: models.SecretKeyRef | None = None, default_url: str = ""
    ) -> str:
        """``url`` when the policy allows it as written (addresses are checked at connect) and,
        with ``credentials``, allows sending them there (``default_url``: the provider's own)."""
        self._egress.check_url(url)
        if credentials is not None:
            self._egress.check_credentials(url, default_url)
        return url

    def _secret(self, entry: models.SignalSourceEntry, key: str) -> httpjson.Credential:
        ref = entry.credentials_secret_ref
        if ref is None:
            return ""  # the provider refuses the call: Credentials, shown in the status
        return SecretFile(ref, key, self._credentials, self._namespace)


def _os_error(error: OSError | ValueError) -> str:
    """A build error's message: the file and what is wrong, never what the file holds."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"cannot open {error.filename}: {error.strerror or type(error).__name__}"
    return str(error)
