"""The pod gate spares only pods Kueue admitted through greenplace's check (``webhook``).

A pod is left ungated when its ``greenplace.dev/kueue-placement`` record is exactly the one a
Workload of its own namespace carries on a Ready check, signed for that Workload, and its
nodeSelector pins the record's pool. Everything a tenant with ``edit`` can write instead (an
unsigned, altered or garbage record, a record copied from another namespace or from a check
that is not Ready, a nodeSelector elsewhere) is gated, with a warning that names the record.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from greenplace.controller import kueue, records, webhook

SIGNER = records.Signer(b"k" * 32)
POOL = "fr-a100"
SELECTOR = {"greenplace.dev/pool": POOL}


def record_text(uid: str = "w-uid", pool: str = POOL, signer: records.Signer = SIGNER) -> str:
    record = signer.sign(uid, {"pool": pool, "country": "FR", "reason": "LowestCarbon"})
    return json.dumps(record, separators=(",", ":"))


def workload(
    text: str,
    *,
    namespace: str = "ml",
    uid: str = "w-uid",
    state: str = "Ready",
    node_selector: dict[str, str] | None = None,
) -> kueue.KueueWorkload:
    update = {
        "name": "main",
        "nodeSelector": SELECTOR if node_selector is None else node_selector,
        "annotations": {kueue.RECORD_ANNOTATION: text},
    }
    container = {"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}
    body = {
        "metadata": {"namespace": namespace, "name": "job-train-1a2b3", "uid": uid},
        "spec": {"podSets": [{"name": "main", "count": 1,
                              "template": {"spec": {"containers": [container]}}}]},
        "status": {"admissionChecks": [{"name": "greenplace", "state": state,
                                        "podSetUpdates": [update]}]},
    }  # fmt: skip
    parsed = kueue.parse_workload(body)
    assert isinstance(parsed, kueue.KueueWorkload), parsed
    return parsed


def pod(
    text: str | None, *, namespace: str = "ml", node_selector: dict[str, str] | None = None
) -> dict[str, Any]:
    annotations = {} if text is None else {kueue.RECORD_ANNOTATION: text}
    return {
        "metadata": {"namespace": namespace, "generateName": "train-",
                     "annotations": annotations},
        "spec": {"nodeSelector": SELECTOR if node_selector is None else node_selector,
                 "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }  # fmt: skip


def test_a_pod_kueue_admitted_through_the_check_is_not_gated() -> None:
    text = record_text()
    placed = webhook.kueue_placement(pod(text), [workload(text)], SIGNER)
    assert placed == webhook.KueuePlacement(
        True, f"placed in pool {POOL} for Workload job-train-1a2b3"
    )


def test_a_pod_without_a_record_is_not_kueues() -> None:
    assert webhook.kueue_placement(pod(None), [workload(record_text())], SIGNER) is None


def test_the_pod_may_add_its_own_node_labels_to_the_pools() -> None:
    text = record_text()
    selector = {**SELECTOR, "gpu": "a100"}
    placed = webhook.kueue_placement(pod(text, node_selector=selector), [workload(text)], SIGNER)
    assert placed is not None and placed.trusted


ALTERED = record_text().replace('"country":"FR"', '"country":"DE"')
OTHER_KEY = records.Signer(b"x" * 32)
STALE = json.dumps(SIGNER.sign("w-uid", {"pool": POOL, "at": "2026-03-09T00:00:00Z"}))


@pytest.mark.parametrize(
    ("what", "pod_body", "workloads", "says"),
    [
        ("garbage", pod("{not json"), [workload(record_text())], "is not a JSON object"),
        ("no pool", pod('{"sig":"00"}'), [workload('{"sig":"00"}')], "names no pool"),
        ("unsigned", pod('{"pool":"fr-a100"}'), [workload(record_text())], "is not the signed"),
        ("altered", pod(ALTERED), [workload(record_text())], "is not the signed"),
        # Even a Workload carrying it does not make a record signed with another key valid.
        ("another key", pod(record_text(signer=OTHER_KEY)),
         [workload(record_text(signer=OTHER_KEY))], "is not the signed"),
        # Signed for another Workload's UID, then shown on this one.
        ("another uid", pod(record_text("other")), [workload(record_text("other"))],
         "is not the signed"),
        ("other namespace", pod(record_text(), namespace="team-b"),
         [workload(record_text())], "of namespace team-b"),
        ("check not ready", pod(record_text()), [workload(record_text(), state="Retry")],
         "is not the signed"),
        ("pinned elsewhere", pod(record_text(), node_selector={"greenplace.dev/pool": "us-h100"}),
         [workload(record_text())], "does not pin greenplace.dev/pool: fr-a100"),
        ("not pinned", pod(record_text(), node_selector={}), [workload(record_text())],
         "does not pin"),
        # The pool pinned, but not the rest of what the check's update selects.
        ("update not held", pod(record_text()),
         [workload(record_text(), node_selector={**SELECTOR, "flavor": "fr"})],
         "is not the signed"),
        ("no workload", pod(record_text()), [], "is not the signed"),
        # Signed for this Workload, but an earlier admission's: its check now carries another.
        ("stale", pod(STALE), [workload(record_text())], "is not the signed"),
    ],
)  # fmt: skip
def test_a_record_greenplace_did_not_write_for_this_pod_gates_it(
    what: str, pod_body: dict[str, Any], workloads: list[kueue.KueueWorkload], says: str
) -> None:
    placed = webhook.kueue_placement(pod_body, workloads, SIGNER)
    assert placed is not None and not placed.trusted, what
    assert says in placed.message, placed.message
    assert placed.message.startswith(f"greenplace: annotation {kueue.RECORD_ANNOTATION} ")
    assert "gated and placed like any GPU pod" in placed.message


def test_without_the_key_no_record_is_trusted() -> None:
    text = record_text()
    placed = webhook.kueue_placement(pod(text), [workload(text)], None)
    assert placed is not None and not placed.trusted
