"""The read-outs of ``greenplace pools|budgets|reports|why`` from status and annotations.

Kueue Workloads (``placements``' second table, ``why workload/...``) are read from bodies the
real Kueue v0.17 and the operator wrote (``data/kueue_workloads.json``, recorded on 2026-12-02
from the cases of ``tests/integration/test_kueue_cli.py`` and a queue whose check nobody
answers yet, managedFields dropped): Ready with greenplace's signed record, Rejected then
deactivated, waiting for greenplace's answer, and one on a queue without greenplace's check.
"""

from __future__ import annotations

import http.server
import json
import pathlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from greenplace.cli import main, output, placements, views
from greenplace.controller import podspec

WORKLOADS: dict[str, dict[str, Any]] = json.loads(
    (pathlib.Path(__file__).parent / "data" / "kueue_workloads.json").read_text()
)
OURS = frozenset({"greenplace", "greenplace-cli"})  # the checks of the recording runs


def test_pool_rows_show_free_gpus_and_the_carbon_source() -> None:
    pool = {
        "metadata": {"name": "ovh"},
        "spec": {"location": {"country": "FR"}, "gpu": {"model": "H100"}},
        "status": {"gpusFree": 4, "gpusTotal": 16, "carbonGramsPerKwh": 56.0,
                   "carbonSource": "SignalSource eu/grid"},
    }  # fmt: skip
    bare = {"metadata": {"name": "new"}, "spec": {}}
    assert views.pool_rows([pool, bare]) == [
        ("new", "?", "?", "?/?", "-", "-", "-"),
        ("ovh", "FR", "H100", "4/16", "56", "-", "SignalSource eu/grid"),
    ]


def test_budget_rows_show_each_limit_and_exceeded() -> None:
    budget = {
        "metadata": {"name": "monthly", "namespace": "ml"},
        "spec": {"period": "Month", "limits": {"money": 100}},
        "status": {"spent": {"money": 40}, "forecastAtPeriodEnd": {"money": 120},
                   "conditions": [{"type": "Exceeded", "status": "False"}]},
    }  # fmt: skip
    assert views.budget_rows([budget]) == [
        ("ml/monthly", "Month", "40/100 EUR", "-", "-", "-", "-", "False")
    ]
    budget["spec"] |= {"currency": "CHF", "limits": {"money": 90000, "kgCO2e": 500, "kWh": 2000}}
    budget["status"] |= {
        "spent": {"money": 1234.5, "kgCO2e": 12.345},
        "forecastAtPeriodEnd": {"money": 4000, "kgCO2e": 40, "kWh": 0.5},
    }
    ((record),) = views.budget_records([budget])
    assert [c.cell(record) for c in views.BUDGET_COLUMNS] == [
        "ml/monthly", "Month", "1,234/90,000 CHF", "12.35/500 kgCO2e", "0/2,000 kWh",
        "4,000 CHF, 40 kgCO2e, 0.5 kWh", "-", "-", "-", "-", "-", "False",
    ]  # fmt: skip


def test_report_rows_one_per_model_and_pool() -> None:
    report = {
        "metadata": {"name": "serving", "namespace": "inference"},
        "status": {"rows": [{"model": "llama", "pool": "fr", "gpuWhPerRequest": 0.03356,
                             "gCO2ePerRequest": 0.00433, "costPerRequest": 0.0002315,
                             "currency": "EUR", "energyGrade": "B", "carbonGrade": "B"}]},
    }  # fmt: skip
    assert views.report_rows([report]) == [
        ("inference/serving", "llama", "fr", "0.03356", "0.00433", "0.0002315 EUR", "-", "B/B")
    ]


# What the operator wrote on the real control plane, with the real Prometheus fixture and two
# FOCUS exports (recorded on 2026-12-07 from tests/integration/signals/test_finops_bill.py,
# managedFields dropped): ovh-gra-h100 and fr-a100 priced by their bills, the Budget of a pod
# placed in ovh-gra-h100 corrected to December's bill, team-a's EnergyReport on both bases.
FINOPS: dict[str, dict[str, Any]] = json.loads(
    (pathlib.Path(__file__).parent / "data" / "finops_objects.json").read_text()
)


def _by_header(columns: Sequence[output.Column], record: Mapping[str, Any]) -> dict[str, str]:
    """Every cell of ``record`` (-o wide's), by its column's header."""
    return {c.header: c.cell(record) for c in columns}


def test_pools_show_the_billed_price_per_gpu_hour_and_its_period() -> None:
    unbilled = {"metadata": {"name": "new"},
                "spec": {"price": {"currency": "EUR", "onDemandPerGpuHour": 3}}}  # fmt: skip
    records = views.pool_records([FINOPS["gpupool"], FINOPS["gpupoolFr"], unbilled])
    wanted = ("POOL", "PRICE/GPU-h", "BILLED/GPU-h", "PERIOD(BILLED)", "BILLING")
    shown = [tuple(_by_header(views.POOL_COLUMNS, r)[h] for h in wanted) for r in records]
    # ovh-gra-h100: 2.99 in its spec, (180.00 + 312.00) / 272 = 1.8088 in December's bill.
    assert shown == [
        ("fr-a100", "2 EUR", "1.48 EUR", "2026-01-01/2026-02-01", "Reconciled"),
        ("new", "3 EUR", "-", "-", "-"),
        ("ovh-gra-h100", "2.99 EUR", "1.81 EUR", "2026-12-01/2027-01-01", "Reconciled"),
    ]
    # The default table keeps the billed price and leaves the rest to -o wide.
    (ovh,) = views.pool_rows([FINOPS["gpupool"]])
    assert ovh == ("ovh-gra-h100", "FR", "H100-80GB", "14/16", "50", "1.81 EUR",
                   "SignalSource fixture-grid/fixture")  # fmt: skip


def test_budgets_show_the_correction_to_the_bill_and_whether_it_is_reconciled() -> None:
    budget = FINOPS["budget"]
    namespace = budget["metadata"]["namespace"]
    ((record),) = views.budget_records([budget])
    cells = _by_header(views.BUDGET_COLUMNS, record)
    wanted = ("MONEY(SPENT/LIMIT)", "CHARGED(PRICE)", "CORRECTION", "BILL")
    # 6 GPU-hours charged 17.94 at 2.99, billed 6 x 492 / 272 = 10.85: -7.09.
    assert tuple(cells[h] for h in wanted) == (
        "10.85/1,000 EUR", "17.94 EUR", "-7.09 EUR", "Reconciled"
    )  # fmt: skip
    assert views.budget_rows([budget]) == [
        (f"{namespace}/monthly", "Month", "10.85/1,000 EUR", "-", "-", "-7.09 EUR",
         "Reconciled", "False")
    ]  # fmt: skip
    # A charge not yet on a bill: no correction, the reason says it waits; a bill above the
    # price: the correction signed.
    awaiting = [{"type": "Reconciled", "status": "False", "reason": "AwaitingBill"}]
    waiting = {**budget, "status": {**budget["status"], "correction": None,
                                    "conditions": awaiting}}  # fmt: skip
    dearer = {**budget, "status": {**budget["status"], "correction": 2.5}}
    cases = ((waiting, "-", "AwaitingBill"), (dearer, "+2.5 EUR", "Reconciled"))
    for body, correction, bill in cases:
        ((record),) = views.budget_records([body])
        cells = _by_header(views.BUDGET_COLUMNS, record)
        assert (cells["CORRECTION"], cells["BILL"]) == (correction, bill)
    assert cells["PREVIOUS(CORRECTED)"] == "-"  # the recording has no period before
    # December's bill read in January (tests/unit/test_budget_billed.py's figures).
    december = {"periodStart": "2026-12-01T00:00:00Z", "periodEnd": "2027-01-01T00:00:00Z",
                "money": 10.852941, "correction": -4.147059}  # fmt: skip
    january = {**budget, "status": {**budget["status"], "previousPeriod": december}}
    ((record),) = views.budget_records([january])
    shown = _by_header(views.BUDGET_COLUMNS, record)["PREVIOUS(CORRECTED)"]
    assert shown == "2026-12-01: 10.85 EUR (-4.15 EUR)"
    assert record["previousPeriod"] == december  # -o json


def test_reports_show_the_cost_per_request_on_both_bases() -> None:
    rows = {(r[1], r[2]): r for r in views.report_rows([FINOPS["report"]])}
    # llama-8b on fr-a100: 1.25 GPU-hours for 10,800 requests, at 2.00 and at 1.48.
    assert rows[("llama-8b", "fr-a100")][5:7] == ("0.0002315 EUR", "0.0001713 EUR")
    assert rows[("mistral-7b", "fr-a100")][5:7] == ("0.0004167 EUR", "0.0003083 EUR")


def pod(**metadata: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ml", **metadata}, "spec": {}}


def test_why_tells_held_placed_ungoverned_and_garbage_apart() -> None:
    held = pod(annotations={podspec.HOLD_ANNOTATION: "NoPolicy: no policy"})
    held["spec"]["schedulingGates"] = [{"name": podspec.GATE}]
    assert views.why(held) == "ml/p waits (gated, NoPolicy): no policy"
    placed = pod(annotations={podspec.PLACEMENT_ANNOTATION: json.dumps(
        {"pool": "ovh", "message": "lowest carbon"})})  # fmt: skip
    assert views.why(placed) == "ml/p placed in ovh, node not bound yet: lowest carbon"
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
        missing = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                   "reason": "NotFound", "message": f"{path} not found"}  # fmt: skip
        body = json.dumps(found if found is not None else missing)
        self.send_response(200 if found is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: Any) -> None:
        pass


def _serve(objects: Mapping[str, Any], tmp_path: pathlib.Path) -> tuple[_ApiServer, str]:
    """An API server answering from ``objects``, and a kubeconfig naming it."""
    server = _ApiServer(dict(objects))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {
            "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "test", "user": {"token": "t"}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }))  # fmt: skip
    return server, str(kubeconfig)


@pytest.fixture
def api(tmp_path: pathlib.Path) -> Iterator[tuple[_ApiServer, str]]:
    """An API server holding one object of each kind the commands read (no Kueue), and a
    kubeconfig."""
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
    server, kubeconfig = _serve(objects, tmp_path)
    yield server, kubeconfig
    server.shutdown()
    server.server_close()


# argv, the paths it reads, its output (columns split on blanks: ``table`` aligns them).
COMMANDS = [
    (["pools"], "/apis/greenplace.dev/v1alpha1/gpupools",
     ["POOL COUNTRY GPU FREE/TOTAL GRID-gCO2e/kWh BILLED/GPU-h SOURCE", "ovh FR ? ?/? - - -"]),
    (["budgets"], "/apis/greenplace.dev/v1alpha1/budgets",
     ["BUDGET PERIOD MONEY(SPENT/LIMIT) CARBON(SPENT/LIMIT) ENERGY(SPENT/LIMIT) CORRECTION BILL "
      "EXCEEDED", "ml/monthly Month - - - - - ?"]),
    (["reports"], "/apis/greenplace.dev/v1alpha1/energyreports",
     ["REPORT MODEL POOL GPU-Wh/req gCO2e/req COST/req BILLED/req GRADES(ENERGY/CARBON)",
      "ml/r llama - - - - - ?/?"]),
    (["why", "ml/p"], "/api/v1/namespaces/ml/pods/p",
     ["ml/p waits (gated, NoPolicy): no policy"]),
    # Kueue is not installed (its AdmissionChecks are not found): no second table, no error.
    (["placements"], ["/api/v1/pods", "/apis/kueue.x-k8s.io/v1beta2/admissionchecks"],
     ["POD GPUS DECISION POOL NODE gCO2e/kWh(xPUE) REASON",
      "ml/p 2 Held (NoPolicy) - - - no policy"]),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "path", "output"), COMMANDS)
def test_each_subcommand_reads_its_objects_and_prints_them(
    api: tuple[_ApiServer, str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    path: str | list[str],
    output: list[str],
) -> None:
    server, kubeconfig = api
    assert main.main([*argv, f"--kubeconfig={kubeconfig}"]) == 0
    assert server.asked == (path if isinstance(path, list) else [path])
    printed = capsys.readouterr().out.splitlines()
    assert [" ".join(line.split()) for line in printed] == output


def test_a_table_aligns_every_column_but_the_last() -> None:
    assert placements.table(("A", "B"), [("x", "long message")]) == "A  B\nx  long message"


def test_workload_rows_show_greenplaces_check_its_pool_and_why() -> None:
    others = json.loads(json.dumps(WORKLOADS["alone"]))
    others["status"]["admissionChecks"] = [{"name": "other", "state": "Ready", "message": "x"}]
    rows = placements.workload_rows([*WORKLOADS.values(), others], OURS)
    by_name = {row[0]: row for row in rows}
    ready = by_name.pop(_name("ready"))
    assert ready[1:5] == ("1", "Ready (LowestCarbon)", "ovh-gra-h100", "71")
    assert ready[5].endswith("lowest carbon among 1 compliant pool under t-d3db3274/p"), ready
    rejected = by_name.pop(_name("rejected"))
    assert rejected[1:5] == ("1", "Deactivated", "-", "-"), "Kueue reset the check to Pending"
    assert rejected[5].endswith("Previously: Rejected"), rejected
    waiting = by_name.pop(_name("pending"))
    assert waiting[1:] == ("2", "Pending", "-", "-", "waiting for greenplace's answer")
    assert not by_name, "a Workload without greenplace's checks is not greenplace's to show"


def test_workload_rows_survive_bodies_a_tenant_or_a_bug_could_write() -> None:
    broken = json.loads(json.dumps(WORKLOADS["ready"]))
    broken["spec"]["podSets"][0]["count"] = -1
    (state,) = broken["status"]["admissionChecks"]
    state["podSetUpdates"][0]["annotations"]["greenplace.dev/kueue-placement"] = "{oops"
    ((_, gpus, check, pool, carbon, reason),) = placements.workload_rows([broken], OURS)
    assert (gpus, check, pool, carbon) == ("?", "Ready (LowestCarbon)", "-", "-")
    assert "count -1" in reason
    bare = {"metadata": {"name": "w", "namespace": "t"},
            "status": {"admissionChecks": [{"name": "greenplace"}, "junk"]}}  # fmt: skip
    assert placements.workload_rows([bare], OURS) == [
        ("t/w", "?", "?", "-", "-", "spec.podSets is empty")
    ]


def test_why_workload_prints_the_check_the_record_and_the_last_event() -> None:
    text = views.why_workload(WORKLOADS["ready"], OURS)
    first, record = text.splitlines()
    assert first.startswith(f"{_name('ready')} (Kueue Workload): check greenplace-cli is Ready: "
                            "LowestCarbon: t-d3db3274/kueue:")  # fmt: skip
    assert record.startswith("  record (unverified here): pool ovh-gra-h100, country FR, "
                             "70.6 gCO2e/kWh(xPUE), policies t-d3db3274/p, budgets -, "
                             "at 2026-")  # fmt: skip
    events = [
        {"type": "Warning", "reason": "NoCompliantPool", "message": "country FR not in allowed CH",
         "lastTimestamp": "2026-12-02T19:30:02Z"},
        {"type": "Warning", "reason": "Old", "message": "older",
         "lastTimestamp": "2026-12-02T19:00:00Z"},
    ]  # fmt: skip
    text = views.why_workload(WORKLOADS["rejected"], OURS, events)
    assert "deactivated by Kueue" in text
    assert text.endswith("Warning NoCompliantPool: country FR not in allowed CH"), text
    assert "carries no greenplace check" in views.why_workload(WORKLOADS["alone"], OURS)
    assert views.why_workload(WORKLOADS["pending"], OURS).endswith("is Pending: no answer yet")


def _name(case: str) -> str:
    meta = WORKLOADS[case]["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


@pytest.fixture
def kueue_api(tmp_path: pathlib.Path) -> Iterator[tuple[_ApiServer, str]]:
    """An API server with Kueue: greenplace's AdmissionCheck, another, and the Workloads."""
    kueue = "/apis/kueue.x-k8s.io/v1beta2"
    ready = WORKLOADS["ready"]
    namespace = ready["metadata"]["namespace"]
    checks = [*({"metadata": {"name": name}, "spec": {"controllerName": "greenplace.dev/placement"}}
                for name in sorted(OURS)),
              {"metadata": {"name": "other"},
               "spec": {"controllerName": "example.com/x"}}]  # fmt: skip
    objects = {
        "/api/v1/pods": {"kind": "PodList", "apiVersion": "v1", "items": []},
        f"{kueue}/admissionchecks": {"items": checks},
        f"{kueue}/workloads": {"items": list(WORKLOADS.values())},
        f"{kueue}/namespaces/{namespace}/workloads": {"items": list(WORKLOADS.values())},
        f"/api/v1/namespaces/{namespace}/events": {"kind": "EventList", "apiVersion": "v1",
                                                   "items": []},
    }  # fmt: skip
    server, kubeconfig = _serve(objects, tmp_path)
    yield server, kubeconfig
    server.shutdown()
    server.server_close()


def test_placements_lists_greenplaces_workloads_after_the_pods(
    kueue_api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    server, kubeconfig = kueue_api
    assert main.main(["placements", f"--kubeconfig={kubeconfig}"]) == 0
    printed = capsys.readouterr().out.splitlines()
    # No governed pod: no empty pod table, the Workloads' table alone (kubectl prints no header
    # for nothing).
    assert printed[0].split() == ["WORKLOAD", "GPUS", "CHECK", "POOL", "gCO2e/kWh(xPUE)",
                                  "REASON"]  # fmt: skip
    workloads = printed[1:]
    assert len(workloads) == 3, workloads
    assert any(line.startswith(_name("ready")) and "ovh-gra-h100" in line for line in workloads)
    assert server.asked[-1] == "/apis/kueue.x-k8s.io/v1beta2/workloads"


@pytest.mark.parametrize("target", ["workload/{ns}/{workload}", "job/{ns}/{job}"])
def test_why_names_a_workload_or_its_job_like_kubectl(
    kueue_api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str], target: str
) -> None:
    _, kubeconfig = kueue_api
    meta = WORKLOADS["ready"]["metadata"]
    (owner,) = meta["ownerReferences"]
    argv = ["why", target.format(ns=meta["namespace"], workload=meta["name"], job=owner["name"])]
    assert main.main([*argv, f"--kubeconfig={kubeconfig}"]) == 0
    assert capsys.readouterr().out.startswith(f"{_name('ready')} (Kueue Workload): check ")


def test_why_says_plainly_when_there_is_no_such_workload(
    api: tuple[_ApiServer, str],
    kueue_api: tuple[_ApiServer, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace = WORKLOADS["ready"]["metadata"]["namespace"]
    for _, kubeconfig in (api, kueue_api):
        assert main.main(["why", f"job/{namespace}/nope", f"--kubeconfig={kubeconfig}"]) == 1
        (line,) = capsys.readouterr().err.splitlines()
        assert line.startswith(f"error: no Kueue Workload for job {namespace}/nope ("), line
    _, kubeconfig = api
    assert main.main(["why", "workload/a/b/c", f"--kubeconfig={kubeconfig}"]) == 1
    assert "give NAME, pod/NAME, workload/NAME or job/NAME" in capsys.readouterr().err
