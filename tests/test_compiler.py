"""Hand-checked schedules: every expected instant is written out and checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pytest

from cadence_engine.engine.compiler import (
    DailyLimit,
    Launch,
    compile_plan,
    due_after_reference,
    plan_contact,
    same_time_reference,
)
from cadence_engine.engine.contacts import Contact
from cadence_engine.engine.errors import UsageError
from cadence_engine.engine.model import Cadence
from cadence_engine.engine.plan import Action, Dependency, DependencyKind, PlannedStep
from cadence_engine.engine.when import SendAt

from .helpers.plan_cadences import email, make_cadence, task


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def who(tz: str | None = None, n: int = 1) -> Contact:
    return Contact(f"c{n}@example.com", {"email": f"c{n}@example.com"}, tz, n)


def plan(
    cadence: Cadence, contacts: list[Contact], start: datetime, send_at: SendAt | None = None
) -> list[PlannedStep]:
    return list(compile_plan(cadence, contacts, Launch(start, send_at)))


def dues(rows: list[PlannedStep]) -> list[datetime]:
    return [r.due_utc for r in rows]


def walls(rows: list[PlannedStep]) -> list[str]:
    return [r.due_local.strftime("%a %Y-%m-%d %H:%M %Z") for r in rows]


AT10: Any = {"at": "10:00"}


def test_weekends_and_holidays_are_skipped() -> None:
    cad = make_cadence(
        [email("d1", 1, AT10), email("d2", 2, AT10), email("d3", 3, AT10)],
        settings={"holidays": ["2026-12-25"], "default_timezone": "Europe/London"},
    )
    # Launch Thu 24 Dec 07:00 London; Fri 25 is a holiday, then the weekend.
    rows = plan(cad, [who()], utc(2026, 12, 24, 7))
    assert walls(rows) == [
        "Thu 2026-12-24 10:00 GMT",
        "Mon 2026-12-28 10:00 GMT",
        "Tue 2026-12-29 10:00 GMT",
    ]


def test_calendar_days_without_skip_weekends() -> None:
    cad = make_cadence(
        [email("d1", 1, AT10), email("d2", 2, AT10)], settings={"skip_weekends": False}
    )
    rows = plan(cad, [who()], utc(2026, 3, 7, 7))  # a Saturday
    assert dues(rows) == [utc(2026, 3, 7, 10), utc(2026, 3, 8, 10)]


def test_us_and_eu_contacts_across_their_different_dst_changes() -> None:
    # Launch Fri 6 Mar 2026 06:00Z. US clocks change on Sun 8 Mar, EU on Sun 29 Mar.
    # Business days: day 1 = Fri 6 Mar, day 2 = Mon 9 Mar, day 17 = Mon 30 Mar.
    cad = make_cadence([email("d1", 1, AT10), email("d2", 2, AT10), email("d17", 17, AT10)])
    us, eu = who("America/New_York", 1), who("Europe/Amsterdam", 2)
    rows = plan(cad, [us, eu], utc(2026, 3, 6, 6))
    assert dues(rows[:3]) == [utc(2026, 3, 6, 15), utc(2026, 3, 9, 14), utc(2026, 3, 30, 14)]
    assert dues(rows[3:]) == [utc(2026, 3, 6, 9), utc(2026, 3, 9, 9), utc(2026, 3, 30, 8)]
    assert all(r.due_local.time() == time(10, 0) for r in rows)
    assert [r.zone for r in rows] == ["America/New_York"] * 3 + ["Europe/Amsterdam"] * 3


def test_contact_without_zone_uses_default_timezone() -> None:
    cad = make_cadence(settings={"default_timezone": "Asia/Tokyo"})
    (row,) = plan(cad, [who(None)], utc(2026, 3, 5, 0))  # 09:00 Thu in Tokyo
    assert row.zone == "Asia/Tokyo"
    assert row.due_utc == utc(2026, 3, 5, 1)  # 10:00 JST


def test_fixed_zone_overrides_the_contact_zone() -> None:
    cad = make_cadence(settings={"timezone": "Europe/London"})
    (row,) = plan(cad, [who("Asia/Tokyo")], utc(2026, 3, 5, 0))
    assert (row.zone, row.due_utc) == ("Europe/London", utc(2026, 3, 5, 10))


def test_send_window_pushes_to_the_next_opening() -> None:
    cad = make_cadence(
        [email("early", 1, {"at": "07:00"}), email("late", 2, {"at": "19:00"})],
        settings={"send_window": {"start": "08:00", "end": "18:00"}},
    )
    rows = plan(cad, [who()], utc(2026, 3, 5, 0))  # Thu
    # early: 07:00 → 08:00 same day; late: Fri 19:00 → next opening Mon 08:00.
    assert dues(rows) == [utc(2026, 3, 5, 8), utc(2026, 3, 9, 8)]
    assert [r.moved for r in rows] == ["send window", "send window"]


def test_daily_limit_overflow_moves_to_the_next_day_with_room() -> None:
    cad = make_cadence(
        [email("one", 1, AT10), task("call", 1, at="11:00"), email("two", 2, AT10)],
        settings={"daily_limit": 2},
    )
    people = [who(n=n) for n in (1, 2, 3)]
    rows = plan(cad, people, utc(2026, 3, 5, 0))  # Thu
    by = {(r.contact, r.step_id): r for r in rows}
    assert by[("c1@example.com", "one")].due_utc == utc(2026, 3, 5, 10)
    assert by[("c2@example.com", "one")].due_utc == utc(2026, 3, 5, 10)
    # c1 and c2 fill Thursday (step one) and Friday (step two) before c3 is scheduled, so
    # c3's first email moves to Monday, same time; its day-1 call follows it there, and its
    # day-2 email keeps a campaign day's gap (Tuesday) instead of going out at once with it.
    assert by[("c2@example.com", "two")].due_utc == utc(2026, 3, 6, 10)
    third = [r for r in rows if r.contact == "c3@example.com"]
    assert dues(third) == [utc(2026, 3, 9, 10), utc(2026, 3, 9, 10), utc(2026, 3, 10, 10)]
    assert [r.moved for r in third] == ["daily limit", "after previous step", "after previous step"]


def test_daily_limit_seeded_by_the_runner() -> None:
    cad = make_cadence(settings={"daily_limit": 1})
    limit = DailyLimit(1, {("dana@acme.example", datetime(2026, 3, 5).date()): 1})
    rows = plan_contact(cad, who(), Launch(utc(2026, 3, 5, 0)), limit=limit)
    assert dues(rows) == [utc(2026, 3, 6, 10)]


def test_a_schedule_is_taken_whole_or_not_at_all() -> None:
    monday, tuesday = datetime(2026, 3, 9).date(), datetime(2026, 3, 10).date()
    limit = DailyLimit(3, {("dana@acme.example", tuesday): 2})
    assert limit.take("dana@acme.example", [(monday, 1), (tuesday, 1)])
    assert (limit.room("dana@acme.example", monday), limit.room("dana@acme.example", tuesday)) == (
        2,
        0,
    )
    # Tuesday is full now: nothing is booked, Monday's email is given back.
    assert not limit.take("dana@acme.example", [(monday, 2), (tuesday, 1)])
    assert limit.room("dana@acme.example", monday) == 2
    assert limit.take("dana@acme.example", [(monday, 2)])
    assert limit.room("dana@acme.example", monday) == 0


STP = "same_time_as_previous"


def test_same_time_copies_the_previous_email_on_an_earlier_day() -> None:
    cad = make_cadence([email("a", 1, {"at": "09:45"}), task("call", 2), email("b", 3, STP)])
    rows = plan(cad, [who("Europe/Berlin")], utc(2026, 3, 5, 0))
    assert walls(rows) == [
        "Thu 2026-03-05 09:45 CET",
        "Fri 2026-03-06 09:00 CET",
        "Mon 2026-03-09 09:45 CET",
    ]
    assert same_time_reference(cad, cad.step("b")) == cad.step("a")


def test_same_time_skips_a_same_day_email_for_the_most_recent_earlier_day() -> None:
    cad = make_cadence(
        [email("a", 1, {"at": "08:30"}), email("b", 2, {"at": "07:15"}), email("c", 2, STP)]
    )
    rows = plan(cad, [who()], utc(2026, 3, 5, 0))
    # c's previous email (b) is on the same day, so c copies a (08:30), after b at 07:15.
    assert dues(rows) == [utc(2026, 3, 5, 8, 30), utc(2026, 3, 6, 7, 15), utc(2026, 3, 6, 8, 30)]
    assert same_time_reference(cad, cad.step("c")) == cad.step("a")


def test_same_time_on_day_one_without_an_earlier_email_is_the_launch_instant() -> None:
    cad = make_cadence([task("call", 1, at="06:00"), email("a", 1, STP)])
    rows = plan(cad, [who()], utc(2026, 3, 5, 7, 42))
    assert dues(rows) == [utc(2026, 3, 5, 7, 42), utc(2026, 3, 5, 7, 42)]
    assert rows[0].moved == "launch time passed"


def test_same_time_after_an_email_task_depends_on_its_real_send_time() -> None:
    cad = make_cadence(
        [email("manual", 1, "task"), email("auto", 2, STP), email("auto2", 3, STP)],
        settings={"send_window": {"start": "08:30", "end": "17:00"}},
    )
    rows = plan(cad, [who()], utc(2026, 3, 5, 0))
    # The task is due at the window start; the plan shows that as the provisional time.
    assert dues(rows) == [utc(2026, 3, 5, 8, 30), utc(2026, 3, 6, 8, 30), utc(2026, 3, 9, 8, 30)]
    assert rows[0].action is Action.EMAIL_TASK
    assert rows[1].depends_on == (
        Dependency(DependencyKind.TASK, "manual"),
        Dependency(DependencyKind.SENT_TIME, "manual"),
    )
    # auto2 copies auto, whose time is only known once manual is sent: it depends too.
    assert Dependency(DependencyKind.SENT_TIME, "auto") in rows[2].depends_on


def test_due_after_reference_uses_the_real_send_time_inside_the_window() -> None:
    cad = make_cadence(settings={"send_window": {"start": "08:00", "end": "18:00"}})
    step = cad.steps[0]
    day = datetime(2026, 3, 6).date()  # Fri
    assert due_after_reference(cad, step, "UTC", day, utc(2026, 3, 5, 13, 7)) == utc(
        2026, 3, 6, 13, 7
    )
    # Sent at 19:30 → Friday 19:30 is outside the window → Monday 08:00.
    assert due_after_reference(cad, step, "UTC", day, utc(2026, 3, 5, 19, 30)) == utc(2026, 3, 9, 8)


def test_tasks_are_due_at_their_time_else_window_start_else_nine() -> None:
    steps = [task("c1", 1, at="11:00"), task("c2", 2), task("c3", 3, "custom", title="T")]
    plain = plan(make_cadence(steps), [who()], utc(2026, 3, 5, 0))
    assert dues(plain) == [utc(2026, 3, 5, 11), utc(2026, 3, 6, 9), utc(2026, 3, 9, 9)]
    windowed = make_cadence(steps, settings={"send_window": {"start": "08:15", "end": "17:00"}})
    assert dues(plan(windowed, [who()], utc(2026, 3, 5, 0)))[1] == utc(2026, 3, 6, 8, 15)


def test_steps_after_a_task_are_held_by_it() -> None:
    cad = make_cadence(
        [email("a", 1, AT10), task("call", 2), email("b", 3, AT10), task("li", 4, "inmail")]
    )
    rows = plan(cad, [who()], utc(2026, 3, 5, 0))
    assert [r.depends_on for r in rows] == [
        (),
        (),
        (Dependency(DependencyKind.TASK, "call"),),
        (Dependency(DependencyKind.TASK, "call"),),
    ]
    assert [r.action for r in rows] == [
        Action.SEND_EMAIL,
        Action.CALL_TASK,
        Action.SEND_EMAIL,
        Action.INMAIL_TASK,
    ]


def test_late_day_launch_goes_out_at_the_launch_instant() -> None:
    cad = make_cadence([email("a", 1, AT10), email("b", 2, AT10)])
    rows = plan(cad, [who("America/Chicago")], utc(2026, 3, 5, 22, 5))  # 16:05 CST Thu
    assert dues(rows) == [utc(2026, 3, 5, 22, 5), utc(2026, 3, 6, 16)]
    assert rows[0].moved == "launch time passed"


def test_late_day_launch_after_the_window_goes_to_the_next_opening() -> None:
    cad = make_cadence(settings={"send_window": {"start": "08:00", "end": "17:00"}})
    (row,) = plan(cad, [who("America/Chicago")], utc(2026, 3, 5, 23, 30))  # 17:30 CST Thu
    assert row.due_utc == utc(2026, 3, 6, 14)  # Fri 08:00 CST
    assert row.moved == "send window"


def test_choose_at_launch_without_send_at_is_a_usage_error() -> None:
    cad = make_cadence([email("intro", 1, "choose_at_launch")])
    with pytest.raises(UsageError, match="--send-at") as info:
        plan(cad, [who()], utc(2026, 3, 5, 0))
    assert "intro" in str(info.value)


def test_choose_at_launch_with_a_time_of_day_is_per_contact_zone() -> None:
    cad = make_cadence([email("intro", 1, "choose_at_launch"), email("b", 2, STP)])
    rows = plan(
        cad,
        [who("America/New_York", 1), who("Europe/Paris", 2)],
        utc(2026, 3, 5, 6),  # Thu 01:00 in New York, 07:00 in Paris
        SendAt(time_of_day=time(9, 30)),
    )
    assert dues(rows) == [
        utc(2026, 3, 5, 14, 30),
        utc(2026, 3, 6, 14, 30),
        utc(2026, 3, 5, 8, 30),
        utc(2026, 3, 6, 8, 30),
    ]


def test_send_at_instant_overrides_the_first_step_and_starts_day_one_then() -> None:
    cad = make_cadence([email("intro", 1, AT10), email("b", 2, AT10)])
    rows = plan(cad, [who()], utc(2026, 3, 5, 0), SendAt(instant=utc(2026, 3, 9, 7, 45)))
    assert dues(rows) == [utc(2026, 3, 9, 7, 45), utc(2026, 3, 10, 10)]


def test_earlier_time_on_the_same_day_goes_right_after_the_step_before() -> None:
    cad = make_cadence([email("a", 2, {"at": "15:00"}), task("c", 2, at="09:00")])
    rows = plan(cad, [who()], utc(2026, 3, 5, 0))
    assert dues(rows) == [utc(2026, 3, 6, 15), utc(2026, 3, 6, 15)]
    assert rows[1].moved == "after previous step"


def test_follow_ups_carry_their_thread() -> None:
    cad = make_cadence([email("a", 1, AT10), email("b", 2, AT10, template="c", follow_up=True)])
    rows = list(compile_plan(cad, [who()], Launch(utc(2026, 3, 5, 0)), render=True))
    assert rows[1].thread_step_id == "a"
    assert rows[1].subject == "Re: Hello there"
    assert rows[1].body is not None and "> Body A" in rows[1].body


def test_a_push_onto_the_next_step_keeps_a_campaign_day_between_them() -> None:
    cad = make_cadence(
        [
            email("first", 1, AT10),
            email("copy", 2, "same_time_as_previous"),
            email("later", 3, {"at": "09:00"}),
        ],
        settings={
            "send_window": {"start": "08:00", "end": "18:00"},
            "holidays": ["2026-03-09"],
            "default_timezone": "America/New_York",
        },
    )
    # Launch Fri 6 Mar 20:00 EST: day 1 is Friday, but 10:00 is gone and 20:00 is past the
    # window, so `first` goes to the next opening: Mon 9 is a holiday → Tue 10 08:00.
    # `copy` (day 2 = Tue 10) copies 08:00, the same instant as `first`: it moves to the
    # next campaign day, Wed 11 08:00. `later` (day 3 = Wed 11 09:00) would share that
    # date: it moves on a campaign day too, to Thu 12 09:00, its own time.
    rows = plan(cad, [who()], utc(2026, 3, 7, 1))
    assert walls(rows) == [
        "Tue 2026-03-10 08:00 EDT",
        "Wed 2026-03-11 08:00 EDT",
        "Thu 2026-03-12 09:00 EDT",
    ]
    assert dues(rows) == [utc(2026, 3, 10, 12), utc(2026, 3, 11, 12), utc(2026, 3, 12, 13)]
    assert [r.moved for r in rows] == ["send window", "after previous step", "after previous step"]


def test_a_day_one_moved_past_the_launch_date_keeps_day_two_a_campaign_day_later() -> None:
    cad = make_cadence(
        [email("s1", 1, {"at": "09:00"}), email("s2", 1, {"at": "17:00"}),
         email("s3", 2, {"at": "12:00"}), email("s4", 3, {"at": "12:30"})],
        settings={"send_window": {"start": "08:00", "end": "18:00"},
                  "default_timezone": "America/New_York"},
    )  # fmt: skip
    # Launched Mon 2 Mar 20:00 EST: day 1's times are gone and the window is shut, so both
    # go at Tue 08:00. Day 2 (Tue 12:00) would share that date: Wed 12:00; then day 3
    # (Wed 12:30) would share Wednesday: Thu 12:30.
    rows = plan(cad, [who()], utc(2026, 3, 3, 1))
    assert walls(rows) == [
        "Tue 2026-03-03 08:00 EST",
        "Tue 2026-03-03 08:00 EST",
        "Wed 2026-03-04 12:00 EST",
        "Thu 2026-03-05 12:30 EST",
    ]


def test_daily_limit_never_sends_two_emails_of_one_contact_at_once() -> None:
    cad = make_cadence(
        [email("s1", 1, AT10), email("s2", 2, "same_time_as_previous")],
        settings={"daily_limit": 2},
    )
    people = [who(n=n) for n in range(1, 6)]
    rows = plan(cad, people, utc(2026, 3, 2, 0))  # Mon
    got = [(r.contact[:2], r.step_id, r.due_local.strftime("%a %H:%M")) for r in rows]
    # c1, c2 fill Mon (s1) and Tue (s2); c3, c4 move s1 to Wed and s2 a day later, Thu;
    # c5 finds Wed and Thu full: s1 on Fri, s2 on the next campaign day, Mon.
    assert got == [
        ("c1", "s1", "Mon 10:00"),
        ("c1", "s2", "Tue 10:00"),
        ("c2", "s1", "Mon 10:00"),
        ("c2", "s2", "Tue 10:00"),
        ("c3", "s1", "Wed 10:00"),
        ("c3", "s2", "Thu 10:00"),
        ("c4", "s1", "Wed 10:00"),
        ("c4", "s2", "Thu 10:00"),
        ("c5", "s1", "Fri 10:00"),
        ("c5", "s2", "Mon 10:00"),
    ]


def test_same_time_copies_the_planned_time_of_an_email_moved_by_the_send_window() -> None:
    cad = make_cadence(
        [email("early", 1, {"at": "06:30"}), email("copy", 2, "same_time_as_previous")],
        settings={"send_window": {"start": "08:00", "end": "18:00"}},
    )
    # Thu 5 Mar: early 06:30 → window opening 08:00; copy (Fri 6) copies the planned 08:00,
    # the time `early` will go out (at run time the runner uses the real send time, R4).
    rows = plan(cad, [who()], utc(2026, 3, 5, 0))
    assert dues(rows) == [utc(2026, 3, 5, 8), utc(2026, 3, 6, 8)]
    assert [r.moved for r in rows] == ["send window", None]
    assert rows[1].depends_on == ()


def test_an_email_task_is_due_at_its_own_at_time() -> None:
    # SPEC §5: tasks are due at their `at` time if given, email tasks included.
    manual = {"id": "manual", "day": 2, "email": {"template": "a", "send": "task", "at": "11:15"}}
    cad = make_cadence(
        [email("d1", 1, AT10), manual, email("d3", 3, "task")],
        settings={
            "default_timezone": "Europe/Berlin",
            "send_window": {"start": "08:30", "end": "17:00"},
        },
    )
    rows = plan(cad, [who()], utc(2026, 3, 2, 6))
    assert [r.action for r in rows] == [Action.SEND_EMAIL, Action.EMAIL_TASK, Action.EMAIL_TASK]
    assert walls(rows) == [
        "Mon 2026-03-02 10:00 CET",
        "Tue 2026-03-03 11:15 CET",  # its own `at`
        "Wed 2026-03-04 08:30 CET",  # no `at`: the send window's start
    ]
