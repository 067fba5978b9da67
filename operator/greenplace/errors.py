"""The one base of the errors greenplace raises on purpose, and the map of all of them.

Why this module exists: a caller that must tell "greenplace refused or could not do this, and
says why" from "a bug" (the CLI printing a message instead of a traceback, a loop that must
survive one bad input) catches one class, ``GreenplaceError``; anything else escaping is a bug.
Each error lives beside the code that raises it; this docstring is the map, as httpx draws
its own (``tests/unit/test_errors.py`` fails when the tree below and the classes differ)::

    GreenplaceError
    ├── cli.output.CliError: a command cannot do what was asked (one line, ``exit_code``)
    ├── controller.loops.StalledError: alive but not working (liveness fails)
    ├── audit.store.ConflictError: another replica appended to the ledger first; re-read it
    ├── audit.credentials.TrustError: the trusted issuers' list is invalid (entry, fix)
    ├── accounting.focus.FocusError: a billing export cannot be reconciled (file, row, fix)
    ├── controller.exports.ExportError: a BillingExport cannot be read (``reason``, fix)
    ├── engine.snapshot_file.SnapshotFileError: not a valid snapshot file (field, fix)
    ├── sim.oracle.OracleSkippedError: the exact MILP cannot run here (why, what to do)
    │   ├── sim.oracle.OracleTooLargeError: the instance is over the configured size
    │   └── sim.oracle.OracleUnavailableError: HiGHS is not installed
    ├── controller.kube.WriteError: a write to the API server did not happen
    │   ├── controller.kube.WriteConflictError: the object changed or vanished; re-plan
    │   └── controller.kube.AdmissionRefusedError: the API server refused it (``code``)
    └── signals.contract.SignalError: a signal source gave no value (``reason``, stable)
        ├── signals.contract.SignalMissingError: no value for this key (zone not mapped ...)
        ├── signals.contract.SignalUnsupportedError: cannot do this (a static forecast ...)
        ├── signals.contract.SignalUnreachableError: connection refused, DNS, TLS
        ├── signals.contract.SignalTimeoutError: no answer within the source's timeout
        ├── signals.contract.SignalHttpError: the peer answered with a non-2xx status
        ├── signals.contract.SignalCredentialsError: missing, unreadable or refused (401/403)
        ├── signals.contract.SignalMalformedError: unreadable answer (not JSON, a field, NaN)
        └── signals.contract.SignalNotAllowedError: the operator forbids this file or address
            (``signals.tracefile.confine``, ``signals.egress.EgressPolicy``)

Outside the tree on purpose: ``controller.faults.InjectedFaultError`` stands for a bug (the
reliability tests inject it before planning), so nothing may catch it as greenplace's own.

An error says what, where, why and the fix in its message, and carries a stable code where a
caller branches on it (``AdmissionRefusedError.code``, ``SignalError.reason``). This module
imports nothing of greenplace, so every layer, the pure planner included, may raise from it.
"""

from __future__ import annotations

__all__ = ["GreenplaceError"]


class GreenplaceError(Exception):
    """Greenplace refused, or could not do, something; the message says what, why and the fix."""
