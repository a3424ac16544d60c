"""Templates use only the variables a contact and the sender provide.

A template may use `contact.<field>` for the standard fields (`email`, `first_name`,
`last_name`, `company`, `title`, `timezone`, `phone`, `linkedin_url`) and for the extra
fields listed in the cadence's `contact_fields`, `sender.name`, `sender.email`, and
`unsubscribe_url`. Anything else is an error (with a "did you mean"): add the column to
`contact_fields`, or fix the spelling.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine.findings import did_you_mean, rule
from engine.model import STANDARD_CONTACT_FIELDS
from engine.rules import Issue
from engine.rules.template_source import ALLOWED_NAMES, SENDER_FIELDS, analyse, template_texts

RULE = rule("template/unknown-variable", "A template uses an unknown variable.", __doc__ or "")


def check(doc: dict[str, Any]) -> Iterator[Issue]:
    declared = doc.get("contact_fields")
    extra = [f for f in declared if isinstance(f, str)] if isinstance(declared, list) else []
    contact_fields = (*STANDARD_CONTACT_FIELDS, *extra)
    for path, source in template_texts(doc):
        analysis = analyse(source)
        for use in analysis.names:
            if use.name not in ALLOWED_NAMES:
                yield Issue(
                    RULE,
                    f"unknown variable '{use.name}'{did_you_mean(use.name, ALLOWED_NAMES)}; "
                    "templates use contact.*, sender.* and unsubscribe_url",
                    path,
                    text_pos=(use.line, use.col),
                )
        for use in analysis.contact_fields:
            if use.name not in contact_fields:
                yield Issue(
                    RULE,
                    f"unknown contact field 'contact.{use.name}'"
                    f"{did_you_mean(use.name, contact_fields)}; declare it in contact_fields",
                    path,
                    text_pos=(use.line, use.col),
                )
        for use in analysis.sender_fields:
            if use.name not in SENDER_FIELDS:
                yield Issue(
                    RULE,
                    f"unknown sender field 'sender.{use.name}'"
                    f"{did_you_mean(use.name, SENDER_FIELDS)}; the sender has name and email",
                    path,
                    text_pos=(use.line, use.col),
                )
