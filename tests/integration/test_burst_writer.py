"""The writer's Events on the real API server: posted in the background, behind the patches.

Why: in a burst, each placed pod costs a patch (its release) and an Event. Awaiting the Event
after each patch held the pod's write slot for a second round trip, so releases went at half
the writer's pace; ``KubeWriter`` now queues Events and posts them on their own threads
(``bench.bench_burst`` measures the difference). What users rely on stays: every Event is
posted, with its reason and the replica that wrote it, and one that cannot be posted is logged
without stopping the others.
"""

from __future__ import annotations

import asyncio
from typing import Any

from greenplace.controller import kube as kube_
from tests import kubeobjects
from tests.integration.conftest import Kube

ADMISSION_POLICIES = False  # the writer alone: no policy is about what it writes here


def _created(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    kube.core.create_namespaced_pod(namespace, kubeobjects.pod(namespace, name, gated=True))
    return kube.pod(namespace, name)


def test_events_are_all_posted_even_after_failures_and_never_delay_a_patch(kube: Kube) -> None:
    namespace = kube.namespace(governed=False)
    pod = _created(kube, namespace, "p")
    # An Event on a namespace that does not exist fails: once per poster, and more.
    ghost = {"metadata": {"name": "ghost", "namespace": "no-such-namespace", "uid": "0"}}
    backlog = 400

    async def scenario() -> tuple[int, int]:
        writer = kube_.KubeWriter(kube.api, instance="replica-a")
        try:
            for _ in range(kube_.EVENT_CONCURRENCY + 1):
                await writer.pod_event(ghost, "Normal", "Probe", "fails: no such namespace")
            for i in range(backlog):
                await writer.pod_event(pod, "Normal", "Backlog", f"queued {i}")
            await writer.pod_event(pod, "Normal", "Placed", "placed in pool fr-1")
            ops = [{"op": "add", "path": "/metadata/labels", "value": {"patched": "yes"}}]
            await writer.patch_pod(namespace, "p", ops)
            waiting = writer.events_waiting  # right after the patch returned
            await asyncio.wait_for(writer.flush(), 120)
            return waiting, writer.events_waiting
        finally:
            await writer.close()

    waiting_at_patch, waiting_after_flush = asyncio.run(scenario())
    # The patch did not wait for the Events queued before it.
    assert waiting_at_patch > 0, "the patch returned only once every Event was posted"
    assert waiting_after_flush == 0
    assert kube.pod(namespace, "p")["metadata"]["labels"] == {"patched": "yes"}
    events = kube.core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=p"
    ).items
    by_reason: dict[str, list[Any]] = {}
    for event in events:
        by_reason.setdefault(event.reason, []).append(event)
    assert len(by_reason["Backlog"]) == backlog
    (placed,) = by_reason["Placed"]
    assert placed.message == "placed in pool fr-1"
    assert placed.reporting_instance == "replica-a"
    assert placed.involved_object.uid == pod["metadata"]["uid"]
