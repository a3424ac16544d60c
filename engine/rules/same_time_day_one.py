"""`same_time_as_previous` with no email on an earlier day (a warning).

The option (R2) takes the time of day of the email sent on the most recent *earlier* day.
On day 1 there is none, so the email is sent immediately at campaign start (the launch
time); on a later day with no email before it, it goes on its own day at the time of day
the campaign was launched. That is allowed but rarely intended: give it a time with
`{at: "HH:MM"}` or make it a `task`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import Severity, rule
from . import Issue, email_of, step_dicts

RULE = rule(
    "send-option/same-time-day-1",
    "`same_time_as_previous` with no email on an earlier day.",
    __doc__ or "",
    Severity.WARNING,
)


def check(steps: Any) -> Iterator[Issue]:
    email_days: list[int] = []
    for index, step in step_dicts(steps):
        email, day = email_of(step), step.get("day")
        if email is None or not isinstance(day, int):
            continue
        first_email_day = not any(d < day for d in email_days)
        if index > 0 and email.get("send") == "same_time_as_previous" and first_email_day:
            if day == 1:
                what = "on day 1 sends immediately at campaign start (the launch time)"
            else:
                what = (
                    f"on day {day} has no email on an earlier day to copy: it goes on day "
                    f"{day} at the time of day the campaign was launched"
                )
            yield Issue(
                RULE,
                f'same_time_as_previous {what}; not recommended: use {{at: "HH:MM"}} or task',
                (index, "email", "send"),
            )
        email_days.append(day)
