"""Crash safety: kill the operator mid-batch, restart it, and every pod is placed exactly once.

Placing a pod is one patch (affinity + record + gate removal, guarded by resourceVersion), so
the only crash points are between two pods' patches. The operator is crashed (``os._exit``, no
cleanup) right after its N-th placement, then started again without the crash point.
"""

from __future__ import annotations

from typing import Any

import pytest

from greenplace.controller import cycle, faults
from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster

# Twice the operator's patch concurrency (16 in flight), so a crash after N placements always
# leaves pods gated: at most N + 15 can have been sent. France, Germany and Great Britain offer
# 44 GPUs; each run deletes its namespace so the next one has them again.
PODS = 2 * cycle.APPLY_CONCURRENCY


@pytest.mark.parametrize("crash_after", [1, 7])
def test_crash_mid_batch_then_restart_places_every_pod_exactly_once(
    kube: Kube, operator_process: OperatorProcess, crash_after: int
) -> None:
    operator_process.start()
    ns = kube.namespace()
    kube.apply_ok(k8s.policy(ns, "eu", ["CH"]))  # no pool: everything waits
    kube.apply_ok(k8s.pod_list(ns, [f"w{i:02d}" for i in range(PODS)]))
    # No pool allowed yet: every pod is gated and held (NoCompliantPool), none placed.
    wait_for(
        lambda: all(
            "greenplace.dev/held"
            in (kube.pod(ns, f"w{i:02d}")["metadata"].get("annotations") or {})
            for i in range(PODS)
        ),
        60, "all pods held",
    )  # fmt: skip
    operator_process.stop()

    operator_process.start(GREENPLACE_CRASH_AFTER_PLACEMENTS=str(crash_after))
    kube.apply_ok(k8s.policy(ns, "eu", ["FR", "DE", "GB"]))
    assert operator_process.wait_exit() == faults.CRASH_EXIT_CODE
    placed_at_crash = [
        p for p in (kube.pod(ns, f"w{i:02d}") for i in range(PODS))
        if not p["spec"].get("schedulingGates")
    ]  # fmt: skip
    assert crash_after <= len(placed_at_crash) <= crash_after + cycle.APPLY_CONCURRENCY - 1 < PODS

    operator_process.start()
    bodies = wait_for(
        lambda: [b for b in (kube.pod(ns, f"w{i:02d}") for i in range(PODS))
                 if b["spec"].get("nodeName")] if all(
            kube.pod(ns, f"w{i:02d}")["spec"].get("nodeName") for i in range(PODS)) else None,
        60, "every pod bound after restart",
    )  # fmt: skip
    allowed = {"gcp-europe-west9-a100", "ovh-gra-h100", "stackit-eu01-h100", "gcp-europe-west2-l4"}
    for body in bodies:
        record = k8s.placement_record(body)
        assert record["pool"] in allowed
        # Exactly one placement: one pool expression per term, naming the recorded pool.
        assert k8s.placed_pools(body) == [[record["pool"]]]
        assert kube.node_pool(body["spec"]["nodeName"]) == record["pool"]
    deleted = kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s")
    assert deleted.returncode == 0, deleted.stderr  # frees the GPUs for the next run


def test_objects_deleted_while_the_operator_is_down_leave_no_finalizer(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    """A finalizer the operator added would block the deletion of its objects forever once it
    stops (a known kopf failure mode). So the running operator handles one object of every kind
    it watches and writes (each shows it: status, or a hold reason), then stops, and each is
    deleted without it."""
    operator_process.start("--report-seconds=1")
    ns = kube.namespace()
    objects: dict[tuple[str, str | None], dict[str, Any]] = {
        ("placementpolicy", ns): k8s.policy(ns, "gone", ["CH"]),  # no pool: the pod waits
        ("budget", ns): k8s.budget(ns, "gone", money=10),
        ("signalsource", None): k8s.signal_source("gone", [k8s.static_source({"CH": 30})], ["CH"]),
        ("gpupool", None): k8s.gpu_pool("gone", "CH", price=1),
        ("energyreport", ns): k8s.energy_report(ns, "gone", window="1h",
                                                prometheus={"url": "https://127.0.0.1:9"}),
    }  # fmt: skip
    for body in objects.values():
        kube.apply_ok(body)
    kube.apply_ok(k8s.gpu_pod(ns, "gone", 1))

    def handled(kind: str, namespace: str | None) -> bool:  # only the operator writes status
        return bool(kube.custom(kind, "gone", namespace).get("status"))

    for kind, namespace in objects:
        wait_for(lambda k=kind, n=namespace: handled(k, n), 30, f"the operator to handle {kind}")
    wait_for(lambda: kube.held_reason(ns, "gone"), 30, "the operator to hold the pod")
    operator_process.stop()

    for kind, namespace in [*objects, ("pod", ns)]:
        body = kube.custom(kind, "gone", namespace)
        assert not body["metadata"].get("finalizers"), (kind, body["metadata"]["finalizers"])
        where = ["-n", namespace] if namespace else []
        result = kube.kubectl("delete", kind, "gone", *where, "--timeout=20s")
        assert result.returncode == 0, (kind, result.stderr)
        assert kube.kubectl("get", kind, "gone", *where).returncode != 0, kind


def test_failing_cycles_are_counted_and_retried_until_the_pod_is_placed(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    # The first three cycles raise before planning, as a planner bug on one snapshot would.
    operator_process.start(GREENPLACE_FAIL_CYCLES="3")
    ns = kube.namespace()
    kube.apply_ok(k8s.policy(ns, "fr", ["FR"]))
    kube.apply_ok(k8s.gpu_pod(ns, "after-failures", 1))

    # Retried on a backoff (2, 4, 8 s) with no further change in the cluster.
    body = wait_for(lambda: (b := kube.pod(ns, "after-failures"))["spec"].get("nodeName") and b,
                    60, "pod placed after the failing cycles")  # fmt: skip
    record = k8s.placement_record(body)
    assert record["pool"] in {"gcp-europe-west9-a100", "ovh-gra-h100"}
    assert k8s.metric(operator_process.metrics(), "greenplace_cycle_failures_total") == 3.0
    log = operator_process.log.read_text()
    assert log.count("placement cycle failed; retrying within") == 3
    assert "GREENPLACE_FAIL_CYCLES: failing a placement cycle on purpose" in log
    assert operator_process.process is not None and operator_process.process.poll() is None
