"""R4 after an email task: the real send time goes on the follower's own campaign day.

The plan gives a `same_time_as_previous` email the time of day of its reference; when the
reference is an email task due after the send window, that provisional time is pushed to
the next opening, a campaign day later. Once the rep sends the task, R2/R4 put the real
send time on the follower's own day (then the window as usual), never on the pushed day.
"""

from __future__ import annotations

import json
from datetime import date, time, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.cli import cadence
from cadence_engine.engine.calendar import is_campaign_day, resolve_local, zone
from cadence_engine.engine.model import SendWindow, Settings
from cadence_engine.engine.policy import into_window, own_day, wall

CADENCE = """\
cadence: 1
name: R4 window
sender: {name: Rep, email: rep@acme.example}
settings: {timezone: UTC, default_timezone: UTC, send_window: {start: "08:30", end: "17:00"}}
templates: {a: {subject: A, body: A}, b: {subject: B, body: B}, c: {subject: C, body: C}}
steps:
  - {id: a, day: 1, email: {template: a, send: task}}
  - {id: b, day: 3, email: {template: b, send: same_time_as_previous}}
  - {id: c, day: 5, email: {template: c, send: same_time_as_previous}}
"""


def _cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> str:
    result = CliRunner().invoke(cadence, list(args), env=env, input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def _due(env: dict[str, str]) -> dict[str, str]:
    shown = json.loads(_cli(env, "enrolments", "show", "f1@ex.example", "-f", "json"))
    return {s["step"]: s["due_utc"] for s in shown["enrolments"][0]["steps"]}


@pytest.mark.parametrize(
    ("sent", "b", "c"),
    [
        # Launched Fri 6 March 17:20 (after the window): day 3 is Tue 10, day 5 Thu 12.
        # Sent on its day at 17:25: b on Tue 10 at 17:25 is after the window → Wed 11 08:30.
        ("2026-03-06T17:25Z", "2026-03-11T08:30:00Z", "2026-03-12T08:30:00Z"),
        # Sent a campaign day late (Mon 9, 11:45): b on Wed 11 at 11:45, c shifted to Fri 13.
        ("2026-03-09T11:45Z", "2026-03-11T11:45:00Z", "2026-03-13T08:30:00Z"),
    ],
    ids=["on-its-day-after-hours", "a-day-late"],
)
def test_the_follower_of_an_email_task_takes_the_send_time_on_its_own_day(
    tmp_path: Path, sent: str, b: str, c: str
) -> None:
    (tmp_path / "r4.yaml").write_text(CADENCE, encoding="utf-8")
    (tmp_path / "f.csv").write_text("email,first_name\nf1@ex.example,F\n", encoding="utf-8")
    env = {
        "CADENCE_DB": str(tmp_path / "c.db"),
        "CADENCE_TRANSPORT": f"outbox:{tmp_path / 'out'}",
    }
    launch = ["launch", str(tmp_path / "r4.yaml"), "--contacts", str(tmp_path / "f.csv")]
    _cli(env, *launch, "--now", "2026-03-06T17:20Z")
    _cli(env, "run", "--once", "--now", "2026-03-06T17:21Z")
    assert _due(env)["b"] == "2026-03-11T08:30:00Z"  # the plan's provisional time, pushed
    _cli(env, "tasks", "send", "1", "--body-file", "-", "--now", sent, stdin=b"Hi\n")
    due = _due(env)
    assert (due["b"], due["c"]) == (b, c)


ZONES = ["UTC", "America/New_York", "Europe/Amsterdam", "Australia/Lord_Howe", "Asia/Kolkata"]
_minutes = st.integers(min_value=0, max_value=24 * 60 - 1)


def _time(minutes: int) -> time:
    return time(minutes // 60, minutes % 60)


@settings(max_examples=300, deadline=None)
@given(
    zone_name=st.sampled_from(ZONES),
    skip_weekends=st.booleans(),
    holiday_offsets=st.sets(st.integers(min_value=0, max_value=20), max_size=4),
    window=st.tuples(_minutes, _minutes).filter(lambda w: w[0] < w[1]),
    own=st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)),
    reference_day=st.integers(min_value=1, max_value=10),
    reference_minutes=_minutes,
)
def test_own_day_inverts_the_plans_window_push(
    zone_name: str,
    skip_weekends: bool,
    holiday_offsets: set[int],
    window: tuple[int, int],
    own: date,
    reference_day: int,
    reference_minutes: int,
) -> None:
    holidays = frozenset(own + timedelta(days=d) for d in holiday_offsets if d)
    rules = Settings(
        skip_weekends=skip_weekends,
        holidays=holidays,
        send_window=SendWindow(_time(window[0]), _time(window[1])),
    )
    while not is_campaign_day(own, skip_weekends=skip_weekends, holidays=holidays):
        own += timedelta(days=1)
    tz = zone(zone_name)
    # The reference (an email task, due at any hour) and the follower's provisional time:
    # the reference's wall time on the follower's own day, then the send window.
    reference = resolve_local(own - timedelta(days=reference_day), _time(reference_minutes), tz)
    copied = wall(reference.astimezone(tz))
    planned = into_window(rules, resolve_local(own, copied, tz), tz)
    found = own_day(rules, int(planned.timestamp()), int(reference.timestamp()), tz)
    assert found == own, (planned.astimezone(tz), copied)
