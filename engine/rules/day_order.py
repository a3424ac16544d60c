"""Days never decrease through the list of steps.

`day` is absolute (day 3 is the third campaign day, not three days after the step before),
and steps run in file order, so a step listed after a later day would run before it.
Move the step to its place in the list, or correct its day.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import rule
from . import Issue, step_dicts

RULE = rule("day/order", "A step's day is earlier than the day of a step before it.", __doc__ or "")


def _day(value: Any) -> int | None:
    # Days below 1 and non-integers have their own finding (day/positive-integer).
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return value if ok else None


def check(steps: Any) -> Iterator[Issue]:
    latest: tuple[int, Any] | None = None
    for index, step in step_dicts(steps):
        day = _day(step.get("day"))
        if day is None:
            continue
        if latest is not None and day < latest[0]:
            yield Issue(
                RULE,
                f"day {day} comes after day {latest[0]} (step '{latest[1]}'); days never "
                "decrease through the list: move the step or fix its day",
                (index, "day"),
            )
        else:
            latest = (day, step.get("id"))
