"""The operator's client keeps a connection alive for every thread that writes through it.

Why: the official client's default pool holds 5 connections per CPU. With more writer threads
than that (16 patch at once, 4 post Events, on 2 CPUs), urllib3 discards each extra connection
after its request ("Connection pool is full, discarding connection"), so every round of a
burst's patches opens fresh TCP and TLS connections to the API server. ``kube.api_client``
sizes the pool to ``kube.CONNECTIONS``.
"""

from __future__ import annotations

import json
import pathlib

from greenplace.controller import kube


def _kubeconfig(path: pathlib.Path) -> pathlib.Path:
    path.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        })
    )  # fmt: skip
    return path


def test_the_pool_keeps_a_connection_per_writing_thread(tmp_path: pathlib.Path) -> None:
    api = kube.api_client(str(_kubeconfig(tmp_path / "kubeconfig")))
    assert kube.CONNECTIONS >= kube.WRITE_THREADS + kube.EVENT_CONCURRENCY
    assert api.configuration.connection_pool_maxsize >= kube.CONNECTIONS
    # What urllib3 was built with: the size each host's pool keeps.
    assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] >= kube.CONNECTIONS
    assert api.configuration.host == "https://127.0.0.1:1"  # the kubeconfig was read
