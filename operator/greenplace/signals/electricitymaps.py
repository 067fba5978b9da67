"""Electricity Maps (API v3) as a carbon-intensity source: latest value and forecast.

Why this module exists: Electricity Maps covers most grid zones in the world with live and
forecast lifecycle intensity. Its documented endpoints, with the token in the ``auth-token``
header:

- ``GET /v3/carbon-intensity/latest?zone=Z`` -> ``{"zone", "carbonIntensity", "datetime", ...}``
- ``GET /v3/carbon-intensity/forecast?zone=Z`` -> ``{"zone", "forecast": [{"carbonIntensity",
  "datetime"}, ...], "updatedAt"}``

``zone_map`` maps our grid zones to Electricity Maps zone codes (identity when absent: ``FR``,
``DE``). Values are gCO2e/kWh; ``datetime`` is the observation time used for the TTL. The token
is read at every call (``httpjson.Credential``), so a rotated token is used at once.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

import httpx

from greenplace.domain import series
from greenplace.signals import contract, egress, httpjson

__all__ = ["DEFAULT_URL", "ElectricityMapsSource"]

DEFAULT_URL = "https://api.electricitymap.org"


class ElectricityMapsSource(httpjson.HttpSource):
    """Carbon intensity from Electricity Maps; every call bounded by ``timeout_s``."""

    def __init__(
        self,
        name: str,
        token: httpjson.Credential,
        *,
        ttl: datetime.timedelta,
        base_url: str = DEFAULT_URL,
        zone_map: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        policy: egress.EgressPolicy | None = None,
    ) -> None:
        super().__init__(name, ttl, base_url, timeout_s, transport, policy=policy)
        self._zones = dict(zone_map or {})
        self._token = token

    def latest(self, key: contract.SignalKey, now: datetime.datetime) -> contract.Observation:
        zone, where = self._zone(key)
        body = self._get("/v3/carbon-intensity/latest", zone, where)
        value = httpjson.number(httpjson.require(body, "carbonIntensity", where=where), where=where)
        when = httpjson.parse_time(httpjson.require(body, "datetime", where=where), where=where)
        return contract.Observation(value, when)

    def forecast(
        self,
        key: contract.SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> series.TimeSeries:
        zone, where = self._zone(key)
        body = self._get("/v3/carbon-intensity/forecast", zone, where)
        points = httpjson.require(body, "forecast", where=where)
        if not isinstance(points, list):
            raise contract.SignalMalformedError(f"{where}: forecast is not a list")
        parsed = sorted(
            (
                httpjson.parse_time(httpjson.require(p, "datetime", where=where), where=where),
                httpjson.number(httpjson.require(p, "carbonIntensity", where=where), where=where),
            )
            for p in points
        )
        return _window(parsed, start, end, where)

    def _zone(self, key: contract.SignalKey) -> tuple[str, str]:
        if key.kind is not contract.SignalKind.CARBON_INTENSITY:
            raise contract.SignalUnsupportedError(
                f"Electricity Maps source {self.name} gives carbon intensity only, not {key.kind}"
            )
        zone = self._zones.get(key.subject, key.subject)
        return zone, f"Electricity Maps source {self.name} (zone {zone})"

    def _get(self, path: str, zone: str, where: str) -> object:
        return httpjson.get_json(
            self._client,
            f"{self._base}{path}",
            where=where,
            params={"zone": zone},
            headers={"auth-token": httpjson.reveal(self._token)},
        )


def _window(
    points: list[tuple[datetime.datetime, float]],
    start: datetime.datetime,
    end: datetime.datetime,
    where: str,
) -> series.TimeSeries:
    """The points in force over ``[start, end)``: the last one at or before ``start`` onwards."""
    first = max((i for i, (t, _) in enumerate(points) if t <= start), default=0)
    kept = [(t, v) for t, v in points[first:] if t < end]
    deduplicated = dict(kept)
    if not deduplicated:
        raise contract.SignalMissingError(f"{where}: forecast has no point over [{start}, {end})")
    times = tuple(sorted(deduplicated))
    return series.TimeSeries(times, tuple(deduplicated[t] for t in times))
