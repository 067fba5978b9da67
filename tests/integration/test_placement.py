"""First placements end to end: webhook gate, planner, atomic release, kube-scheduler binding.

Runs against the real API server, scheduler and kwok nodes of the example fleet:

pool (country, effective gCO2e/kWh = grid x PUE, GPUs)
  gcp-europe-west9-a100  FR   37.4   4
  ovh-gra-h100           FR   70.6  16
  stackit-eu01-h100      DE  406.9  16
  gcp-europe-west2-l4    GB  149.6   8
  gcp-us-central1-h100   US  473.0  32
"""

from __future__ import annotations

import prometheus_client
import pytest

from devcluster import admission
from greenplace.cli import main as cli
from greenplace.cli import views
from tests import kubeobjects as k8s
from tests import metricnames
from tests.integration.conftest import Kube, RunningOperator, wait_for

pytestmark = pytest.mark.cluster

POOL_LABEL = "greenplace.dev/pool"


def test_pods_land_on_the_lowest_carbon_compliant_pool_with_room(
    kube: Kube, operator: RunningOperator, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = kube.namespace()
    assert kube.apply(k8s.policy(ns, "fr-de", ["FR", "DE"])).returncode == 0
    sizes = {"p0": 4, "p1": 8, "p2": 8, "p3": 8, "p4": 4, "p5": 8}
    for name, gpus in sizes.items():
        result = kube.apply(k8s.gpu_pod(ns, name, gpus))
        assert result.returncode == 0, result.stderr

    expected = {
        "p0": "gcp-europe-west9-a100",  # cleanest FR pool, exactly 4 GPUs
        "p1": "ovh-gra-h100",  # next cleanest
        "p2": "ovh-gra-h100",  # fills OVH (16)
        "p3": "stackit-eu01-h100",  # only DE remains: dirtier, but allowed
        "p4": "stackit-eu01-h100",
    }
    for name, pool in expected.items():
        pod = wait_for(lambda n=name: kube.bound(ns, n), 30, f"{ns}/{name} bound")
        assert kube.node_pool(pod["spec"]["nodeName"]) == pool, name
        record = k8s.placement_record(pod)
        assert record["pool"] == pool
        assert record["policies"] == [f"{ns}/fr-de"]
        assert not pod["spec"].get("schedulingGates")
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert all(
            {"key": POOL_LABEL, "operator": "In", "values": [pool]} in t["matchExpressions"]
            for t in terms
        )
    wait_for(
        lambda: kube.pod(ns, "p0")["status"].get("phase") == "Running", 30, "kwok runs the pod"
    )

    # 4 GPUs are left in the allowed countries and p5 needs 8: it waits, with its reason,
    # although the US and GB pools have room.
    reason = wait_for(lambda: kube.held_reason(ns, "p5"), 30, "p5 held")
    assert reason.startswith("NoPoolWithRoom: ")
    assert "stackit-eu01-h100: needs 8 GPUs, 4 free" in reason
    pod = kube.pod(ns, "p5")
    assert pod["spec"]["schedulingGates"] == [{"name": "greenplace.dev/placement"}]
    assert not pod["spec"].get("nodeName")

    # What a person reads: `greenplace why` and `greenplace pools` (also `kubectl greenplace`).
    placed = views.why(kube.pod(ns, "p0"))
    assert placed.startswith(f"{ns}/p0 placed in gcp-europe-west9-a100 (FR, "), placed
    assert ", node gcp-europe-west9-a100-0: LowestCarbon: lowest carbon among " in placed, placed
    assert views.why(kube.pod(ns, "p5")).startswith(f"{ns}/p5 waits (gated, NoPoolWithRoom): ")
    wait_for(lambda: cli.main(["pools", f"--kubeconfig={kube.kubeconfig}"]) == 0
             and "gcp-europe-west9-a100  FR       A100-80GB  0/4" in capsys.readouterr().out,
             30, "pool status")  # fmt: skip

    # Recorded at the end of the cycle, after its patches and Events.
    held_gauge = 'greenplace_held_workloads{reason="NoPoolWithRoom"} 1.0'
    metrics = wait_for(lambda: held_gauge in (m := operator.metrics()) and m, 30, held_gauge)
    assert 'greenplace_cycle_phase_seconds_count{phase="3-plan"}' in metrics
    placed = [
        line for line in metrics.splitlines() if line.startswith("greenplace_placements_total")
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in placed) >= 5


def test_a_pod_no_pool_can_satisfy_stays_gated_with_its_reason(
    kube: Kube, operator: RunningOperator
) -> None:
    ns = kube.namespace()
    assert kube.apply(k8s.policy(ns, "swiss-only", ["CH"])).returncode == 0
    assert kube.apply(k8s.gpu_pod(ns, "patient-model", 1)).returncode == 0

    reason = wait_for(lambda: kube.held_reason(ns, "patient-model"), 30, "held reason")
    assert reason.startswith("NoCompliantPool: ")
    assert f"no pool satisfies {ns}/swiss-only" in reason
    assert "gcp-europe-west2-l4: excluded by PlacementPolicy" in reason
    assert "(country GB not in allowed CH)" in reason
    assert "5 pools in all: 5 CountryNotAllowed" in reason
    events = kube.events(ns, "patient-model", "NoCompliantPool")
    assert all(e.type == "Warning" for e in events)
    pod = kube.pod(ns, "patient-model")
    assert pod["spec"]["schedulingGates"] == [{"name": "greenplace.dev/placement"}]
    assert pod["status"]["conditions"][0]["reason"] == "SchedulingGated"


def test_a_gpu_pod_without_policy_is_refused_or_waits_and_says_so(
    kube: Kube, operator: RunningOperator
) -> None:
    ns = kube.namespace()
    # The admission policies are fail-closed: no PlacementPolicy, no new pod.
    early = k8s.manifest(k8s.gpu_pod(ns, "early", 1))
    refused = kube.kubectl("create", "-f", "-", stdin=early, wait_for_policy=False)
    assert refused.returncode != 0 and "no params found" in refused.stderr, refused.stderr
    # A pod created under a policy that is then deleted waits and says why.
    assert kube.apply(k8s.policy(ns, "temporary", ["CH"])).returncode == 0
    assert kube.apply(k8s.gpu_pod(ns, "orphan", 1)).returncode == 0
    wait_for(lambda: kube.held_reason(ns, "orphan"), 30, "a first held reason")
    assert kube.kubectl("delete", "placementpolicy", "temporary", "-n", ns).returncode == 0
    reason = wait_for(lambda: (kube.held_reason(ns, "orphan") or "").startswith("NoPolicy")
                      and kube.held_reason(ns, "orphan"), 30, "the NoPolicy reason")  # fmt: skip
    assert reason.startswith("NoPolicy: ")


def test_ungoverned_namespaces_and_cpu_pods_are_left_alone(
    kube: Kube, operator: RunningOperator
) -> None:
    free_ns = kube.namespace(governed=False)
    assert kube.apply(k8s.gpu_pod(free_ns, "anywhere", 1)).returncode == 0
    pod = wait_for(lambda: kube.bound(free_ns, "anywhere"), 30, "ungoverned pod bound")
    assert "greenplace.dev/placement" not in (pod["metadata"].get("annotations") or {})

    governed = kube.namespace()
    assert kube.apply(k8s.policy(governed, "fr", ["FR"])).returncode == 0  # admission needs one
    assert kube.apply(k8s.pod(governed, "cpu-only")).returncode == 0
    pod = kube.pod(governed, "cpu-only")
    assert not pod["spec"].get("schedulingGates")


def test_a_hostile_value_on_one_pod_never_stops_the_others(
    kube: Kube, operator: RunningOperator
) -> None:
    """A duration of 1e308 once made every cycle fail. The admission policies refuse it at the
    door, so their binding is taken away for the create (as on a cluster without them, or for
    a pod older than them): it falls back to 1 h with a Warning, and another namespace's pod is
    placed in the same run."""
    hostile_ns, other_ns = kube.namespace(), kube.namespace()
    for ns in (hostile_ns, other_ns):  # any country: earlier tests of this module fill France
        assert kube.apply(k8s.policy(ns, "any", ["FR", "DE", "GB", "US"])).returncode == 0
    duration = {"greenplace.dev/expected-duration-hours": "1e308"}
    hostile = k8s.gpu_pod(hostile_ns, "hostile", 1, annotations=duration)
    guards = "validatingadmissionpolicybinding/greenplace-pod-guards"
    assert kube.kubectl("delete", guards).returncode == 0
    try:
        wait_for(lambda: kube.apply(hostile).returncode == 0, 30,
                 "the pod admitted without the guards")  # fmt: skip
    finally:
        admission.install(kube.kubeconfig, admission.username(kube.kubeconfig))
    assert kube.apply(k8s.gpu_pod(other_ns, "neighbour", 1)).returncode == 0
    for ns, name in ((other_ns, "neighbour"), (hostile_ns, "hostile")):
        wait_for(lambda n=ns, p=name: kube.bound(n, p), 30, f"{ns}/{name} bound")
    (warning,) = kube.events(hostile_ns, "hostile", "InvalidAnnotation")
    assert "1 h is assumed" in warning.message
    assert "greenplace_cycle_failures_total 0.0" in operator.metrics()


def test_the_operator_declares_every_metric_the_dashboard_and_docs_are_checked_against(
    kube: Kube, operator: RunningOperator
) -> None:
    """``tests/unit/test_accounting_dashboard.py`` checks names against
    ``metricnames.operator_registry``: this shows a running operator declares every family of
    it, with the same type (a family is declared on /metrics before its first sample)."""
    expected = prometheus_client.generate_latest(metricnames.operator_registry()).decode()
    served = metricnames.declared(operator.metrics())
    assert metricnames.declared(expected).items() <= served.items()
