"""A step's time is earlier than the time of the step listed before it on the same day (a warning).

Within a day, steps keep their file order (SPEC §5): a step whose time of day is earlier
than that of a step listed before it on the same day goes out right after that step
instead. Times known from the file are compared: `{at: "HH:MM"}` on emails, `at` on
tasks (an email task's too), a task's default time when it has none (the send window's
start, else 09:00), and `same_time_as_previous` when it resolves to such a time. Reorder
the steps or change the time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..findings import Severity, rule
from ..model import DEFAULT_TASK_TIME
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


def check(doc: dict[str, Any]) -> Iterator[Issue]:
    task_time = _default_task_time(doc.get("settings"))
    emails: list[tuple[int, str | None]] = []  # (day, fixed time) of each email so far
    latest: tuple[int, str, Any] | None = None  # (day, time, step id) latest fixed time
    for index, step in step_dicts(doc.get("steps")):
        day = step.get("day")
        if not isinstance(day, int):
            continue
        time, where = _fixed_time(step, day, emails, task_time)
        if time is None:
            continue
        if latest is not None and latest[0] == day and time < latest[1]:
            yield Issue(
                RULE,
                f"step '{step.get('id')}' at {time} is listed after '{latest[2]}' at "
                f"{latest[1]} on day {day}; it goes out right after '{latest[2]}' instead: "
                "reorder the steps or change the time",
                ("steps", index, *where),
            )
            continue
        latest = (day, time, step.get("id"))


def _default_task_time(settings: Any) -> str:
    """When a task without `at` is due: the send window's start, else 09:00 (SPEC §5)."""
    window = settings.get("send_window") if isinstance(settings, dict) else None
    start = _hhmm(window.get("start")) if isinstance(window, dict) else None
    return start or DEFAULT_TASK_TIME.strftime("%H:%M")


def _fixed_time(
    step: dict[str, Any], day: int, emails: list[tuple[int, str | None]], task_time: str
) -> tuple[str | None, tuple[str, ...]]:
    email = email_of(step)
    if email is not None:
        send = email.get("send")
        time: str | None = None
        if isinstance(send, dict):
            time = _hhmm(send.get("at"))
        elif send == "task":
            time = _hhmm(email.get("at")) if "at" in email else task_time
        elif send == "same_time_as_previous":
            earlier = [t for d, t in emails if d < day]
            time = earlier[-1] if earlier else None
        emails.append((day, time))
        return time, ("email", "at" if send == "task" and "at" in email else "send")
    kind = step_kind(step)
    body = step.get(kind) if kind else None
    if isinstance(body, dict) and kind:
        if "at" in body:
            return _hhmm(body.get("at")), (kind, "at")
        return task_time, (kind,)
    return None, ()
