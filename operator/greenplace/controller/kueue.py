"""Kueue's objects in greenplace's terms: flavors as sets of pools, a verdict as a check state.

Why this module exists: greenplace plugs into Kueue as an AdmissionCheck controller
(``controllerName: greenplace.dev/placement``, ``greenplace operate --kueue``, see
docs/kueue.md). Kueue reserves quota in a ResourceFlavor, then
waits for the check; greenplace plans the Workload over the pools that lie inside that flavor and
answers Ready (with the chosen pool's node selector for every pod set), Retry (with when to try
again) or Rejected; a Workload deferred for long is parked instead (deactivated until then, so
Kueue frees its quota, which a Retry keeps in Kueue v0.17: ``park_patch``). This module is the
pure translation between Kueue's API objects and the planner's values, so the controller that
reads and writes them stays thin and every rule of it has a unit test without a cluster.

A pool lies in a flavor when its node selector implies the flavor's ``nodeLabels`` (it sets each
of them to the same value): every node of the pool then carries the flavor's labels. A flavor
with no labels holds every pool. A pool in no flavor, or in several, is reported on its status
(``flavor_problems``): Kueue could admit a Workload into a flavor whose nodes greenplace does not
know as one pool, or count one pool's GPUs under two quotas.

Kueue reserves a ClusterQueue's flavors in their listed order and takes the first with quota
left, so a Workload whose only compliant pools lie in a later flavor is answered Retry (naming
that flavor), not Rejected: Kueue reserves that flavor once the earlier ones are full
(``verdict``'s ``other_flavors``). An AdmissionCheck with ``spec.parameters`` is not one
greenplace can honour (it reads none): it is marked ``Active=False`` (``check_problem``), so
Kueue admits nothing through it until they are removed.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from greenplace.api import timestamps
from greenplace.controller import records
from greenplace.domain import model

__all__ = [
    "API_VERSION",
    "CONTROLLER_NAME",
    "FIELD_MANAGER",
    "KINDS",
    "PARK_ANNOTATION",
    "AdmissionCheck",
    "CheckVerdict",
    "Flavors",
    "KueueWorkload",
    "PodSet",
    "check_problem",
    "check_state",
    "flavor_problems",
    "involved",
    "park_patch",
    "parked_until",
    "parse_workload",
    "ruled_out",
    "unpark_patch",
    "verdict",
]

GROUP, VERSION = "kueue.x-k8s.io", "v1beta2"
API_VERSION = f"{GROUP}/{VERSION}"
CONTROLLER_NAME = "greenplace.dev/placement"
# On each pod set of a Ready check: the signed placement record (pool, charge), which a restarted
# operator reads back from the Workload's status to recover its budget charges.
RECORD_ANNOTATION = "greenplace.dev/kueue-placement"
FIELD_MANAGER = "greenplace"  # owns its check's state and its AdmissionChecks' conditions
# The Kueue kinds greenplace reads or writes, and their plurals.
KINDS = {
    "Workload": "workloads",
    "AdmissionCheck": "admissionchecks",
    "ResourceFlavor": "resourceflavors",
    "ClusterQueue": "clusterqueues",
}
# Kueue bounds an AdmissionCheckState's message (maxLength 32768); keep well inside it.
MAX_MESSAGE = 4096

State = Literal["Ready", "Retry", "Rejected"]
MAX_REQUEUE_SECONDS = 2**31 - 1  # requeueAfterSeconds is an int32 in Kueue's API
# Kueue bounds a Workload to 8 pod sets; each pod set's count is what greenplace plans.
MAX_POD_SET_COUNT = 10_000


@dataclasses.dataclass(frozen=True)
class PodSet:
    """One pod set of a Workload: ``count`` pods made from ``template``."""

    name: str
    count: int
    template: Mapping[str, Any]  # a PodTemplateSpec: metadata and spec


@dataclasses.dataclass(frozen=True)
class KueueWorkload:
    """What greenplace needs of a Kueue Workload."""

    namespace: str
    name: str
    uid: str
    created: datetime.datetime
    pod_sets: tuple[PodSet, ...]
    # Kueue's quota reservation: the ClusterQueue and the flavors assigned (None: no quota
    # reserved, so nothing to decide yet).
    cluster_queue: str | None
    flavors: frozenset[str]
    # The state of every admission check on it, by check name.
    checks: Mapping[str, Mapping[str, Any]]
    # Its controlling owner (the Job) as an Event's involvedObject, None when it has none.
    owner: Mapping[str, Any] | None = None
    # Being deleted or Finished: its pods are gone or going, so nothing is answered for it and
    # no GPUs are held for it (Kueue's finalizer keeps it listed a while after its Job).
    ended: bool = False
    # ``spec.active``: False once deactivated (by Kueue after a Rejected check, by its owner, or
    # parked by greenplace); its annotations, where greenplace's park note lives.
    active: bool = True
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        """The planner's workload key; ``:`` is in no Kubernetes name, so no pod key clashes."""
        return f"{self.namespace}/kueue:{self.name}"

    def pending(self, ours: Iterable[str]) -> tuple[str, ...]:
        """Our checks on it that wait for an answer while its quota is reserved."""
        if self.cluster_queue is None or self.ended or not self.active:
            return ()
        return tuple(
            sorted(c for c in ours if (self.checks.get(c) or {}).get("state") == "Pending")
        )


def recorded(workload: KueueWorkload) -> dict[str, Any] | None:
    """The placement record some check's pod set update carries (unverified), if any."""
    for state in workload.checks.values():
        for update in state.get("podSetUpdates") or []:
            text = (update.get("annotations") or {}).get(RECORD_ANNOTATION)
            if isinstance(text, str):
                try:
                    record = json.loads(text)
                except ValueError:
                    return None
                return record if isinstance(record, dict) else None
    return None


def parse_workload(body: Mapping[str, Any]) -> KueueWorkload | str:
    """The Workload ``body`` as greenplace reads it, or why it cannot be read."""
    meta = body.get("metadata") or {}
    spec, status = body.get("spec") or {}, body.get("status") or {}
    pod_sets = []
    for entry in spec.get("podSets") or []:
        count = entry.get("count", 1)
        if (
            not isinstance(count, int)
            or isinstance(count, bool)
            or not 0 < count <= MAX_POD_SET_COUNT
        ):
            return (
                f"spec.podSets[{entry.get('name')}].count {count!r} is not 1..{MAX_POD_SET_COUNT}"
            )
        pod_sets.append(PodSet(str(entry.get("name", "main")), count, entry.get("template") or {}))
    if not pod_sets:
        return "spec.podSets is empty"
    admission = status.get("admission") or {}
    flavors = frozenset(
        str(flavor)
        for assignment in admission.get("podSetAssignments") or []
        for flavor in (assignment.get("flavors") or {}).values()
    )
    return KueueWorkload(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        created=timestamps.parse_rfc3339(meta.get("creationTimestamp"))
        or datetime.datetime.min.replace(tzinfo=datetime.UTC),
        pod_sets=tuple(pod_sets),
        cluster_queue=admission.get("clusterQueue") or None,
        flavors=flavors,
        checks={str(c["name"]): c for c in status.get("admissionChecks") or [] if c.get("name")},
        owner=_controller(meta),
        active=spec.get("active") is not False,
        annotations={str(k): str(v) for k, v in (meta.get("annotations") or {}).items()},
        ended=bool(meta.get("deletionTimestamp"))
        or any(
            c.get("type") == "Finished" and c.get("status") == "True"
            for c in status.get("conditions") or []
        ),
    )


def _controller(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The controlling owner reference, as an Event's involved object (a Job's body)."""
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller") and owner.get("name") and owner.get("uid"):
            return {
                "apiVersion": str(owner.get("apiVersion", "")),
                "kind": str(owner.get("kind", "")),
                "metadata": {
                    "namespace": str(meta.get("namespace", "")),
                    "name": str(owner["name"]),
                    "uid": str(owner["uid"]),
                },
            }
    return None


def involved(workload: KueueWorkload) -> list[dict[str, Any]]:
    """The objects an Event about ``workload`` goes on: the Workload, and its Job."""
    own = {
        "apiVersion": API_VERSION,
        "kind": "Workload",
        "metadata": {"namespace": workload.namespace, "name": workload.name, "uid": workload.uid},
    }
    return [own, *([dict(workload.owner)] if workload.owner else [])]


@dataclasses.dataclass(frozen=True)
class AdmissionCheck:
    """An AdmissionCheck as the cache keeps it: who answers it, and why greenplace cannot."""

    controller: str
    problem: str | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> AdmissionCheck:
        spec = body.get("spec") or {}
        return cls(str(spec.get("controllerName", "")), check_problem(body))


def check_problem(body: Mapping[str, Any]) -> str | None:
    """Why greenplace cannot answer the AdmissionCheck ``body`` as written, or None.

    greenplace reads no parameters object: a check that names one would be accepted and its
    parameters ignored, so it is refused instead (its ``Active`` condition says so).
    """
    parameters = (body.get("spec") or {}).get("parameters")
    if not parameters:
        return None
    named = (
        "/".join(str(parameters.get(k, "")) for k in ("apiGroup", "kind", "name"))
        if isinstance(parameters, dict)
        else str(parameters)[:100]
    )
    return (
        f"spec.parameters ({named}) is set, but greenplace reads no parameters: its rules come "
        "from each namespace's PlacementPolicies and Budgets. Fix: remove spec.parameters"
    )


@dataclasses.dataclass(frozen=True)
class Flavors:
    """The pools inside each ResourceFlavor, by flavor name."""

    pools_of: Mapping[str, frozenset[str]]

    @classmethod
    def of(
        cls,
        flavor_labels: Mapping[str, Mapping[str, str]],
        pool_selectors: Mapping[str, Mapping[str, str]],
    ) -> Flavors:
        """``flavor_labels``: each flavor's ``spec.nodeLabels``; ``pool_selectors``: each
        GpuPool's ``spec.nodeSelector``."""
        return cls(
            {
                flavor: frozenset(
                    pool for pool, selector in pool_selectors.items() if _implies(selector, labels)
                )
                for flavor, labels in flavor_labels.items()
            }
        )

    def pools_in(self, flavors: Iterable[str]) -> frozenset[str]:
        """The pools inside any of ``flavors`` (a flavor not known holds none)."""
        return frozenset().union(*(self.pools_of.get(f, frozenset()) for f in flavors))


def flavor_problems(flavors: Flavors, pools: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Pools that lie in no flavor or in several, with the reason and the sentence their status
    shows (condition ``KueueFlavor``).

    Nothing is reported while no ResourceFlavor exists: a cluster without Kueue has no flavors.
    """
    if not flavors.pools_of:
        return {}
    problems: dict[str, tuple[str, str]] = {}
    for pool in sorted(pools):
        inside = sorted(f for f, members in flavors.pools_of.items() if pool in members)
        if not inside:
            problems[pool] = (
                "NoFlavor",
                "lies in no Kueue ResourceFlavor: no flavor's nodeLabels are all set by this "
                "pool's nodeSelector, so Kueue Workloads are never placed here; fix: add the "
                "flavor's labels to spec.nodeSelector, or a ResourceFlavor for this pool",
            )
        elif len(inside) > 1:
            problems[pool] = (
                "SeveralFlavors",
                f"lies in {len(inside)} Kueue ResourceFlavors ({', '.join(inside)}): its GPUs "
                "count under each flavor's quota; fix: give each flavor a label that only its "
                "own pools set",
            )
    return problems


@dataclasses.dataclass(frozen=True)
class CheckVerdict:
    """What greenplace answers for one Workload: the state, why, and what it needs."""

    state: State
    reason: str  # the pod path's reason code (model.Reason value)
    message: str  # the same words as ``greenplace why``
    # Ready: the chosen pool's node selector, applied to every pod set.
    node_selector: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Ready: annotations added to every pod set (the decision, for ``greenplace why``).
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Retry: how long Kueue waits before it reserves quota again.
    requeue_after_seconds: int | None = None

    def __post_init__(self) -> None:
        if self.state == "Ready" and not self.node_selector:
            raise ValueError("a Ready verdict names its pool's node selector")
        if self.state != "Retry" and self.requeue_after_seconds is not None:
            raise ValueError("only a Retry verdict waits")


# Pool rejections no later round can lift for this Workload as it stands: where it may run
# (sovereignty), or that it cannot fit at all. Anything else (room, carbon, budget) may change,
# and so may a certification's credential (CertificationUnverified: renewed, or read again after
# a failed read), so that one answers Retry.
PERMANENT = frozenset({
    model.Reason.COUNTRY_NOT_ALLOWED, model.Reason.REGIME_NOT_ALLOWED,
    model.Reason.LOCATION_UNKNOWN, model.Reason.JURISDICTION_UNKNOWN,
    model.Reason.EXTRATERRITORIAL_EXPOSURE, model.Reason.RESIDENCY_NOT_MET,
    model.Reason.CERTIFICATION_MISSING, model.Reason.CERTIFICATION_LEVEL_TOO_LOW,
    model.Reason.CERTIFICATION_NOT_VALID, model.Reason.CERTIFICATION_EXPIRES_DURING_RUN,
    model.Reason.GANG_TOO_LARGE, model.Reason.POD_TOO_LARGE_FOR_NODE,
    model.Reason.NODE_CONSTRAINTS_NOT_MET,
})  # fmt: skip
# A held Workload (no room, above a ceiling, another flavor) is tried again this long after.
# Kueue v0.17 keeps a Retry Workload's quota reserved until lastTransitionTime +
# requeueAfterSeconds, then evicts it and at once reserves again (observed on the real Kueue; its
# API comment says the quota is released meanwhile): see docs/kueue.md, "Retry holds the quota".
HELD_RETRY_SECONDS = 60
# A Workload deferred at least this long is parked instead of answered Retry: deactivated
# (``spec.active: false``, so Kueue evicts it and frees its ClusterQueue's quota) with a note
# signed for its UID saying when greenplace activates it again; Kueue then reserves quota anew
# and greenplace answers its check. Shorter waits stay a Retry (a minute of held quota costs less
# than losing the Workload's place in the queue).
PARK_ANNOTATION = "greenplace.dev/parked-until"
MIN_PARK_SECONDS = 300


def park_patch(
    workload: KueueWorkload, until: datetime.datetime, reason: str, signer: records.Signer
) -> dict[str, Any]:
    """The merge patch that parks ``workload`` until ``until``."""
    note = signer.sign(workload.uid, {"until": timestamps.rfc3339(until), "reason": reason})
    text = json.dumps(note, separators=(",", ":"))
    return {"metadata": {"annotations": {PARK_ANNOTATION: text}}, "spec": {"active": False}}


def unpark_patch() -> dict[str, Any]:
    """The merge patch that activates a parked Workload again and removes the note."""
    return {"metadata": {"annotations": {PARK_ANNOTATION: None}}, "spec": {"active": True}}


def parked_until(
    workload: KueueWorkload, signer: records.Signer | None
) -> datetime.datetime | None:
    """When greenplace activates ``workload`` again: the time of its park note, if the note
    verifies for its UID and it is inactive; None otherwise. A note a tenant wrote or copied
    from another Workload is ignored (the Workload stays as its owner left it)."""
    text = workload.annotations.get(PARK_ANNOTATION)
    if workload.active or text is None or signer is None or workload.ended:
        return None
    try:
        note = json.loads(text)
    except ValueError:
        return None
    if not isinstance(note, dict) or not signer.verify(workload.uid, note):
        return None
    return timestamps.parse_rfc3339(note.get("until"))


def verdict(
    decision: model.Decision,
    *,
    node_selector: Mapping[str, str],
    annotations: Mapping[str, str],
    now: datetime.datetime,
    other_flavors: Iterable[str] = (),
) -> CheckVerdict:
    """The check's answer for the planner's ``decision`` on a Workload.

    ``node_selector``: the chosen pool's (Placed); ``other_flavors``: flavors of the Workload's
    ClusterQueue that Kueue did not assign this time and whose pools are not ruled out for it.
    Placed is Ready; Deferred is Retry until its ``not_before``; a Workload this flavor's pools
    can never take (``ruled_out``: sovereignty, too large) is Rejected when no other flavor is
    left, else Retry saying which flavor would do; other refusals (a budget under Reject) are
    Rejected; anything else held (no room, above a ceiling) is Retry after a minute, or at its
    latest start when that comes sooner (a ceiling that yields then).
    """
    reason, message = decision.reason.value, decision.message
    if decision.outcome == model.Outcome.PLACED:
        return CheckVerdict("Ready", reason, message, node_selector, annotations)
    if decision.outcome == model.Outcome.DEFERRED and decision.not_before is not None:
        wait = math.ceil((decision.not_before - now).total_seconds())
        return CheckVerdict("Retry", reason, message, requeue_after_seconds=wait)
    if ruled_out(decision):
        others = sorted(other_flavors)
        if not others:
            return CheckVerdict("Rejected", reason, message)
        message = (
            f"{message}. Not in this flavor, but pools of flavor {', '.join(others)} may take it: "
            "Kueue reserves a ClusterQueue's flavors in their listed order, so it is tried "
            "again and admitted once Kueue reserves that flavor (when the flavors listed "
            "before it have no quota left, or once it is listed first)"
        )
    elif decision.outcome == model.Outcome.REFUSED:
        return CheckVerdict("Rejected", reason, message)
    wait = HELD_RETRY_SECONDS
    if decision.not_before is not None:  # held by a ceiling that yields at its latest start
        wait = min(wait, math.ceil((decision.not_before - now).total_seconds()))
    return CheckVerdict("Retry", reason, message, requeue_after_seconds=wait)


def ruled_out(decision: model.Decision) -> bool:
    """Whether ``decision`` keeps its workload out of every pool it weighed for good: held with
    each pool ruled out (``PERMANENT``), or refused as larger than any of them. No later round
    of the same pools can place it; pools of another flavor might."""
    if decision.outcome == model.Outcome.REFUSED:
        return decision.reason == model.Reason.GANG_TOO_LARGE
    reasons = {r for r, _ in decision.rejected_by_reason}
    return decision.outcome == model.Outcome.HELD and bool(reasons) and reasons <= PERMANENT


def check_state(
    check: str, verdict: CheckVerdict, pod_sets: Iterable[str], now: str
) -> dict[str, Any]:
    """The Workload's ``status.admissionChecks`` entry for ``check``, as Kueue's API has it.

    ``pod_sets``: the Workload's pod set names (each gets the same update); ``now``: the RFC 3339
    time of this transition.
    """
    message = f"{verdict.reason}: {verdict.message}"
    state: dict[str, Any] = {
        "name": check,
        "state": verdict.state,
        "message": message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "...",
        "lastTransitionTime": now,
    }
    if verdict.state == "Ready":
        state["podSetUpdates"] = [
            {
                "name": name,
                "nodeSelector": dict(verdict.node_selector),
                "annotations": dict(verdict.annotations),
            }
            for name in pod_sets
        ]
    if verdict.requeue_after_seconds is not None:
        # Kueue's field is an int32, counted from lastTransitionTime (this answer's time).
        state["requeueAfterSeconds"] = min(
            MAX_REQUEUE_SECONDS, max(1, verdict.requeue_after_seconds)
        )
    return state


def _implies(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(selector.get(key) == value for key, value in labels.items())
