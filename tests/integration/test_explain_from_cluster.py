"""``greenplace explain --from-cluster`` on the real control plane, with the real operator.

Why this module exists: trying a policy before applying it is only worth something if the
snapshot is the operator's own. So the operator runs and decides first; then the command must
see what it saw (the held pod held for the same reason, the placed pod allowed in its pool,
each pool's free GPUs as the operator wrote them in status, the carbon intensity the operator
took from a SignalSource rather than the pool's fallback), answer what-ifs from a policy file
without writing anything, and fail as the other commands fail: one line, a non-zero exit.
"""

from __future__ import annotations

import json
import pathlib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from greenplace.cli import main as cli
from greenplace.engine import snapshot_file
from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, RunningOperator, wait_for

pytestmark = pytest.mark.cluster

FR_GRID = 123.0  # the SignalSource's value for FR, unlike any fallback of the fleet
FRENCH = {"gcp-europe-west9-a100", "ovh-gra-h100"}


@pytest.fixture(scope="module")
def spaces(kube: Kube, operator: RunningOperator) -> Iterator[tuple[str, str]]:
    """``fr`` with a placed pod (France only, a Budget), ``ch`` with a held one (Swiss only),
    and a SignalSource giving FR's grid intensity, once the operator has planned with it."""
    fr, ch = kube.namespace(), kube.namespace()
    kube.apply_ok(k8s.manifest(
        k8s.signal_source("grid", [k8s.static_source({"FR": FR_GRID})], ["FR"]),
        k8s.budget(fr, "monthly", money=90000),
        k8s.policy(fr, "fr-only", ["FR"], budget="monthly"),
        k8s.policy(ch, "swiss-only", ["CH"]),
    ))  # fmt: skip
    kube.apply_ok(k8s.gpu_pod(fr, "trainer", 1))
    kube.apply_ok(k8s.gpu_pod(ch, "patient", 1))
    wait_for(lambda: kube.placed_pool(fr, "trainer"), 60, "trainer placed")
    wait_for(lambda: kube.held_reason(ch, "patient"), 60, "patient held")
    wait_for(lambda: pool_status("ovh-gra-h100", kube).get("carbonGramsPerKwh") == FR_GRID, 60,
             "the operator planning with the SignalSource's FR value")  # fmt: skip
    yield fr, ch


def pool_status(name: str, kube: Kube) -> dict[str, Any]:
    found = json.loads(kube.kubectl("get", "gpupool", name, "-o", "json").stdout)
    status: dict[str, Any] = found.get("status") or {}
    return status


def explain(
    capsys: pytest.CaptureFixture[str], kube: Kube, *argv: str, code: int = 0
) -> tuple[str, str]:
    exit_code = cli.main(["explain", "--from-cluster", *argv, f"--kubeconfig={kube.kubeconfig}"])
    captured = capsys.readouterr()
    assert exit_code == code, (argv, captured.out, captured.err)
    return captured.out, captured.err


def policy_file(tmp_path: pathlib.Path, *objects: dict[str, Any]) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(k8s.manifest(*objects))
    return str(path)


def test_sees_what_the_operator_decided(
    kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fr, ch = spaces
    out, err = explain(capsys, kube, "-A", "-o", "json")
    assert err == ""
    decided = {d["workload"]: d for d in json.loads(out)["decisions"]}
    held = kube.held_reason(ch, "patient")
    assert decided[f"{ch}/patient"]["outcome"] == "Held"
    assert decided[f"{ch}/patient"]["reason"] == "NoCompliantPool" and held is not None
    placed = {c["workload"]: c for c in json.loads(out)["placed"]}
    assert placed[f"{fr}/trainer"]["pool"] == kube.placed_pool(fr, "trainer")
    assert placed[f"{fr}/trainer"]["allowed"] is True
    text, _ = explain(capsys, kube, "-n", ch)
    assert f"{ch}/patient" in text and f"{fr}/trainer" not in text, text  # -n narrows
    as_yaml, _ = explain(capsys, kube, "-n", fr, "-o", "yaml")
    assert yaml.safe_load(as_yaml)["placed"][0]["workload"] == f"{fr}/trainer"


def test_the_saved_snapshot_is_the_operators(
    kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    """Free GPUs as the operator wrote them in each pool's status; FR's intensity from the
    SignalSource's status; the file explains the held pod as the cluster does."""
    _, ch = spaces
    saved = tmp_path / "snapshot.yaml"
    explain(capsys, kube, "--save", str(saved))
    snapshot, now = snapshot_file.loads(saved.read_text())
    for pool in snapshot.pools:
        assert pool.gpus_free == pool_status(pool.name, kube)["gpusFree"], pool.name
    pools = {p.name: p for p in snapshot.pools}
    assert {pools[name].gco2_per_kwh for name in FRENCH} == {FR_GRID}
    assert cli.main(["explain", str(saved), "-w", f"{ch}/patient", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "NoCompliantPool"
    assert now is not None


def test_a_policy_file_is_tried_not_applied(
    kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    fr, ch = spaces
    loosened = policy_file(tmp_path, k8s.policy(ch, "swiss-only", ["CH", "FR"]))
    out, _ = explain(capsys, kube, "-f", loosened, "-n", ch, "-o", "json")
    (decision,) = json.loads(out)["decisions"]
    assert decision["outcome"] == "Placed" and decision["pool"] in FRENCH, decision
    assert kube.held_reason(ch, "patient") is not None  # nothing was applied
    live = json.loads(kube.kubectl("get", "placementpolicy", "-n", ch, "swiss-only",
                                   "-o", "json").stdout)  # fmt: skip
    assert live["spec"]["sovereignty"]["allowedCountries"] == ["CH"]
    german = policy_file(tmp_path, k8s.policy(fr, "fr-only", ["DE"], budget="monthly"))
    out, _ = explain(capsys, kube, "-f", german, "-n", fr, "-o", "json")
    (check,) = json.loads(out)["placed"]
    assert check["workload"] == f"{fr}/trainer" and check["allowed"] is False, check
    assert check["pool"] == kube.placed_pool(fr, "trainer")
    assert "DE" in check["message"] or "country" in check["message"].lower(), check
    text, _ = explain(capsys, kube, "-f", german, "-n", fr)
    assert f"refused  {fr}/trainer" in text, text


def test_errors_are_one_line(
    kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    fr, ch = spaces
    bad = policy_file(tmp_path, k8s.policy(ch, "swiss-only", ["fr"]))
    _, err = explain(capsys, kube, "-f", bad, code=2)
    assert err.count("\n") == 1 and "allowedCountries" in err and "invalid" in err, err
    _, err = explain(capsys, kube, "-f", str(tmp_path / "missing.yaml"), code=2)
    assert err.count("\n") == 1 and "missing.yaml" in err, err
    other = policy_file(tmp_path, k8s.policy(ch, "swiss-only", ["CH"]))
    _, err = explain(capsys, kube, "-f", other, "-n", fr, code=2)
    assert err.count("\n") == 1 and "does not match the namespace" in err, err
    _, err = explain(capsys, kube, "--operator-namespace", "nowhere", "-n", ch)
    assert err.startswith("warning: no Secret nowhere/greenplace-record-key"), err
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = yaml.safe_load(kube.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    nowhere = tmp_path / "kubeconfig"
    nowhere.write_text(yaml.safe_dump(config))
    code = cli.main(["explain", "--from-cluster", f"--kubeconfig={nowhere}"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "cannot reach the API server" in err, err


def test_the_operators_key_and_accelerators_are_the_ones_given(
    kube: Kube, spaces: tuple[str, str], capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    """A key the operator did not sign with trusts none of its records, so the placed pod is
    not greenplace's; accelerators that leave out nvidia.com/gpu leave the pod ungoverned; a
    key too short is refused in one line."""
    fr, _ = spaces

    def placed(*flags: str) -> set[str]:
        out, _ = explain(capsys, kube, "-n", fr, "-o", "json", *flags)
        return {c["workload"] for c in json.loads(out)["placed"]}

    assert placed() == {f"{fr}/trainer"}
    other = tmp_path / "other.key"
    other.write_bytes(b"not the operator's key, 32 bytes")
    assert placed(f"--record-key-file={other}") == set()
    assert placed("--accelerator-resource=example.com/tpu") == set()
    short = tmp_path / "short.key"
    short.write_bytes(b"short")
    _, err = explain(capsys, kube, f"--record-key-file={short}", code=2)
    assert err.count("\n") == 1 and "at least 16 bytes" in err, err
