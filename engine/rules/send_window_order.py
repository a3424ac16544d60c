"""The send window opens before it closes.

`send_window: {start, end}` is a window within one day: `start` must be earlier than
`end`. Windows across midnight are not supported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import rule
from . import Issue

RULE = rule("send-window/order", "The send window's start is not before its end.", __doc__ or "")


def check(window: Any) -> Iterator[Issue]:
    if not isinstance(window, dict):
        return
    start, end = window.get("start"), window.get("end")
    if not (isinstance(start, str) and isinstance(end, str)):
        return
    well_formed = all(len(t) == 5 and t[2] == ":" for t in (start, end))
    if well_formed and start >= end:
        yield Issue(
            RULE,
            f'send_window start "{start}" must be before end "{end}"',
            ("start",),
        )
