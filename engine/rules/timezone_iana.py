"""Time zones are IANA names.

`settings.default_timezone`, and `settings.timezone` unless it is `contact`, name a zone of
the IANA time zone database (`Europe/Amsterdam`, `America/New_York`, `UTC`).
Abbreviations such as `CET` or `EST` and offsets such as `+02:00` are ambiguous about
daylight saving time and are not accepted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from engine.findings import did_you_mean, rule
from engine.rules import Issue

RULE = rule("timezone/iana", "A time zone is not an IANA time zone name.", __doc__ or "")


@functools.lru_cache(maxsize=256)
def is_iana(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name or name.startswith(("/", ".")) or name != name.strip():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return "/" in name or name == "UTC"


@functools.cache
def _accepted_names() -> tuple[str, ...]:
    # Suggest only names this rule accepts (not `GMT0` or `WET` for `GMT`).
    from zoneinfo import available_timezones

    return tuple(sorted(z for z in available_timezones() if "/" in z or z == "UTC"))


def check(value: Any) -> Iterator[Issue]:
    if isinstance(value, str) and not is_iana(value):
        if value == "contact":
            hint = "; `contact` is a value of settings.timezone only"
        else:
            hint = did_you_mean(value, _accepted_names())
        yield Issue(
            RULE,
            f"'{value}' is not an IANA time zone{hint}; "
            "use a name like Europe/Amsterdam or America/New_York",
        )
