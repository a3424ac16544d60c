"""An email step's template exists under `templates`.

`email: {template: <name>}` names one of the cadence's templates. A name that is not
defined is an error, with the closest defined name suggested.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import did_you_mean, rule
from . import Issue, email_of, step_dicts

RULE = rule(
    "template/unknown", "An email step refers to a template that does not exist.", __doc__ or ""
)


def check(doc: dict[str, Any]) -> Iterator[Issue]:
    templates = doc.get("templates")
    names = [str(n) for n in templates] if isinstance(templates, dict) else []
    for index, step in step_dicts(doc.get("steps")):
        email = email_of(step)
        name = email.get("template") if email else None
        if isinstance(name, str) and name not in names:
            hint = did_you_mean(name, names) or (
                f"; defined: {', '.join(names)}" if names else "; add it under templates"
            )
            yield Issue(
                RULE,
                f"template '{name}' is not defined{hint}",
                ("steps", index, "email", "template"),
            )
