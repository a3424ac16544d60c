"""The scheduler proper: one contact's steps → due instants, in one scheduling zone.

Order of decisions for each step (SPEC §5/§6, R1–R5), each one only ever moving later:
1. the intended wall time on the step's campaign day (send option, `--send-at` for the
   first step, task default time, `same_time_as_previous` reference);
2. not before the launch instant ("launch time passed", SPEC §6);
3. not before the step listed before it ("after previous step"): on the same campaign
   day right after it (file order); on a later campaign day, when the step before it was
   pushed to (or past) this step's time, the next campaign day after that step's date,
   at this step's own time, so no two steps of a contact go out at once;
4. automatic emails only: inside the send window, else the next opening ("send window");
5. automatic emails only: a day with room under the daily limit ("daily limit").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import NamedTuple

from .calendar import day_dates, next_campaign_day, resolve_local, zone, zone_clock
from .model import DEFAULT_TASK_TIME, Cadence, SendKind, Step, StepKind
from .plan import Action, Dependency, DependencyKind
from .policy import (
    DailyLimit,
    after_previous,
    same_time_reference,
    wall,
    window_opening,
)
from .when import SendAt

__all__ = [
    "ContactSchedule",
    "DailyLimit",
    "Launch",
    "Slot",
    "StepShape",
    "ZonePlanner",
    "action_of",
    "build_schedule",
    "cadence_shape",
    "same_time_reference",
    "thread_of",
]

_TASK_ACTIONS = {
    StepKind.CALL: Action.CALL_TASK,
    StepKind.INMAIL: Action.INMAIL_TASK,
    StepKind.CUSTOM: Action.CUSTOM_TASK,
}


class Launch(NamedTuple):
    """When contacts are enrolled (`start`, aware) and the launch-time send choice (R1)."""

    start: datetime
    send_at: SendAt | None = None


def action_of(step: Step) -> Action:
    if step.email is None:
        return _TASK_ACTIONS[step.kind]
    return Action.EMAIL_TASK if step.email.send.kind is SendKind.TASK else Action.SEND_EMAIL


class Slot(NamedTuple):
    """One step of one schedule: the contact-independent part of a plan row.

    A named tuple, not a dataclass: under a daily limit a plan builds hundreds of
    thousands of them, and a tuple is made several times faster.
    """

    step: Step
    action: Action
    due_utc: datetime
    due_local: datetime
    depends_on: tuple[Dependency, ...]
    thread_step_id: str | None
    moved: str | None


_tuple = tuple.__new__  # a Slot from its fields in order, without the generated __new__


@dataclass(frozen=True, slots=True, eq=False)
class ContactSchedule:
    """A whole schedule in one zone; shared by every contact it fits (identity = key)."""

    zone: str
    slots: tuple[Slot, ...]
    # The daily limit's view: each local date its automatic emails fall on, with how many.
    bookings: tuple[tuple[date, int], ...]


class TimeFrom(enum.Enum):
    """Where a step's intended wall time comes from (before `--send-at`, R1)."""

    AT = "at"  # an automatic email's `send: {at: …}`
    REFERENCE = "reference"  # `same_time_as_previous` (R2): its reference email's time
    TASK = "task"  # a task (an email task too): its own `at`, else the task default


class StepShape(NamedTuple):
    """What a step's schedule needs that is the same in every zone and every launch."""

    step: Step
    action: Action
    time_from: TimeFrom
    reference: int | None  # R2: the index of the email whose wall time it copies
    depends_on: tuple[Dependency, ...]
    thread_step_id: str | None


# A step as `ZonePlanner.build` reads it: step, action, reference, depends_on, thread step,
# campaign date, intended time, why it moved, that time in the zone and its wall time.
_Placing = tuple[
    Step,
    Action,
    int | None,
    tuple[Dependency, ...],
    str | None,
    date,
    datetime | None,
    str | None,
    datetime | None,
    time | None,
]


def cadence_shape(cadence: Cadence) -> tuple[StepShape, ...]:
    """Each step's fixed facts, in file order: worked out once per plan, not per schedule."""
    shapes: list[StepShape] = []
    held_by: str | None = None
    for step in cadence.steps:
        action = action_of(step)
        deps: list[Dependency] = []
        if held_by is not None:
            deps.append(Dependency(DependencyKind.TASK, held_by))  # R5
        reference: int | None = None
        if action is not Action.SEND_EMAIL:
            time_from = TimeFrom.TASK
            held_by = step.id
        elif step.email is not None and step.email.send.kind is SendKind.AT:
            time_from = TimeFrom.AT
        else:  # same_time_as_previous
            time_from = TimeFrom.REFERENCE
            ref = same_time_reference(cadence, step)
            if ref is not None:
                reference = ref.index
                ref_shape = shapes[ref.index]
                if ref_shape.action is Action.EMAIL_TASK or any(
                    dep.kind is DependencyKind.SENT_TIME for dep in ref_shape.depends_on
                ):
                    deps.append(Dependency(DependencyKind.SENT_TIME, ref.id))  # R4
        shapes.append(
            StepShape(step, action, time_from, reference, tuple(deps), thread_of(cadence, step))
        )
    return tuple(shapes)


def thread_of(cadence: Cadence, step: Step) -> str | None:
    """R3: the step a follow-up replies to (the email step directly before it)."""
    if step.email is None or not step.email.follow_up:
        return None
    previous = cadence.previous_email(step)
    return previous.id if previous is not None else None


def build_schedule(
    cadence: Cadence, zone_name: str, launch: Launch, *, limit: DailyLimit | None = None
) -> ContactSchedule:
    """Schedule every step for one scheduling zone (see the module docstring for the order)."""
    return ZonePlanner(cadence, zone_name, launch, cadence_shape(cadence)).build(limit)


class ZonePlanner:
    """The schedules of one cadence, launch and scheduling zone.

    Decisions 1-2 (the intended time, not before the launch) are the same for every
    contact of the zone and are made once; `build` makes decisions 3-5 against the daily
    limit's bookings of the moment. Under a limit a plan of 100,000 contacts builds tens
    of thousands of schedules per list, so the fixed part is worth keeping.
    """

    def __init__(
        self, cadence: Cadence, zone_name: str, launch: Launch, shape: tuple[StepShape, ...]
    ) -> None:
        self.cadence = cadence
        self.zone_name = zone_name
        self.launch = launch
        self.tz = tz = zone(zone_name)
        settings = cadence.settings
        start, send_at = launch.start, launch.send_at
        first_date = start.astimezone(tz).date()
        if send_at is not None and send_at.instant is not None and send_at.instant > start:
            # A send date/time given at launch starts the campaign on that date (R1 override).
            first_date = send_at.instant.astimezone(tz).date()
        dates = day_dates(settings, first_date, max(sh.step.day for sh in shape))
        window = settings.send_window
        task_time = window.start if window else DEFAULT_TASK_TIME
        # Per step, what `build` reads, as one plain tuple (a named tuple's field costs ten
        # times an unpacked one, and a build reads six of them per step): the step's fixed
        # facts (`StepShape`), its campaign day's date, its intended time with why it moved
        # (None: it copies its reference email's wall time, known only once that one is
        # placed), and that time in the zone with its wall time (worked out once).
        self.steps: list[_Placing] = []
        for sh in shape:
            step = sh.step
            d = dates[step.day - 1]
            moved: str | None = None
            due: datetime | None
            send = step.email.send if step.email is not None else None
            chosen = send is not None and send.kind is SendKind.CHOOSE_AT_LAUNCH
            if send_at is not None and (step.index == 0 or chosen):
                if send_at.instant is not None:
                    local = send_at.instant.astimezone(tz)
                    same_day = local.date() == d
                    due = send_at.instant if same_day else resolve_local(d, wall(local), tz)
                    if not same_day and local.date() < d and send_at.instant > start:
                        # The date given is a weekend or holiday: day 1 is the next one.
                        moved = (
                            f"--send-at {local:%a %Y-%m-%d} is not a campaign day, "
                            "day 1 is the next"
                        )
                else:
                    assert send_at.time_of_day is not None
                    due = resolve_local(d, send_at.time_of_day, tz)
            elif sh.time_from is TimeFrom.AT:
                assert send is not None and send.at is not None
                due = resolve_local(d, send.at, tz)
            elif sh.time_from is TimeFrom.REFERENCE:
                if sh.reference is None:
                    # R2: no email on an earlier day → the launch instant (its wall time
                    # later on).
                    due = (
                        start if step.day == 1 else resolve_local(d, wall(start.astimezone(tz)), tz)
                    )
                else:
                    due = None
            else:
                due = resolve_local(d, step.at or task_time, tz)
            if due is not None and due < start:
                due, moved = start, "launch time passed"
            in_zone = due.astimezone(tz) if due is not None else None
            at = wall(in_zone) if in_zone else None
            fixed = (step, sh.action, sh.reference, sh.depends_on, sh.thread_step_id)
            self.steps.append((*fixed, d, due, moved, in_zone, at))

    def build(self, limit: DailyLimit | None = None) -> ContactSchedule:
        """The zone's schedule now, booking its automatic emails in `limit` if given."""
        tz, settings, start = self.tz, self.cadence.settings, self.launch.start
        clock = zone_clock(tz)
        sender = self.cadence.sender.email
        send_email = Action.SEND_EMAIL  # (a local: an enum member's lookup is slow)

        def next_day(d: date) -> date:
            return next_campaign_day(settings, d)

        slots: list[Slot] = []
        bookings: dict[date, int] = {}
        previous: datetime | None = None
        previous_local = start
        previous_day = 0
        for (
            step,
            action,
            reference,
            depends_on,
            thread,
            d,
            intended,
            moved,
            local,
            at,
        ) in self.steps:
            if intended is not None:
                due = intended
            else:
                assert reference is not None
                due, local = clock.at(d, wall(slots[reference].due_local))
                at = None  # (the wall time of `due` differs in a DST gap)
                if due < start:
                    due, moved, local = start, "launch time passed", None
            if previous is not None and step.day > previous_day:
                # The step before it was moved onto this one's date (send window, daily
                # limit, launch time): keep the gap of at least one campaign day.
                due_day = (local or due.astimezone(tz)).date()
                pushed = after_previous(settings, due, due_day, clock, at, previous_local)
                if pushed is not None:
                    (due, local), moved = pushed, "after previous step"
            elif previous is not None and due < previous:
                due, moved, local = previous, "after previous step", previous_local
            # Local times are worked out once per change.
            if local is None:
                local = due.astimezone(tz)
            if action is send_email:
                opening = window_opening(settings, local, tz)
                if opening is not None:
                    (due, local), moved = opening, "send window"
                local_day = local.date()
                if limit is not None:
                    placed = limit.place(sender, local_day, next_day)
                    if placed != local_day:
                        local_day = placed
                        (due, local), moved = clock.at(placed, wall(local)), "daily limit"
                bookings[local_day] = bookings.get(local_day, 0) + 1
            slots.append(_tuple(Slot, (step, action, due, local, depends_on, thread, moved)))
            previous, previous_local, previous_day = due, local, step.day
        return ContactSchedule(self.zone_name, tuple(slots), tuple(bookings.items()))
