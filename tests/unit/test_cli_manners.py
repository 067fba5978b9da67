"""The read commands' kubectl manners, on a fake API server: -n, -A, the context's namespace,
-o wide|json|yaml, "No resources found", one-line errors with a non-zero exit, --version, shell
completion, help written for users, and start-up that loads neither kopf nor the client for
``--help``. (``tests/integration/test_cli_manners.py`` runs the same on the real control plane.)
"""

from __future__ import annotations

import json
import pathlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest
import yaml

from greenplace.api import models
from greenplace.cli import completion, main, output, placements, views
from greenplace.controller import podspec
from tests.unit.test_cli_views import _ApiServer, _serve, pod
from tests.unit.test_explain import fleet, write

CRDS = "/apis/greenplace.dev/v1alpha1"
REASON = (
    "ml/q placed in ovh (FR, 71 gCO2e/kWh, 2.99 EUR, 0.05 kgCO2e): lowest carbon among 2 "
    "compliant pools (1 without room) under ml/eu; a very long tail " + "x" * 400
)


def _held() -> dict[str, Any]:
    held = pod(annotations={podspec.HOLD_ANNOTATION: "NoPolicy: ml/p held: no policy in ml"})
    held["spec"] = {"schedulingGates": [{"name": podspec.GATE}], "containers": [
        {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}  # fmt: skip
    return held


def _placed() -> dict[str, Any]:
    record = {"pool": "ovh", "reason": "LowestCarbon", "gco2PerKwh": 71.2, "message": REASON,
              "policies": ["ml/eu"]}  # fmt: skip
    placed = pod(annotations={podspec.PLACEMENT_ANNOTATION: json.dumps(record)})
    placed["metadata"]["name"] = "q"
    placed["spec"] = {"nodeName": "ovh-0", "containers": [
        {"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}  # fmt: skip
    return placed


def _objects() -> dict[str, Any]:
    pods = {"kind": "PodList", "apiVersion": "v1", "items": [_held(), _placed()]}
    budgets = {"items": [{"metadata": {"name": "monthly", "namespace": "ml"},
                          "spec": {"period": "Month", "limits": {"money": 90000}},
                          "status": {"spent": {"money": 0}}}]}  # fmt: skip
    reports = {"items": [{"metadata": {"name": "r", "namespace": "ml"},
                          "status": {"rows": [{"model": "llama", "pool": "ovh"}]}}]}  # fmt: skip
    pools = {"items": [{"metadata": {"name": "ovh"},
                        "spec": {"location": {"country": "FR"}, "pue": 1.2},
                        "status": {"carbonGramsPerKwh": 50.0}}]}  # fmt: skip
    empty = {"items": []}
    return {
        f"{CRDS}/gpupools": pools,
        f"{CRDS}/budgets": budgets, f"{CRDS}/namespaces/ml/budgets": budgets,
        f"{CRDS}/namespaces/web/budgets": empty,
        f"{CRDS}/energyreports": reports, f"{CRDS}/namespaces/ml/energyreports": reports,
        f"{CRDS}/namespaces/web/energyreports": empty,
        "/api/v1/pods": pods, "/api/v1/namespaces/ml/pods": pods,
        "/api/v1/namespaces/web/pods": {"kind": "PodList", "apiVersion": "v1", "items": []},
        "/api/v1/namespaces/ml/pods/p": _held(), "/api/v1/namespaces/ml/pods/q": _placed(),
    }  # fmt: skip


@pytest.fixture
def api(tmp_path: pathlib.Path) -> Iterator[tuple[_ApiServer, str]]:
    server, kubeconfig = _serve(_objects(), tmp_path)
    yield server, kubeconfig
    server.shutdown()
    server.server_close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


READS = [["placements"], ["pools"], ["budgets"], ["reports"], ["why", "ml/p"]]


@pytest.mark.parametrize("argv", READS, ids=lambda a: a[0])
@pytest.mark.parametrize("form", ["json", "yaml"])
def test_every_read_command_prints_its_rows_as_data(
    api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str], argv: list[str], form: str
) -> None:
    _, kubeconfig = api
    code, out, err = run(capsys, *argv, "-o", form, f"--kubeconfig={kubeconfig}")
    assert (code, err) == (0, "")
    document = json.loads(out) if form == "json" else yaml.safe_load(out)
    kinds = {item["kind"] for item in document["items"]}
    assert document["items"] and kinds <= {"Pod", "GpuPool", "Budget", "EnergyReportRow"}, out


def test_data_keeps_numbers_and_the_full_reason(
    api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, kubeconfig = api
    _, out, _ = run(capsys, "placements", "-o", "json", f"--kubeconfig={kubeconfig}")
    by_name = {item["name"]: item for item in json.loads(out)["items"]}
    assert by_name["q"]["gpus"] == 1 and by_name["q"]["gco2ePerKwhWithPue"] == 71.2
    assert by_name["q"]["message"] == REASON
    assert by_name["p"] | {"message": "?"} == {
        "kind": "Pod", "namespace": "ml", "name": "p", "gpus": 2, "node": None,
        "decision": "Held", "reason": "NoPolicy", "pool": None, "policies": [],
        "gco2ePerKwhWithPue": None, "message": "?",
    }  # fmt: skip
    _, out, _ = run(capsys, "pools", "-o", "json", f"--kubeconfig={kubeconfig}")
    ((pool),) = json.loads(out)["items"]
    assert (pool["gridGco2ePerKwh"], pool["pue"], pool["gco2ePerKwhWithPue"]) == (50.0, 1.2, 60.0)


def test_the_table_keeps_a_short_reason_and_wide_gives_it_all(
    api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, kubeconfig = api
    _, out, _ = run(capsys, "placements", f"--kubeconfig={kubeconfig}")
    header, held, placed = out.splitlines()
    assert header.split() == ["POD", "GPUS", "DECISION", "POOL", "NODE", "gCO2e/kWh(xPUE)",
                              "REASON"]  # fmt: skip
    assert placed.split()[:6] == ["ml/q", "1", "Placed", "ovh", "ovh-0", "71"]
    assert placed.endswith("  lowest carbon among 2 compliant pools ..."), placed
    assert held.endswith("  no policy in ml"), held
    assert max(len(line) for line in out.splitlines()) < 120
    _, out, _ = run(capsys, "placements", "-o", "wide", f"--kubeconfig={kubeconfig}")
    header, _, placed = out.splitlines()
    assert header.split()[-2:] == ["POLICIES", "REASON"]
    assert placed.endswith(REASON.removeprefix("ml/q ")), placed
    _, out, _ = run(capsys, "pools", "-o", "wide", f"--kubeconfig={kubeconfig}")
    assert [line.split() for line in out.splitlines()] == [
        ["POOL", "COUNTRY", "GPU", "FREE/TOTAL", "GRID-gCO2e/kWh", "PUE", "gCO2e/kWh(xPUE)",
         "PRICE/GPU-h", "BILLED/GPU-h", "PERIOD(BILLED)", "BILLING", "SOURCE"],
        ["ovh", "FR", "?", "?/?", "50", "1.2", "60", "-", "-", "-", "-", "-"],
    ]  # fmt: skip


def test_namespace_flags_pick_what_is_read(
    api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    server, kubeconfig = api
    for argv, path in [
        (["budgets"], f"{CRDS}/budgets"),
        (["budgets", "-n", "ml"], f"{CRDS}/namespaces/ml/budgets"),
        (["budgets", "-A", "-n", "ml"], f"{CRDS}/budgets"),  # -A wins, as in kubectl
        (["reports", "--namespace=ml"], f"{CRDS}/namespaces/ml/energyreports"),
        (["placements", "-n", "ml"], "/api/v1/namespaces/ml/pods"),
        (["pools", "-n", "ml"], f"{CRDS}/gpupools"),  # cluster-scoped: -n changes nothing
        (["why", "-n", "ml", "p"], "/api/v1/namespaces/ml/pods/p"),
        (["why", "pod/q", "-n", "ml"], "/api/v1/namespaces/ml/pods/q"),
    ]:
        server.asked.clear()
        code, _, err = run(capsys, *argv, f"--kubeconfig={kubeconfig}")
        assert (code, err, server.asked[0]) == (0, "", path), argv
    # The context's namespace, when it names one, as kubectl; -A still reads them all.
    config = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
    config["contexts"][0]["context"]["namespace"] = "ml"
    scoped = tmp_path / "scoped"
    scoped.write_text(json.dumps(config))
    for argv, path in [
        (["budgets"], f"{CRDS}/namespaces/ml/budgets"),
        (["budgets", "-A"], f"{CRDS}/budgets"),
        (["why", "q"], "/api/v1/namespaces/ml/pods/q"),
    ]:
        server.asked.clear()
        assert run(capsys, *argv, f"--kubeconfig={scoped}")[0] == 0
        assert server.asked[0] == path, argv


def test_why_names_its_pod_once(
    api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, kubeconfig = api
    _, out, _ = run(capsys, "why", "-n", "ml", "q", f"--kubeconfig={kubeconfig}")
    assert out == (
        "ml/q placed in ovh (FR, 71 gCO2e/kWh, 2.99 EUR, 0.05 kgCO2e), node ovh-0: LowestCarbon: "
        + REASON.split(": ", 1)[1]
        + "\n"
    )
    assert out.count("ml/q") == 1 and out.count("placed in") == 1
    _, out, _ = run(capsys, "why", "ml/p", f"--kubeconfig={kubeconfig}")
    assert out == "ml/p waits (gated, NoPolicy): no policy in ml\n"


@pytest.mark.parametrize(
    ("argv", "said"),
    [(["placements", "-n", "web"], "No resources found in web namespace."),
     (["budgets", "-n", "web"], "No resources found in web namespace."),
     (["reports", "-n", "web"], "No resources found in web namespace.")],
)  # fmt: skip
def test_an_empty_answer_says_so_as_kubectl(
    api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    _, kubeconfig = api
    assert run(capsys, *argv, f"--kubeconfig={kubeconfig}") == (0, "", said + "\n")
    code, out, _ = run(capsys, *argv, "-o", "json", f"--kubeconfig={kubeconfig}")
    assert (code, json.loads(out)) == (0, {"items": []})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_errors_are_one_line_and_exit_one(
    api: tuple[_ApiServer, str], capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    _, kubeconfig = api
    down = tmp_path / "down"
    config = yaml.safe_load(pathlib.Path(kubeconfig).read_text())
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{_closed_port()}"
    down.write_text(json.dumps(config))
    cases = [
        (["pools", f"--kubeconfig={down}"], "error: cannot reach the API server at http://"),
        (["placements", "-n", "ml", f"--kubeconfig={down}"], "error: cannot reach the API"),
        (["why", "ml/p", f"--kubeconfig={down}"], "error: cannot reach the API server"),
        (["budgets", f"--kubeconfig={tmp_path / 'nope'}"], "error: kubeconfig "),
        (["why", "-n", "ml", "ghost", f"--kubeconfig={kubeconfig}"],
         "Error from server (NotFound): /api/v1/namespaces/ml/pods/ghost not found"),
        (["why", "-A", "p", f"--kubeconfig={kubeconfig}"],
         "error: a resource cannot be retrieved by name across all namespaces"),
        (["why", "web/p", "-n", "ml", f"--kubeconfig={kubeconfig}"], "error: web/p names "),
        (["budgets", "--context=other", f"--kubeconfig={kubeconfig}"],
         'error: context "other" does not exist'),
    ]  # fmt: skip
    for argv, start in cases:
        code, out, err = run(capsys, *argv)
        assert (code, out) == (1, ""), argv
        (line,) = err.splitlines()
        assert line.startswith(start), (argv, line)


def test_no_kubeconfig_at_all_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = run(capsys, "placements")
    assert (code, err) == (1, "error: no kubeconfig: pass --kubeconfig, set KUBECONFIG, or "
                               "create ~/.kube/config\n")  # fmt: skip


def test_version_is_the_installed_packages(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out == f"greenplace {metadata.version('greenplace')}\n"


@pytest.mark.parametrize("shell", completion.SHELLS)
def test_completion_script_names_every_subcommand_and_flag(
    capsys: pytest.CaptureFixture[str], shell: str, tmp_path: pathlib.Path
) -> None:
    assert main.main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for name, _, _ in main.SUBCOMMANDS:
        assert name in script, name
    for flag in ("--all-namespaces", "--output", "--context", "--why-not", "--strategies"):
        assert flag in script, flag
    if shell == "bash":
        bash = shutil.which("bash")
        assert bash is not None
        path = tmp_path / "greenplace.bash"
        path.write_text(script)
        parsed = subprocess.run(
            [bash, "-n", str(path)], check=False, capture_output=True, text=True
        )
        assert parsed.returncode == 0, parsed.stderr


def test_help_is_written_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    for name, _, _ in main.SUBCOMMANDS:
        with pytest.raises(SystemExit):
            main.main([name, "--help"])
        text = capsys.readouterr().out
        assert "Why this module exists" not in text and "``" not in text, name
        assert text.startswith(f"usage: greenplace {name} "), name


def test_help_version_and_flag_errors_load_neither_kopf_nor_the_client() -> None:
    probe = (
        "import sys\n"
        "from greenplace.cli import main\n"
        "for argv in (['pools', '--help'], ['placements', '--help'], ['--help'],"
        " ['why', '--help'], ['budgets', '-o', 'bogus']):\n"
        "    try:\n"
        "        main.main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('kopf', 'kubernetes', 'pydantic', 'yaml') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]", done.stdout[-500:]


def test_explain_refuses_an_unknown_pool_and_simulate_an_unknown_strategy(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    path = str(write(tmp_path, fleet()))
    code, out, err = run(capsys, "explain", path, "-w", "ml/train", "--why-not", "nopool")
    assert (code, out) == (1, "")
    assert err.startswith(f"error: no pool nopool in {path} (known: ") and err.count("\n") == 1
    code, out, err = run(capsys, "simulate", "--strategies", "first-fit,bogus")
    assert (code, out) == (2, "")
    assert err == "error: --strategies: unknown strategy 'bogus'; known: first-fit, cheapest, "\
        "lowest-carbon, greenplace, unguarded, oracle\n"  # fmt: skip


def test_formatting_helpers() -> None:
    assert [output.number(v) for v in (None, 0, 71.24, 90000.0, 0.00002315, "x")] == [
        "-", "0", "71.2", "90,000", "0.00002315", "x"]  # fmt: skip
    assert [output.amount(v) for v in (None, 0, 12.345, 1234.5, 90000)] == [
        "-", "0", "12.35", "1,234", "90,000"]  # fmt: skip
    assert output.short_reason("ml/p held: " + "y" * 100) == "y" * 56 + " ..."
    assert output.short_reason("ml/d deferred until T: forecast") == "deferred until T: forecast"
    assert output.nothing_found(None) == "No resources found"


def test_the_cli_names_greenplaces_api_group_as_the_models_do() -> None:
    assert (views.GROUP, views.VERSION) == (models.GROUP, models.VERSION)
    assert placements.HEADER[-2] == "gCO2e/kWh(xPUE)"
