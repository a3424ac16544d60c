"""Properties of the scheduler over generated cadences, zones and launch instants."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cadence_engine.engine.calendar import zone
from cadence_engine.engine.compiler import Launch, compile_plan
from cadence_engine.engine.contacts import Contact
from cadence_engine.engine.model import Cadence
from cadence_engine.engine.plan import Action, PlannedStep

from .helpers.plan_cadences import make_cadence

ZONES = ["America/New_York", "Europe/Amsterdam", "Australia/Sydney", "Asia/Kolkata", "UTC"]
HOLIDAYS = [date(2026, 3, 9), date(2026, 3, 30), date(2026, 10, 26), date(2026, 11, 2)]
times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


@st.composite
def cadences(draw: st.DrawFn) -> Cadence:
    n = draw(st.integers(1, 7))
    days = sorted(draw(st.lists(st.integers(1, 12), min_size=n, max_size=n)))
    days[0] = 1
    steps: list[dict[str, Any]] = []
    for i, day in enumerate(days):
        kind = draw(st.sampled_from(["at", "same", "task", "call", "custom"]))
        if i == 0 and kind == "same":
            kind = "at"
        sid = f"s{i}"
        if kind in ("call", "custom"):
            body: dict[str, Any] = {"title": "T"} if kind == "custom" else {}
            if draw(st.booleans()):
                body["at"] = draw(times).strftime("%H:%M")
            steps.append({"id": sid, "day": day, kind: body})
            continue
        send: Any = {
            "at": {"at": draw(times).strftime("%H:%M")},
            "same": "same_time_as_previous",
            "task": "task",
        }[kind]
        steps.append({"id": sid, "day": day, "email": {"template": "a", "send": send}})
    config: dict[str, Any] = {
        "skip_weekends": draw(st.booleans()),
        "holidays": draw(st.lists(st.sampled_from(HOLIDAYS), unique=True)),
    }
    if draw(st.booleans()):
        start = draw(st.integers(6, 11))
        config["send_window"] = {"start": f"{start:02d}:00", "end": f"{start + 8:02d}:00"}
    if draw(st.booleans()):
        config["daily_limit"] = draw(st.integers(1, 3))
    return make_cadence(steps, settings=config)


launches = st.builds(
    lambda d, m: datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=d, minutes=m),
    st.integers(0, 250),
    st.integers(0, 24 * 60 - 1),
)
contact_lists = st.lists(st.sampled_from([*ZONES, None]), min_size=1, max_size=4).map(
    lambda zs: [Contact(f"c{i}@example.com", {}, z, i) for i, z in enumerate(zs)]
)


def plan(cad: Cadence, contacts: list[Contact], start: datetime) -> list[PlannedStep]:
    return list(compile_plan(cad, contacts, Launch(start)))


def per_contact(rows: list[PlannedStep]) -> dict[str, list[PlannedStep]]:
    out: dict[str, list[PlannedStep]] = {}
    for r in rows:
        out.setdefault(r.contact, []).append(r)
    return out


@settings(max_examples=150, deadline=None)
@given(cadences(), contact_lists, launches)
def test_due_times_never_go_back_and_never_precede_launch(
    cad: Cadence, contacts: list[Contact], start: datetime
) -> None:
    for rows in per_contact(plan(cad, contacts, start)).values():
        dues = [r.due_utc for r in rows]
        assert dues == sorted(dues)
        assert dues[0] >= start
        local_days = [r.due_local.date() for r in rows]
        assert local_days == sorted(local_days)


@settings(max_examples=150, deadline=None)
@given(cadences(), contact_lists, launches)
def test_automatic_emails_avoid_weekends_holidays_and_stay_in_the_window(
    cad: Cadence, contacts: list[Contact], start: datetime
) -> None:
    s = cad.settings
    for r in plan(cad, contacts, start):
        if r.action is not Action.SEND_EMAIL:
            continue
        local = r.due_local
        assert local.date() not in s.holidays
        if s.skip_weekends:
            assert local.weekday() < 5
        if s.send_window is not None:
            assert s.send_window.start <= local.time().replace(tzinfo=None) < s.send_window.end


@settings(max_examples=150, deadline=None)
@given(cadences(), contact_lists, launches)
def test_wall_time_is_the_intended_one_except_in_a_dst_gap(
    cad: Cadence, contacts: list[Contact], start: datetime
) -> None:
    for r in plan(cad, contacts, start):
        step = cad.step(r.step_id)
        intended = step.email.send.at if step.email is not None else step.at
        if intended is None or r.moved is not None or (r.step_index == 0 and r.depends_on):
            continue
        wall = r.due_local.time().replace(tzinfo=None)
        if wall != intended:
            # Only a spring-forward gap may change it: the intended wall time does not
            # exist that day, and the instant is exactly one gap later.
            tz = zone(r.zone)
            naive = datetime.combine(r.due_local.date(), intended)
            round_trip = naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)
            assert round_trip.time() != intended
            assert r.due_utc == naive.replace(tzinfo=tz).astimezone(UTC)


@settings(max_examples=60, deadline=None)
@given(cadences(), contact_lists, launches)
def test_same_inputs_same_plan(cad: Cadence, contacts: list[Contact], start: datetime) -> None:
    assert plan(cad, contacts, start) == plan(cad, contacts, start)


@settings(max_examples=150, deadline=None)
@given(
    cadences(),
    st.lists(st.sampled_from([*ZONES, None]), min_size=1, max_size=30),
    launches,
    st.integers(1, 4),
)
def test_shared_schedules_equal_a_plain_per_contact_computation(
    cad: Cadence, zones: list[str | None], start: datetime, daily: int
) -> None:
    """The compiler's shared schedules (one per zone, reused while their days have room)
    give every contact exactly what building its schedule anew, in input order, gives."""
    from cadence_engine.engine.calendar import scheduling_zone_name
    from cadence_engine.engine.compiler import DailyLimit, rows_for
    from cadence_engine.engine.schedule import build_schedule

    cad = replace(cad, settings=replace(cad.settings, daily_limit=daily))
    contacts = [Contact(f"c{i}@example.com", {}, z, i) for i, z in enumerate(zones)]
    launch = Launch(start)
    limit = DailyLimit(daily)
    expected: list[PlannedStep] = []
    for c in contacts:
        name = scheduling_zone_name(cad, c.timezone)
        expected.extend(rows_for(cad, c, build_schedule(cad, name, launch, limit=limit)))
    assert list(compile_plan(cad, contacts, launch)) == expected


@settings(max_examples=100, deadline=None)
@given(
    cadences(),
    st.lists(st.sampled_from([*ZONES, None]), min_size=1, max_size=30),
    launches,
    st.integers(1, 3),
)
def test_jsonl_rows_are_the_planned_rows_as_json(
    cad: Cadence, zones: list[str | None], start: datetime, daily: int
) -> None:
    """`plan -f jsonl` encodes each schedule once from fixed parts around the two times:
    its text is exactly `json.dumps(row.as_dict())` per planned row, under a daily limit
    that replaces the schedules contact after contact too."""
    import io
    import json

    from cadence_engine.engine.compiler import schedule_contacts
    from cadence_engine.engine.formats import plan_jsonl
    from cadence_engine.engine.formats.plan_formats import PlanRun

    cad = replace(cad, settings=replace(cad.settings, daily_limit=daily))
    contacts = [Contact(f"c{i}@example.com", {}, z, i) for i, z in enumerate(zones)]
    launch = Launch(start)
    out = io.StringIO()
    rows = plan_jsonl.write(PlanRun(cad, launch), schedule_contacts(cad, contacts, launch), out)
    planned = list(compile_plan(cad, contacts, launch))
    assert rows == len(planned)
    assert out.getvalue() == "".join(
        json.dumps(r.as_dict(), ensure_ascii=False) + "\n" for r in planned
    )
