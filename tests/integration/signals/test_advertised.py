"""What the chart advertises, on real status objects and a real Prometheus: the Argo CD health
check and every query of the Grafana dashboard.

Why this module exists: ``charts/greenplace/argocd/health.lua`` and
``charts/greenplace/dashboards/greenplace.json`` are read by other programs (Argo CD, Grafana),
so nothing in the operator fails when they are wrong: a health check that calls a policy no pool
passes Healthy, a panel whose series the operator never sets, stay unnoticed. Here the real
operator writes the statuses and serves the metrics on the real control plane:

- the health script runs as Lua 5.1 (``lupa``; Argo CD runs gopher-lua, Lua 5.1) on each object
  read back with ``kubectl get -o json``, exactly what Argo CD hands it as ``obj``: Progressing
  before the operator has written a status and when the spec is newer than the status,
  Degraded for a policy no pool passes (``NoAllowedPool``), a pool without nodes, a source on a
  fallback, an exhausted Budget and a report whose Prometheus is unreachable, Healthy otherwise;
- a second real Prometheus (the accounting tests' ``PrometheusServer``, scraping the operator
  every second) answers every panel query and template variable of the dashboard with data
  after a cycle, the Budget gauges (set by the placement loop) and the report gauges (from the
  EnergyReport measured on the accounting fixture's Prometheus) included.
"""

from __future__ import annotations

import json
import math
import pathlib
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import lupa.lua51 as lua
import pytest

from greenplace.domain import model
from tests import kubeobjects as k8s
from tests.integration.conftest import LOCAL_FEEDS, Kube, run_operator, wait_for

from . import prometheus_fixture as fx

pytestmark = pytest.mark.cluster

ROOT = pathlib.Path(__file__).resolve().parents[3]
HEALTH = ROOT / "charts" / "greenplace" / "argocd" / "health.lua"
DASHBOARD = ROOT / "charts" / "greenplace" / "dashboards" / "greenplace.json"
OPERATOR_NAMESPACE = "greenplace-system"
DURATION = "greenplace.dev/expected-duration-hours"
# The cheapest-carbon FR pool costs 3.40 EUR per GPU-hour (examples/fleet.yaml): one GPU for
# one hour spends a 3.40 EUR Budget exactly.
FR_POOL_PRICE = 3.40
# The fixture's PUE / price per pool, as test_energyreport.py declares them.
PRICES = {"fr-a100": 2.0, "de-h100": 3.0}


def health(body: dict[str, Any]) -> tuple[str, str]:
    """Argo CD's reading of ``body``: the script's ``hs.status`` and ``hs.message``."""
    runtime = lua.LuaRuntime(unpack_returned_tuples=True)
    script = runtime.eval(f"function(obj)\n{HEALTH.read_text()}\nend")
    result = script(to_lua(runtime, body))
    return str(result["status"]), str(result["message"])


def to_lua(runtime: Any, value: Any) -> Any:
    """JSON as Argo CD gives it to Lua: objects and arrays as tables, arrays from index 1."""
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def get_json(kube: Kube, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    where = ["-n", namespace] if namespace else []
    got = kube.kubectl("get", kind, name, *where, "-o", "json")
    assert got.returncode == 0, got.stderr
    body: dict[str, Any] = json.loads(got.stdout)
    return body


def fixture_pools_and_grid(kube: Kube) -> None:
    """The accounting fixture's pools (no nodes) and a static grid for their zones."""
    for name, (zone, pue) in fx.POOLS.items():
        kube.apply_ok(
            k8s.gpu_pool(name, zone, price=PRICES[name], pue=pue, embodiedGramsPerGpuHour=20)
        )
    static = k8s.static_source({"FR": 50, "DE": 500}, name="fixture")
    kube.apply_ok(k8s.signal_source("fixture-grid", [static], ["FR", "DE"]))


def energy_report(namespace: str, name: str, url: str, **spec: Any) -> dict[str, Any]:
    return k8s.energy_report(
        namespace, name, window="1h", windowEnd=fx.END.isoformat().replace("+00:00", "Z"),
        prometheus={"url": url}, serving="vLLM", migSlicesTotal=7, **spec,
    )  # fmt: skip


def prometheus_source(name: str, url: str, query: str) -> dict[str, Any]:
    return {"name": name, "kind": "Prometheus", "prometheus": {"url": url, "query": query}}


def namespace(kube: Kube, name: str) -> str:
    kube.apply_ok({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


# -- the Argo CD health check ---------------------------------------------------------------------


def test_the_argocd_health_check_reads_real_status_objects(
    kube: Kube, prometheus: fx.PrometheusServer
) -> None:
    ns = kube.namespace(governed=False)
    # Before any operator ran: no status at all.
    kube.apply_ok(k8s.policy(ns, "fr-de", ["FR", "DE"]))
    assert health(get_json(kube, "placementpolicy", "fr-de", ns))[0] == "Progressing"

    # No pool of the fleet is in Japan; it selects no pod (every policy selecting one must allow
    # its pool).
    kube.apply_ok(k8s.policy(ns, "japan-only", ["JP"], select={"team": "nobody"}))
    kube.apply_ok(k8s.budget(ns, "roomy", money=1000.0))
    kube.apply_ok(k8s.budget(ns, "spent", money=FR_POOL_PRICE))
    kube.apply_ok(k8s.policy(ns, "fr-charged", ["FR"], budget="spent", select={"team": "x"}))
    kube.apply_ok(k8s.gpu_pool("no-nodes", "FR", price=1.0))
    fixture_pools_and_grid(kube)
    dead = f"http://127.0.0.1:{fx.free_port()}"
    fallback = [prometheus_source("down", dead, 'carbon{zone="$subject"}'),
                k8s.static_source({"US": 400})]  # fmt: skip
    kube.apply_ok(k8s.signal_source("us-fallback", fallback, ["US"]))
    reports = namespace(kube, fx.NAMESPACE)
    kube.apply_ok(energy_report(reports, "measured", prometheus.url))
    kube.apply_ok(energy_report(reports, "unreachable", dead))

    with run_operator(kube, namespace=OPERATOR_NAMESPACE, **LOCAL_FEEDS):
        assert (
            kube.kubectl("label", "namespace", ns, "greenplace.dev/governed=true").returncode == 0
        )
        charged = k8s.gpu_pod(ns, "one-hour", 1, labels={"team": "x"},
                              annotations={DURATION: "1"})  # fmt: skip
        kube.apply_ok(charged)
        expected = {
            ("placementpolicy", "fr-de", ns): ("Healthy", "Active"),
            ("placementpolicy", "japan-only", ns): ("Degraded", "NoAllowedPool: "),
            ("budget", "roomy", ns): ("Healthy", "Tracking"),
            ("budget", "spent", ns): ("Degraded", "LimitReached: money 3.40 of 3.4"),
            ("gpupool", "gcp-europe-west9-a100", None): ("Healthy", "NodesFound"),
            ("gpupool", "no-nodes", None): ("Degraded", "NoNodes"),
            ("signalsource", "fixture-grid", None): ("Healthy", "Answering"),
            ("signalsource", "us-fallback", None): ("Degraded", "Fallback"),
            ("energyreport", "measured", reports): ("Healthy", "Reported"),
            ("energyreport", "unreachable", reports): ("Degraded", ""),
        }

        def read_all() -> dict[tuple[str, str, str | None], tuple[str, str]]:
            return {key: health(get_json(kube, *key)) for key in expected}

        def as_expected() -> bool:
            found = read_all()
            return all(
                found[key][0] == status and found[key][1].startswith(start)
                for key, (status, start) in expected.items()
            )

        if not wait_for_quietly(as_expected, 60):
            pytest.fail(f"health after the operator's cycles: {read_all()}")
        found = read_all()
        # What Argo CD shows as the reason: the operator's own message, naming the fix.
        assert "none of the" in found[("placementpolicy", "japan-only", ns)][1]
        assert "JP" not in found[("placementpolicy", "fr-de", ns)][1]
        assert "Unreachable" in found[("energyreport", "unreachable", reports)][1], found

    # The operator stopped; a spec change it has not seen: the status is older than the spec.
    france = '{"spec": {"sovereignty": {"allowedCountries": ["FR"]}}}'
    patched = kube.kubectl("patch", "placementpolicy", "fr-de", "-n", ns, "--type=merge",
                           "-p", france)  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    body = get_json(kube, "placementpolicy", "fr-de", ns)
    assert body["metadata"]["generation"] == 2
    assert health(body) == ("Progressing", "greenplace has not yet seen generation 2")


def wait_for_quietly(predicate: Any, timeout_s: float) -> bool:
    """``wait_for`` that returns False on timeout, so the caller reports what it saw."""
    try:
        wait_for(predicate, timeout_s, "")
    except pytest.fail.Exception:
        return False
    return True


# -- the Grafana dashboard ------------------------------------------------------------------------


def instant(server: fx.PrometheusServer, query: str) -> list[dict[str, Any]]:
    url = f"{server.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as answer:
        body: dict[str, Any] = json.load(answer)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def dashboard_queries(variables: dict[str, str]) -> dict[str, str]:
    """Every query of the dashboard (panel targets, template variables' label_values), by
    where it is, with the variables substituted as Grafana does."""
    dashboard = json.loads(DASHBOARD.read_text())

    def substitute(expr: str) -> str:
        for name, value in sorted(variables.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
        assert "$" not in expr, expr
        return expr

    queries = {
        f"panel {panel['id']} ({panel['title']}) {target['refId']}": substitute(target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    }
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):  # label_values(<selector>, label): the selector's series
            selector = query["query"].removeprefix("label_values(").rsplit(",", 1)[0]
            queries[f"variable {variable['name']}"] = substitute(selector)
    return queries


@pytest.fixture
def scraping(tmp_path: pathlib.Path) -> Iterator[list[fx.PrometheusServer]]:
    """Where the test puts the Prometheus scraping its operator, stopped afterwards."""
    started: list[fx.PrometheusServer] = []
    yield started
    for server in started:
        server.stop()


def test_every_dashboard_query_returns_data_after_a_cycle(
    kube: Kube,
    prometheus: fx.PrometheusServer,
    scraping: list[fx.PrometheusServer],
    tmp_path: pathlib.Path,
) -> None:
    ns = kube.namespace(governed=False)
    kube.apply_ok(k8s.budget(ns, "monthly", money=100.0))
    kube.apply_ok(k8s.policy(ns, "fr", ["FR"], budget="monthly"))
    fixture_pools_and_grid(kube)
    dead = f"http://127.0.0.1:{fx.free_port()}"
    fallback = [prometheus_source("down", dead, 'carbon{zone="$subject"}'),
                k8s.static_source({"US": 400})]  # fmt: skip
    kube.apply_ok(k8s.signal_source("us-fallback", fallback, ["US"]))
    # A Cluster report (in the operator's namespace), which sees every pool's figures, the
    # energy of free MIG slices (the "Unattributed" panel) included.
    reports = namespace(kube, OPERATOR_NAMESPACE)
    kube.apply_ok(energy_report(reports, "cluster", prometheus.url, scope="Cluster"))

    with run_operator(kube, namespace=OPERATOR_NAMESPACE, **LOCAL_FEEDS) as operator:
        assert (
            kube.kubectl("label", "namespace", ns, "greenplace.dev/governed=true").returncode == 0
        )
        kube.apply_ok(k8s.gpu_pod(ns, "train", 1, annotations={DURATION: "2"}))
        target = urllib.parse.urlsplit(operator.metrics_url).netloc
        server = fx.PrometheusServer(tmp_path / "tsdb", tmp_path, scrape=(target,))
        scraping.append(server)
        server.start()
        # A signal with an age: a Prometheus source (this scraping server) answering for GB.
        gb = 'label_replace(vector(136), "zone", "$subject", "", "")'
        live = [prometheus_source("scraped", server.url, gb)]
        kube.apply_ok(k8s.signal_source("gb-live", live, ["GB"]))
        variables = {"datasource": "prometheus", "report_namespace": reports,
                     "report": "cluster", "model": ".*", "pool": ".*"}  # fmt: skip
        queries = dashboard_queries(variables)
        assert len(queries) >= 15, queries

        def answers() -> dict[str, list[dict[str, Any]]]:
            return {where: instant(server, query) for where, query in queries.items()}

        def finite(samples: list[dict[str, Any]]) -> bool:
            return any(math.isfinite(float(s["value"][1])) for s in samples)

        if not wait_for_quietly(lambda: all(finite(s) for s in answers().values()), 90):
            empty = {w: queries[w] for w, s in answers().items() if not finite(s)}
            pytest.fail(f"dashboard queries without a finite value after the cycles: {empty}")
        found = answers()
        spent = {
            s["metric"]["budget"]: float(s["value"][1])
            for s in found["panel 8 (Budget burn) A"]
            if s["metric"].get("namespace") == ns
        }
        # 1 GPU x 2 h x 3.40 EUR, charged by the placement loop and exported by it.
        assert spent == {"monthly": pytest.approx(2 * FR_POOL_PRICE)}, found[
            "panel 8 (Budget burn) A"
        ]
        fraction = [s for s in found["panel 9 (Budget spent (fraction)) A"]
                    if s["metric"].get("namespace") == ns]  # fmt: skip
        assert [float(s["value"][1]) for s in fraction] == [pytest.approx(0.068)], fraction
        # The pod was placed (LowestCarbon) in the cycles scraped: held_workloads carries a
        # series for each reason a workload waits for, none for a placement reason.
        placed = instant(server, 'greenplace_placements_total{reason="LowestCarbon"}')
        assert [float(s["value"][1]) for s in placed] == [1.0], placed
        held = {s["metric"]["reason"] for s in instant(server, "greenplace_held_workloads")}
        placing = {str(r) for r in model.PLACEMENT_REASONS}
        assert "NoPolicy" in held and not held & placing, held
        unattributed = found["panel 7 (Unattributed GPU energy (idle GPUs, free MIG slices)) A"]
        # de-h100's free MIG slice: 1/7 of 700 Wh (prometheus_fixture).
        assert [(s["metric"]["pool"], float(s["value"][1])) for s in unattributed] == [
            ("de-h100", pytest.approx(100, rel=0.01))
        ], unattributed
