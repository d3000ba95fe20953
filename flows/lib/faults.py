"""Test-only fault injection: SIGKILL the running process at a named point of a run.

The crash-safety tests (tests/test_crash_safety.py) set `RECOUP_FAULT_KILL_AT` in the
environment of a child `recoup run` and expect it to die there, as if the machine had lost
power or the OOM killer had struck. Never set it in production. Unset, each check costs one
lookup in `os.environ`, so the hooks stay in the run's code path.

    step:<name>   when the step <name> of flows/lib/runs.py STEPS starts (RunRecord.step)
    send:<n>      in the email step, when the request that carried the n-th message handed to
                  the sender has come back, before the ledger records what became of it: the
                  messages of that request are left `sending`, later ones `planned`

This module reads the environment itself (everything else gets it through flows/lib/config.py)
because it is not a setting: RunRecord.step has no Settings to read it from, and a fault point
must not be something `recoup.yaml` could switch on.
"""

from __future__ import annotations

import os
import signal

KILL_AT = "RECOUP_FAULT_KILL_AT"


def at_step(name: str) -> None:
    """Die now when the fault point is `step:<name>`."""
    point = os.environ.get(KILL_AT)
    if point is not None and point == f"step:{name}":
        _kill()


def after_handed(handed: int) -> None:
    """Die now when the fault point is `send:<n>` and at least n messages were handed over."""
    point = os.environ.get(KILL_AT)
    if point is None or not point.startswith("send:"):
        return
    try:
        limit = int(point.removeprefix("send:"))
    except ValueError:
        raise ValueError(
            f"{KILL_AT}={point!r}: use send:<n> with a whole number, for example send:1"
        ) from None
    if handed >= limit:
        _kill()


def _kill() -> None:
    # SIGKILL cannot be caught: no finally block, atexit hook or buffered write runs
    os.kill(os.getpid(), signal.SIGKILL)
