"""An email has a subject unless it is a follow-up.

A follow-up (`follow_up: true`) inherits `Re: <previous subject>`, so its template may
leave `subject` out. Every other email step needs a template with a `subject`: add one to
the template, or make the step a follow-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import rule
from . import Issue, email_of, step_dicts

RULE = rule(
    "template/subject-required",
    "An email that is not a follow-up uses a template without a subject.",
    __doc__ or "",
)


def check(doc: dict[str, Any]) -> Iterator[Issue]:
    templates = doc.get("templates")
    if not isinstance(templates, dict):
        return
    for index, step in step_dicts(doc.get("steps")):
        email = email_of(step)
        if email is None or email.get("follow_up") is True:
            continue
        template = templates.get(email.get("template"))
        if isinstance(template, dict) and not template.get("subject"):
            yield Issue(
                RULE,
                f"step '{step.get('id')}' is not a follow-up, so template "
                f"'{email.get('template')}' needs a subject (only follow-ups inherit "
                "Re: <previous subject>)",
                ("steps", index, "email", "template"),
            )
