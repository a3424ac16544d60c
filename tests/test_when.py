"""WHEN and --send-at parsing (SPEC §6)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from cadence_engine.engine.errors import UsageError
from cadence_engine.engine.when import SendAt, parse_send_at, parse_when

NOW = datetime(2026, 3, 6, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("NOW", NOW),
        ("2026-03-02T09:00:00Z", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        ("2026-03-02T09:00+01:00", datetime(2026, 3, 2, 8, 0, tzinfo=UTC)),
        # Naive: read in the default zone (New York is UTC-5 in early March).
        ("2026-03-02T09:00", datetime(2026, 3, 2, 14, 0, tzinfo=UTC)),
        ("2026-03-02 09:00", datetime(2026, 3, 2, 14, 0, tzinfo=UTC)),
        ("2026-03-02", datetime(2026, 3, 2, 5, 0, tzinfo=UTC)),
        # Naive in the spring-forward gap moves forward like every scheduled time.
        ("2026-03-08T02:30", datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, "America/New_York", now=NOW) == expected


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01T09:00", "09:00", ""])
def test_bad_when_is_a_usage_error_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError, match="--start") as info:
        parse_when(text, "UTC", now=NOW)
    assert info.value.exit_code == 2
    assert "ISO 8601" in str(info.value)


def test_send_at_time_of_day() -> None:
    assert parse_send_at("09:30", "UTC", now=NOW) == SendAt(time_of_day=time(9, 30))
    assert parse_send_at("7:05", "UTC", now=NOW) == SendAt(time_of_day=time(7, 5))
    assert str(SendAt(time_of_day=time(7, 5))) == "07:05"


def test_send_at_instant() -> None:
    got = parse_send_at("2026-03-09T10:00", "Europe/Amsterdam", now=NOW)
    assert got == SendAt(instant=datetime(2026, 3, 9, 9, 0, tzinfo=UTC))
    assert str(got) == "2026-03-09T09:00:00Z"


def test_bad_send_at_names_the_option() -> None:
    with pytest.raises(UsageError, match="--send-at '25:00'"):
        parse_send_at("25:00", "UTC", now=NOW)


def test_send_at_needs_exactly_one_meaning() -> None:
    with pytest.raises(ValueError):
        SendAt()


@pytest.mark.parametrize("text", ["25:00", "9:75", "12:00:00", "soon", "2026-13-01T09:00"])
def test_bad_send_at_hint_names_both_forms(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_send_at(text, "America/New_York", now=NOW)
    message = info.value.message
    assert message.startswith(f"--send-at {text!r} is not")
    hint = info.value.hint or ""
    assert "HH:MM" in hint and "2026-03-02T09:00Z" in hint and "default_timezone" in hint


def test_a_time_like_send_at_out_of_range_says_time_of_day() -> None:
    with pytest.raises(UsageError, match=r"'25:00' is not a valid time of day \(HH:MM"):
        parse_send_at("25:00", "UTC", now=NOW)
