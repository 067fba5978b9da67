"""The signed placement ledger on the real control plane (issue 17 items 1 and 2).

Real ``greenplace operate`` processes append to ConfigMap segments through the real API server;
``greenplace audit verify`` reads them back through the kubeconfig. Each test keeps its ledger
in a namespace of its own (``--lease-namespace``), so its chain is its alone.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import pathlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from devcluster import cluster
from greenplace.audit import chain, store
from greenplace.cli import main as cli
from greenplace.controller import cycle, faults
from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, OperatorProcess, wait_for

pytestmark = pytest.mark.cluster

LEASE_SECONDS = 6


def records(kube: Kube, namespace: str) -> list[dict[str, Any]]:
    lines = [ln for s in store.Store(kube.api, namespace).segments() for ln in s.lines]
    return [json.loads(line) for line in lines]


def placed_uids(found: list[dict[str, Any]]) -> Counter[str]:
    """How many placement records name each pod."""
    return Counter(
        pod["uid"] for r in found if r["entry"]["outcome"] == "Placed" for pod in r["entry"]["pods"]
    )


def all_recorded(kube: Kube, ledger_ns: str, uids: frozenset[str]) -> list[dict[str, Any]]:
    """The records once every pod of ``uids`` has a placement record (else empty)."""
    found = records(kube, ledger_ns)
    return found if set(placed_uids(found)) >= uids else []


def verify(kube: Kube, ledger_ns: str, *extra: str) -> tuple[int, str]:
    """``greenplace audit verify`` as a user runs it: exit code and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(["audit", "verify", f"--kubeconfig={kube.kubeconfig}",
                         f"--ledger-namespace={ledger_ns}", *extra])  # fmt: skip
    return code, out.getvalue()


def pod_uids(kube: Kube, namespace: str, names: list[str]) -> set[str]:
    return {kube.pod(namespace, n)["metadata"]["uid"] for n in names}


def released(kube: Kube, namespace: str, names: list[str]) -> bool:
    return all(not kube.pod(namespace, n)["spec"].get("schedulingGates") for n in names)


def assert_facts(entry: dict[str, Any], ns: str) -> None:
    """A placement record holds the facts it was decided on, as they stood."""
    assert entry["kind"] == "decision" and entry["namespace"] == ns
    assert entry["pool"]["country"] in {"FR", "DE", "GB"}
    assert entry["pool"]["jurisdiction"]["legalHome"]
    assert entry["policies"][0]["name"] == f"{ns}/eu"
    assert entry["policies"][0]["generation"] == 1 and len(entry["policies"][0]["specSha256"]) == 64
    assert {"gco2PerKwh", "source", "ageSeconds"} <= set(entry["signals"]["carbon"])
    assert entry["objective"]["cost"] is not None and entry["charge"]["kWh"] > 0
    assert entry["operatorVersion"]


def exported_and_pinned(kube: Kube, ledger_ns: str, tmp_path: pathlib.Path) -> None:
    """Exported and verified away from the cluster, with the key pinned; another key fails."""
    exported = tmp_path / "ledger.json"
    assert cli.main(["audit", "export", f"--kubeconfig={kube.kubeconfig}",
                     f"--ledger-namespace={ledger_ns}", "-o", str(exported)]) == 0  # fmt: skip
    ((kid, pem),) = json.loads(exported.read_text())["publicKeys"].items()
    pinned = tmp_path / "key.pem"
    pinned.write_text(pem)
    assert verify(kube, ledger_ns, f"--file={exported}", f"--public-key={pinned}")[0] == 0
    other = tmp_path / "other.pem"
    other.write_text(chain.public_pem(chain.SigningKey.generate().public))
    code, said = verify(kube, ledger_ns, f"--file={exported}", f"--public-key={other}")
    assert code == 1 and f"signed by key {kid}, which is not among the trusted" in said


def edited_in_the_configmap(kube: Kube, ledger_ns: str) -> None:
    """Someone with write access to the ConfigMap edits a record: verify names it."""
    (segment,) = store.Store(kube.api, ledger_ns).segments()
    target = json.loads(segment.lines[1])
    target["entry"]["pool"] = {**(target["entry"]["pool"] or {}), "country": "US"}
    body = kube.core.read_namespaced_config_map(segment.name, ledger_ns)
    body.data[store.DATA_KEY] = body.data[store.DATA_KEY].replace(
        segment.lines[1], chain.canonical(target)
    )
    kube.core.replace_namespaced_config_map(segment.name, ledger_ns, body)
    code, said = verify(kube, ledger_ns)
    assert code == 1
    assert f"record 2 ({segment.name} line 2) was changed: its signature" in said


def test_placements_and_holds_are_recorded_once_with_their_facts_and_verify(
    kube: Kube, operator_process: OperatorProcess, tmp_path: pathlib.Path
) -> None:
    ledger_ns = kube.namespace(governed=False)
    operator_process.start(f"--lease-namespace={ledger_ns}")
    ns = kube.namespace()
    kube.apply_ok(k8s.policy(ns, "eu", ["FR", "DE", "GB"]))
    names = [f"p{i}" for i in range(3)]
    kube.apply_ok(k8s.pod_list(ns, names))
    uids = pod_uids(kube, ns, names)
    found = wait_for(functools.partial(all_recorded, kube, ledger_ns, frozenset(uids)), 60,
                     "a placement record for every pod")  # fmt: skip
    assert_facts(next(r for r in found if r["entry"]["outcome"] == "Placed")["entry"], ns)
    # A pod that can be placed nowhere is held: one record, however many cycles re-plan it.
    kube.apply_ok(k8s.gpu_pod(ns, "huge", gpus=64))
    wait_for(lambda: any(r["entry"]["workload"] == f"{ns}/huge" for r in records(kube, ledger_ns)),
             60, "the held pod's record")  # fmt: skip
    for later in ("later-0", "later-1"):  # two more cycles re-plan the held pod
        kube.apply_ok(k8s.gpu_pod(ns, later))
        uids |= pod_uids(kube, ns, [later])
        wait_for(functools.partial(all_recorded, kube, ledger_ns, frozenset(uids)), 60, later)
    final = records(kube, ledger_ns)
    held = [r for r in final if r["entry"]["workload"] == f"{ns}/huge"]
    assert len(held) == 1 and held[0]["entry"]["outcome"] != "Placed", held
    assert placed_uids(final) == Counter(dict.fromkeys(uids, 1))
    assert [r["seq"] for r in final] == list(range(1, len(final) + 1))
    code, said = verify(kube, ledger_ns)
    assert code == 0, said
    assert "ledger: append failed" not in operator_process.log.read_text()
    assert f"records 1..{len(final)} ({len(final)}), from the first record ever" in said

    operator_process.stop()
    exported_and_pinned(kube, ledger_ns, tmp_path)
    edited_in_the_configmap(kube, ledger_ns)
    deleted = kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s")
    assert deleted.returncode == 0, deleted.stderr


# As in test_reliability: twice the patch concurrency, so the crash leaves pods gated.
PODS = 2 * cycle.APPLY_CONCURRENCY


def test_killed_mid_cycle_and_restarted_no_gap_no_duplicate(
    kube: Kube, operator_process: OperatorProcess
) -> None:
    """Crashed right after its 3rd placement patch (before the cycle's ledger append), then
    restarted: every pod has exactly one placement record; those written before the crash are
    recovered from their pods' signed records; the chain verifies."""
    ledger_ns = kube.namespace(governed=False)
    ns = kube.namespace()
    operator_process.start(f"--lease-namespace={ledger_ns}")
    kube.apply_ok(k8s.policy(ns, "eu", ["CH"]))  # no pool: everything waits
    names = [f"w{i:02d}" for i in range(PODS)]
    kube.apply_ok(k8s.pod_list(ns, names))
    wait_for(lambda: sum(r["entry"]["outcome"] == "Held" for r in records(kube, ledger_ns))
             == PODS, 60, "the holds recorded")  # fmt: skip
    operator_process.stop()
    operator_process.start(f"--lease-namespace={ledger_ns}", GREENPLACE_CRASH_AFTER_PLACEMENTS="3")
    kube.apply_ok(k8s.policy(ns, "eu", ["FR", "DE", "GB"]))
    assert operator_process.wait_exit() == faults.CRASH_EXIT_CODE
    placed_before = sum(not kube.pod(ns, n)["spec"].get("schedulingGates") for n in names)
    assert 3 <= placed_before < PODS
    assert not placed_uids(records(kube, ledger_ns))  # killed before the cycle's append

    operator_process.start(f"--lease-namespace={ledger_ns}")
    uids = pod_uids(kube, ns, names)
    found = wait_for(functools.partial(all_recorded, kube, ledger_ns, frozenset(uids)), 60,
                     "a placement record for every pod")  # fmt: skip
    found = records(kube, ledger_ns)
    assert placed_uids(found) == Counter(dict.fromkeys(uids, 1))  # no gap, no duplicate
    recovered = [r for r in found if r["entry"]["kind"] == "recovered"]
    assert len(recovered) == placed_before, [r["entry"]["workload"] for r in recovered]
    assert [r["seq"] for r in found] == list(range(1, len(found) + 1))
    code, said = verify(kube, ledger_ns)
    assert code == 0, said
    assert "ledger: append failed" not in operator_process.log.read_text()
    operator_process.stop()
    deleted = kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s")
    assert deleted.returncode == 0, deleted.stderr


@pytest.fixture
def replicas(kube: Kube, tmp_path: pathlib.Path) -> Iterator[tuple[OperatorProcess, ...]]:
    ports = cluster.free_ports(4)
    pair = tuple(
        OperatorProcess(kube, tmp_path / f"r{i}.log", ports[2 * i], ports[2 * i + 1])
        for i in range(2)
    )
    yield pair
    for replica in pair:
        replica.stop()


def test_a_leader_change_continues_one_chain(
    kube: Kube, replicas: tuple[OperatorProcess, OperatorProcess]
) -> None:
    first, second = replicas
    ledger_ns = kube.namespace(governed=False)
    flags = (f"--lease-namespace={ledger_ns}", f"--lease-seconds={LEASE_SECONDS}")
    first.start("--identity=replica-a", *flags)
    second.start("--identity=replica-b", *flags)
    ns = kube.namespace()
    kube.apply_ok(k8s.policy(ns, "eu", ["FR", "DE", "GB"]))
    batch1 = [f"one-{i}" for i in range(3)]
    kube.apply_ok(k8s.pod_list(ns, batch1))
    one = pod_uids(kube, ns, batch1)
    wait_for(lambda: set(placed_uids(records(kube, ledger_ns))) >= one, 60, "batch 1 recorded")
    first.kill()  # the leader (a started first); b takes over once the Lease expires
    batch2 = [f"two-{i}" for i in range(3)]
    kube.apply_ok(k8s.pod_list(ns, batch2))
    two = pod_uids(kube, ns, batch2)
    wait_for(lambda: set(placed_uids(records(kube, ledger_ns))) >= two, 90, "batch 2 recorded")
    found = records(kube, ledger_ns)
    assert placed_uids(found) == Counter(dict.fromkeys(one | two, 1))
    assert [r["seq"] for r in found] == list(range(1, len(found) + 1))
    assert len({r["kid"] for r in found}) == 1  # one key, one chain, whichever replica wrote
    code, said = verify(kube, ledger_ns)
    assert code == 0, said
    for replica in replicas:
        assert "ledger: append failed" not in replica.log.read_text()
    deleted = kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s")
    assert deleted.returncode == 0, deleted.stderr


def test_a_stale_writer_conflicts_and_segments_roll_over_and_are_pruned(kube: Kube) -> None:
    """The store itself: two writers that read the same head; the second append conflicts.
    Small segments fill and roll over; retention deletes the oldest; the rest verifies as
    anchored on the last pruned record."""
    ledger_ns = kube.namespace(governed=False)
    key = chain.SigningKey.generate()
    small = store.Store(kube.api, ledger_ns, segment_bytes=600, retention_segments=3)
    tail, lines = chain.Tail(), []
    for i in range(12):
        record, tail = chain.seal({"workload": f"ml/j{i}", "outcome": "Held"}, tail, key, "t")
        lines.append(chain.canonical(record))
    head = small.append(None, lines[:2])
    stale = head
    head = small.append(head, lines[2:4])
    with pytest.raises(store.ConflictError):
        small.append(stale, ["{}"])
    assert small.stale(stale) and not small.stale(head)
    small.append(head, lines[4:])
    segments = small.segments()
    assert len(segments) == 3 and segments[0].index > 1  # rolled over, oldest pruned
    assert all(s.sealed for s in segments[:-1]) and not segments[-1].sealed
    located = [item for s in segments for item in s.located()]
    result = chain.verify(located, {key.kid: key.public})
    assert result.ok and result.anchored and result.last_seq == 12, result.summary()
    assert "{}" not in [ln for s in segments for ln in s.lines]  # the stale write left nothing
