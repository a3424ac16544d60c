"""Campaign days, holidays, DST resolution and zone choice, with hand-checked dates."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.engine.calendar import (
    ZoneClock,
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


# Zones with unusual changes: half-hour DST (Lord Howe), a skipped date (Apia, 30 Dec
# 2011), DST at midnight (Sao Paulo, Havana), "negative" DST (Dublin), Ramadan pauses
# (Casablanca), a two-hour change (Troll), none at all (UTC, Kathmandu).
ODD_ZONES = [
    "America/New_York",
    "Europe/Amsterdam",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/Sao_Paulo",
    "America/Havana",
    "Europe/Dublin",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "Asia/Kathmandu",
    "UTC",
]


@settings(max_examples=3000, deadline=None)
@given(
    zone_name=st.sampled_from(ODD_ZONES),
    day=st.dates(date(1970, 1, 2), date(2099, 12, 30)),
    wall=st.times(),
    fold=st.sampled_from([0, 1]),
)
def test_zone_clock_is_resolve_local_and_back(
    zone_name: str, day: date, wall: time, fold: int
) -> None:
    tz = zone(zone_name)
    wall = wall.replace(fold=fold)
    utc = resolve_local(day, wall, tz)
    local = utc.astimezone(tz)
    got_utc, got_local = ZoneClock(tz).at(day, wall)
    assert (got_utc, got_utc.tzinfo, got_utc.fold) == (utc, UTC, utc.fold)
    assert got_local.tzinfo is tz
    assert (got_local.isoformat(), got_local.fold) == (local.isoformat(), local.fold)


@pytest.mark.parametrize(
    ("zone_name", "day"),
    [
        ("America/New_York", date(2026, 3, 8)),  # 02:00 → 03:00
        ("America/New_York", date(2026, 11, 1)),  # 02:00 → 01:00
        ("Pacific/Apia", date(2011, 12, 29)),  # the day before the date that was skipped
        ("Pacific/Apia", date(2011, 12, 31)),
        ("Australia/Lord_Howe", date(2026, 4, 5)),  # 02:00 → 01:30
    ],
)
def test_zone_clock_on_days_around_a_change(zone_name: str, day: date) -> None:
    tz = zone(zone_name)
    clock = ZoneClock(tz)
    for minute in range(0, 24 * 60, 10):
        for fold in (0, 1):
            wall = time(minute // 60, minute % 60, fold=fold)
            utc = resolve_local(day, wall, tz)
            got_utc, got_local = clock.at(day, wall)
            assert got_utc == utc
            assert got_local.isoformat() == utc.astimezone(tz).isoformat()


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
