"""`choose_at_launch` is only available on the first step.

"I will choose when I send this email" (R1) asks the launcher for a send time when
contacts are added, which only makes sense for the email that starts the cadence. Later
emails use `{at: "HH:MM"}`, `task` or `same_time_as_previous` (R2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine.findings import rule
from engine.rules import Issue, email_of, step_dicts

RULE = rule(
    "send-option/later-step", "`choose_at_launch` on a step other than the first.", __doc__ or ""
)


def check(steps: Any) -> Iterator[Issue]:
    for index, step in step_dicts(steps):
        email = email_of(step)
        if index > 0 and email is not None and email.get("send") == "choose_at_launch":
            yield Issue(
                RULE,
                "choose_at_launch is only available on the first step; use "
                '{at: "HH:MM"}, task or same_time_as_previous',
                (index, "email", "send"),
            )
