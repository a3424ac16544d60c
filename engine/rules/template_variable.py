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

from ..findings import did_you_mean, rule
from ..model import STANDARD_CONTACT_FIELDS
from . import Issue
from .template_source import ALLOWED_NAMES, SENDER_FIELDS, analyse, template_texts

_NAMES_ADVICE = "templates use contact.*, sender.* and unsubscribe_url"
_FIELDS_ADVICE = "declare it in contact_fields"
_SENDER_ADVICE = "the sender has name and email"

RULE = rule("template/unknown-variable", "A template uses an unknown variable.", __doc__ or "")


def check(doc: dict[str, Any]) -> Iterator[Issue]:
    declared = doc.get("contact_fields")
    extra = [f for f in declared if isinstance(f, str)] if isinstance(declared, list) else []
    contact_fields = (*STANDARD_CONTACT_FIELDS, *extra)
    for path, source in template_texts(doc):
        analysis = analyse(source)
        checks = (
            (analysis.names, ALLOWED_NAMES, "variable '{}'", _NAMES_ADVICE),
            (analysis.contact_fields, contact_fields, "contact field 'contact.{}'", _FIELDS_ADVICE),
            (analysis.sender_fields, SENDER_FIELDS, "sender field 'sender.{}'", _SENDER_ADVICE),
        )
        for uses, allowed, what, advice in checks:
            for use in uses:
                if use.name not in allowed:
                    yield Issue(
                        RULE,
                        f"unknown {what.format(use.name)}{did_you_mean(use.name, allowed)}; "
                        + advice,
                        path,
                        text_pos=(use.line, use.col),
                    )
