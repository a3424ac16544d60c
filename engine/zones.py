"""The one rule for time zone names, in cadence files and contact lists alike.

A zone is an IANA name of a place (`Europe/Paris`, `America/New_York`) or `UTC`. Legacy
abbreviations (`EST`, `CET`) and fixed offsets (`Etc/GMT+5`, `+02:00`) are refused even
where zoneinfo knows them: `EST` is UTC−5 all year, so a New York contact would get a
10:15 email at 11:15 local all summer. The refusal suggests the place meant.
"""

from __future__ import annotations

import functools

from .findings import did_you_mean

# What people mean by the abbreviations and fixed zones they write.
_MEANT = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "EST5EDT": "America/New_York",
    "CST": "America/Chicago",
    "CDT": "America/Chicago",
    "CST6CDT": "America/Chicago",
    "MST": "America/Denver",
    "MDT": "America/Denver",
    "MST7MDT": "America/Denver",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "PST8PDT": "America/Los_Angeles",
    "HST": "Pacific/Honolulu",
    "AKST": "America/Anchorage",
    "GMT": "UTC or Europe/London",
    "BST": "Europe/London",
    "WET": "Europe/Lisbon",
    "CET": "Europe/Paris",
    "CEST": "Europe/Paris",
    "MET": "Europe/Paris",
    "EET": "Europe/Athens",
    "EEST": "Europe/Athens",
    "IST": "Asia/Kolkata",
    "JST": "Asia/Tokyo",
    "KST": "Asia/Seoul",
    "AEST": "Australia/Sydney",
    "AEDT": "Australia/Sydney",
    "NZST": "Pacific/Auckland",
}


@functools.lru_cache(maxsize=1024)
def zone_problem(name: str) -> str | None:
    """Why `name` is not an accepted zone (with a suggestion), or None when it is one."""
    if _is_place(name):
        return None
    meant = _MEANT.get(name.strip().upper())
    if meant is not None:
        return f"'{name}' is an abbreviation, not the IANA name of a place (did you mean {meant}?)"
    if _is_fixed_offset(name):
        return f"'{name}' is a fixed UTC offset, not a place; use the place's IANA name"
    return f"'{name}' is not an IANA time zone{did_you_mean(name, accepted_names())}"


def _is_place(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not name or name.startswith(("/", ".")) or name != name.strip():
        return False
    if name != "UTC" and ("/" not in name or _is_fixed_offset(name)):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _is_fixed_offset(name: str) -> bool:
    text = name.strip().upper()
    return text.startswith(("ETC/GMT", "GMT+", "GMT-", "UTC+", "UTC-", "+", "-")) and text not in (
        "ETC/GMT",
    )


@functools.cache
def accepted_names() -> tuple[str, ...]:
    """Every name the rule accepts, for suggestions (not `GMT0` or `WET` for `GMT`)."""
    from zoneinfo import available_timezones

    return tuple(sorted(z for z in available_timezones() if _is_place(z)))
