"""Fault points for the crash tests: `CADENCE_FAULT=<point>` makes the process SIGKILL itself.

A real crash, not an exception: no `finally`, no rollback, no flush. Points in order of a
send: after-claim, after-sending-commit, during-data (SMTP only, half the message
written), after-250 (the server accepted it, nothing recorded yet). `CADENCE_FAULT_AFTER=N`
lets N messages pass the point first. `CADENCE_FAULT_SIGNAL=TERM` (or INT) sends that
signal instead, to test a clean stop.
"""

from __future__ import annotations

import os
import signal
import threading

POINTS = ("after-claim", "after-sending-commit", "during-data", "after-250")

_passed: dict[str, int] = {}
_lock = threading.Lock()  # SMTP sessions pass the points on threads of their own


# Read once, when the process starts: the crash tests set it for the process they start.
# (`os.environ.get` of a missing name costs 1.6 µs, and a run passes a point per email.)
_ARMED = os.environ.get("CADENCE_FAULT")


def armed(point: str) -> bool:
    """Whether the environment names this point (a caller may then take a slower path
    that has the point in it)."""
    return point == _ARMED


def fault(point: str) -> None:
    """Die here if the environment names this point (and its allowance is used up)."""
    if not armed(point):
        return
    allowance = int(os.environ.get("CADENCE_FAULT_AFTER", "0"))
    with _lock:
        seen = _passed.get(point, 0)
        _passed[point] = seen + 1
    if seen >= allowance:
        name = os.environ.get("CADENCE_FAULT_SIGNAL", "KILL")
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
