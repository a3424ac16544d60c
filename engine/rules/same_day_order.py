"""A step's time is earlier than the time of the step listed before it on the same day (a warning).

Within a day, steps keep their file order (SPEC §5): a step whose time of day is earlier
than that of a step listed before it on the same day goes out right after that step
instead. Only times fixed in the file are compared: `{at: "HH:MM"}` on emails, `at` on
tasks, and `same_time_as_previous` when it resolves to such a time. Reorder the steps or
change the time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..findings import Severity, rule
from . import Issue, email_of, step_dicts, step_kind

RULE = rule(
    "step-order/same-day",
    "A step is timed earlier than the step before it on the same day.",
    __doc__ or "",
    Severity.WARNING,
)


HHMM = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]")


def _hhmm(value: Any) -> str | None:
    # Zero-padded HH:MM compares correctly as text; malformed times get their own finding.
    return value if isinstance(value, str) and HHMM.fullmatch(value) else None


def check(steps: Any) -> Iterator[Issue]:
    emails: list[tuple[int, str | None]] = []  # (day, fixed time) of each email so far
    latest: tuple[int, str, Any] | None = None  # (day, time, step id) latest fixed time
    for index, step in step_dicts(steps):
        day = step.get("day")
        if not isinstance(day, int):
            continue
        time, where = _fixed_time(step, day, emails)
        if time is None:
            continue
        if latest is not None and latest[0] == day and time < latest[1]:
            yield Issue(
                RULE,
                f"step '{step.get('id')}' at {time} is listed after '{latest[2]}' at "
                f"{latest[1]} on day {day}; it goes out right after '{latest[2]}' instead: "
                "reorder the steps or change the time",
                (index, *where),
            )
            continue
        latest = (day, time, step.get("id"))


def _fixed_time(
    step: dict[str, Any], day: int, emails: list[tuple[int, str | None]]
) -> tuple[str | None, tuple[str, ...]]:
    email = email_of(step)
    if email is not None:
        send = email.get("send")
        time: str | None = None
        if isinstance(send, dict):
            time = _hhmm(send.get("at"))
        elif send == "same_time_as_previous":
            earlier = [t for d, t in emails if d < day]
            time = earlier[-1] if earlier else None
        emails.append((day, time))
        return time, ("email", "send")
    kind = step_kind(step)
    body = step.get(kind) if kind else None
    if isinstance(body, dict) and kind:
        return _hhmm(body.get("at")), (kind, "at")
    return None, ()
