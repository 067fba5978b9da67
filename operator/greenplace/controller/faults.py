"""Crash points, so reliability tests can kill the operator exactly where it hurts most.

Why this module exists: "kill it at any point and restart it" only proves something if the kill
lands mid-batch, between two writes, every time. Setting ``GREENPLACE_CRASH_AFTER_PLACEMENTS=N``
makes the process exit abruptly (``os._exit``, no cleanup, like SIGKILL) right after its N-th
successful placement patch. ``GREENPLACE_FAIL_CYCLES=N`` makes the first N placement cycles
raise ``InjectedFaultError`` before planning, as a planner bug would, to prove one bad cycle never
stops placement for good. Unset — always, in production — this module does nothing.
"""

from __future__ import annotations

import os
import sys

__all__ = ["CRASH_EXIT_CODE", "InjectedFaultError", "after_placement", "before_plan"]

CRASH_EXIT_CODE = 86
_ENV = "GREENPLACE_CRASH_AFTER_PLACEMENTS"
_limit = int(os.environ.get(_ENV, "0") or 0)
_placements = 0
_FAIL_ENV = "GREENPLACE_FAIL_CYCLES"
_failures_left = int(os.environ.get(_FAIL_ENV, "0") or 0)


class InjectedFaultError(RuntimeError):
    """Raised on purpose by ``before_plan``; never in production."""


def after_placement() -> None:
    """Count one placement; exit at once when the configured crash point is reached."""
    global _placements  # noqa: PLW0603 - a process-wide counter is the point
    if _limit <= 0:
        return
    _placements += 1
    if _placements >= _limit:
        print(f"{_ENV}={_limit}: crashing on purpose", file=sys.stderr, flush=True)
        os._exit(CRASH_EXIT_CODE)


def before_plan() -> None:
    """Fail this cycle while the configured number of failing cycles is not used up."""
    global _failures_left  # noqa: PLW0603 - a process-wide counter is the point
    if _failures_left <= 0:
        return
    _failures_left -= 1
    raise InjectedFaultError(f"{_FAIL_ENV}: failing a placement cycle on purpose")
