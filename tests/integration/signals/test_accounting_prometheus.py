"""Per-request energy, carbon and cost from a real Prometheus, checked against hand figures.

The scenario is described in ``prometheus_fixture``. Expected values below are worked out by
hand from it (window 1 h; PUE FR 1.2, DE 1.3; embodied 20 gCO2e/GPU-h; intensity FR 50,
DE 500 gCO2e/kWh; price FR 2, DE 3 EUR/GPU-h):

llama-8b on fr-a100: gpu0 300 Wh whole + gpu1 250 Wh x 200/(200+600) tokens = 362.5 Wh, 1.25 GPU-h,
  10800 requests; facility 435 Wh; 435/1000 x 50 + 1.25 x 20 = 46.75 g; 1.25 x 2 = 2.5 EUR.
mistral-7b on fr-a100: 250 x 0.75 = 187.5 Wh, 0.75 GPU-h, 3600 requests; facility 225 Wh;
  11.25 + 15 = 26.25 g; 1.5 EUR.
llama-8b on de-h100: 700 Wh x 3/7 (MIG 3g) = 300 Wh, 3/7 GPU-h, 5400 requests; facility 390 Wh;
  195 + 60/7 = 203.571 g; 9/7 EUR.
mistral-7b on de-h100: 700 x 2/7 = 200 Wh, 2/7 GPU-h, 1800 requests; facility 260 Wh;
  130 + 40/7 = 135.714 g; 6/7 EUR.

These are team-a's figures (a report scoped to its namespace): team-b's pod llama-fr-0 (400 Wh,
10800 requests of llama-8b on fr-a100) and qwen-32b (1/7 of de-h100's 700 Wh = 100 Wh, 900
requests) are not in them, and team-a sees no unattributed energy (its pods all served). Over
the whole cluster: llama-8b on fr-a100 is 362.5 + 400 = 762.5 Wh for 21600 requests, qwen-32b
100 Wh for 900, and 100 Wh of de-h100 (1 free MIG slice) is unattributed.

The queriers here have no egress policy, like the operator's own ``--prometheus-url``; an
EnergyReport's ``spec.prometheus.url`` is queried through the operator's ``EgressPolicy``, which
reaches this Prometheus on 127.0.0.1 over http only when allowed explicitly (last test).
"""

from __future__ import annotations

import datetime

import prometheus_client
import pytest

from greenplace.accounting import attribution, grading, report, serving, telemetry
from greenplace.signals import chain, contract, egress, promql, static

from . import prometheus_fixture as fx

M = attribution.Method
METHODS = {
    ("llama-8b", "fr-a100"): {M.WHOLE_GPU, M.TOKEN_SHARE},
    ("mistral-7b", "fr-a100"): {M.TOKEN_SHARE},
    ("llama-8b", "de-h100"): {M.MIG_SLICE},
    ("mistral-7b", "de-h100"): {M.MIG_SLICE},
}
CARBON = contract.SignalKind.CARBON_INTENSITY
PRICE = contract.SignalKind.PRICE
QUERIES = {
    CARBON: 'greenplace_grid_carbon_intensity{zone="$subject"}',
    PRICE: 'greenplace_gpu_price{pool="$subject"}',
}


def signal_chain(url: str) -> chain.Chain:
    source = promql.PrometheusSource(
        "prom", promql.Querier(url, timeout_s=5), QUERIES, datetime.timedelta(minutes=10)
    )
    return chain.Chain([source, static.StaticSource("static", {})])


def build_report(
    server: fx.PrometheusServer, query: serving.QueryFn, namespace: str | None = fx.NAMESPACE
) -> report.EnergyReport:
    signals = signal_chain(server.url)
    carbon = {
        zone: signals.read(contract.SignalKey(CARBON, zone), fx.END)
        for zone, _ in fx.POOLS.values()
    }
    prices = {pool: signals.read(contract.SignalKey(PRICE, pool), fx.END) for pool in fx.POOLS}
    facts = [
        report.PoolFacts(pool, zone, pue, prices[pool].value or 0.0, "EUR", 20.0)
        for pool, (zone, pue) in fx.POOLS.items()
    ]
    measurement = serving.measure(query, fx.END, fx.WINDOW, namespace=namespace)
    return report.build(
        measurement,
        facts,
        {zone: reading.value for zone, reading in carbon.items()},
        intensity_sources={zone: reading.source or "" for zone, reading in carbon.items()},
    )


def rows_by_key(energy_report: report.EnergyReport) -> dict[tuple[str, str], report.ReportRow]:
    return {(row.model, row.pool): row for row in energy_report.rows}


def test_per_request_figures_match_hand_computation(prometheus: fx.PrometheusServer) -> None:
    querier = promql.Querier(prometheus.url)
    energy_report = build_report(prometheus, querier.vector)
    assert energy_report.energy_source is serving.EnergySource.DCGM_ENERGY
    assert energy_report.intensity_sources == {"FR": "prom", "DE": "prom"}
    rows = rows_by_key(energy_report)
    assert set(rows) == set(fx.EXPECTED)
    for key, (wh, grams, eur, energy_grade, carbon_grade) in fx.EXPECTED.items():
        row = rows[key]
        assert row.gpu_wh_per_request == pytest.approx(wh, rel=0.01), key
        assert row.gco2e_per_request == pytest.approx(grams, rel=0.01), key
        assert row.cost_per_request == pytest.approx(eur, rel=0.01), key
        assert (row.energy_grade, row.carbon_grade) == (energy_grade, carbon_grade), key
        assert set(row.attribution) == METHODS[key], key
    assert energy_report.unattributed_gpu_wh == {}  # free MIG slices: a Cluster report's
    llama_fr = rows[("llama-8b", "fr-a100")]
    assert llama_fr.tokens == pytest.approx((500 + 200) * 3600, rel=0.01)
    assert llama_fr.cost_per_1k_tokens == pytest.approx(2.5 / 2520, rel=0.01)
    assert energy_report.notes == ()


def test_grades_differ_by_zone_for_the_same_model(prometheus: fx.PrometheusServer) -> None:
    rows = rows_by_key(build_report(prometheus, promql.Querier(prometheus.url).vector))
    fr, de = rows[("llama-8b", "fr-a100")], rows[("llama-8b", "de-h100")]
    assert fr.energy_grade == de.energy_grade == grading.Grade.B
    assert fr.carbon_grade is grading.Grade.B and de.carbon_grade is grading.Grade.D


def power_only(querier: promql.Querier) -> serving.QueryFn:
    def without_energy_counter(query: str, at: datetime.datetime) -> tuple[promql.Sample, ...]:
        return () if "TOTAL_ENERGY" in query else querier.vector(query, at)

    return without_energy_counter


def test_power_gauge_path_gives_the_same_figures(prometheus: fx.PrometheusServer) -> None:
    energy_report = build_report(prometheus, power_only(promql.Querier(prometheus.url)))
    assert energy_report.energy_source is serving.EnergySource.DCGM_POWER
    rows = rows_by_key(energy_report)
    for key, (wh, grams, eur, _, _) in fx.EXPECTED.items():
        assert rows[key].gpu_wh_per_request == pytest.approx(wh, rel=0.01), key
        assert rows[key].gco2e_per_request == pytest.approx(grams, rel=0.01), key
        assert rows[key].cost_per_request == pytest.approx(eur, rel=0.01), key


def test_report_is_published_as_metrics(prometheus: fx.PrometheusServer) -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = telemetry.AccountingMetrics(registry)
    metrics.publish(build_report(prometheus, promql.Querier(prometheus.url).vector), "team-a", "r")
    own = {"namespace": "team-a", "report": "r"}
    labels = {**own, "model": "llama-8b", "pool": "de-h100", "zone": "DE"}
    wh, grams, eur, _, _ = fx.EXPECTED[("llama-8b", "de-h100")]
    assert registry.get_sample_value("greenplace_request_energy_wh", labels) == pytest.approx(
        wh, rel=0.01
    )
    assert registry.get_sample_value("greenplace_request_carbon_gco2e", labels) == pytest.approx(
        grams, rel=0.01
    )
    assert registry.get_sample_value(
        "greenplace_request_cost", {**labels, "currency": "EUR"}
    ) == pytest.approx(eur, rel=0.01)
    assert (
        registry.get_sample_value(
            "greenplace_request_grade", {**labels, "scale": "carbon", "grade": "D"}
        )
        == 4.0
    )
    cluster = build_report(prometheus, promql.Querier(prometheus.url).vector, namespace=None)
    metrics.publish(cluster, "ops", "all")
    text = prometheus_client.generate_latest(registry).decode()
    assert (
        'greenplace_report_unattributed_energy_wh{namespace="ops",pool="de-h100",report="all"} '
        "100.0" in text
    )
    assert registry.get_sample_value("greenplace_request_energy_wh", labels) == pytest.approx(
        wh, rel=0.01
    )  # the Cluster report's rows sit beside team-a's
    unattributed = "greenplace_report_unattributed_energy_wh"
    assert registry.get_sample_value(unattributed, {**own, "pool": "de-h100"}) is None


def test_a_namespaced_report_never_shows_another_namespace(
    prometheus: fx.PrometheusServer,
) -> None:
    querier = promql.Querier(prometheus.url)
    for query in (querier.vector, power_only(querier)):
        mine = build_report(prometheus, query)
        assert {r.model for r in mine.rows} == {"llama-8b", "mistral-7b"}
        llama_fr = rows_by_key(mine)[("llama-8b", "fr-a100")]
        assert llama_fr.gpu_wh == pytest.approx(362.5, rel=0.01)  # not + team-b's 400 Wh
        assert llama_fr.requests == pytest.approx(10800, rel=0.01)
        theirs = build_report(prometheus, query, fx.OTHER_NAMESPACE)
        assert {key: (r.gpu_wh, r.requests) for key, r in rows_by_key(theirs).items()} == {
            ("llama-8b", "fr-a100"): pytest.approx((400.0, 10800), rel=0.01),
            ("qwen-32b", "de-h100"): pytest.approx((100.0, 900), rel=0.01),
        }
        assert theirs.unattributed_gpu_wh == {}


def test_a_cluster_report_shows_every_namespace_and_the_free_slices(
    prometheus: fx.PrometheusServer,
) -> None:
    everything = build_report(prometheus, promql.Querier(prometheus.url).vector, namespace=None)
    rows = {key: (r.gpu_wh, r.requests) for key, r in rows_by_key(everything).items()}
    assert rows == {
        ("llama-8b", "fr-a100"): pytest.approx((762.5, 21600), rel=0.01),
        ("mistral-7b", "fr-a100"): pytest.approx((187.5, 3600), rel=0.01),
        ("llama-8b", "de-h100"): pytest.approx((300.0, 5400), rel=0.01),
        ("mistral-7b", "de-h100"): pytest.approx((200.0, 1800), rel=0.01),
        ("qwen-32b", "de-h100"): pytest.approx((100.0, 900), rel=0.01),
    }
    assert everything.unattributed_gpu_wh == pytest.approx({"de-h100": 100.0}, rel=0.01)


def test_a_reports_url_reaches_this_prometheus_only_when_allowed(
    prometheus: fx.PrometheusServer,
) -> None:
    """What the Reporter builds for a spec.prometheus.url: a querier under the egress policy."""
    for refusing, why in (
        (egress.EgressPolicy(), "plain http is not allowed"),
        (egress.EgressPolicy(allow_http=True), "127.0.0.1 is a loopback address"),
        (egress.EgressPolicy.parse(["127.0.0.0/8"]), "plain http is not allowed"),
    ):
        querier = promql.Querier(prometheus.url, policy=refusing)
        with pytest.raises(contract.SignalNotAllowedError, match=why):
            querier.vector("up", fx.END)
    allowed = egress.EgressPolicy.parse(["127.0.0.1"], allow_http=True)
    querier = promql.Querier(prometheus.url, policy=allowed)
    rows = rows_by_key(build_report(prometheus, querier.vector))
    assert set(rows) == set(fx.EXPECTED)
    for key, (wh, _, _, _, _) in fx.EXPECTED.items():
        assert rows[key].gpu_wh_per_request == pytest.approx(wh, rel=0.01), key
