"""The read-outs of ``greenplace pools|budgets|reports|why`` from status and annotations."""

from __future__ import annotations

import http.server
import json
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from greenplace.cli import main, placements, views
from greenplace.controller import podspec


def test_pool_rows_show_free_gpus_and_the_carbon_source() -> None:
    pool = {
        "metadata": {"name": "ovh"},
        "spec": {"location": {"country": "FR"}, "gpu": {"model": "H100"}},
        "status": {"gpusFree": 4, "gpusTotal": 16, "carbonGramsPerKwh": 56.0,
                   "carbonSource": "SignalSource eu/grid"},
    }  # fmt: skip
    bare = {"metadata": {"name": "new"}, "spec": {}}
    assert views.pool_rows([pool, bare]) == [
        ("new", "?", "?", "?/?", "-", "-"),
        ("ovh", "FR", "H100", "4/16", "56", "SignalSource eu/grid"),
    ]


def test_budget_rows_show_each_limit_and_exceeded() -> None:
    budget = {
        "metadata": {"name": "monthly", "namespace": "ml"},
        "spec": {"period": "Month", "limits": {"money": 100}},
        "status": {"spent": {"money": 40}, "forecastAtPeriodEnd": {"money": 120},
                   "conditions": [{"type": "Exceeded", "status": "False"}]},
    }  # fmt: skip
    assert views.budget_rows([budget]) == [
        ("ml/monthly", "Month", "40/100 (forecast 120)", "False")
    ]


def test_report_rows_one_per_model_and_pool() -> None:
    report = {
        "metadata": {"name": "serving", "namespace": "inference"},
        "status": {"rows": [{"model": "llama", "pool": "fr", "gpuWhPerRequest": 0.03356,
                             "gCO2ePerRequest": 0.00433, "costPerRequest": 0.0002315,
                             "currency": "EUR", "energyGrade": "B", "carbonGrade": "B"}]},
    }  # fmt: skip
    assert views.report_rows([report]) == [
        ("inference/serving", "llama", "fr", "0.03356", "0.00433", "0.0002315 EUR", "B/B")
    ]


def pod(**metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ml", **metadata}, "spec": {}}


def test_why_tells_held_placed_ungoverned_and_garbage_apart() -> None:
    held = pod(annotations={podspec.HOLD_ANNOTATION: "NoPolicy: no policy"})
    held["spec"]["schedulingGates"] = [{"name": podspec.GATE}]
    assert views.why(held) == "ml/p waits (gated): NoPolicy: no policy"
    placed = pod(annotations={podspec.PLACEMENT_ANNOTATION: json.dumps(
        {"pool": "ovh", "message": "lowest carbon"})})  # fmt: skip
    assert views.why(placed) == "ml/p placed in ovh (node not bound yet): lowest carbon"
    assert "not governed" in views.why(pod())
    garbage = pod(annotations={podspec.PLACEMENT_ANNOTATION: "{oops"})
    assert "unreadable placement record" in views.why(garbage)


class _ApiServer(http.server.ThreadingHTTPServer):
    """Answers GETs from ``objects`` (path -> JSON body) and records each path asked for."""

    daemon_threads = True

    def __init__(self, objects: dict[str, Any]) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)
        self.objects = objects
        self.asked: list[str] = []


class _Answer(http.server.BaseHTTPRequestHandler):
    server: _ApiServer

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.server.asked.append(path)
        found = self.server.objects.get(path)
        body = json.dumps(found if found is not None else {"kind": "Status", "code": 404})
        self.send_response(200 if found is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def api(tmp_path: pathlib.Path) -> Iterator[tuple[_ApiServer, str]]:
    """An API server holding one object of each kind the commands read, and a kubeconfig."""
    crds = "/apis/greenplace.dev/v1alpha1"
    held = pod(annotations={podspec.HOLD_ANNOTATION: "NoPolicy: no policy"})
    held["spec"] = {"schedulingGates": [{"name": podspec.GATE}], "containers": [
        {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}  # fmt: skip
    objects = {
        f"{crds}/gpupools": {"items": [{"metadata": {"name": "ovh"},
                                        "spec": {"location": {"country": "FR"}}}]},
        f"{crds}/budgets": {"items": [{"metadata": {"name": "monthly", "namespace": "ml"},
                                       "spec": {"period": "Month"}}]},
        f"{crds}/energyreports": {"items": [{"metadata": {"name": "r", "namespace": "ml"},
                                             "status": {"rows": [{"model": "llama"}]}}]},
        "/api/v1/namespaces/ml/pods/p": held,
        "/api/v1/pods": {"kind": "PodList", "apiVersion": "v1", "items": [held]},
    }  # fmt: skip
    server = _ApiServer(objects)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {
            "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "test", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }))  # fmt: skip
    yield server, str(kubeconfig)
    server.shutdown()
    server.server_close()


# argv, the one path it reads, its output (columns split on blanks: ``table`` aligns them).
COMMANDS = [
    (["pools"], "/apis/greenplace.dev/v1alpha1/gpupools",
     ["POOL COUNTRY GPU FREE/TOTAL gCO2/kWh SOURCE", "ovh FR ? ?/? - -"]),
    (["budgets"], "/apis/greenplace.dev/v1alpha1/budgets",
     ["BUDGET PERIOD SPENT/LIMIT EXCEEDED", "ml/monthly Month ?"]),
    (["reports"], "/apis/greenplace.dev/v1alpha1/energyreports",
     ["REPORT MODEL POOL Wh/req gCO2e/req COST/req GRADES", "ml/r llama None - - - ?/?"]),
    (["why", "ml/p"], "/api/v1/namespaces/ml/pods/p",
     ["ml/p waits (gated): NoPolicy: no policy"]),
    (["placements"], "/api/v1/pods",
     ["POD GPUS DECISION POOL NODE gCO2/kWh REASON", "ml/p 2 Held (NoPolicy) - - - no policy"]),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "path", "output"), COMMANDS)
def test_each_subcommand_reads_its_objects_and_prints_them(
    api: tuple[_ApiServer, str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    path: str,
    output: list[str],
) -> None:
    server, kubeconfig = api
    assert main.main([*argv, f"--kubeconfig={kubeconfig}"]) == 0
    assert server.asked == [path]
    printed = capsys.readouterr().out.splitlines()
    assert [" ".join(line.split()) for line in printed] == output


def test_a_table_aligns_every_column_but_the_last() -> None:
    assert placements.table(("A", "B"), [("x", "long message")]) == "A  B\nx  long message"
