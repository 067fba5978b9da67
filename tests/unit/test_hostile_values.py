"""The pydantic models refuse every hostile value the API server refuses (tests/hostile.py).

The operator parses what it watches with these models (``controller.cache``): an object stored
before a bound existed must come out invalid, with the field named, instead of reaching the
planner or the report loop. The same table runs against the real API server in
tests/integration/test_validation.py.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Mapping
from typing import Any

import prometheus_client
import pydantic
import pytest

from greenplace.accounting import telemetry
from greenplace.api import models
from greenplace.controller import cache as cache_
from greenplace.controller import reports, status
from tests import hostile


@pytest.mark.parametrize("kind", hostile.FULL)
def test_the_full_specs_are_valid(kind: str) -> None:
    """Guards the table: each case fails for its own value, not for a broken baseline."""
    hostile.MODELS[kind].model_validate(hostile.FULL[kind])


def _names_the_field(error: pydantic.ValidationError, case: hostile.Case) -> bool:
    for loc in (tuple(e["loc"]) for e in error.errors()):
        shorter = min(len(loc), len(case.path))
        if loc and loc[:shorter] == case.path[:shorter]:
            return True
    return False


@pytest.mark.parametrize("case", hostile.all_cases(), ids=lambda c: c.id)
def test_models_refuse_the_hostile_value(case: hostile.Case) -> None:
    spec = case.spec(hostile.PYTHON_SPECIALS)
    with pytest.raises(pydantic.ValidationError) as refused:
        hostile.MODELS[case.kind].model_validate(spec)
    assert _names_the_field(refused.value, case), refused.value


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("1m", True),
        ("8784h", True),
        ("8783h59m59s999ms", True),
        ("1h30m", True),
        ("90m", True),
        ("3600000ms", False),  # 7 digits: refused, though only an hour (the form bounds the size)
        ("8784h1ms", False),
        ("59s999ms", False),
        ("30m1h", False),  # units out of order
        ("1h1h", False),
    ],
)
def test_window_range_is_checked_on_the_canonical_form(text: str, ok: bool) -> None:
    if ok:
        assert models.EnergyReportSpec.model_validate({"window": text}).window == text
    else:
        with pytest.raises(pydantic.ValidationError, match="must be a duration from 1m to 8784h"):
            models.EnergyReportSpec.model_validate({"window": text})


def test_grades_must_increase_in_the_models_too() -> None:
    """The CEL rule, mirrored: otherwise grading.Scale refuses it on every report cycle."""
    with pytest.raises(pydantic.ValidationError, match="four increasing positive bounds"):
        models.Grading.model_validate({"energyWhPerRequest": [0.3, 0.1, 0.5, 1]})


def _report(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{models.GROUP}/{models.VERSION}",
        "kind": "EnergyReport",
        "metadata": {"name": "r", "namespace": "team", "generation": 1},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "spec",
    [
        {"window": hostile.HUGE_DURATION},
        {"window": "8784h", "windowEnd": "0001-01-01T00:00:00Z"},
    ],
    ids=["huge-window", "window-before-year-1"],
)
def test_a_stored_report_out_of_range_is_kept_out_as_invalid(spec: dict[str, Any]) -> None:
    """Written before the bounds: the cache reports it instead of the report loop overflowing."""
    cache = cache_.Cache()
    cache.put_report(_report(spec))
    assert ("team", "r") not in cache.reports
    assert any("EnergyReport team/r" in name for name in cache.invalid)


class _Writer:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}

    async def patch_status(
        self, plural: str, namespace: str | None, name: str, body: Mapping[str, Any]
    ) -> None:
        self.status = dict(body)


@pytest.mark.parametrize(
    ("window", "window_end"),
    [
        (hostile.HUGE_DURATION, None),
        ("1h", datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)),
    ],
    ids=["timedelta-overflow", "start-before-year-1"],
)
def test_reporter_refuses_a_window_it_cannot_compute_without_a_traceback(
    window: str, window_end: datetime.datetime | None, caplog: pytest.LogCaptureFixture
) -> None:
    """Even a spec that escaped the models (built unvalidated) ends in Ready False, no crash."""
    spec = models.EnergyReportSpec.model_construct(
        window=window, window_end=window_end, prometheus=None, serving="vLLM",
        mig_slices_total=7, grading=None, scope="Namespace",
    )  # fmt: skip
    cache = cache_.Cache()
    cache.reports[("team", "r")] = cache_.CachedReport("team", "r", 1, spec)
    writer = _Writer()
    reporter = reports.Reporter(
        status.StatusRecorder(writer),  # type: ignore[arg-type]
        telemetry.AccountingMetrics(prometheus_client.CollectorRegistry()),
        "http://prom:9090",
    )
    with caplog.at_level(logging.ERROR, logger="greenplace.reports"):
        asyncio.run(reporter.run(cache, datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)))
    assert not caplog.records, caplog.text
    ready = next(c for c in writer.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidWindow")
    assert "8784h" in ready["message"]
