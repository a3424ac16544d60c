"""Campaign days, holidays, DST resolution and zone choice, with hand-checked dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from cadence_engine.engine.calendar import (
    day_dates,
    is_campaign_day,
    resolve_local,
    scheduling_zone,
    shift_campaign_days,
    zone,
)
from cadence_engine.engine.contacts import Contact
from cadence_engine.engine.errors import InputError
from cadence_engine.engine.model import Settings

from .helpers.plan_cadences import make_cadence

XMAS = frozenset({date(2026, 12, 25), date(2027, 1, 1)})


def test_business_days_start_on_launch_day_and_skip_the_weekend() -> None:
    # Fri 6 Mar 2026 → day 1 Fri, day 2 Mon 9, day 3 Tue 10.
    s = Settings(skip_weekends=True)
    assert day_dates(s, date(2026, 3, 6), 3) == (
        date(2026, 3, 6),
        date(2026, 3, 9),
        date(2026, 3, 10),
    )


def test_weekend_launch_makes_monday_day_one() -> None:
    assert day_dates(Settings(), date(2026, 3, 7), 1) == (date(2026, 3, 9),)


def test_holidays_are_never_campaign_days() -> None:
    # Thu 24 Dec; Fri 25 holiday; weekend; Mon 28 … Thu 31; Fri 1 Jan holiday; Mon 4 Jan.
    s = Settings(holidays=XMAS)
    assert day_dates(s, date(2026, 12, 24), 7) == (
        date(2026, 12, 24),
        date(2026, 12, 28),
        date(2026, 12, 29),
        date(2026, 12, 30),
        date(2026, 12, 31),
        date(2027, 1, 4),
        date(2027, 1, 5),
    )


def test_calendar_days_without_skip_weekends_still_skip_holidays() -> None:
    s = Settings(skip_weekends=False, holidays=XMAS)
    assert day_dates(s, date(2026, 12, 25), 3) == (
        date(2026, 12, 26),
        date(2026, 12, 27),
        date(2026, 12, 28),
    )
    assert is_campaign_day(date(2026, 12, 26), skip_weekends=False, holidays=XMAS)


def test_shift_campaign_days_moves_by_business_days() -> None:
    s = Settings(holidays=XMAS)
    assert shift_campaign_days(s, date(2026, 12, 24), 1) == date(2026, 12, 28)
    assert shift_campaign_days(s, date(2026, 12, 26), 0) == date(2026, 12, 28)
    assert shift_campaign_days(s, date(2026, 3, 6), 5) == date(2026, 3, 13)
    with pytest.raises(ValueError):
        shift_campaign_days(s, date(2026, 3, 6), -1)


@pytest.mark.parametrize(
    ("zone_name", "day", "wall", "expected_utc"),
    [
        # Spring forward: 02:30 does not exist, it moves forward by the gap (→ 03:30 local).
        ("America/New_York", date(2026, 3, 8), time(2, 30), datetime(2026, 3, 8, 7, 30)),
        ("Europe/Amsterdam", date(2026, 3, 29), time(2, 30), datetime(2026, 3, 29, 1, 30)),
        # Fall back: 01:30 happens twice; the first (daylight) occurrence wins.
        ("America/New_York", date(2026, 11, 1), time(1, 30), datetime(2026, 11, 1, 5, 30)),
        ("Europe/Amsterdam", date(2026, 10, 25), time(2, 30), datetime(2026, 10, 25, 0, 30)),
        # An ordinary time on either side of the change.
        ("America/New_York", date(2026, 3, 6), time(10, 0), datetime(2026, 3, 6, 15, 0)),
        ("America/New_York", date(2026, 3, 9), time(10, 0), datetime(2026, 3, 9, 14, 0)),
    ],
    ids=["us-gap", "eu-gap", "us-overlap", "eu-overlap", "us-winter", "us-summer"],
)
def test_resolve_local(zone_name: str, day: date, wall: time, expected_utc: datetime) -> None:
    assert resolve_local(day, wall, zone(zone_name)) == expected_utc.replace(tzinfo=UTC)


def test_gap_time_reads_back_one_hour_later() -> None:
    instant = resolve_local(date(2026, 3, 8), time(2, 30), zone("America/New_York"))
    assert instant.astimezone(zone("America/New_York")).time() == time(3, 30)


def test_scheduling_zone_uses_contact_zone_then_default_then_fixed() -> None:
    per_contact = make_cadence(settings={"timezone": "contact", "default_timezone": "Asia/Tokyo"})
    with_zone = Contact("a@x.example", {}, "Europe/Berlin", 1)
    without = Contact("b@x.example", {}, None, 2)
    assert scheduling_zone(per_contact, with_zone).key == "Europe/Berlin"
    assert scheduling_zone(per_contact, without).key == "Asia/Tokyo"
    fixed = make_cadence(settings={"timezone": "Europe/London"})
    assert scheduling_zone(fixed, with_zone).key == "Europe/London"


def test_unknown_zone_is_an_input_error() -> None:
    with pytest.raises(InputError, match="Mars/Olympus"):
        zone("Mars/Olympus")
