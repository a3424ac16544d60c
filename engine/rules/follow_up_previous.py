"""A follow-up email needs an email step directly before it.

`follow_up: true` (R3) sends the email as a reply in the thread of the step directly
before it, with that email quoted below. When that step is a call, InMail or custom task
there is no email to reply to. Move the follow-up right after the email it follows, or
drop `follow_up`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import rule, with_article
from . import Issue, email_of, step_kind

RULE = rule(
    "follow-up/previous-not-email",
    "A follow-up whose previous step is not an email.",
    __doc__ or "",
)


def check(steps: Any) -> Iterator[Issue]:
    if not isinstance(steps, list):
        return
    for index in range(1, len(steps)):
        step, before = steps[index], steps[index - 1]
        if not isinstance(step, dict) or not isinstance(before, dict):
            continue
        email = email_of(step)
        if email is None or email.get("follow_up") is not True:
            continue
        kind = step_kind(before)
        if kind is not None and kind != "email":
            yield Issue(
                RULE,
                f"follow_up needs an email step directly before it, but step "
                f"'{before.get('id')}' before it is {with_article(kind)} step",
                (index, "email", "follow_up"),
            )
