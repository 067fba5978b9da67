"""The signed placement ledger on the real control plane (issue 17 items 1 and 2).

Real ``greenplace operate`` processes append to ConfigMap segments through the real API server;
``greenplace audit verify`` reads them back through the kubeconfig. Each test keeps its ledger
in a namespace of its own (``--lease-namespace``), so its chain is its alone.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import dataclasses
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
from greenplace.audit import report as report_
from greenplace.cli import main as cli
from greenplace.controller import cycle, faults, snapshot
from tests import chromium
from tests import kubeobjects as k8s
from tests.integration.conftest import Kube, OperatorProcess, wait_for, wait_for_cycles

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
    assert entry["signals"]["carbon"]["gco2PerKwh"] > 0
    assert entry["objective"]["cost"] is not None and entry["objective"]["kgCO2e"] is not None
    assert entry["charge"]["kWh"] > 0 and entry["charge"]["money"] > 0
    assert entry["charge"]["budgets"] == [f"{ns}/team"]
    assert entry["operatorVersion"] and entry["operatorVersion"] != "unknown"


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


@dataclasses.dataclass(frozen=True)
class Produced:
    """A ledger the real operator wrote: its namespace, the tenant's, the pods placed (name:
    uid), and the operator's log."""

    ledger_ns: str
    ns: str
    placed: dict[str, str]
    log: str


SECNUMCLOUD = {"requiredCertifications": [{"name": "SecNumCloud"}]}


@pytest.fixture(scope="module")
def produced(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Produced]:
    """Three pods placed under policy generation 1, a pod too big for any pool held, then the
    policy changed to require SecNumCloud (generation 2) and two more pods placed under it,
    all charged to a Budget; cycles run on with the held pod re-planned each time."""
    port, metrics_port = cluster.free_ports(2)
    log = tmp_path_factory.mktemp("ledger") / "operator.log"
    process = OperatorProcess(kube, log, port, metrics_port)
    ledger_ns = kube.namespace(governed=False)
    ns = kube.namespace()
    try:
        # The GB grid from a SignalSource (at the fleet's own value: placement unchanged), FR from
        # the pools' fallback: the records name where each intensity came from.
        kube.apply_ok(k8s.signal_source("uk-grid", [k8s.static_source({"GB": 136}, "grid")],
                                        ["GB"]))  # fmt: skip
        process.start(f"--lease-namespace={ledger_ns}")
        ready = kube.kubectl("wait", "--for=condition=Ready", "signalsource/uk-grid",
                             "--timeout=30s")  # fmt: skip
        assert ready.returncode == 0, ready.stderr
        kube.apply_ok(k8s.budget(ns, "team", money=100000))
        kube.apply_ok(k8s.policy(ns, "eu", ["FR", "DE", "GB"], budget="team"))
        first = [f"p{i}" for i in range(3)]
        kube.apply_ok(k8s.pod_list(ns, first))
        uids = pod_uids(kube, ns, first)
        wait_for(functools.partial(all_recorded, kube, ledger_ns, frozenset(uids)), 60,
                 "a placement record for every pod")  # fmt: skip
        kube.apply_ok(k8s.gpu_pod(ns, "huge", gpus=64))
        huge = f"{ns}/huge"
        wait_for(lambda: any(r["entry"]["workload"] == huge for r in records(kube, ledger_ns)),
                 60, "the held pod's record")  # fmt: skip
        kube.apply_ok(k8s.policy(ns, "eu", ["FR", "DE", "GB"], sovereignty=SECNUMCLOUD,
                                 budget="team"))  # fmt: skip
        wait_for(lambda: kube.custom("PlacementPolicy", "eu", ns)["metadata"]["generation"] == 2,
                 30, "policy generation 2")  # fmt: skip
        later = ["later-0", "later-1"]
        hours = {"greenplace.dev/expected-duration-hours": "2"}
        for name in later:
            kube.apply_ok(k8s.gpu_pod(ns, name, annotations=hours))
        uids |= pod_uids(kube, ns, later)
        wait_for(functools.partial(all_recorded, kube, ledger_ns, frozenset(uids)), 60, "later")
        wait_for_cycles(process.metrics, more=3)  # the held pod re-planned a few more times
        placed = {n: kube.pod(ns, n)["metadata"]["uid"] for n in [*first, *later]}
    finally:
        process.stop()
    yield Produced(ledger_ns, ns, placed, log.read_text())
    deleted = kube.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s")
    assert deleted.returncode == 0, deleted.stderr


def test_placements_and_holds_are_recorded_once_with_their_facts(
    kube: Kube, produced: Produced
) -> None:
    ns, found = produced.ns, records(kube, produced.ledger_ns)
    placements = [r["entry"] for r in found if r["entry"]["outcome"] == "Placed"]
    assert placed_uids(found) == Counter(dict.fromkeys(produced.placed.values(), 1)), placements
    by_pod = {e["pods"][0]["name"]: e for e in placements}
    for name in ("p0", "p1", "p2"):
        assert_facts(by_pod[name], ns)
        assert by_pod[name]["pods"][0]["uid"] == produced.placed[name]
        if by_pod[name]["pool"]["gridZone"] == "GB":
            carbon = by_pod[name]["signals"]["carbon"]
            assert carbon["source"] == "SignalSource uk-grid/grid" and carbon["gco2PerKwh"] == 136
            assert carbon["ageSeconds"] == 0  # a Static value holds as of each read
    one, two = by_pod["p0"]["policies"][0], by_pod["later-0"]["policies"][0]
    assert two["generation"] == 2 and two["specSha256"] != one["specSha256"]
    for name in ("later-0", "later-1"):  # SecNumCloud required: the certified pool, as it stood
        pool = by_pod[name]["pool"]
        assert pool["name"] == "ovh-gra-h100" and pool["jurisdiction"]["regimes"], pool
        certs = {c["name"]: c for c in pool["certifications"]}
        assert certs["SecNumCloud"]["level"] == "3.2"
        assert certs["SecNumCloud"]["validUntil"].startswith("2027-12-31")
        assert certs["SecNumCloud"]["coversRun"] is True and by_pod[name]["durationHours"] == 2
        fallback = by_pod[name]["signals"]["carbon"]
        assert fallback == {"gco2PerKwh": 56, "source": snapshot.FALLBACK_SOURCE,
                            "ageSeconds": None}  # fmt: skip
    # The pod too big for any pool is re-planned every cycle but recorded once.
    held = [r["entry"] for r in found if r["entry"]["workload"] == f"{ns}/huge"]
    assert len(held) == 1 and held[0]["outcome"] != "Placed", held
    assert held[0]["pool"] is None and held[0]["reason"] and held[0]["message"]
    assert [r["seq"] for r in found] == list(range(1, len(found) + 1))
    assert "ledger: append failed" not in produced.log
    # Bounded growth as docs/audit.md states it: a record is at most 2 KiB.
    sizes = [len(chain.canonical(r).encode()) for r in found]
    assert max(sizes) <= 2048, sizes


def test_an_untouched_ledger_verifies_also_exported_with_its_key_pinned(
    kube: Kube, produced: Produced, tmp_path: pathlib.Path
) -> None:
    count = len(records(kube, produced.ledger_ns))
    code, said = verify(kube, produced.ledger_ns)
    assert code == 0, said
    assert f"records 1..{count} ({count}), from the first record ever" in said
    exported_and_pinned(kube, produced.ledger_ns, tmp_path)


def copy_ledger(kube: Kube, source: str) -> tuple[str, str, list[str]]:
    """The ledger of ``source`` (segments and keys) copied into a new namespace, so a test can
    tamper with it: that namespace, the one segment's name, its lines."""
    target = kube.namespace(governed=False)
    (segment,) = store.Store(kube.api, source).segments()
    for name in (segment.name, store.KEYS_CONFIGMAP):
        body = kube.core.read_namespaced_config_map(name, source)
        meta = {"name": name, "labels": body.metadata.labels,
                "annotations": body.metadata.annotations}  # fmt: skip
        kube.core.create_namespaced_config_map(target, {"metadata": meta, "data": body.data})
    return target, segment.name, list(segment.lines)


def rewrite(kube: Kube, namespace: str, segment: str, lines: list[str]) -> None:
    """Replace the segment's records as someone with write access to the ConfigMap would."""
    body = kube.core.read_namespaced_config_map(segment, namespace)
    body.data[store.DATA_KEY] = "".join(f"{line}\n" for line in lines)
    kube.core.replace_namespaced_config_map(segment, namespace, body)


def edited(lines: list[str]) -> list[str]:
    record = json.loads(lines[1])
    record["entry"]["pool"] = {**(record["entry"]["pool"] or {}), "country": "US"}
    return [lines[0], chain.canonical(record), *lines[2:]]


def signature_swapped(lines: list[str]) -> list[str]:
    second, third = json.loads(lines[1]), json.loads(lines[2])
    second["sig"] = third["sig"]
    return [lines[0], chain.canonical(second), *lines[2:]]


CHANGED = "record 2 ({segment} line 2) was changed: its signature (key {kid}) does not match"
TAMPERING = {
    "edited": (edited, CHANGED),
    "signature swapped": (signature_swapped, CHANGED),
    "removed": (lambda ls: [ls[0], *ls[2:]],
                "record 2 was removed: record 3 ({segment} line 2) follows record 1"),
    "reordered": (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]],
                  "record 2 is out of order: record 3 ({segment} line 2) stands where it "
                  "belongs, after record 1"),
    "first removed": (lambda ls: ls[1:],
                      "record 1 was removed: record 2 ({segment} line 1) chains on it"),
}  # fmt: skip


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampering_in_the_configmap_fails_verify_naming_the_record(
    kube: Kube, produced: Produced, how: str
) -> None:
    change, expected = TAMPERING[how]
    copy, segment, lines = copy_ledger(kube, produced.ledger_ns)
    assert verify(kube, copy)[0] == 0  # the copy verifies before it is tampered with
    rewrite(kube, copy, segment, change(lines))
    code, said = verify(kube, copy)
    kid = json.loads(lines[1])["kid"]
    assert code == 1, said
    assert said.startswith("ledger NOT verified: ")
    assert expected.format(segment=segment, kid=kid) in said, said
    kube.core.delete_namespace(copy)


def test_the_newest_records_cut_off_fail_verify_since_an_earlier_export(
    kube: Kube, produced: Produced, tmp_path: pathlib.Path
) -> None:
    """A chain alone cannot show its tail was cut: an earlier export's last record can."""
    copy, segment, lines = copy_ledger(kube, produced.ledger_ns)
    earlier = tmp_path / "earlier.json"
    assert cli.main(["audit", "export", f"--kubeconfig={kube.kubeconfig}",
                     f"--ledger-namespace={copy}", "-o", str(earlier)]) == 0  # fmt: skip
    code, said = verify(kube, copy, f"--since={earlier}")
    assert code == 0 and f"continues {earlier} (record {len(lines)})" in said, said
    rewrite(kube, copy, segment, lines[:-2])
    assert verify(kube, copy)[0] == 0  # what is left is a valid chain
    code, said = verify(kube, copy, f"--since={earlier}")
    assert code == 1, said
    assert (
        f"records {len(lines) - 1}..{len(lines)} were removed: the earlier export held up to "
        f"record {len(lines)}, the ledger ends at record {len(lines) - 2}"
    ) in said
    kube.core.delete_namespace(copy)


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
    located = store.located([(s.name, s.lines) for s in segments])
    result = chain.verify(located, {key.kid: key.public})
    assert result.ok and result.anchored and result.last_seq == 12, result.summary()
    assert "{}" not in [ln for s in segments for ln in s.lines]  # the stale write left nothing


# The auditor's report as the browser lays it out: the verification line and each table's
# heading, header and cells (``innerText``).
REPORT_DOM = """
JSON.stringify({
  title: document.title,
  verification: document.getElementById('verification').innerText,
  tables: Object.fromEntries(Array.from(document.querySelectorAll('table')).map(t => [t.id, {
    heading: t.previousElementSibling.innerText,
    width: t.getBoundingClientRect().width,
    header: Array.from(t.querySelectorAll('thead th')).map(c => c.innerText),
    rows: Array.from(t.querySelectorAll('tbody tr'))
      .map(r => Array.from(r.cells).map(c => c.innerText)),
  }])),
})
"""


def report(kube: Kube, produced: Produced, out: pathlib.Path, start: str, end: str) -> str:
    """``greenplace audit report`` as an auditor runs it; what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["audit", "report", f"--kubeconfig={kube.kubeconfig}",
                         f"--ledger-namespace={produced.ledger_ns}", "-n", produced.ns,
                         f"--from={start}", f"--to={end}", "--html", str(out / "report.html"),
                         "--csv", str(out / "report.csv")])  # fmt: skip
    assert code == 0, printed.getvalue()
    return printed.getvalue()


def test_the_auditor_report_in_a_browser_and_as_csv(
    kube: Kube, produced: Produced, tmp_path: pathlib.Path
) -> None:
    found = [r for r in records(kube, produced.ledger_ns) if r["entry"]["namespace"] == produced.ns]
    printed = report(kube, produced, tmp_path, "2020-01-01T00:00:00Z", "2100-01-01T00:00:00Z")
    assert printed.startswith(f"{len(produced.placed)} placements and 1 other decisions of ")
    with (tmp_path / "report.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_pod = {row["pods"]: row for row in rows}
    assert set(by_pod) == set(produced.placed) and len(rows) == len(produced.placed)
    recorded = {
        r["entry"]["pods"][0]["name"]: r for r in found if r["entry"]["outcome"] == "Placed"
    }
    for name, row in by_pod.items():
        entry = recorded[name]["entry"]
        assert row["workload"] == f"{produced.ns}/{name}" and row["record"] == str(
            recorded[name]["seq"]
        )
        assert row["pool"] == entry["pool"]["name"] and row["country"] == entry["pool"]["country"]
        assert row["legal regime"].startswith(
            f"legal home {entry['pool']['jurisdiction']['legalHome']};"
        )
        assert float(row["energy kWh"]) == pytest.approx(entry["charge"]["kWh"], abs=1e-3)
        assert float(row["kgCO2e"]) == pytest.approx(entry["charge"]["kgCO2e"], abs=1e-3)
        assert (
            float(row["cost"]) == pytest.approx(entry["charge"]["money"], abs=0.01)
            and float(row["cost"]) > 0
        )
        assert row["currency"] == "EUR"
    for name in ("later-0", "later-1"):  # placed under the SecNumCloud rule, for 2 h
        certified = by_pod[name]["certifications valid over the run"]
        assert "SecNumCloud 3.2 (until 2027-12-31" in certified and "NOT" not in certified
        regime = "legal home FR; regimes EEA, EU; extraterritorial exposure none"
        assert by_pod[name]["legal regime"] == regime

    with chromium.open_page(tmp_path / "report.html", tmp_path / "chromium") as page:
        page.wait_loaded()
        dom = json.loads(page.evaluate(REPORT_DOM))
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
    assert produced.ns in dom["title"]
    assert dom["verification"].startswith("ledger verified: records 1..")
    placements, waiting = dom["tables"]["placements"], dom["tables"]["waiting"]
    assert placements["heading"] == f"Placements ({len(rows)})"
    assert placements["header"] == list(report_.COLUMNS) and placements["width"] > 500
    with (tmp_path / "report.csv").open(newline="") as handle:
        assert placements["rows"] == list(csv.reader(handle))[1:]  # cell by cell, as laid out
    (held,) = (r for r in found if r["entry"]["workload"] == f"{produced.ns}/huge")
    held_row = [held["at"], held["entry"]["workload"], held["entry"]["outcome"],
                held["entry"]["reason"], held["entry"]["message"], str(held["seq"])]  # fmt: skip
    assert waiting["rows"] == [held_row] and held_row[2] != "Placed"

    # The window: only what was decided in [from, to); the policy's change splits the pods.
    first_later = min(recorded[n]["at"] for n in ("later-0", "later-1"))
    report(kube, produced, tmp_path, "2020-01-01T00:00:00Z", first_later)
    with (tmp_path / "report.csv").open(newline="") as handle:
        assert {row["pods"] for row in csv.DictReader(handle)} == {"p0", "p1", "p2"}
