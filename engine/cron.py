"""Cron expressions for `--every`: the crontab forms users write, checked field by field.

Five fields (minute, hour, day of month, month, day of week) or one of crontab's
`@hourly`, `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`). A
mistake names its field and what is allowed there (`61 * * * *` → the minute is 0–59),
a step of 0 and a reversed range (`5-1`) are refused rather than read some other way.
Iteration is croniter's (the day-of-month / day-of-week rule is not worth owning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import UsageError

ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
HINT = "e.g. '*/5 * * * *' (every 5 minutes), '0 9-17 * * 1-5', '@hourly' or '@daily'"

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names for low, low+1, …

    def value(self, text: str, expression: str) -> int:
        lowered = text.lower()
        if lowered in self.names:
            return self.low + self.names.index(lowered)
        if not text.isdigit():
            raise _error(expression, f"the {self.name} field has {text!r}, not a number")
        number = int(text)
        if not self.low <= number <= self.high:
            raise _error(expression, f"the {self.name} is {self.low}–{self.high}, not {number}")
        return number


FIELDS = (
    Field("minute", 0, 59),
    Field("hour", 0, 23),
    Field("day of month", 1, 31),
    Field("month", 1, 12, _MONTHS),
    Field("day of week", 0, 7, _DAYS),  # 0 and 7 are both Sunday
)
_ITEM = re.compile(r"^(?P<range>\*|[^-/]+(?:-[^-/]+)?)(?:/(?P<step>.*))?$")


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A checked cron schedule: `expression` as written, `fields` the 5-field form."""

    expression: str
    fields: str

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after `moment` (UTC)."""
        from croniter import croniter

        fire: datetime = croniter(self.fields, moment.astimezone(UTC)).get_next(datetime)
        return fire


def _error(expression: str, reason: str) -> UsageError:
    return UsageError(f"--every {expression!r}: {reason}", hint=HINT)


def parse_cron(expression: str) -> CronSchedule:
    """Check `expression` and return its schedule; UsageError naming the field otherwise."""
    text = expression.strip()
    if text.startswith("@"):
        fields = ALIASES.get(text.lower())
        if fields is None:
            known = ", ".join(a for a in ALIASES if a not in ("@midnight", "@annually"))
            raise _error(expression, f"unknown shorthand {text!r}; use one of {known}")
        return CronSchedule(expression, fields)
    parts = text.split()
    if len(parts) != len(FIELDS):
        raise _error(
            expression,
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"this one has {len(parts)}",
        )
    for field, part in zip(FIELDS, parts, strict=True):
        for item in part.split(","):
            _check_item(field, item, expression)
    schedule = CronSchedule(expression, " ".join(parts))
    try:  # valid fields can still name a date that never comes (30 February)
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except Exception:
        raise _error(expression, "it never fires (no such date)") from None
    return schedule


def _check_item(field: Field, item: str, expression: str) -> None:
    match = _ITEM.match(item)
    if match is None:
        raise _error(expression, f"the {field.name} field has {item!r}, not a value or range")
    step = match.group("step")
    if step is not None:
        if not step.isdigit():
            raise _error(expression, f"the {field.name} field's step {step!r} is not a number")
        if int(step) == 0:
            raise _error(expression, f"the {field.name} field's step is 0; use 1 or more")
    span = match.group("range")
    if span == "*":
        return
    low, _, high = span.partition("-")
    first = field.value(low, expression)
    if high:
        last = field.value(high, expression)
        if first > last:
            raise _error(
                expression, f"the {field.name} range {span} is reversed; write {high}-{low}"
            )
