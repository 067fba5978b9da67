"""kopf builds no diff base for greenplace's watch events, and that stays safe.

``handlers.NoEssence`` spares kopf a deep copy and a diff of every watch event (the largest part
of the operator's CPU per pod event in bench_burst, issue 15). That is only right while
greenplace has no handler that reads a diff (kopf's change handlers and daemons): the second
test fails if one is registered, naming what to do.
"""

from __future__ import annotations

import copy

import kopf
import pytest

from greenplace.controller import config as config_
from greenplace.controller import handlers


def pod() -> kopf.Body:
    return kopf.Body({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ml", "uid": "u", "labels": {"app": "a"},
                     "annotations": {"greenplace.dev/placement": "{}"}},
        "spec": {"containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
        "status": {"phase": "Pending"},
    })  # fmt: skip


def test_the_operators_settings_build_no_essence_of_a_watched_object() -> None:
    settings = handlers.settings_for(config_.OperatorConfig())
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, handlers.NoEssence)
    body = pod()
    before = copy.deepcopy(dict(body))
    assert storage.build(body=body, extra_fields=["status.phase"]) == {}
    assert dict(body) == before  # the event's body is left as it came
    # kopf's own default would have copied spec, labels and annotations out of it:
    assert kopf.AnnotationsDiffBaseStorage().build(body=body) != {}


@pytest.mark.parametrize("kueue", [False, True], ids=["pods", "with-kueue-and-multikueue"])
def test_greenplace_registers_no_handler_that_reads_kopfs_diff(kueue: bool) -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(registry, config_.OperatorConfig(kueue=kueue, multikueue=kueue))
    changing = registry._changing.get_all_handlers()
    spawning = registry._spawning.get_all_handlers()
    assert not changing and not spawning, (
        f"change handlers {[h.id for h in changing]} or daemons {[h.id for h in spawning]} "
        "read kopf's diff base: drop handlers.NoEssence from handlers.settings_for first"
    )
    assert registry._watching.get_all_handlers(), "the cache is fed by event handlers"
