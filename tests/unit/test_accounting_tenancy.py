"""EnergyReport tenancy: a namespaced report sees only its namespace's pods, models and energy.

A fake Prometheus (``tests.promfake.FakeProm``) answers the accounting's PromQL from labelled
samples, so the tests see what a real server would return for the queries actually built; the
real server is in tests/integration/signals.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import prometheus_client
import pytest

from greenplace.accounting import attribution, report, serving, telemetry
from greenplace.controller import cache as cache_
from greenplace.controller import reports, status
from tests import builders, promfake

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
H = datetime.timedelta(hours=1)
M = attribution.Method


def test_namespace_scope_filters_serving_queries_and_cluster_scope_does_not() -> None:
    prom = promfake.FakeProm(promfake.SHARED)
    serving.measure(prom, T0, H, namespace="team-a")
    usage_queries = [q for q in prom.asked if "vllm:" in q and "model_name" in q]
    assert usage_queries and all('{namespace="team-a"}' in q for q in usage_queries)
    energy = [q for q in prom.asked if "DCGM" in q]
    # GPU energy is split between all pods of a GPU, so it is read unfiltered, per pod.
    assert energy and all("namespace" in q and 'namespace="' not in q for q in energy)

    cluster = promfake.FakeProm(promfake.SHARED)
    serving.measure(cluster, T0, H)
    assert cluster.asked and not any('namespace="' in q for q in cluster.asked)
    assert all("namespace" in q for q in cluster.asked)  # pods keyed by namespace too

    custom = promfake.FakeProm({})
    labels = serving.LabelNames(namespace="kubernetes_namespace")
    serving.measure(custom, T0, H, namespace='we"ird', labels=labels)
    assert any('{kubernetes_namespace="we\\"ird"}' in q for q in custom.asked)


def test_a_gpu_shared_by_two_namespaces_shows_each_only_its_share() -> None:
    for ns, model, wh in (("team-a", "llama", 75.0), ("team-b", "secret-model", 25.0 + 100.0)):
        measured = serving.measure(promfake.FakeProm(promfake.SHARED), T0, H, namespace=ns)
        assert {u.namespace for u in measured.usages} == {ns}
        facts = [report.PoolFacts("p", "FR", 1.0, 1.0, "EUR")]
        built = report.build(measured, facts, {"FR": 100.0})
        assert [(r.model, r.gpu_wh) for r in built.rows] == [(model, pytest.approx(wh))], ns
        assert built.unattributed_gpu_wh == {}  # the idle GPU 2 is not the tenant's business
    a = serving.measure(promfake.FakeProm(promfake.SHARED), T0, H, namespace="team-a")
    assert "secret-model" not in repr(a)  # other tenants' models never reach the report
    assert {r.gpu for r in a.rows} == {"0"}  # team-b's own GPU and the idle one are dropped
    assert [(u.namespace, u.pod, u.model) for u in a.foreign] == [("team-b", "web", "")]

    everything = report.build(
        serving.measure(promfake.FakeProm(promfake.SHARED), T0, H),
        [report.PoolFacts("p", "FR", 1.0, 1.0, "EUR")],
        {"FR": 100.0},
    )
    assert {r.model: r.gpu_wh for r in everything.rows} == pytest.approx(
        {"llama": 75.0, "secret-model": 125.0}
    )
    assert everything.unattributed_gpu_wh == pytest.approx({"p": 100.0})


def test_same_pod_names_in_two_namespaces_are_not_merged() -> None:
    rows = [
        attribution.DeviceRow("p", "n1", "0", "web", "", 100.0, 1.0, "team-a"),
        attribution.DeviceRow("p", "n1", "1", "web", "", 100.0, 1.0, "team-b"),
    ]
    usages = [
        attribution.Usage("p", "web", "m", 1.0, 0.0, 0.0, "team-a"),
        attribution.Usage("p", "web", "n", 1.0, 0.0, 0.0, "team-b"),
    ]
    got = attribution.attribute(rows, usages)
    assert {(s.model, s.gpu_wh, s.methods) for s in got.shares} == {
        ("m", 100.0, frozenset({M.WHOLE_GPU})),
        ("n", 100.0, frozenset({M.WHOLE_GPU})),
    }


@pytest.mark.parametrize(
    ("namespace", "want", "unattributed"),
    [
        ("team-a", {"m": 10.0}, {}),
        ("team-b", {}, {"p": 40.0}),  # its pod served nothing: its own slice, shown to it
        (None, {"m": 10.0}, {"p": 60.0}),  # + 2 free slices, only in a Cluster report
    ],
)
def test_mig_shared_between_namespaces(
    namespace: str | None, want: dict[str, float], unattributed: dict[str, float]
) -> None:
    rows = [
        attribution.DeviceRow("p", "n1", "0", "a", "1g.10gb", 70.0, 1.0, "team-a"),
        attribution.DeviceRow("p", "n1", "0", "b", "4g.40gb", 70.0, 1.0, "team-b"),
    ]
    usages = [attribution.Usage("p", "a", "m", 1.0, 0.0, 0.0, "team-a")]
    got = attribution.attribute(rows, usages, namespace=namespace)
    assert {s.model: s.gpu_wh for s in got.shares} == pytest.approx(want)
    assert dict(got.unattributed_gpu_wh) == pytest.approx(unattributed)


def one_row_report(model: str) -> report.EnergyReport:
    measured = serving.Measurement(
        T0 + H,
        H,
        (attribution.DeviceRow("p", "n1", "0", "x", "", 10.0, 1.0, "ns"),),
        (attribution.Usage("p", "x", model, 10.0, 0.0, 0.0, "ns"),),
        serving.EnergySource.DCGM_ENERGY,
    )
    return report.build(measured, [report.PoolFacts("p", "FR", 1.0, 1.0, "EUR")], {"FR": 1.0})


def test_gauges_of_two_reports_coexist_and_a_forgotten_one_disappears() -> None:
    registry = prometheus_client.CollectorRegistry()
    metrics = telemetry.AccountingMetrics(registry)
    metrics.publish(one_row_report("m"), "team-a", "r")
    metrics.publish(one_row_report("n"), "team-b", "r")

    def wh(ns: str, model: str) -> float | None:
        labels = {"namespace": ns, "report": "r", "model": model, "pool": "p", "zone": "FR"}
        return registry.get_sample_value("greenplace_request_energy_wh", labels)

    assert (wh("team-a", "m"), wh("team-b", "n")) == (1.0, 1.0)
    metrics.publish(one_row_report("o"), "team-a", "r")  # team-a's model changed
    assert (wh("team-a", "m"), wh("team-a", "o"), wh("team-b", "n")) == (None, 1.0, 1.0)
    assert metrics.reports() == {("team-a", "r"), ("team-b", "r")}
    metrics.forget("team-a", "r")
    text = prometheus_client.generate_latest(registry).decode()
    assert 'namespace="team-a"' not in text and wh("team-b", "n") == 1.0
    window = {"namespace": "team-b", "report": "r"}
    assert registry.get_sample_value("greenplace_report_window_seconds", window) == 3600.0


class FakeQuerier:
    def __init__(self, url: str, *, policy: object = None) -> None:
        self.vector = promfake.FakeProm(promfake.SHARED)


def energy_report(namespace: str, name: str, scope: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "generation": 1},
        "spec": {"window": "1h", "prometheus": {"url": "http://prom:9090"}, "scope": scope},
    }


PLANNED = (builders.pool("p"),)  # the pools the last placement cycle planned with


def run(reporter: reports.Reporter, cache: cache_.Cache) -> None:
    asyncio.run(reporter.run(cache, T0 + H, pools=PLANNED))


def test_cluster_scope_only_in_the_operator_namespace_and_deleted_reports_unpublished() -> None:
    writer = promfake.StatusWriter()
    registry = prometheus_client.CollectorRegistry()
    metrics = telemetry.AccountingMetrics(registry)
    reporter = reports.Reporter(
        status.StatusRecorder(writer),  # type: ignore[arg-type]
        metrics,
        None,
        querier=FakeQuerier,  # type: ignore[arg-type]
        own_namespace="greenplace-system",
        allow_hosts=["prom"],  # the reports' http://prom:9090, allowed explicitly
        allow_insecure_http=True,
    )
    cache = cache_.Cache()
    cache.put_report(energy_report("team-a", "mine", "Namespace"))
    cache.put_report(energy_report("team-a", "all", "Cluster"))
    cache.put_report(energy_report("greenplace-system", "all", "Cluster"))
    run(reporter, cache)

    refused = writer.status[("team-a", "all")]
    assert promfake.condition(refused, "Ready") == ("False", "ClusterScopeNotAllowed")
    assert "greenplace-system" in refused["conditions"][0]["message"]
    assert refused["rows"] == [] and refused["unattributedGpuWh"] is None
    mine = writer.status[("team-a", "mine")]
    assert promfake.condition(mine, "Ready") == ("True", "Reported")
    assert [r["model"] for r in mine["rows"]] == ["llama"]
    assert mine["unattributedGpuWh"] == {}
    cluster = writer.status[("greenplace-system", "all")]
    assert promfake.condition(cluster, "Ready") == ("True", "Reported")
    assert sorted(r["model"] for r in cluster["rows"]) == ["llama", "secret-model"]
    assert cluster["unattributedGpuWh"] == {"p": 100.0}
    assert metrics.reports() == {("team-a", "mine"), ("greenplace-system", "all")}

    cache.drop("EnergyReport", "team-a", "mine")
    run(reporter, cache)
    assert metrics.reports() == {("greenplace-system", "all")}
    assert 'namespace="team-a"' not in prometheus_client.generate_latest(registry).decode()


def test_cluster_scope_allowed_anywhere_when_the_operator_namespace_is_unknown() -> None:
    def reporter(own: str | None) -> reports.Reporter:
        return reports.Reporter(
            status.StatusRecorder(promfake.StatusWriter()),  # type: ignore[arg-type]
            telemetry.AccountingMetrics(prometheus_client.CollectorRegistry()),
            None,
            own_namespace=own,
        )

    assert reporter(None).cluster_scope_refusal("team-a") is None
    assert reporter("ops").cluster_scope_refusal("ops") is None
    assert "'ops'" in (reporter("ops").cluster_scope_refusal("team-a") or "")
