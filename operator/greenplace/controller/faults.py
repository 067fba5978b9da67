"""Crash points, so reliability tests can kill the operator exactly where it hurts most.

Why this module exists: "kill it at any point and restart it" only proves something if the kill
lands mid-batch, between two writes, every time. Setting ``GREENPLACE_CRASH_AFTER_PLACEMENTS=N``
makes the process exit abruptly (``os._exit``, no cleanup, like SIGKILL) right after its N-th
successful placement patch. Unset — always, in production — this module does nothing.
"""

from __future__ import annotations

import os
import sys

__all__ = ["CRASH_EXIT_CODE", "after_placement"]

CRASH_EXIT_CODE = 86
_ENV = "GREENPLACE_CRASH_AFTER_PLACEMENTS"
_limit = int(os.environ.get(_ENV, "0") or 0)
_placements = 0


def after_placement() -> None:
    """Count one placement; exit at once when the configured crash point is reached."""
    global _placements  # noqa: PLW0603 - a process-wide counter is the point
    if _limit <= 0:
        return
    _placements += 1
    if _placements >= _limit:
        print(f"{_ENV}={_limit}: crashing on purpose", file=sys.stderr, flush=True)
        os._exit(CRASH_EXIT_CODE)
