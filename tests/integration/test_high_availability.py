"""Two live replicas: one leader places, the standby takes over on a crash or a graceful stop.

Both replicas are real ``greenplace operate`` processes against the real API server. Who placed
a pod is read from its ``Placed`` Event (``reportingInstance`` is the replica's identity), and
who leads from the Lease itself.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, OperatorProcess, wait_for, wait_for_cycles

pytestmark = pytest.mark.cluster

LEASE_SECONDS = 6


def start(replica: OperatorProcess, identity: str, lease_ns: str) -> None:
    replica.start(
        f"--identity={identity}",
        f"--lease-namespace={lease_ns}",
        f"--lease-seconds={LEASE_SECONDS}",
    )


def lease(kube: Kube, namespace: str) -> dict[str, object]:
    result = kube.kubectl("get", "lease", "greenplace-placement", "-n", namespace, "-o", "json")
    return json.loads(result.stdout)["spec"] if result.returncode == 0 else {}  # type: ignore[no-any-return]


def gpu_pods(kube: Kube, namespace: str, names: list[str]) -> None:
    kube.apply_ok(k8s.pod_list(namespace, names))


def placers(kube: Kube, namespace: str, names: list[str]) -> dict[str, list[str]]:
    """pod name -> identities of the replicas that posted a ``Placed`` Event for it."""
    events = kube.core.list_namespaced_event(namespace).items
    found: dict[str, list[str]] = {n: [] for n in names}
    for event in events:
        if event.reason == "Placed" and event.involved_object.name in found:
            found[event.involved_object.name].append(event.reporting_instance)
    return found


def placed(kube: Kube, namespace: str, names: list[str]) -> bool:
    return all(not kube.pod(namespace, n)["spec"].get("schedulingGates") for n in names)


def placed_by(kube: Kube, namespace: str, names: list[str]) -> set[str]:
    """Wait until every pod of ``names`` is placed; return which replicas placed them."""
    wait_for(lambda: placed(kube, namespace, names), 60, f"{names[0]}... placed")
    wait_for(lambda: all(placers(kube, namespace, names).values()), 30, "Placed events")
    return {who for whos in placers(kube, namespace, names).values() for who in whos}


def test_one_leader_places_and_the_standby_takes_over(
    kube: Kube, replicas: tuple[OperatorProcess, OperatorProcess]
) -> None:
    first, second = replicas
    lease_ns = kube.namespace(governed=False)
    start(first, "replica-a", lease_ns)
    wait_for(lambda: lease(kube, lease_ns).get("holderIdentity") == "replica-a", 30, "a leads")
    start(second, "replica-b", lease_ns)  # the webhook configuration now points at b

    ns = kube.namespace()
    assert kube.apply(k8s.policy(ns, "eu", ["FR", "DE", "GB"])).returncode == 0
    batch1 = [f"one-{i}" for i in range(6)]
    gpu_pods(kube, ns, batch1)
    assert placed_by(kube, ns, batch1) == {"replica-a"}
    assert lease(kube, lease_ns)["holderIdentity"] == "replica-a"

    # Crash the leader: no release, so b must wait for the Lease to expire, then place.
    transitions = lease(kube, lease_ns).get("leaseTransitions", 0)
    first.kill()
    batch2 = [f"two-{i}" for i in range(4)]
    gpu_pods(kube, ns, batch2)
    assert placed_by(kube, ns, batch2) == {"replica-b"}
    spec = lease(kube, lease_ns)
    assert spec["holderIdentity"] == "replica-b"
    assert spec["leaseTransitions"] == transitions + 1  # type: ignore[operator]
    assert f"replica-a did not renew it for {LEASE_SECONDS} s" in second.log.read_text()

    # A graceful stop releases the Lease: a takes over before it could have expired.
    start(first, "replica-a", lease_ns)  # the webhook configuration points at a again
    # A standby does not preempt: b keeps placing, through cycles run after a joined (a tries
    # the Lease every 0.8 s meanwhile).
    cycles = k8s.cycles(second.metrics())
    batch_standby = [f"standby-{i}" for i in range(2)]
    gpu_pods(kube, ns, batch_standby)
    assert placed_by(kube, ns, batch_standby) == {"replica-b"}
    wait_for_cycles(second.metrics, since=cycles)
    assert lease(kube, lease_ns)["holderIdentity"] == "replica-b"
    second.stop()
    wait_for(lambda: lease(kube, lease_ns).get("holderIdentity") == "replica-a", 30, "a leads")
    assert "replica-a takes lease" in first.log.read_text()
    assert f"{lease_ns}/greenplace-placement: released by its holder" in first.log.read_text()
    batch3 = [f"three-{i}" for i in range(4)]
    gpu_pods(kube, ns, batch3)
    assert placed_by(kube, ns, batch3) == {"replica-a"}

    # Never twice: one Placed event per pod, whoever placed it.
    every = placers(kube, ns, batch1 + batch2 + batch_standby + batch3)
    assert Counter(len(v) for v in every.values()) == Counter({1: len(every)})
    deleted = kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s")
    assert deleted.returncode == 0, deleted.stderr
