"""Prometheus as a signal source, and the one thin PromQL client greenplace uses.

Why this module exists: clusters that already scrape a carbon or price exporter (or record rules
over them) should not need another feed. ``Querier`` wraps ``prometheus-api-client`` with a
timeout on every call, no retries (the fallback chain is the retry policy) and errors mapped to
``SignalError`` reasons, and returns plain values; the accounting reuses it through a plain
callable, so only this module talks to Prometheus. ``PrometheusSource`` runs one query template
per signal kind, with ``$subject`` replaced by the grid zone or pool name.

The observation time of a reading is ``timestamp(<query>)``: exact when the query is a plain
selector (``greenplace_grid_intensity{zone="$subject"}``); for an aggregated query Prometheus
gives the evaluation time, so the age reads 0 and only its lookback (5 min by default) bounds it.

Given an ``egress.EgressPolicy`` (the operator gives its own to SignalSources' queriers and to
the querier of an EnergyReport's ``spec.prometheus.url``), every request, redirects included, is
checked and connects only to accepted addresses (``egress.guard_session``); without one (the
accounting's ``--prometheus-url``, which the operator's own configuration names), nothing is
checked. An error answer is described by its status and Prometheus's ``error`` field, never
copied whole into the message.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

import requests
from prometheus_api_client import exceptions as prom_exceptions
from prometheus_api_client import prometheus_connect
from urllib3.util import retry

from greenplace.domain import series
from greenplace.signals import contract, egress, httpjson

__all__ = ["PrometheusSource", "Querier", "Sample"]

_SAFE_SUBJECT = re.compile(r"^[A-Za-z0-9_.:-]+$")
# How prometheus-api-client words a non-2xx answer: "HTTP Status Code 400 (b'...')".
_HTTP_STATUS = re.compile(r"HTTP Status Code (\d+) \((b(['\"]).*\3)\)", re.DOTALL)


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector: its labels, value and sample time."""

    labels: Mapping[str, str]
    value: float
    at: datetime.datetime


class Querier:
    """Instant and range PromQL queries against one Prometheus, each bounded by ``timeout_s``."""

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        headers: Mapping[str, str] | None = None,
        policy: egress.EgressPolicy | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        session = requests.Session()
        self._client = prometheus_connect.PrometheusConnect(
            url=url,
            headers=dict(headers or {}),
            retry=retry.Retry(total=0, connect=0, read=0, status=0),
            timeout=timeout_s,  # type: ignore[arg-type]  # requests takes float seconds
            session=session,
        )
        if policy is not None:  # after the client mounted its own adapter on url: replace it
            policy.guard_session(session, url)

    def vector(self, query: str, at: datetime.datetime) -> tuple[Sample, ...]:
        """Evaluate ``query`` at ``at``; raise a ``SignalError`` saying what failed and where."""
        result = self._call(query, lambda: self._client.custom_query(query, {"time": _ts(at)}))
        try:
            return tuple(
                Sample(
                    labels=dict(item.get("metric", {})),
                    value=float(item["value"][1]),
                    at=datetime.datetime.fromtimestamp(float(item["value"][0]), datetime.UTC),
                )
                for item in result
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise contract.SignalMalformedError(
                f"Prometheus {self.url}: cannot read the answer to {query!r}: {error!r}"
            ) from error

    def matrix(
        self,
        query: str,
        start: datetime.datetime,
        end: datetime.datetime,
        step: datetime.timedelta,
    ) -> tuple[tuple[Mapping[str, str], series.TimeSeries], ...]:
        """Evaluate ``query`` over ``[start, end]`` every ``step``: one series per label set."""
        result = self._call(
            query,
            lambda: self._client.custom_query_range(
                query, start, end, f"{step.total_seconds():g}s"
            ),
        )
        try:
            return tuple(
                (
                    dict(item.get("metric", {})),
                    series.TimeSeries(
                        tuple(
                            datetime.datetime.fromtimestamp(float(t), datetime.UTC)
                            for t, _ in item["values"]
                        ),
                        tuple(float(v) for _, v in item["values"]),
                    ),
                )
                for item in result
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            raise contract.SignalMalformedError(
                f"Prometheus {self.url}: cannot read the range answer to {query!r}: {error!r}"
            ) from error

    def _call(self, query: str, call: Any) -> Any:
        where = f"Prometheus {self.url}, query {query!r}"
        try:
            return call()
        except requests.exceptions.Timeout as error:
            raise contract.SignalTimeoutError(
                f"{where}: no answer within {self.timeout_s:g} s; check the server's load or "
                "raise the SignalSource timeout"
            ) from error
        except requests.exceptions.ConnectionError as error:
            raise contract.SignalUnreachableError(
                f"{where}: cannot connect ({type(error).__name__}); check the URL and that "
                "Prometheus is running"
            ) from error
        except prom_exceptions.PrometheusApiClientException as error:
            raise contract.SignalHttpError(
                f"{where}: {_peer_error(error)}; check the query in the SignalSource"
            ) from error
        except (requests.exceptions.RequestException, ValueError) as error:
            raise contract.SignalMalformedError(f"{where}: unreadable answer: {error!r}") from error


@dataclasses.dataclass(frozen=True, slots=True)
class PrometheusSource:
    """Signals from PromQL: one query template per kind, ``$subject`` replaced by the subject."""

    name: str
    querier: Querier
    queries: Mapping[contract.SignalKind, str]
    ttl: datetime.timedelta

    def latest(self, key: contract.SignalKey, now: datetime.datetime) -> contract.Observation:
        query = self._query(key)
        values = self.querier.vector(query, now)
        if not values:
            raise contract.SignalMissingError(
                f"Prometheus source {self.name}: {query!r} returned no series at {now} "
                "(nothing scraped within the lookback); check the exporter and the labels"
            )
        if len(values) > 1:
            raise contract.SignalMalformedError(
                f"Prometheus source {self.name}: {query!r} returned {len(values)} series; it "
                "must return one: narrow the selector or aggregate (max/avg)"
            )
        (sample,) = values
        if not math.isfinite(sample.value):
            raise contract.SignalMalformedError(
                f"Prometheus source {self.name}: {query!r} returned {sample.value}"
            )
        stamps = self.querier.vector(f"timestamp({query})", now)
        observed = (
            datetime.datetime.fromtimestamp(stamps[0].value, datetime.UTC)
            if len(stamps) == 1 and math.isfinite(stamps[0].value)
            else sample.at
        )
        return contract.Observation(sample.value, observed)

    def forecast(
        self,
        key: contract.SignalKey,
        start: datetime.datetime,
        end: datetime.datetime,
        now: datetime.datetime,
    ) -> series.TimeSeries:
        raise contract.SignalUnsupportedError(
            f"Prometheus source {self.name} gives no forecast for {key}; put a trace, "
            "Electricity Maps or WattTime source in the chain for forecasts"
        )

    def _query(self, key: contract.SignalKey) -> str:
        template = self.queries.get(key.kind)
        if template is None:
            raise contract.SignalMissingError(
                f"Prometheus source {self.name} has no query for {key.kind}; add one to "
                "the SignalSource spec.prometheus.queries"
            )
        if not _SAFE_SUBJECT.match(key.subject):
            raise contract.SignalMissingError(
                f"Prometheus source {self.name}: subject {key.subject!r} is not a plain name "
                "(letters, digits, _ . : -); fix the zone mapping"
            )
        return template.replace("$subject", key.subject)


def _peer_error(error: Exception) -> str:
    """The status and Prometheus's ``error`` field of an error answer, not its whole body."""
    found = _HTTP_STATUS.search(str(error))
    if found is None:
        return "the answer was refused (not shown)"
    try:
        content = ast.literal_eval(found.group(2))
    except (ValueError, SyntaxError):
        content = b""
    if not isinstance(content, bytes):
        content = b""
    return f"HTTP {found.group(1)} ({httpjson.describe_answer(content, None)})"


def _ts(at: datetime.datetime) -> str:
    return f"{at.timestamp():.3f}"
