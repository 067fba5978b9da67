"""Waiting for a cleaner hour, live: the real control plane, operator and SignalSource forecast.

A local Electricity Maps peer on 127.0.0.1 (``tests.providers``) serves France's grid as a
schedule: 300 gCO2e/kWh now, a clean dip at 40 from ``DIP`` seconds ahead, 300 again after.
The operator reads it through a SignalSource (the latest value and the forecast, as in
production), and plans with a deferral step of ``STEP`` seconds instead of 30 minutes.

Why the clock is not accelerated: every time here is real (pods' creation, the forecast's
points, the operator's clock, the API server's), so the test runs the same code on the same
clocks as production; only the forecast's time scale (a dip in a minute, not in hours) and the
granularity of later starts (``--deferral-step``, an operator setting) are shrunk. What that
leaves untested is the scale: a 30-minute step over a 7-day window (the unit tests and the
Let's Wait Awhile test plan those).

Three pods, all allowed only in France:
- ``clean``: no ceiling, may wait 5 minutes: deferred to the dip (a cleaner slot, saying the
  forecast intensity there vs now), released when it comes, bound;
- ``under``: a ceiling of 100 it cannot meet now, may wait 5 minutes: deferred until the dip
  (under the ceiling then), released then, bound;
- ``late``: the same ceiling, but its deadline makes it start before the dip: held, then placed
  above the ceiling exactly at its latest start (``CeilingWaivedAtDeadline``).
"""

from __future__ import annotations

import datetime
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

from greenplace.api import convert
from greenplace.domain import model
from tests import kubeobjects as k8s
from tests.integration.conftest import LOCAL_FEEDS, Kube, RunningOperator, run_operator, wait_for
from tests.providers import FakeProvider, mount_secret, serve

pytestmark = pytest.mark.cluster

OWN = "greenplace-system"
STEP = datetime.timedelta(seconds=5)
DIP = datetime.timedelta(seconds=90)  # from the start of the test
LATEST = datetime.timedelta(seconds=40)  # the late pod's latest start, from the same
DIP_LENGTH = datetime.timedelta(seconds=120)
RUN_HOURS = 0.005  # 18 s
# How late a release may come after its planned instant: the cache's settle and a cycle. A loop
# that waits for its resync (30 s) fails this.
SLACK = datetime.timedelta(seconds=3)
# ... and at the dip: one step more, should the cycle at the deferral's end still hold the
# reading of a second before (signal memory: 1 s), which defers it by one step.
SLACK_AT_DIP = SLACK + STEP
R = model.Reason


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with serve() as server:
        server.em_tokens = {"token": 0.0}
        yield server


@pytest.fixture(scope="module")
def operator(
    kube: Kube, tmp_path_factory: pytest.TempPathFactory, provider: FakeProvider
) -> Iterator[RunningOperator]:
    credentials = tmp_path_factory.mktemp("credentials")
    mount_secret(credentials, "emaps", {"token": "token"})
    with run_operator(
        kube,
        credentials_dir=credentials,
        namespace=OWN,
        signal_memory_seconds=1,
        resync_seconds=30,  # what production runs: a wake-up must not wait for it
        deferral_step=STEP,
        **LOCAL_FEEDS,
    ) as running:
        yield running


def at(when: datetime.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def until(message: str) -> datetime.datetime:
    found = re.search(r"(?:deferred until|at its latest start) (\S+?)(?::? |$)", message)
    assert found, message
    return datetime.datetime.fromisoformat(found.group(1))


def released_at(kube: Kube, namespace: str, name: str) -> tuple[datetime.datetime, Any]:
    pod = wait_for(lambda: kube.bound(namespace, name), 240, f"{name} bound")
    record = k8s.placement_record(pod)
    return datetime.datetime.fromisoformat(record["at"].replace("Z", "+00:00")), record


def test_deferred_pods_are_released_at_the_dip_and_a_ceiling_yields_at_the_latest_start(
    kube: Kube, operator: RunningOperator, provider: FakeProvider, tmp_path: pathlib.Path
) -> None:
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    dip = start + DIP
    provider.schedule = [
        (start - datetime.timedelta(minutes=5), 300.0),
        (dip, 40.0),
        (dip + DIP_LENGTH, 300.0),
        (dip + datetime.timedelta(hours=2), 300.0),
    ]
    source = {
        "name": "emaps", "kind": "ElectricityMaps", "timeout": "2s",
        "electricityMaps": {"url": provider.url},
        "credentialsSecretRef": {"name": "emaps", "namespace": OWN},
    }  # fmt: skip
    assert kube.apply(k8s.signal_source("grid", [source], ["FR"])).returncode == 0
    ready = kube.kubectl("wait", "--for=condition=Ready", "signalsource/grid", "--timeout=60s")
    assert ready.returncode == 0, ready.stderr

    free, capped = kube.namespace(), kube.namespace()
    assert kube.apply(k8s.policy(free, "fr", ["FR"])).returncode == 0
    ceiling = {"maxGramsPerKwh": 100}
    assert kube.apply(k8s.policy(capped, "fr-clean", ["FR"], carbon=ceiling)).returncode == 0
    window = {convert.DURATION_ANNOTATION: str(RUN_HOURS), convert.MAX_DELAY_ANNOTATION: "5m"}
    assert kube.apply(k8s.gpu_pod(free, "clean", annotations=window)).returncode == 0
    assert kube.apply(k8s.gpu_pod(capped, "under", annotations=window)).returncode == 0
    deadline = start + LATEST + datetime.timedelta(hours=RUN_HOURS)
    late = {convert.DURATION_ANNOTATION: str(RUN_HOURS), convert.DEADLINE_ANNOTATION: at(deadline)}
    assert kube.apply(k8s.gpu_pod(capped, "late", annotations=late)).returncode == 0

    def held(namespace: str, name: str, reason: str) -> str:
        found = wait_for(
            lambda: (
                (kube.held_reason(namespace, name) or "").startswith(f"{reason}: ")
                and kube.held_reason(namespace, name)
            ),
            60,
            f"{name} held with {reason}",
        )
        return str(found)

    clean = held(free, "clean", R.DEFERRED_FOR_CLEANER_SLOT)
    assert re.search(r"forecast 4\d gCO2e/kWh in \S+ then vs 3\d\d gCO2e/kWh in \S+ now", clean)
    under = held(capped, "under", R.DEFERRED_UNTIL_UNDER_CEILING)
    assert re.search(r"forecast under it then \(4\d gCO2e/kWh vs 3\d\d gCO2e/kWh now\)", under)
    waiting = held(capped, "late", R.NO_COMPLIANT_POOL)
    latest = deadline - datetime.timedelta(hours=RUN_HOURS)
    assert until(waiting) == latest, waiting
    # Each deferral ends at the first step of the dip.
    for message in (clean, under):
        assert dip <= until(message) < dip + STEP + datetime.timedelta(seconds=1), message
    assert kube.events(free, "clean", R.DEFERRED_FOR_CLEANER_SLOT)[0].type == "Normal"

    placed, record = released_at(kube, capped, "late")
    assert record["reason"] == R.CEILING_WAIVED_AT_DEADLINE
    assert latest <= placed < latest + SLACK, (placed, latest)
    assert placed < dip  # above the ceiling, before the clean hour came
    for namespace, name, message in ((free, "clean", clean), (capped, "under", under)):
        placed, record = released_at(kube, namespace, name)
        planned = until(message)
        # At the dip, not before; and by the deferral's end at the latest (sooner when a cycle
        # woken by another pod plans it within the dip).
        assert dip <= placed < planned + SLACK_AT_DIP, (name, placed, dip, planned)
        assert record["country"] == "FR" and record["gco2PerKwh"] < 100, record
    assert kube.kubectl("delete", "signalsource", "grid").returncode == 0


@pytest.mark.parametrize(
    ("deferral", "field"),
    [
        ({"maxDelay": "169h"}, "maxDelay"),
        ({"maxDelay": "1d"}, "maxDelay"),
        ({"minSaving": 2}, "minSaving"),
    ],
)
def test_the_api_server_refuses_a_bad_deferral_naming_the_field(
    kube: Kube, deferral: dict[str, Any], field: str
) -> None:
    ns = kube.namespace(governed=False)
    result = kube.apply(k8s.policy(ns, "bad", ["FR"], deferral=deferral))
    assert result.returncode != 0
    assert f"spec.deferral.{field}" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (convert.MAX_DELAY_ANNOTATION, "169h"),
        (convert.MAX_DELAY_ANNOTATION, "6"),
        (convert.MAX_DELAY_ANNOTATION, ""),
        (convert.DEADLINE_ANNOTATION, "2026-12-03"),
        (convert.DEADLINE_ANNOTATION, "2026-12-03T06:00:00"),
        (convert.DEADLINE_ANNOTATION, "2026-13-03T06:00:00Z"),
    ],
)
def test_the_admission_policy_refuses_an_unreadable_window(
    kube: Kube, annotation: str, value: str
) -> None:
    ns = kube.namespace()
    assert kube.apply(k8s.policy(ns, "fr", ["FR"])).returncode == 0
    result = kube.apply(k8s.gpu_pod(ns, "p", gated=True, annotations={annotation: value}))
    assert result.returncode != 0
    assert f"annotation {annotation} must be" in result.stderr, result.stderr
