"""Contact-list headers: normalised, and the standard fields found under their CRM names.

A header becomes a column name by case, spaces, dashes and punctuation: `First Name`,
`first-name` and `FIRST_NAME` are all `first_name`. The exports of Salesforce, HubSpot
and Outlook name the standard fields their own way (`E-mail Address`, `Account Name`,
`Job Title`, `Time Zone`); those names are read as the standard field, unless the list
also has a column with the standard name itself (that column wins, the other keeps its
own name). A column that looks like a time zone but is none of these gets a warning when
the list has no `timezone` column: its contacts would otherwise be planned in the default
zone without a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Normalised header → standard field; README "Contact lists" lists them for users.
ALIASES: dict[str, tuple[str, ...]] = {
    "email": (
        "e_mail",
        "email_address",
        "e_mail_address",
        "emailaddress",
        "primary_email",
        "work_email",
        "business_email",
    ),
    "first_name": ("firstname", "given_name", "forename"),
    "last_name": ("lastname", "surname", "family_name"),
    "company": ("company_name", "account_name", "account", "organization", "organisation"),
    "title": ("job_title", "jobtitle", "position"),
    "timezone": ("time_zone", "tz", "timezone_name", "timezonesidkey", "time_zone_sid_key"),
    "phone": (
        "phone_number",
        "business_phone",
        "work_phone",
        "mobile_phone",
        "mobile_phone_number",
        "mobilephone",
        "mobile",
    ),
    "linkedin_url": ("linkedin", "linkedin_profile", "linkedin_profile_url", "person_linkedin_url"),
}
_STANDARD_FOR = {alias: field for field, names in ALIASES.items() for alias in names}
# `tz` as a word of the name, or `zone` anywhere in it (`timezone`, `hs_timezone`).
_ZONE_LIKE = re.compile(r"(^|_)tz($|_)|zone")


def normalised(header: str) -> str:
    """`E-mail Address` → `e_mail_address`: lower case, any run of other characters `_`."""
    return re.sub(r"[^\w]+", "_", header.strip().lower()).strip("_")


def column_names(headers: Iterable[str]) -> list[str]:
    """The column name of each header, in order, with the standard fields resolved."""
    names = [normalised(h) for h in headers]
    taken = set(names)
    out = []
    for name in names:
        field = _STANDARD_FOR.get(name)
        if field is not None and field not in taken:
            taken.add(field)
            name = field
        out.append(name)
    return out


def looks_like_zone(column: str) -> bool:
    """A column other than `timezone` whose name says it holds a time zone."""
    return column != "timezone" and _ZONE_LIKE.search(column) is not None


def zone_warning(file: str, column: str) -> str:
    return (
        f"{file}: column {column!r} looks like a time zone but is not read as one, so its "
        f"contacts are planned in the default zone; name the column 'timezone'"
    )
