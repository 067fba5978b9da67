"""Writes one ``wgpolicyk8s.io`` PolicyReport per governed namespace (``--policy-reports``).

Why this module exists: ``audit.policyreport`` says what the results are; this module keeps
each governed namespace's report (named ``greenplace``) in step with the planner, cheaply:

- A workload's results are replaced when the cycle decides it again and its verdicts, pool or
  message changed (not its timestamp alone), and kept while any of its pods exists: a placed
  pod leaves the plan but keeps its ``pass`` until it is gone.
- A report is written only when its results changed, as an update conditioned on the
  ``resourceVersion`` the operator last saw (a create when there is none); after a restart or a
  conflict it is read back first, so results of workloads still running survive.
- A failure (CRD missing, API server down) is logged; placement never waits for a report.
  Only the leader runs cycles, so only the leader writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from greenplace.audit import policyreport
from greenplace.controller import snapshot

__all__ = ["PolicyReports"]

logger = logging.getLogger("greenplace.policyreports")
_TIMEOUT = (5, 30)
Results = dict[str, list[dict[str, Any]]]  # by workload


@dataclasses.dataclass
class _Known:
    resource_version: str | None  # None: the report does not exist yet
    results: Results


def _same(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    def strip(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "timestamp"} for r in results]

    return strip(old) == strip(new)


class PolicyReports:
    """The PolicyReports of the governed namespaces, as last written."""

    def __init__(self, api: client.ApiClient) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.known: dict[str, _Known] = {}

    async def publish(self, decided: snapshot.Decided) -> int:
        """Bring every governed namespace's report up to date; return how many were written."""
        try:
            return await asyncio.to_thread(self._publish, decided)
        except Exception as error:  # never stop placement: the next cycle tries again
            logger.warning("policy reports: not written, retried next cycle: %s", error)
            self.known.clear()
            return 0

    def _publish(self, decided: snapshot.Decided) -> int:
        built, cache, at = decided.built, decided.cache, decided.at
        budgeted = {p.key for p in built.snapshot.policies if p.budget}
        fresh: dict[str, Results] = {}
        for decision in decided.plan.decisions:
            pods = [(p.name, p.uid) for p in built.members.get(decision.workload, ())]
            results = policyreport.results_of(
                decision, pods, budgeted=any(k in budgeted for k in decision.policies), at=at
            )
            namespace = decision.workload.partition("/")[0]
            fresh.setdefault(namespace, {})[decision.workload] = results
        alive = {uid for uid, pod in cache.pods.items() if not pod.terminal}
        written = 0
        for namespace in sorted({p.namespace for p in decided.gathered.policies}):
            known = self.known.get(namespace) or self._read(namespace)
            merged = {
                workload: results
                for workload, results in known.results.items()
                if any(r.get("uid") in alive for r in results[0].get("resources") or ())
            }
            for workload, results in fresh.get(namespace, {}).items():
                old = known.results.get(workload)
                merged[workload] = old if old is not None and _same(old, results) else results
            if merged == known.results and known.resource_version is not None:
                self.known[namespace] = known
                continue
            self.known[namespace] = self._write(namespace, known.resource_version, merged)
            written += 1
        return written

    def _read(self, namespace: str) -> _Known:
        try:
            found = self.custom.get_namespaced_custom_object(
                policyreport.GROUP, policyreport.VERSION, namespace, policyreport.PLURAL,
                policyreport.REPORT_NAME, _request_timeout=_TIMEOUT,
            )  # fmt: skip
        except client.ApiException as error:
            if error.status == 404:
                return _Known(None, {})
            raise
        results: Results = {}
        for result in found.get("results") or ():
            workload = policyreport.workload_of(result)
            if workload is not None:
                results.setdefault(workload, []).append(result)
        return _Known(found["metadata"]["resourceVersion"], results)

    def _write(self, namespace: str, resource_version: str | None, results: Results) -> _Known:
        body = policyreport.report_body(namespace, (r for rs in results.values() for r in rs))
        args = (policyreport.GROUP, policyreport.VERSION, namespace, policyreport.PLURAL)
        try:
            if resource_version is None:
                made: Mapping[str, Any] = self.custom.create_namespaced_custom_object(
                    *args, body, _request_timeout=_TIMEOUT
                )
            else:
                body["metadata"]["resourceVersion"] = resource_version
                made = self.custom.replace_namespaced_custom_object(
                    *args, policyreport.REPORT_NAME, body, _request_timeout=_TIMEOUT
                )
        except client.ApiException as error:
            if error.status == 409:  # changed by someone else: read it back next cycle
                self.known.pop(namespace, None)
                logger.info("policy reports: %s/%s changed meanwhile", namespace, "greenplace")
                return self._read(namespace)
            raise
        return _Known(made["metadata"]["resourceVersion"], results)
