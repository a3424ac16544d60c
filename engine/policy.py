"""The one scheduling policy (SPEC §5, R2, R4, R5), used by the compiler and the runner alike.

Pure: no clock, no store. The compiler applies it to planned times, the runner to the real
time a step is executed or an email was sent:
- `into_window`: an automatic email outside `send_window` moves to the next opening;
- `DailyLimit`: a day full for its sender moves the email to the first campaign day with
  room, remembered per sender so planning stays linear;
- `after_previous_step`: a step on a later campaign day than the one before it never goes
  out at once after it (the next campaign day after, at its own wall time);
- `lateness_days` / `later_moves`: R5's shift of the later steps by a late task, gaps kept;
- `due_after_reference` / `copies_time_of`: R4, a `same_time_as_previous` email takes the
  wall time its reference email was really sent at;
- `decide`: what the runner does with one due step now.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time
from typing import NamedTuple
from zoneinfo import ZoneInfo

from .calendar import (
    Instant,
    ZoneClock,
    campaign_days_between,
    next_campaign_day,
    previous_campaign_day,
    resolve_local,
    shift_campaign_days,
    zone,
    zone_clock,
)
from .model import Cadence, SendKind, Settings, Step, StepKind
from .plan import Action
from .store.contract import Move, StepRow


def wall(local: datetime) -> time:
    """The naive wall time of an aware local datetime (`time()` drops the zone, keeps fold)."""
    return local.time()


# -- send window ---------------------------------------------------------------------------


def into_window(settings: Settings, due: datetime, tz: ZoneInfo) -> datetime:
    """`due` itself, or the next opening of the send window when it falls outside it: the
    same campaign day's opening before the window, the next campaign day's after it."""
    opening = window_opening(settings, due.astimezone(tz), tz)
    return due if opening is None else opening[0]


def window_opening(settings: Settings, local: datetime, tz: ZoneInfo) -> Instant | None:
    """`into_window` for a time already in its zone `tz` (`local`): None when it is inside
    the window (or there is none), else the opening it moves to, in UTC and in the zone."""
    window = settings.send_window
    if window is None:
        return None
    at = local.time()  # its wall time (see `wall`)
    if at < window.start:
        day = shift_campaign_days(settings, local.date(), 0)
    elif at >= window.end:
        day = next_campaign_day(settings, local.date())
    else:
        return None
    return zone_clock(tz).at(day, window.start)


# -- daily limit ---------------------------------------------------------------------------


class DailyLimit:
    """Automatic emails booked per (sender, local date); the limit is per day and sender.

    The day is the contact's local date: the day the recipient sees, and the only one that
    is the same for every step of a schedule. Full days are linked to the next campaign
    day with room (path-compressed), so finding room costs the same on day 1 and day 900.
    One instance serves one cadence's calendar.
    """

    def __init__(self, limit: int, booked: dict[tuple[str, date], int] | None = None) -> None:
        self.limit = limit
        # sender → local date → emails (a plan asks once per contact and once per email)
        self._booked: defaultdict[str, dict[date, int]] = defaultdict(dict)
        for (sender, day), n in (booked or {}).items():
            self._booked[sender][day] = n
        self._skip: defaultdict[str, dict[date, date]] = defaultdict(dict)  # full → next

    def room(self, sender: str, day: date) -> int:
        return self.limit - self._booked[sender].get(day, 0)

    def take(self, sender: str, bookings: Sequence[tuple[date, int]]) -> bool:
        """Book `n` emails on each `(day, n)` of `bookings` when every day has room for them
        (a schedule reused for one more contact: all of it or nothing)."""
        booked, limit = self._booked[sender], self.limit
        for i, (d, n) in enumerate(bookings):
            now = booked.get(d, 0) + n
            if now > limit:  # (nearly always its first day: what it booked is given back)
                for d, n in bookings[:i]:
                    booked[d] -= n
                return False
            booked[d] = now
        return True

    def place(self, sender: str, day: date, step: Callable[[date], date]) -> date:
        """Book one email on `day`, or on the first later day with room; that day."""
        booked = self._booked[sender]
        n = booked.get(day, 0)
        if n >= self.limit:
            day = self.first_with_room(sender, day, step)
            n = booked.get(day, 0)
        booked[day] = n + 1
        return day

    def first_with_room(self, sender: str, day: date, step: Callable[[date], date]) -> date:
        """`day`, or the first later day (`step` gives the next one) with room."""
        booked, limit, skip = self._booked[sender], self.limit, self._skip[sender]
        path: list[date] = []
        while booked.get(day, 0) >= limit:
            path.append(day)
            day = skip.get(day) or step(day)
        for d in path:
            skip[d] = day
        return day


def limit_day(settings: Settings, due: datetime, tz: ZoneInfo, day: date) -> datetime:
    """An email moved by the daily limit to `day`: its own wall time there, or the window's
    opening when its wall time is outside the window."""
    at = wall(due.astimezone(tz))
    window = settings.send_window
    if window is not None and not window.contains(at):
        at = window.start
    return resolve_local(day, at, tz)


# -- after the previous step ---------------------------------------------------------------


def after_previous_step(
    settings: Settings, due: datetime, previous: datetime, tz: ZoneInfo
) -> datetime:
    """A step on a later campaign day than the step before it, which goes at `previous`.

    Unchanged (`due` itself) when it is still on a later local date than `previous`; else
    (the step before it was pushed onto its date, or past it) the next campaign day after
    `previous`'s local date, at the step's own wall time, so the gap of at least one
    campaign day is kept after a move: never two campaign days' steps on one date.
    """
    local = due.astimezone(tz)
    pushed = after_previous(
        settings, due, local.date(), zone_clock(tz), wall(local), previous.astimezone(tz)
    )
    return due if pushed is None else pushed[0]


def after_previous(
    settings: Settings,
    due: datetime,
    due_day: date,
    clock: ZoneClock,
    at: time | None,
    previous_local: datetime,
) -> Instant | None:
    """`after_previous_step` as the scheduler asks it: None when `due` stays, else where it
    goes, in UTC and in the zone. `due_day`: `due`'s local date; `at`: its wall time when
    the caller knows it already; `previous_local`: the step before it, in the zone (both
    already worked out by the caller, which plans under a daily limit make this check
    once per step of every schedule they build).
    """
    previous_day = previous_local.date()
    if due_day > previous_day:
        return None
    after = next_campaign_day(settings, previous_day)
    return clock.at(after, wall(due.astimezone(clock.tz)) if at is None else at)


# -- R2 / R4: same time as the previous email ----------------------------------------------


def same_time_reference(cadence: Cadence, step: Step) -> Step | None:
    """R2: the email whose wall time `same_time_as_previous` step `step` copies.

    The email directly before it; when that one is on the same day, the last email on
    the most recent earlier day; None when there is no email on an earlier day.
    """
    earlier = [s for s in cadence.steps[: step.index] if s.kind is StepKind.EMAIL]
    if earlier and earlier[-1].day == step.day:
        earlier = [s for s in earlier if s.day < step.day]
    return earlier[-1] if earlier else None


def copies_time_of(cadence: Cadence, step: Step, reference_id: str) -> bool:
    """Whether `step` is a `same_time_as_previous` email whose reference is `reference_id`."""
    if step.email is None or step.email.send.kind is not SendKind.SAME_TIME_AS_PREVIOUS:
        return False
    ref = same_time_reference(cadence, step)
    return ref is not None and ref.id == reference_id


def due_after_reference(
    cadence: Cadence, step: Step, zone_name: str, day: date, reference_sent: datetime
) -> datetime:
    """R4: the UTC due time of `same_time_as_previous` step `step` on local date `day`, now
    that its reference email was really sent at `reference_sent`: that wall time on `day`,
    then the send window as usual (the daily limit is applied when it runs)."""
    tz = zone(zone_name)
    due = resolve_local(day, wall(reference_sent.astimezone(tz)), tz)
    return into_window(cadence.settings, due, tz)


def own_day(settings: Settings, planned_utc: int, reference_planned_utc: int, tz: ZoneInfo) -> date:
    """The campaign day (local date) of a `same_time_as_previous` step planned at
    `planned_utc`, whose reference was planned at `reference_planned_utc`: its planned
    date, unless the plan moved it there from the campaign day before because the
    reference's time of day fell after the send window (an email task may be due at any
    hour). R4 then puts the real send time on that day, not on the one the provisional
    time was pushed to."""
    planned = datetime.fromtimestamp(planned_utc, UTC)
    day = planned.astimezone(tz).date()
    reference_wall = wall(datetime.fromtimestamp(reference_planned_utc, UTC).astimezone(tz))
    before = previous_campaign_day(settings, day)
    if into_window(settings, resolve_local(before, reference_wall, tz), tz) == planned:
        return before
    return day


# -- R5: lateness ------------------------------------------------------------------------


def lateness_days(cadence: Cadence, row: StepRow, done: datetime) -> int:
    """R5: campaign days between a step's scheduled date and the day it really happened.

    The scheduled date is `planned_utc`: the plan's time, moved by earlier R5 shifts but
    not by a rep's `tasks send --at` (so a late task counts once, however it is finished).
    """
    tz = zone(row.zone)
    due_day = datetime.fromtimestamp(row.planned_utc, UTC).astimezone(tz).date()
    return campaign_days_between(cadence.settings, due_day, done.astimezone(tz).date())


def shifted(settings: Settings, instant: int, days: int, tz: ZoneInfo) -> datetime:
    """`instant` moved by `days` campaign days, its wall time kept."""
    local = datetime.fromtimestamp(instant, UTC).astimezone(tz)
    day = shift_campaign_days(settings, local.date(), days)
    return resolve_local(day, wall(local), tz)


def shift_move(settings: Settings, other: StepRow, days: int, tz: ZoneInfo, reason: str) -> Move:
    """R5's shift of one later step: due and planned time, `days` campaign days on."""
    return Move(
        other.id,
        int(shifted(settings, other.due_utc, days, tz).timestamp()),
        int(shifted(settings, other.planned_utc, days, tz).timestamp()),
        reason,
    )


def later_moves(
    cadence: Cadence, row: StepRow, later: Sequence[StepRow], done: datetime, *, sent: bool
) -> list[Move]:
    """How `later` steps move after `row` was completed (or sent by hand) at `done`.

    R5: shifted by the lateness in whole campaign days, gaps kept — both the due time and
    the planned time, so the next late task is measured against the shifted schedule.
    R4: when `row` is an email that was `sent` (not skipped), a `same_time_as_previous`
    email whose reference is `row` takes the real send time's wall time on its own day.
    """
    days = lateness_days(cadence, row, done)
    tz = zone(row.zone)
    why = "after late task" if days else "after email task sent"
    moves: list[Move] = []
    for other in later:
        move = shift_move(cadence.settings, other, days, tz, why)
        due = datetime.fromtimestamp(move.due_utc, UTC)
        step = cadence.step(other.step_id)
        if sent and copies_time_of(cadence, step, row.step_id):
            day = shift_campaign_days(
                cadence.settings,
                own_day(cadence.settings, other.planned_utc, row.planned_utc, tz),
                days,
            )
            due = due_after_reference(cadence, step, row.zone, day, done)
        if int(due.timestamp()) != other.due_utc or move.planned_utc != other.planned_utc:
            moves.append(move._replace(due_utc=int(due.timestamp())))
    return moves


def pause_moves(
    cadence: Cadence, later: Sequence[StepRow], paused: datetime, resumed: datetime
) -> list[Move]:
    """Resuming a pause shifts the planned steps by the campaign days it lasted (as R5)."""
    moves: list[Move] = []
    for other in later:
        tz = zone(other.zone)
        days = campaign_days_between(
            cadence.settings, paused.astimezone(tz).date(), resumed.astimezone(tz).date()
        )
        if days:
            moves.append(shift_move(cadence.settings, other, days, tz, "after pause"))
    return moves


def catch_up_moves(
    cadence: Cadence, row: StepRow, later: Sequence[StepRow], executed: datetime
) -> list[Move]:
    """No catch-up burst: the steps after `row` when it was executed late, at `executed`.

    When the first one on a later campaign day would be due at or before `executed`, or
    on the same local date, it goes to the next campaign day after that date at its own
    wall time
    (`after_previous_step`), and every step on a later day than `row` moves by the same
    number of campaign days (R5's shift), so their gaps are kept. Steps on `row`'s own
    day keep going right after it (file order).
    """
    tz = zone(row.zone)
    following = [r for r in later if r.day > row.day]
    if not following:
        return []
    due = datetime.fromtimestamp(following[0].due_utc, UTC)
    pushed = after_previous_step(cadence.settings, due, executed, tz)
    if pushed == due:
        return []
    days = campaign_days_between(
        cadence.settings, due.astimezone(tz).date(), pushed.astimezone(tz).date()
    )
    return [shift_move(cadence.settings, o, days, tz, "after previous step") for o in following]


def sent_moves(
    cadence: Cadence, row: StepRow, later: Sequence[StepRow], sent: datetime
) -> list[Move]:
    """Later steps' new times now that email `row` went out at `sent`.

    A rep's email: R5 and R4 (`later_moves`). An automatic email sent at another wall
    time than planned (moved by the window or the limit, or a late run): R4 for the
    `same_time_as_previous` emails that copy it. Then no catch-up burst for the steps on
    later days.
    """
    if not later:  # nothing after it to move (every email of a one-step cadence)
        return []
    tz = zone(row.zone)
    moves: dict[int, Move] = {}
    if row.by_hand:
        moves = {m.step_run_id: m for m in later_moves(cadence, row, later, sent, sent=True)}
    elif wall(sent.astimezone(tz)) != wall(
        datetime.fromtimestamp(row.planned_utc, UTC).astimezone(tz)
    ):
        for other in later:
            step = cadence.step(other.step_id)
            if copies_time_of(cadence, step, row.step_id):
                day = own_day(cadence.settings, other.planned_utc, row.planned_utc, tz)
                due = int(due_after_reference(cadence, step, row.zone, day, sent).timestamp())
                if due != other.due_utc:
                    moves[other.id] = Move(other.id, due, other.planned_utc, "after email sent")
    current = [
        r._replace(due_utc=m.due_utc, planned_utc=m.planned_utc)
        if (m := moves.get(r.id)) is not None
        else r
        for r in later
    ]
    for move in catch_up_moves(cadence, row, current, sent):
        moves[move.step_run_id] = move
    return list(moves.values())


# -- the runner's decision for a due step --------------------------------------------------


class DecisionKind(enum.StrEnum):
    SEND = "send"  # send it now (counts against the daily limit when `day` is set)
    OPEN_TASK = "open task"  # a task becomes due: open it for a person
    RESCHEDULE = "rescheduled"  # not now (send window): move it to `due_utc`
    CANCEL = "cancelled"  # never (suppressed address)


class Decision(NamedTuple):
    kind: DecisionKind
    due_utc: int | None = None
    reason: str = ""
    day: date | None = None  # the sender's local day it counts against (daily_limit)


SEND_NOW = Decision(DecisionKind.SEND)


def decide(cadence: Cadence, row: StepRow, at: datetime) -> Decision:
    """What a due, reachable step becomes at `at` (before the daily limit is counted)."""
    if row.suppressed and row.action in (Action.SEND_EMAIL, Action.EMAIL_TASK):
        # Bounced or unsubscribed (remove_on_bounce: false keeps the enrolment): no email
        # of any kind goes to the address; calls and other tasks go on.
        return Decision(DecisionKind.CANCEL, reason="address suppressed")
    if row.action != Action.SEND_EMAIL and not row.by_hand:
        return Decision(DecisionKind.OPEN_TASK)
    if row.by_hand:  # a rep chose this time: no window, no limit
        return SEND_NOW
    settings = cadence.settings
    tz = zone(row.zone)
    opening = into_window(settings, at, tz)
    if opening != at:  # executed late (or the runner was down): the next opening
        return Decision(DecisionKind.RESCHEDULE, int(opening.timestamp()), "send window")
    if settings.daily_limit is None:
        return SEND_NOW
    return Decision(DecisionKind.SEND, day=at.astimezone(tz).date())


def over_limit(cadence: Cadence, row: StepRow, day: date, limit: DailyLimit | None) -> int:
    """When an email whose `day` is full for its sender goes instead: the next campaign day
    (with room, when `limit` knows the bookings), at its own wall time (SPEC §5)."""
    settings = cadence.settings
    nxt = next_campaign_day(settings, day)
    if limit is not None:
        nxt = limit.first_with_room(
            cadence.sender.email, nxt, lambda d: next_campaign_day(settings, d)
        )
    tz = zone(row.zone)
    return int(limit_day(settings, datetime.fromtimestamp(row.due_utc, UTC), tz, nxt).timestamp())
