"""The cache checks a pod's placement record once per record, not once per watch event.

A placed pod's later events (its binding, kwok's status updates) repeat the record word for
word; ``cache.Cache.put_pod`` verifies its signature again only when the annotation's text
changed (bench_burst's profile had the HMAC at 3.5 % of the operator's time, issue 15). An
edited or forged record is still caught at the event that brings it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from greenplace.controller import cache as cache_
from greenplace.controller import podspec, records
from tests import kubeobjects

UID = "0b5c6f1e-0000-0000-0000-000000000001"


class CountingSigner(records.Signer):
    def __init__(self) -> None:
        super().__init__(b"k" * 32)
        self.verified = 0

    def verify(self, uid: str, record: Any) -> bool:
        self.verified += 1
        return super().verify(uid, record)


def placed(signer: records.Signer, record: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(signer.sign(UID, record))
    body = kubeobjects.gpu_pod("ml", "train-0", annotations={podspec.PLACEMENT_ANNOTATION: text})
    body["metadata"]["uid"] = UID
    return body


def test_a_record_repeated_by_later_events_is_verified_once_and_an_edit_is_caught() -> None:
    signer = CountingSigner()
    cache = cache_.Cache(signer=signer)
    body = placed(signer, {"pool": "ovh-gra-h100", "at": "2026-12-07T17:00:01Z"})
    cache.put("Pod", body)
    bound = copy.deepcopy(body)
    bound["spec"]["nodeName"] = "ovh-gra-h100-0"
    cache.put("Pod", bound)  # the binding: same record
    running = copy.deepcopy(bound)
    running["status"] = {"phase": "Running"}
    cache.put("Pod", running)  # kwok's status: same record
    assert signer.verified == 1
    pod = cache.pods[UID]
    assert pod.placed_pool == "ovh-gra-h100" and pod.record is not None
    assert pod.node_name == "ovh-gra-h100-0"

    edited = copy.deepcopy(running)  # someone moves the record to another pool, keeping the sig
    record = json.loads(edited["metadata"]["annotations"][podspec.PLACEMENT_ANNOTATION])
    record["pool"] = "gcp-us-central1-h100"
    edited["metadata"]["annotations"][podspec.PLACEMENT_ANNOTATION] = json.dumps(record)
    cache.put("Pod", edited)
    assert signer.verified == 2
    pod = cache.pods[UID]
    assert pod.record is None and pod.untrusted_record and pod.placed_pool is None


def test_an_untrusted_record_is_checked_again_at_each_event() -> None:
    signer = CountingSigner()
    cache = cache_.Cache(signer=signer)
    forged = placed(records.Signer(b"x" * 32), {"pool": "ovh-gra-h100", "at": "2026-12-07T17:00Z"})
    cache.put("Pod", forged)
    cache.put("Pod", copy.deepcopy(forged))
    assert signer.verified == 2
    assert cache.pods[UID].untrusted_record and cache.pods[UID].record is None
