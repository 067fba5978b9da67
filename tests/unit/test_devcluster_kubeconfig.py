"""``GREENPLACE_KUBECONFIG`` naming a missing file: one clear line, and nothing stopped.

Why this module exists: ``make run`` first stops what a previous ``make run`` left running. With
``GREENPLACE_KUBECONFIG`` misspelt, the local cluster a user still had was torn down before the
run failed on the missing file (issue 16). The check now comes first; ``down`` is replaced by a
recorder here, so the test never touches a real ``.run/cluster``.
"""

from __future__ import annotations

import pathlib

import pytest

from devcluster import cli, cluster


def test_a_missing_kubeconfig_fails_in_one_line_before_anything_is_stopped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    stopped: list[bool] = []
    monkeypatch.setattr(cli, "down", lambda quiet=False: stopped.append(quiet) or 0)
    missing = tmp_path / "no-such-kubeconfig"
    monkeypatch.setenv("GREENPLACE_KUBECONFIG", str(missing))
    with pytest.raises(SystemExit) as raised:
        cli.up()
    message = str(raised.value)
    assert message == (
        f"GREENPLACE_KUBECONFIG={missing}: no such file; point it at your cluster's kubeconfig, "
        "or unset it to use the local control plane"
    )
    assert "\n" not in message
    assert stopped == [], "the running local cluster was stopped before the check"


def test_the_tests_cluster_fixture_refuses_it_the_same_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("GREENPLACE_KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(SystemExit, match="no such file"), cluster.cluster_from_env():
        pass  # never reached: nothing is started


def test_an_existing_file_or_none_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.delenv("GREENPLACE_KUBECONFIG", raising=False)
    assert cluster.existing_kubeconfig() is None
    config = tmp_path / "config"
    config.write_text("apiVersion: v1\n")
    monkeypatch.setenv("GREENPLACE_KUBECONFIG", str(config))
    assert cluster.existing_kubeconfig() == config
