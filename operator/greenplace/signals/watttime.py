"""WattTime (API v3) as a carbon-intensity source: marginal emissions now and forecast.

Why this module exists: WattTime gives marginal operating emission rates (MOER) per balancing
authority, which is the signal to use for temporal shifting in North America. Documented API:

- ``GET /login`` with HTTP basic auth -> ``{"token"}``, valid 30 minutes, sent as
  ``Authorization: Bearer``; a 401 on a data call means log in again (done once here);
- ``GET /v3/forecast?region=R&signal_type=co2_moer&horizon_hours=H`` -> ``{"data":
  [{"point_time", "value"}], "meta": {"units": "lbs_co2_per_mwh", "generated_at", ...}}``;
  with ``horizon_hours=0`` its first point is the current value;
- ``GET /v3/signal-index?region=R&signal_type=co2_moer`` -> ``{"data": [{"point_time",
  "value"}]}``: a 0-100 percentile of the last month, not gCO2e/kWh, so it is exposed as
  ``relative_index`` and never mixed with intensities.

lbs/MWh are converted to gCO2e/kWh (x 0.45359237). ``region_map`` maps our grid zones to
WattTime regions (``US-CAL-CISO`` -> ``CAISO_NORTH``). The token's age is judged against the
``now`` passed in, not a clock read here. Username and password are read at every data call
(``httpjson.Credential``); when they change (a rotated Secret), the next call logs in again.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from typing import Any

import httpx

from greenplace.domain import series
from greenplace.signals import contract, egress, httpjson

__all__ = ["DEFAULT_URL", "G_PER_KWH_PER_LB_PER_MWH", "WattTimeSource"]

DEFAULT_URL = "https://api.watttime.org"
G_PER_KWH_PER_LB_PER_MWH = 0.45359237  # 453.59237 g per lb / 1000 kWh per MWh
TOKEN_LIFETIME = datetime.timedelta(minutes=25)  # WattTime says 30; renew a little early
_UNITS = {"lbs_co2_per_mwh": G_PER_KWH_PER_LB_PER_MWH, "g_co2_per_kwh": 1.0}


class WattTimeSource(httpjson.HttpSource):
    """MOER from WattTime; every call bounded by ``timeout_s``."""

    def __init__(
        self,
        name: str,
        username: httpjson.Credential,
        password: httpjson.Credential,
        *,
        ttl: datetime.timedelta,
        base_url: str = DEFAULT_URL,
        region_map: Mapping[str, str] | None = None,
        signal_type: str = "co2_moer",
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        policy: egress.EgressPolicy | None = None,
    ) -> None:
        super().__init__(name, ttl, base_url, timeout_s, transport, policy=policy)
        self._regions = dict(region_map or {})
        self._signal_type = signal_type
        self._username = username
        self._password = password
        # The bearer token, when it was issued, and the (username, password) it was issued for.
        self._token: tuple[str, datetime.datetime, tuple[str, str]] | None = None

    def latest(self, key: contract.SignalKey, now: datetime.datetime) -> contract.Observation:
        region, where = self._region(key)
        body = self._data("/v3/forecast", region, where, now, horizon_hours="0")
        factor = self._factor(body, where)
        times, values = _points(body, where)
        return contract.Observation(values[0] * factor, times[0])

    def forecast(
        self,
        key: contract.SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> series.TimeSeries:
        region, where = self._region(key)
        hours = min(max(math.ceil((end - now).total_seconds() / 3600), 1), 72)
        body = self._data("/v3/forecast", region, where, now, horizon_hours=str(hours))
        factor = self._factor(body, where)
        times, values = _points(body, where)
        return series.TimeSeries(times, tuple(v * factor for v in values))

    def relative_index(
        self, key: contract.SignalKey, now: datetime.datetime
    ) -> contract.Observation:
        """The signal index (0-100 percentile, lower is cleaner) for temporal shifting."""
        region, where = self._region(key)
        times, values = _points(self._data("/v3/signal-index", region, where, now), where)
        return contract.Observation(values[0], times[0])

    def _region(self, key: contract.SignalKey) -> tuple[str, str]:
        if key.kind is not contract.SignalKind.CARBON_INTENSITY:
            raise contract.SignalUnsupportedError(
                f"WattTime source {self.name} gives carbon intensity only, not {key.kind}"
            )
        region = self._regions.get(key.subject)
        if region is None:
            raise contract.SignalMissingError(
                f"WattTime source {self.name}: grid zone {key.subject} has no WattTime region; "
                "add it to the SignalSource zoneMapping"
            )
        return region, f"WattTime source {self.name} (region {region})"

    def _data(
        self, path: str, region: str, where: str, now: datetime.datetime, **extra: str
    ) -> Any:
        params = {"region": region, "signal_type": self._signal_type, **extra}
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self._login(now, where)}"}
            try:
                return httpjson.get_json(
                    self._client, f"{self._base}{path}", where=where, params=params, headers=headers
                )
            except contract.SignalCredentialsError:
                if attempt == 2 or self._token is None:
                    raise
                self._token = None  # perhaps expired early: log in once more
        raise AssertionError("unreachable")  # pragma: no cover

    def _login(self, now: datetime.datetime, where: str) -> str:
        account = (httpjson.reveal(self._username), httpjson.reveal(self._password))
        known = self._token
        if known is not None and now - known[1] < TOKEN_LIFETIME and known[2] == account:
            return known[0]
        auth = httpx.BasicAuth(*account)
        body = httpjson.get_json(self._client, f"{self._base}/login", where=where, auth=auth)
        token = httpjson.require(body, "token", where=where)
        if not isinstance(token, str) or not token:
            raise contract.SignalMalformedError(f"{where}: login answered no token")
        self._token = (token, now, account)
        return token

    def _factor(self, body: Any, where: str) -> float:
        units = httpjson.require(body, "meta", "units", where=where)
        if units not in _UNITS:
            raise contract.SignalMalformedError(
                f"{where}: units {units!r} are not an emission rate ({', '.join(_UNITS)}); "
                "use signal_type co2_moer"
            )
        return _UNITS[units]


def _points(body: Any, where: str) -> tuple[tuple[datetime.datetime, ...], tuple[float, ...]]:
    data = httpjson.require(body, "data", where=where)
    if not isinstance(data, list) or not data:
        raise contract.SignalMissingError(f"{where}: answer has no data points")
    points = sorted(
        (
            httpjson.parse_time(httpjson.require(p, "point_time", where=where), where=where),
            httpjson.number(httpjson.require(p, "value", where=where), where=where),
        )
        for p in data
    )
    unique = dict(points)
    times = tuple(sorted(unique))
    return times, tuple(unique[t] for t in times)
