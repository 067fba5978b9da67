"""Fixtures for the signals and accounting integration tests: a real Prometheus with history."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from . import prometheus_fixture


@pytest.fixture(scope="session")
def prometheus_tsdb(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    try:
        return prometheus_fixture.build_tsdb(tmp_path_factory.mktemp("prometheus-history"))
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def prometheus(
    prometheus_tsdb: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[prometheus_fixture.PrometheusServer]:
    server = prometheus_fixture.PrometheusServer(
        prometheus_tsdb, tmp_path_factory.mktemp("prometheus-run")
    )
    try:
        server.start()
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    yield server
    server.stop()
