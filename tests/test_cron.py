"""`--every` cron expressions: crontab shorthands, and each mistake named by its field."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cadence_engine.engine.cron import FIELDS, parse_cron
from cadence_engine.engine.errors import UsageError

from .helpers.runner_env import write_cadence, write_contacts

MONDAY = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after"),
    [
        ("@hourly", datetime(2026, 3, 2, 11, 0, tzinfo=UTC)),
        ("@daily", datetime(2026, 3, 3, 0, 0, tzinfo=UTC)),
        ("@weekly", datetime(2026, 3, 8, 0, 0, tzinfo=UTC)),
        ("@monthly", datetime(2026, 4, 1, 0, 0, tzinfo=UTC)),
        ("@Yearly", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("*/20 9-17 * * mon-fri", datetime(2026, 3, 2, 10, 40, tzinfo=UTC)),
        ("0 9 * jan,mar *", datetime(2026, 3, 3, 9, 0, tzinfo=UTC)),
    ],
)
def test_crontab_forms_are_accepted(expression: str, after: datetime) -> None:
    assert parse_cron(expression).next_after(MONDAY) == after


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("61 * * * *", "the minute is 0–59, not 61"),
        ("0 25 * * *", "the hour is 0–23, not 25"),
        ("0 0 0 * *", "the day of month is 1–31, not 0"),
        ("0 0 * 13 *", "the month is 1–12, not 13"),
        ("0 0 * * 8", "the day of week is 0–7, not 8"),
        ("*/0 * * * *", "the minute field's step is 0"),
        ("0 */0 * * *", "the hour field's step is 0"),
        ("0 9 * * 5-1", "the day of week range 5-1 is reversed; write 1-5"),
        ("50-10 * * * *", "the minute range 50-10 is reversed"),
        ("0 9 * * funday", "the day of week field has 'funday', not a number"),
        ("@often", "unknown shorthand '@often'"),
        ("* * * *", "has 5 fields"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_a_mistake_names_its_field(expression: str, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_cron(expression)
    assert reason in str(caught.value)
    assert caught.value.hint and "@hourly" in caught.value.hint


@given(st.tuples(*(st.integers(f.low, f.high) for f in FIELDS)))
def test_every_in_range_value_is_accepted(values: tuple[int, ...]) -> None:
    minute, hour, day, month, weekday = values
    if day > 29 and month == 2:
        return  # a date that never comes: refused as "never fires"
    if day == 31 and month in (4, 6, 9, 11):
        return
    assert parse_cron(f"{minute} {hour} {day} {month} {weekday}").fields.split() == [
        str(v) for v in values
    ]


def test_run_every_runs_a_pass_at_once_and_says_when_the_next_is(tmp_path: Path) -> None:
    cadence = write_cadence(tmp_path)
    contacts = write_contacts(tmp_path, 2)
    env = {
        **os.environ,
        "CADENCE_DB": str(tmp_path / "state.db"),
        "CADENCE_TRANSPORT": f"outbox:{tmp_path / 'outbox'}",
        "NO_COLOR": "1",
    }
    cli = [sys.executable, "-m", "cadence_engine.cli"]
    subprocess.run(
        [*cli, "launch", str(cadence), "--contacts", str(contacts), "--now", "2026-03-02T08:00Z"],
        env=env,
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [*cli, "run", "--every", "@daily", "--now", "2026-03-02T10:00Z"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        upcoming = proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert first.startswith("2026-03-02 10:00:") and "sent 2" in first, (first, err)
    assert upcoming == "next pass at 2026-03-03 00:00:00Z (@daily)\n"
    assert proc.returncode == 0, err
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2
