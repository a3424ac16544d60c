"""WHEN values of the command line (SPEC §6): `now`, ISO 8601 instants, local date-times.

`--send-at` also takes a bare `HH:MM`, meaning that time on day 1 in each contact's own
scheduling zone; `SendAt` keeps the two meanings apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from .calendar import resolve_local, zone
from .errors import InputError, UsageError

# Schedules add campaign days and run for years; these keep every date they reach (and
# its UTC conversion) inside what Python's datetime can hold.
MIN_YEAR, MAX_YEAR = 1900, 9000

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_TIME_LIKE = re.compile(r"^\d{1,2}:\d{1,2}(:\d{1,2})?$")

WHEN_HELP = (
    "use 'now', an ISO 8601 instant such as 2026-03-02T09:00:00Z or 2026-03-02T09:00+01:00, "
    "or a local date-time such as 2026-03-02T09:00 (read {zone})"
)


def _zone_words(default_zone: str) -> str:
    """How a WHEN without an offset is read, for its hint."""
    return "as UTC" if default_zone == "UTC" else f"in {default_zone}"


SEND_AT_HELP = (
    "give --send-at as HH:MM (24-hour, e.g. 09:30: that time on day 1 in each contact's own "
    "zone) or as a date-time: an ISO 8601 instant such as 2026-03-02T09:00Z or "
    "2026-03-02T09:00+01:00, or a local 2026-03-02T09:00 (read {zone}, the cadence's "
    "default_timezone)"
)


@dataclass(frozen=True, slots=True)
class SendAt:
    """A launch-time send time: either one instant for everyone, or a local time of day."""

    instant: datetime | None = None
    time_of_day: time | None = None

    def __post_init__(self) -> None:
        if (self.instant is None) == (self.time_of_day is None):
            raise ValueError("SendAt needs exactly one of instant or time_of_day")

    def __str__(self) -> str:
        if self.instant is not None:
            return self.instant.isoformat().replace("+00:00", "Z")
        assert self.time_of_day is not None
        return self.time_of_day.strftime("%H:%M")


def parse_when(
    text: str,
    default_zone: str,
    *,
    now: datetime,
    option: str = "--start",
    hint: str = WHEN_HELP,
    expected: str = "a valid WHEN",
) -> datetime:
    """Parse a WHEN into an aware UTC instant; naive date-times are read in `default_zone`.

    A date alone means midnight local. Raises UsageError naming the option (and `hint`)
    on bad input.
    """
    raw = text.strip()
    if raw.lower() == "now":
        return now.astimezone(UTC)
    try:
        parsed = datetime.fromisoformat(raw.replace("z", "Z").replace(" ", "T", 1))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(raw), time(0))
        except ValueError:
            raise UsageError(
                f"{option} {text!r} is not {expected}",
                hint=hint.format(zone=_zone_words(default_zone)),
            ) from None
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise UsageError(
            f"{option} {text!r} is out of range: the year must be {MIN_YEAR} to {MAX_YEAR}",
            hint=hint.format(zone=_zone_words(default_zone)),
        )
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    try:
        tz = zone(default_zone)
    except InputError as exc:
        raise UsageError(f"{option}: {exc.message}") from None
    # Naive local time: same gap/overlap rules as every scheduled time (SPEC §5).
    return resolve_local(parsed.date(), parsed.time().replace(tzinfo=None), tz)


def send_at_help(default_zone: str) -> str:
    """What `--send-at` takes, naming the zone a date-time without an offset is read in."""
    return SEND_AT_HELP.format(zone=_zone_words(default_zone))


def parse_send_at(text: str, default_zone: str, *, now: datetime) -> SendAt:
    """Parse `--send-at`: `HH:MM` (time of day on day 1, per contact zone) or any WHEN."""
    raw = text.strip()
    match = _HHMM.match(raw)
    if match:
        return SendAt(time_of_day=time(int(match.group(1)), int(match.group(2))))
    if _TIME_LIKE.match(raw):
        raise UsageError(
            f"--send-at {text!r} is not a valid time of day (HH:MM, 00:00 to 23:59)",
            hint=send_at_help(default_zone),
        )
    return SendAt(
        instant=parse_when(
            text,
            default_zone,
            now=now,
            option="--send-at",
            hint=SEND_AT_HELP,
            expected="HH:MM or a date-time",
        )
    )
