"""Time zones are IANA names.

`settings.default_timezone`, and `settings.timezone` unless it is `contact`, name a zone of
the IANA time zone database (`Europe/Amsterdam`, `America/New_York`, `UTC`).
Abbreviations such as `CET` or `EST` and fixed offsets such as `Etc/GMT+5` have no
daylight-saving rule of a place and are refused with the place meant ("did you mean
America/New_York?"); contact lists follow the same rule (`engine.zones`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..findings import rule
from ..zones import zone_problem
from . import Issue

RULE = rule("timezone/iana", "A time zone is not an IANA time zone name.", __doc__ or "")


def check(value: Any) -> Iterator[Issue]:
    if not isinstance(value, str):
        return
    problem = zone_problem(value)
    if problem is None:
        return
    if value == "contact":
        problem += "; `contact` is a value of settings.timezone only"
    yield Issue(RULE, f"{problem}; use a name like Europe/Amsterdam or America/New_York")
