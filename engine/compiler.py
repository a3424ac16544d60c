"""Cadence + contacts + launch → plan (SPEC §5, R1–R5). Pure: no clock, no I/O.

A contact's schedule depends on the contact only through its scheduling zone, so the
compiler computes one `ContactSchedule` per zone and shares it between contacts. A daily
limit that is full moves a contact's emails; that schedule depends only on which days are
full, so it too is shared by the following contacts of its zone while its days have room
(contacts in input order, which keeps the result deterministic). The policy itself
(window, limit, R4, R5) is `engine.policy`, shared with the runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from .calendar import scheduling_zone_name
from .contacts import Contact
from .errors import UsageError
from .model import Cadence
from .plan import PlannedStep
from .policy import due_after_reference
from .schedule import (
    ContactSchedule,
    DailyLimit,
    Launch,
    Slot,
    ZonePlanner,
    action_of,
    cadence_shape,
    same_time_reference,
)
from .when import send_at_help

__all__ = [
    "ContactSchedule",
    "DailyLimit",
    "Launch",
    "Scheduler",
    "Slot",
    "action_of",
    "compile_plan",
    "due_after_reference",
    "parse_launch",
    "plan_contact",
    "same_time_reference",
    "schedule_contacts",
]


class Scheduler:
    """Schedules contacts of one launch, caching one schedule per scheduling zone.

    `limit` carries the daily-limit counts; the runner may pass one seeded with the
    emails already booked for the sender so a new launch respects them.
    """

    def __init__(self, cadence: Cadence, launch: Launch, *, limit: DailyLimit | None = None):
        check_launch(cadence, launch)
        self.cadence = cadence
        self.launch = launch
        daily = cadence.settings.daily_limit
        self.limit = limit if limit is not None else (DailyLimit(daily) if daily else None)
        self._shape = cadence_shape(cadence)
        self._sender = cadence.sender.email
        self._planners: dict[str, ZonePlanner] = {}
        self._by_zone: dict[str, ContactSchedule] = {}
        # Per zone: the last schedule moved by the limit. It is what building anew would
        # give while all its days still have room: the days its emails skipped were full
        # and stay full (bookings only grow), and every later choice follows from those.
        self._limited: dict[str, ContactSchedule] = {}

    def schedule(self, contact: Contact) -> ContactSchedule:
        name = scheduling_zone_name(self.cadence, contact.timezone)
        base = self._by_zone.get(name)
        if base is None:
            planner = ZonePlanner(self.cadence, name, self.launch, self._shape)
            self._planners[name] = planner
            base = self._by_zone[name] = planner.build()
        limit = self.limit
        if limit is None:
            return base
        sender = self._sender
        # Once a day of the zone's base schedule is full it stays full: from then on only
        # the moved schedule can be reused.
        known = self._limited.get(name, base)
        if limit.take(sender, known.bookings):
            return known
        # A day is full: this contact's emails move, which can move its later steps too.
        moved = self._planners[name].build(limit)
        self._limited[name] = moved
        return moved


def parse_launch(cadence: Cadence, start: str, send_at: str | None, *, now: datetime) -> Launch:
    """A Launch from the command line's WHEN texts (SPEC §6), read in `default_timezone`."""
    from .when import parse_send_at, parse_when

    zone_name = cadence.settings.default_timezone
    return Launch(
        start=parse_when(start, zone_name, now=now),
        send_at=parse_send_at(send_at, zone_name, now=now) if send_at else None,
    )


def check_launch(cadence: Cadence, launch: Launch) -> None:
    """R1: `choose_at_launch` needs a send time at launch; without one nothing is planned.
    A send date/time before the launch is refused (it would be moved without a word)."""
    if launch.start.tzinfo is None:
        raise ValueError("Launch.start must be timezone-aware")
    if launch.send_at is not None:
        instant = launch.send_at.instant
        if instant is not None and instant < launch.start:
            raise UsageError(
                f"--send-at {instant.astimezone(UTC):%Y-%m-%d %H:%M}Z is before the launch "
                f"(--start {launch.start.astimezone(UTC):%Y-%m-%d %H:%M}Z): the first email "
                "cannot go out "
                "before its contacts are enrolled",
                hint="give a later --send-at, an earlier --start, or --send-at HH:MM",
            )
        return
    for step in cadence.steps:
        if step.email is not None and step.email.send.kind.value == "choose_at_launch":
            raise UsageError(
                f"step {step.id!r} is sent at a time chosen at launch (choose_at_launch), "
                "but no --send-at was given",
                hint=send_at_help(cadence.settings.default_timezone),
            )


def schedule_contacts(
    cadence: Cadence, contacts: Iterable[Contact], launch: Launch
) -> Iterator[tuple[Contact, ContactSchedule]]:
    """Each contact with its schedule, in input order (the fast path for reporters).

    Schedules are shared between contacts (compare them by identity).
    """
    scheduler = Scheduler(cadence, launch)
    for contact in contacts:
        yield contact, scheduler.schedule(contact)


def compile_plan(
    cadence: Cadence, contacts: Iterable[Contact], launch: Launch, *, render: bool = False
) -> Iterator[PlannedStep]:
    """The plan: one `PlannedStep` per (contact, step), contacts in input order, steps in
    file order. With `render`, rows carry the rendered subject and body (tasks: title and
    notes). Raises UsageError before yielding anything when the launch lacks a send time.
    """
    scheduler = Scheduler(cadence, launch)
    for contact in contacts:
        yield from rows_for(cadence, contact, scheduler.schedule(contact), render=render)


def plan_contact(
    cadence: Cadence,
    contact: Contact,
    launch: Launch,
    *,
    limit: DailyLimit | None = None,
    render: bool = False,
) -> list[PlannedStep]:
    """The plan rows of one contact enrolled at `launch` (what the runner stores)."""
    scheduler = Scheduler(cadence, launch, limit=limit)
    return list(rows_for(cadence, contact, scheduler.schedule(contact), render=render))


def rows_for(
    cadence: Cadence, contact: Contact, schedule: ContactSchedule, *, render: bool = False
) -> Iterator[PlannedStep]:
    texts: dict[str, tuple[str, str]] = {}
    if render:
        from .messages import PREVIEW_UNSUBSCRIBE_URL, render_step_texts

        texts = render_step_texts(cadence, contact, unsubscribe_url=PREVIEW_UNSUBSCRIBE_URL)
    for slot in schedule.slots:
        text = texts.get(slot.step.id)
        yield PlannedStep(
            contact=contact.email,
            step_id=slot.step.id,
            step_index=slot.step.index,
            day=slot.step.day,
            action=slot.action,
            due_utc=slot.due_utc,
            due_local=slot.due_local,
            zone=schedule.zone,
            depends_on=slot.depends_on,
            thread_step_id=slot.thread_step_id,
            moved=slot.moved,
            subject=text[0] if text else None,
            body=text[1] if text else None,
        )
