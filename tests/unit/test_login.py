"""In a pod, the operator reaches the API server at the address the kubelet puts in its env."""

from __future__ import annotations

import kopf
import pytest

from greenplace.controller.handlers import _api_server_from_env

INFO = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t")


@pytest.mark.parametrize(
    ("host", "port", "server"),
    [
        ("10.96.0.1", "443", "https://10.96.0.1:443"),
        ("fd00::1", "6443", "https://[fd00::1]:6443"),
        (None, None, "https://kubernetes.default.svc"),  # no env: kopf's default stays
    ],
)
def test_the_api_server_comes_from_the_service_environment(
    monkeypatch: pytest.MonkeyPatch, host: str | None, port: str | None, server: str
) -> None:
    for name, value in (("KUBERNETES_SERVICE_HOST", host), ("KUBERNETES_SERVICE_PORT", port)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    info = _api_server_from_env(INFO)
    assert info.server == server
    assert info.token == "t"  # the credentials are kept
