"""Templates use only filters and tests that exist.

An unknown filter (`{{ contact.company | uper }}`) would fail for every contact at send
time, so it is an error now, with the closest known name suggested. The filters are
Jinja's built-in ones (`default`, `upper`, `title`, `trim`, …).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import did_you_mean, rule
from . import Issue
from .template_source import analyse, template_texts

RULE = rule("template/unknown-filter", "A template uses an unknown filter or test.", __doc__ or "")


def check(doc: dict[str, Any]) -> Iterator[Issue]:
    from ..templates import environment

    env = environment()
    for path, source in template_texts(doc):
        analysis = analyse(source)
        for use, known, what in (
            *((u, env.filters, "filter") for u in analysis.filters),
            *((u, env.tests, "test") for u in analysis.tests),
        ):
            if use.name not in known:
                yield Issue(
                    RULE,
                    f"unknown {what} '{use.name}'{did_you_mean(use.name, known)}",
                    path,
                    text_pos=(use.line, use.col),
                )
