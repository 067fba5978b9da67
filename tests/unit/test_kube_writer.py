"""The writer's one rule for an object deleted under it: a 404 on a write is a conflict.

``controller.kube._unless_gone`` is the one place every status and Kueue write goes through;
the cycle treats ``WriteConflictError`` as "re-read next cycle", any other error as a failure.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from greenplace.controller import kube


def refused(status: int) -> client.ApiException:
    return client.ApiException(status=status, reason="x")


def test_a_write_to_a_deleted_object_is_a_conflict_naming_it() -> None:
    def write() -> object:
        raise refused(404)

    with pytest.raises(kube.WriteConflictError, match="workloads ml/w is gone"):
        kube._unless_gone("workloads ml/w", write)


def test_other_refusals_pass_through_and_success_returns_the_stored_object() -> None:
    def forbidden() -> object:
        raise refused(403)

    with pytest.raises(client.ApiException) as raised:
        kube._unless_gone("x", forbidden)
    assert raised.value.status == 403 and not isinstance(raised.value, kube.WriteConflictError)
    assert kube._unless_gone("x", lambda: {"kind": "Workload"}) == {"kind": "Workload"}
