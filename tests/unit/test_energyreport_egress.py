"""An EnergyReport's ``spec.prometheus.url`` follows the SignalSources' egress rules.

Whoever may write an EnergyReport chooses the URL the operator queries, from inside the cluster,
and reads messages about what came back: the Reporter checks it with the same
``signals.egress.EgressPolicy`` (same ``--allow-signal-hosts`` and ``--allow-insecure-signal-http``)
as written and, through the querier, at connect time. A refused URL is Ready False
``SourceNotAllowed`` with no rows and no gauges, and no querier is even built for it; the
operator's own ``--prometheus-url`` stays trusted, even when a report restates it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import prometheus_client
import pytest

from greenplace.accounting import telemetry
from greenplace.controller import cache as cache_
from greenplace.controller import reports, status
from greenplace.signals import egress
from tests import builders, promfake

T0 = datetime.datetime(2026, 1, 1, 1, tzinfo=datetime.UTC)
OWN_URL = "http://prometheus.monitoring:9090"  # the operator's --prometheus-url
PLANNED = (builders.pool("p"),)  # the pools the last placement cycle planned with


class Queriers:
    """The querier factory: records (url, policy) and answers from the tenancy fake."""

    def __init__(self) -> None:
        self.built: list[tuple[str, egress.EgressPolicy | None]] = []

    def __call__(self, url: str, *, policy: egress.EgressPolicy | None = None) -> Any:
        self.built.append((url, policy))
        return _Fake()


class _Fake:
    vector = promfake.FakeProm(promfake.SHARED)


class Setup:
    def __init__(self, *allow: str, http: bool = False, default: str | None = OWN_URL) -> None:
        self.writer = promfake.StatusWriter()
        self.registry = prometheus_client.CollectorRegistry()
        self.metrics = telemetry.AccountingMetrics(self.registry)
        self.queriers = Queriers()
        self.reporter = reports.Reporter(
            status.StatusRecorder(self.writer),  # type: ignore[arg-type]
            self.metrics,
            default,
            querier=self.queriers,
            allow_hosts=allow,
            allow_insecure_http=http,
        )
        self.cache = cache_.Cache()

    def report(self, url: str | None, generation: int = 1) -> dict[str, Any]:
        spec: dict[str, Any] = {"window": "1h"}
        if url is not None:
            spec["prometheus"] = {"url": url}
        meta = {"namespace": "team-a", "name": "r", "generation": generation}
        self.cache.put_report({"metadata": meta, "spec": spec})
        asyncio.run(self.reporter.run(self.cache, T0, pools=PLANNED))
        return self.writer.status[("team-a", "r")]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://169.254.169.254/latest", ["plain http is not allowed",
                                           "--allow-insecure-signal-http",
                                           "signals.allowInsecureHttp"]),
        ("https://169.254.169.254/latest", ["link-local", "--allow-signal-hosts=169.254.169.254",
                                            "signals.allowHosts"]),
        ("https://10.0.0.5:9090", ["10.0.0.5 is a private or cluster-internal address"]),
        ("https://[::1]:9090", ["::1 is a loopback address"]),
        ("https://prometheus.monitoring.svc", ["cluster-internal name",
                                               "--allow-signal-hosts=prometheus.monitoring.svc"]),
        ("https://kubernetes", ["a single label"]),
        ("https://u:pw@prom.example.org", ["credentials in the URL"]),
        ("https://prom.example.org/?token=abc", ["looks like a credential"]),
    ],
)  # fmt: skip
def test_a_refused_url_is_ready_false_source_not_allowed(url: str, says: list[str]) -> None:
    setup = Setup()
    written = setup.report(url)
    assert promfake.condition(written, "Ready") == ("False", "SourceNotAllowed")
    assert promfake.condition(written, "Degraded") == ("True", "SourceNotAllowed")
    message = written["conditions"][0]["message"]
    assert message.startswith("spec.prometheus.url refused: "), message
    for text in says:
        assert text in message, message
    assert "pw@" not in message and "abc" not in message  # the URL itself is never repeated
    assert "remove spec.prometheus to use the operator's own Prometheus" in message
    assert written["rows"] == [] and written["unattributedGpuWh"] is None
    assert setup.queriers.built == []  # nothing was built, so nothing was asked


def test_allowed_urls_are_queried_through_the_policy() -> None:
    public = Setup()
    written = public.report("https://prom.example.org")
    assert promfake.condition(written, "Ready") == ("True", "Reported")
    ((url, policy),) = public.queriers.built
    assert url == "https://prom.example.org" and policy is not None  # checked at connect too

    listed = Setup("prometheus.monitoring", http=True, default=None)
    written = listed.report("http://prometheus.monitoring:9090")
    assert promfake.condition(written, "Ready") == ("True", "Reported")
    ((_, policy),) = listed.queriers.built
    assert policy == egress.EgressPolicy.parse(["prometheus.monitoring"], allow_http=True)


@pytest.mark.parametrize("url", [None, OWN_URL, f"{OWN_URL}/"])
def test_the_operators_own_prometheus_is_trusted(url: str | None) -> None:
    setup = Setup()  # nothing allowed, yet plain http to an internal name is queried
    written = setup.report(url)
    assert promfake.condition(written, "Ready") == ("True", "Reported")
    ((built, policy),) = setup.queriers.built
    assert built.rstrip("/") == OWN_URL and policy is None


def test_no_default_says_what_to_set_instead() -> None:
    written = Setup(default=None).report("http://10.0.0.5:9090")
    message = written["conditions"][0]["message"]
    assert "plain http is not allowed" in message
    assert "operator's own Prometheus" not in message  # there is none to fall back on


def test_a_report_refused_after_it_reported_loses_its_rows_and_gauges(
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup = Setup()
    written = setup.report("https://prom.example.org", generation=1)
    assert written["rows"] and setup.metrics.reports() == {("team-a", "r")}
    with caplog.at_level(logging.WARNING, logger="greenplace.reports"):
        written = setup.report("https://169.254.169.254", generation=2)
        setup.report("https://169.254.169.254", generation=2)  # the next period: logged once
    assert promfake.condition(written, "Ready") == ("False", "SourceNotAllowed")
    assert written["rows"] == [] and setup.metrics.reports() == set()
    text = prometheus_client.generate_latest(setup.registry).decode()
    assert 'report="r"' not in text
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and "EnergyReport team-a/r: spec.prometheus.url refused" in logged[0]


def test_a_name_resolving_to_loopback_is_refused_at_connect_time() -> None:
    """127.1 is no address as written, nor an internal name: its address is judged on connect."""
    writer = promfake.StatusWriter()
    reporter = reports.Reporter(
        status.StatusRecorder(writer),  # type: ignore[arg-type]
        telemetry.AccountingMetrics(prometheus_client.CollectorRegistry()),
        None,
        allow_insecure_http=True,
    )
    cache = cache_.Cache()
    meta = {"namespace": "team-a", "name": "r", "generation": 1}
    spec = {"window": "1h", "prometheus": {"url": "http://127.1:9"}}
    cache.put_report({"metadata": meta, "spec": spec})
    asyncio.run(reporter.run(cache, T0, pools=PLANNED))
    written = writer.status[("team-a", "r")]
    assert promfake.condition(written, "Ready") == ("False", "SourceNotAllowed")
    assert "127.1 resolves to 127.0.0.1" in written["conditions"][0]["message"]
